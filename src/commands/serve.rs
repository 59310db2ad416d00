//! `serve`: the webhooks over HTTPS on a state file or the demo cluster; no API server.

use std::sync::Arc;

use super::{Error, Outcome, load_state, runtime, server_config, signal};
use crate::app::App;
use crate::cli::ServeArgs;
use crate::dev;
use crate::server::TlsSource;

pub fn serve(args: ServeArgs) -> Result<Outcome, Error> {
    let index = match &args.state {
        Some(path) => load_state(path)?,
        None => {
            tracing::info!(
                "--dev without --state: serving the demo cluster built into the binary (src/dev/state.yaml)"
            );
            dev::demo_cluster()?
        }
    };
    // The same check `dispatch` (and `--check-args`) made; `None`: --dev writes its own pair.
    let tls = match crate::cli::validate_serve(&args)? {
        Some(files) => files,
        None => {
            let dir = args.dev_dir.clone().unwrap_or_else(dev::default_dir);
            let files = dev::write(&dir)?;
            dev::print_instructions(&files, args.common.listen.port());
            TlsSource::Files {
                cert: files.cert,
                key: files.key,
            }
        }
    };
    let config = server_config(&args.common, tls, Arc::new(index), None)?;
    runtime()?.block_on(async move {
        let app = App::start(config, None).await?;
        signal().await;
        // Exit 0 either way: the process did what SIGTERM asks, and the log says whether any
        // connection was cut off after the grace period.
        app.stop().await;
        Ok(Outcome::Success)
    })
}
