//! The `storage-admission` command line: parse it, set up logging, run the command.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use storage_admission::cli::Cli;
use storage_admission::{commands, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log = telemetry::init(cli.log_format);
    ExitCode::from(commands::exit_code(commands::dispatch(cli)))
}
