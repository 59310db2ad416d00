//! Golden AdmissionReview tests.
//!
//! Each folder under `tests/golden/` holding a `review.json` (or a `manifest.yaml`, one object,
//! wrapped as the CREATE review the API server would send) is a case. The review is sent
//! through the real router (in-process, `tower::ServiceExt::oneshot`) to every webhook that
//! has an expected file beside it — `mutate.expected.json`, `validate.expected.json` — and the
//! whole response is compared, with the base64 patch decoded to JSON so a diff is readable.
//! The cluster is the nearest `state.yaml` (the folder, then its parents up to
//! `tests/golden/`; else the demo cluster `serve --dev` embeds, `src/dev/state.yaml`), the
//! policy the nearest `policy.yaml` (else the built-in policy). The captured case
//! `dev::SAMPLE_REVIEW_CASE` has no `review.json` of its own: its review is the sample
//! `serve --dev` embeds, `src/dev/review.json`.
//!
//! `UPDATE_GOLDEN=1 cargo nextest run --test golden` rewrites the expected files; a new case
//! with no expected file gets both.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use base64::Engine as _;
use serde_json::Value;

use storage_admission::cluster::state_file;
use storage_admission::dev;
use storage_admission::policy::Policy;
use storage_admission::server::{AppState, router};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
/// The files `serve --dev` embeds (`storage_admission::dev`), read here from the same place.
const DEMO_STATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/dev/state.yaml");
const SAMPLE_REVIEW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/dev/review.json");

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.join("review.json").is_file()
                || path.join("manifest.yaml").is_file()
                || is_sample_review_case(&path)
            {
                out.push(path.clone());
            }
            cases(&path, out);
        }
    }
}

/// The captured case whose review is the one `serve --dev` embeds (the same file).
fn is_sample_review_case(case: &Path) -> bool {
    case == Path::new(ROOT)
        .join("captured")
        .join(dev::SAMPLE_REVIEW_CASE)
}

fn nearest(case: &Path, file: &str) -> Option<PathBuf> {
    let root = Path::new(ROOT);
    let mut dir = Some(case);
    while let Some(d) = dir {
        if d.join(file).is_file() {
            return Some(d.join(file));
        }
        if d == root {
            break;
        }
        dir = d.parent();
    }
    None
}

/// The response with its patch decoded; fails if the patch is not a base64 string.
fn normalise(mut response: Value) -> Result<Value, String> {
    if let Some(patch) = response.pointer_mut("/response/patch") {
        let Value::String(encoded) = patch else {
            return Err(format!(
                "response.patch must be a base64 string, got {patch}"
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| format!("response.patch is not base64: {e}"))?;
        *patch = serde_json::from_slice(&bytes)
            .map_err(|e| format!("decoded patch is not JSON: {e}"))?;
    }
    Ok(response)
}

#[tokio::test]
async fn golden_reviews() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut all = Vec::new();
    cases(Path::new(ROOT), &mut all);
    assert!(
        all.len() >= 7,
        "expected the captured reviews at least, found {} cases",
        all.len()
    );

    assert!(
        all.iter().any(|case| is_sample_review_case(case)),
        "the captured case of the sample review `serve --dev` embeds is checked too"
    );

    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &all {
        let name = case.strip_prefix(ROOT).unwrap().display().to_string();
        let state = nearest(case, "state.yaml").unwrap_or_else(|| Path::new(DEMO_STATE).to_owned());
        let view = state_file::load(&state)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .index;
        let policy = match nearest(case, "policy.yaml") {
            Some(p) => Policy::load(&p).unwrap_or_else(|e| panic!("{name}: {e}")),
            None => Policy::builtin(),
        };
        let app = router(AppState::new(Arc::new(view), policy));
        let review = if is_sample_review_case(case) {
            std::fs::read(SAMPLE_REVIEW).unwrap()
        } else if case.join("review.json").is_file() {
            std::fs::read(case.join("review.json")).unwrap()
        } else {
            let text = std::fs::read_to_string(case.join("manifest.yaml")).unwrap();
            let object = storage_admission::yaml::documents(&text).unwrap().remove(0);
            let review = storage_admission::offline::wrap_manifest(object)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            serde_json::to_vec(&review).unwrap()
        };

        let mut webhooks: Vec<&str> = ["mutate", "validate"]
            .into_iter()
            .filter(|w| case.join(format!("{w}.expected.json")).is_file())
            .collect();
        if webhooks.is_empty() && update {
            webhooks = vec!["mutate", "validate"];
        }
        if webhooks.is_empty() {
            failures.push(format!("{name}: no mutate.expected.json or validate.expected.json (run with UPDATE_GOLDEN=1)"));
        }
        for webhook in webhooks {
            let (status, response) = common::send(
                &app,
                &format!("/{webhook}"),
                Some("application/json"),
                Body::from(review.clone()),
            )
            .await;
            let expected_path = case.join(format!("{webhook}.expected.json"));
            let actual = match normalise(response) {
                Ok(v) => serde_json::json!({"httpStatus": status.as_u16(), "body": v}),
                Err(e) => {
                    failures.push(format!("{name} /{webhook}: {e}"));
                    continue;
                }
            };
            let actual_text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            checked += 1;
            if update {
                std::fs::write(&expected_path, &actual_text).unwrap();
                continue;
            }
            let expected_text = std::fs::read_to_string(&expected_path).unwrap();
            let expected: Value = serde_json::from_str(&expected_text)
                .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            if expected != actual {
                failures.push(format!(
                    "{name} /{webhook}:\n{}",
                    pretty_assertions::StrComparison::new(
                        &serde_json::to_string_pretty(&expected).unwrap(),
                        &actual_text
                    )
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(checked > 0);
}
