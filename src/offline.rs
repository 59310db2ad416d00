//! `storage-admission review`: the webhook's decisions on files, without a cluster.
//!
//! Input is an AdmissionReview, or plain manifests (YAML or JSON, one or many documents,
//! `List`s flattened) which are wrapped as CREATE reviews. Each is run through the mutating
//! rules, the patch is applied, and the result through the validating rules — as the API
//! server would. Users run it in CI on their manifests, like `kyverno apply` or `gator verify`.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::admission::review::{self, AdmissionRequest, ReviewError};
use crate::admission::{self, Verdict, Webhook};
use crate::cluster::ClusterView;
use crate::policy::Policy;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("input is not valid YAML or JSON: {0}")]
    Syntax(String),
    #[error("document {document}: {message}")]
    Document { document: usize, message: String },
    #[error("document {document}: {source}")]
    Review {
        document: usize,
        source: ReviewError,
    },
    #[error("document {document}: the mutating patch does not apply to the object: {message}")]
    Patch { document: usize, message: String },
}

/// The outcome of one input object: both phases merged as the API server would report them.
pub struct ReviewedDocument {
    pub kind: String,
    pub name: String,
    pub api_version: String,
    pub uid: String,
    pub mutate: Verdict,
    /// `None` when the mutating phase already denied (the API server stops there).
    pub validate: Option<Verdict>,
}

impl ReviewedDocument {
    pub fn allowed(&self) -> bool {
        self.mutate.allowed && self.validate.as_ref().is_none_or(|v| v.allowed)
    }

    fn denial_message(&self) -> Option<&str> {
        self.mutate
            .denial
            .as_ref()
            .or_else(|| self.validate.as_ref().and_then(|v| v.denial.as_ref()))
            .map(|d| d.message.as_str())
    }

    fn warnings(&self) -> impl Iterator<Item = &String> {
        self.mutate
            .warnings
            .iter()
            .chain(self.validate.iter().flat_map(|v| v.warnings.iter()))
    }

    /// The AdmissionReview the API server's answer amounts to: the mutating patch, the first
    /// denial, every warning.
    pub fn to_review_json(&self) -> Result<Value, ReviewError> {
        let mut merged = self.mutate.clone();
        if let Some(validate) = &self.validate {
            merged.warnings.extend(validate.warnings.iter().cloned());
            if !validate.allowed {
                merged.allowed = false;
                merged.denial = validate.denial.clone();
                merged.patch.clear();
            }
        }
        let bytes = review::encode(&self.api_version, &self.uid, &merged);
        serde_json::from_slice(&bytes).map_err(|e| ReviewError::Encode(e.to_string()))
    }
}

/// Reviews every object in `text`.
pub fn review_text(
    text: &str,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<Vec<ReviewedDocument>, OfflineError> {
    let documents = crate::yaml::documents(text).map_err(OfflineError::Syntax)?;
    let mut inputs = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let document = i + 1;
        match doc {
            Value::Null => {}
            Value::Object(mut map) => {
                if map.get("kind").and_then(Value::as_str) == Some("AdmissionReview") {
                    inputs.push((document, Value::Object(map)));
                } else if let Some(items) = map.remove("items") {
                    let Value::Array(items) = items else {
                        return Err(OfflineError::Document {
                            document,
                            message: "`items` must be a list".into(),
                        });
                    };
                    for item in items {
                        inputs.push((document, wrap(document, item, inputs.len())?));
                    }
                } else {
                    let n = inputs.len();
                    inputs.push((document, wrap(document, Value::Object(map), n)?));
                }
            }
            _ => {
                return Err(OfflineError::Document {
                    document,
                    message: "expected a Kubernetes object, a List or an AdmissionReview".into(),
                });
            }
        }
    }
    inputs
        .into_iter()
        .map(|(document, review)| run(document, review, view, policy))
        .collect()
}

/// Wraps one manifest object as the CREATE review the API server would send.
pub fn wrap_manifest(object: Value) -> Result<Value, OfflineError> {
    wrap(1, object, 0)
}

/// Wraps a manifest as the CREATE review the API server would send.
fn wrap(document: usize, object: Value, n: usize) -> Result<Value, OfflineError> {
    let fail = |message: &str| OfflineError::Document {
        document,
        message: message.to_owned(),
    };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("the object has no apiVersion"))?;
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("the object has no kind"))?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let meta = object.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let cluster_scoped = matches!(
        kind,
        "Node"
            | "PersistentVolume"
            | "StorageClass"
            | "VolumeSnapshotClass"
            | "VolumeSnapshotContent"
            | "VolumeGroupSnapshotClass"
            | "VolumeGroupSnapshotContent"
    );
    // kubectl would use the context's namespace; offline, that is `default`.
    let namespace = (!cluster_scoped).then(|| {
        meta.and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default")
    });
    let mut object = object.clone();
    if let (Some(ns), Some(meta)) = (
        namespace,
        object.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        meta.entry("namespace").or_insert_with(|| json!(ns));
    }
    let mut request = json!({
        "uid": format!("offline-review-{}", n + 1),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural(kind)},
        "name": name,
        "operation": "CREATE",
        "userInfo": {"username": "storage-admission-review", "groups": ["system:authenticated"]},
        "object": object,
        "oldObject": null,
        "dryRun": true,
    });
    if let Some(ns) = namespace {
        request["namespace"] = json!(ns);
    }
    Ok(json!({"apiVersion": review::API_VERSION, "kind": review::KIND, "request": request}))
}

fn plural(kind: &str) -> String {
    if let Some(known) = crate::cluster::ResourceKind::from_kind(kind) {
        return known.plural().to_owned();
    }
    match kind {
        "StorageClass" | "VolumeSnapshotClass" => format!("{}es", kind.to_ascii_lowercase()),
        _ => format!("{}s", kind.to_ascii_lowercase()),
    }
}

