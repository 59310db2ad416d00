//! `review`: files through the webhooks as the API server would, without a cluster.

use std::io::Read as _;
use std::path::PathBuf;

use super::{Error, Outcome, load_policy, load_state};
use crate::cli::{Output, ReviewArgs};
use crate::cluster::ClusterIndex;
use crate::offline::{self, ReviewedDocument};

pub fn review(args: ReviewArgs) -> Result<Outcome, Error> {
    let policy = load_policy(args.policy.as_deref())?;
    let index = match &args.state {
        Some(path) => load_state(path)?,
        None => {
            ClusterIndex::unavailable("no --state file was given to `storage-admission review`")
        }
    };
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files
    };
    let mut results = Vec::new();
    for file in &files {
        let text = if file.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::input(format!("cannot read standard input: {e}")))?;
            text
        } else {
            std::fs::read_to_string(file)
                .map_err(|e| Error::input(format!("cannot read {}: {e}", file.display())))?
        };
        let reviewed = offline::review_text(&text, &index, &policy)
            .map_err(|e| Error::input(format!("{}: {e}", file.display())))?;
        results.extend(reviewed);
    }
    match args.output {
        Output::Text => print!("{}", offline::render_text(&results)),
        Output::Json => {
            for r in &results {
                let v = r.to_review_json().map_err(Error::input)?;
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
        }
    }
    if results.iter().all(ReviewedDocument::allowed) {
        Ok(Outcome::Success)
    } else {
        Ok(Outcome::Denied)
    }
}
