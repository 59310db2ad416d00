//! `policy check`: each file's verdict.

use std::path::PathBuf;

use super::{Error, Outcome};
use crate::policy::PolicyFile;

pub fn check(files: &[PathBuf]) -> Result<Outcome, Error> {
    let mut invalid = 0;
    for file in files {
        match PolicyFile::load(file) {
            Ok(_) => println!("{}: valid", file.display()),
            Err(e) => {
                // The error names the file.
                println!("{e}");
                invalid += 1;
            }
        }
    }
    if invalid == 0 {
        Ok(Outcome::Success)
    } else {
        Err(Error::Input(format!(
            "{invalid} of {} policy files are invalid",
            files.len()
        )))
    }
}