fn run(
    document: usize,
    mut review_json: Value,
    view: &dyn ClusterView,
    policy: &Policy,
) -> Result<ReviewedDocument, OfflineError> {
    // Both phases go through the webhook's own entry point, as the API server would call it.
    let handle = |webhook: Webhook, value: &Value| -> Result<admission::Reviewed, OfflineError> {
        let bytes = serde_json::to_vec(value).map_err(|e| OfflineError::Document {
            document,
            message: e.to_string(),
        })?;
        admission::handle_now(webhook, &bytes, view, policy)
            .map_err(|source| OfflineError::Review { document, source })
    };
    let mutated = handle(Webhook::Mutate, &review_json)?;
    let api_version = review_json
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or(review::API_VERSION)
        .to_owned();
    let request = &mutated.request;
    let (kind, name) = (request.kind.kind.clone(), display_name(request));
    let uid = request.uid.clone();
    let mutate = mutated.verdict;
    if !mutate.allowed {
        return Ok(ReviewedDocument {
            kind,
            name,
            api_version,
            uid,
            mutate,
            validate: None,
        });
    }
    if !mutate.patch.is_empty() {
        let object =
            review_json
                .pointer_mut("/request/object")
                .ok_or_else(|| OfflineError::Patch {
                    document,
                    message: "no request.object".into(),
                })?;
        let patch =
            crate::rules::patch::to_json_patch(&mutate.patch).map_err(|e| OfflineError::Patch {
                document,
                message: e.to_string(),
            })?;
        json_patch::patch(object, &patch).map_err(|e| OfflineError::Patch {
            document,
            message: e.to_string(),
        })?;
    }
    let validate = handle(Webhook::Validate, &review_json)?.verdict;
    Ok(ReviewedDocument {
        kind,
        name,
        api_version,
        uid,
        mutate,
        validate: Some(validate),
    })
}

fn display_name(req: &AdmissionRequest) -> String {
    let name = req
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("<generated name>");
    match req.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// The readable summary of `-o text`.
pub fn render_text(results: &[ReviewedDocument]) -> String {
    let mut out = String::new();
    for r in results {
        let verdict = if !r.allowed() {
            "DENIED"
        } else if !r.mutate.patch.is_empty() {
            "allowed, patched"
        } else {
            "allowed"
        };
        let _ = writeln!(out, "{} {}: {verdict}", r.kind, r.name);
        if let Some(message) = r.denial_message() {
            for line in message.lines() {
                let _ = writeln!(out, "  denied: {line}");
            }
        }
        for warning in r.warnings() {
            let _ = writeln!(out, "  warning: {warning}");
        }
        if r.allowed() && !r.mutate.patch.is_empty() {
            let mut patch = String::new();
            crate::rules::patch::push_json(&mut patch, &r.mutate.patch);
            let _ = writeln!(out, "  patch: {patch}");
        }
    }
    let denied = results.iter().filter(|r| !r.allowed()).count();
    let _ = writeln!(
        out,
        "{} reviewed, {} allowed, {denied} denied",
        results.len(),
        results.len() - denied
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterIndex;

    #[test]
    fn wraps_manifests_as_create_reviews() {
        let review = wrap(
            1,
            json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot", "metadata": {"name": "s"}, "spec": {}}),
            0,
        )
        .unwrap();
        assert_eq!(review["request"]["operation"], "CREATE");
        assert_eq!(review["request"]["namespace"], "default");
        assert_eq!(
            review["request"]["object"]["metadata"]["namespace"],
            "default"
        );
        assert_eq!(review["request"]["resource"]["resource"], "volumesnapshots");
        assert_eq!(
            review["request"]["kind"]["group"],
            "snapshot.storage.k8s.io"
        );

        let sc = wrap(1, json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "c"}}), 0).unwrap();
        assert!(sc["request"].get("namespace").is_none());
        assert_eq!(sc["request"]["resource"]["resource"], "storageclasses");

        let class = wrap(1, json!({"apiVersion": "groupsnapshot.storage.k8s.io/v1beta2", "kind": "VolumeGroupSnapshotClass", "metadata": {"name": "g"}}), 0).unwrap();
        assert!(class["request"].get("namespace").is_none());
        assert_eq!(
            class["request"]["resource"],
            json!({"group": "groupsnapshot.storage.k8s.io", "version": "v1beta2", "resource": "volumegroupsnapshotclasses"})
        );
        let group = wrap(1, json!({"apiVersion": "groupsnapshot.storage.k8s.io/v1", "kind": "VolumeGroupSnapshot", "metadata": {"name": "g"}}), 0).unwrap();
        assert_eq!(group["request"]["namespace"], "default");
        assert_eq!(
            group["request"]["resource"]["resource"],
            "volumegroupsnapshots"
        );
    }

    #[test]
    fn bad_documents_are_named() {
        let view = ClusterIndex::unavailable("none");
        let policy = Policy::builtin();
        let err = review_text("kind: Node\n", &view, &policy)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("document 1") && err.contains("apiVersion"),
            "{err}"
        );
        let err = review_text("- a\n- b\n", &view, &policy)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("expected a Kubernetes object"), "{err}");
        let err = review_text("{\"apiVersion\":\"admission.k8s.io/v1beta1\",\"kind\":\"AdmissionReview\",\"request\":{}}", &view, &policy)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("v1beta1"), "{err}");
    }

    #[test]
    fn unhandled_kinds_are_allowed() {
        let view = ClusterIndex::unavailable("none");
        let results = review_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            &view,
            &Policy::builtin(),
        )
        .unwrap();
        assert!(results[0].allowed());
        assert!(render_text(&results).contains("ConfigMap default/c: allowed"));
    }
}
