//! Bad reviews through the real router (`tower::ServiceExt::oneshot`), table-driven from the
//! golden reviews: every case is answered with a well-formed response (HTTP 200 with an
//! AdmissionReview echoing the uid, or a 4xx with a `Status` body naming the problem), never a
//! 5xx, a hang or a silent allow. Where a rule cannot read the object, the answer is a 400
//! denial in the review, or for nodes (whose rule never denies) an allow with a warning.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use storage_admission::model::keys::KEPT_ANNOTATIONS;
use storage_admission::policy::Policy;
use storage_admission::server::{AppState, Limits, router};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

fn app_with(limits: Limits) -> axum::Router {
    let view = storage_admission::dev::demo_cluster().expect("demo state loads");
    let mut state = AppState::new(Arc::new(view), Policy::builtin());
    state.limits = limits;
    router(state)
}

fn app() -> axum::Router {
    app_with(Limits::default())
}

async fn send(app: &axum::Router, webhook: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::post(format!("/{webhook}"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{webhook}: response is not JSON ({e}): {bytes:?}"));
    (status, json)
}

/// Sends a review and checks it was answered as a review: 200, the uid echoed, and a status on
/// a denial. Returns `response`.
async fn answered(app: &axum::Router, webhook: &str, review: &Value, case: &str) -> Value {
    let (status, out) = send(app, webhook, serde_json::to_vec(review).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{case} /{webhook}: {out}");
    assert_eq!(out["kind"], "AdmissionReview", "{case} /{webhook}: {out}");
    let response = out["response"].clone();
    assert_eq!(
        response["uid"], review["request"]["uid"],
        "{case} /{webhook}: uid not echoed: {out}"
    );
    match response["allowed"].as_bool() {
        Some(true) => {}
        Some(false) => assert!(
            response["status"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{case} /{webhook}: a denial must say why: {out}"
        ),
        None => panic!("{case} /{webhook}: allowed is not a bool: {out}"),
    }
    response
}

/// Sends a body that is not a review this service can answer: a 4xx `Status` naming `reason`.
async fn refused(app: &axum::Router, webhook: &str, body: Vec<u8>, case: &str) -> Value {
    let (status, out) = send(app, webhook, body).await;
    assert!(status.is_client_error(), "{case}: got {status}: {out}");
    assert_eq!(out["kind"], "Status", "{case}: {out}");
    assert_eq!(out["code"], status.as_u16(), "{case}: {out}");
    assert!(
        out["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{case}: {out}"
    );
    out
}

fn golden(folder: &str) -> Value {
    if folder == format!("captured/{}", storage_admission::dev::SAMPLE_REVIEW_CASE) {
        return serde_json::from_str(storage_admission::dev::SAMPLE_REVIEW).unwrap();
    }
    serde_json::from_slice(&std::fs::read(format!("{GOLDEN}/{folder}/review.json")).unwrap())
        .unwrap()
}

/// One CREATE review of each kind a rule reads, and the webhooks whose rules read it.
fn bases() -> Vec<(&'static str, Value, &'static [&'static str])> {
    vec![
        (
            "VolumeSnapshot",
            golden("captured/mutate-create-volumesnapshot-disk-snapshot"),
            &["mutate", "validate"],
        ),
        (
            "VolumeSnapshotClass",
            golden("captured/mutate-create-volumesnapshotclass-default-snapclass"),
            &["validate"],
        ),
        (
            "VolumeSnapshotContent",
            golden("snapshot/validation/content-preprovisioned-allowed"),
            &["validate"],
        ),
        (
            "StorageClass",
            golden("captured/mutate-create-storageclass-csi-disk-topology"),
            &["mutate", "validate"],
        ),
        (
            "PersistentVolumeClaim",
            golden("captured/validate-create-persistentvolumeclaim-restore-pvc"),
            &["validate"],
        ),
        (
            "PersistentVolume",
            golden("topology/local-volumes/class-binds-immediate"),
            &["validate"],
        ),
        (
            "Node",
            golden("captured/mutate-create-node-cn-hangzhou-b-node2"),
            &["mutate"],
        ),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ty {
    Str,
    Bool,
    Quantity,
    Map,
    List,
    Struct,
    /// A string with a closed set of values (volumeBindingMode).
    Enum,
}

/// Every leaf (and container) path the models read, per kind, with its type.
fn model_paths(kind: &str) -> Vec<(String, Ty)> {
    use Ty::*;
    let mut paths: Vec<(String, Ty)> = vec![
        ("metadata".into(), Struct),
        ("metadata.name".into(), Str),
        ("metadata.generateName".into(), Str),
        ("metadata.namespace".into(), Str),
        ("metadata.uid".into(), Str),
        ("metadata.resourceVersion".into(), Str),
        ("metadata.deletionTimestamp".into(), Str),
        ("metadata.labels".into(), Map),
        ("metadata.labels.topology.kubernetes.io/zone".into(), Str),
        ("metadata.annotations".into(), Map),
        ("metadata.ownerReferences".into(), List),
        ("metadata.ownerReferences.0".into(), Struct),
        ("metadata.ownerReferences.0.apiVersion".into(), Str),
        ("metadata.ownerReferences.0.kind".into(), Str),
        ("metadata.ownerReferences.0.name".into(), Str),
    ];
    for key in KEPT_ANNOTATIONS {
        paths.push((format!("metadata.annotations.{key}"), Str));
    }
    let specific: &[(&str, Ty)] = match kind {
        "VolumeSnapshotClass" => &[("driver", Str), ("deletionPolicy", Str)],
        "VolumeSnapshot" => &[
            ("spec", Struct),
            ("spec.source", Struct),
            ("spec.source.persistentVolumeClaimName", Str),
            ("spec.source.volumeSnapshotContentName", Str),
            ("spec.volumeSnapshotClassName", Str),
            ("status", Struct),
            ("status.boundVolumeSnapshotContentName", Str),
            ("status.readyToUse", Bool),
            ("status.restoreSize", Quantity),
            ("status.error", Struct),
            ("status.error.message", Str),
            ("status.error.time", Str),
            ("status.volumeGroupSnapshotName", Str),
        ],
        "VolumeSnapshotContent" => &[
            ("spec", Struct),
            ("spec.deletionPolicy", Str),
            ("spec.driver", Str),
            ("spec.source", Struct),
            ("spec.source.volumeHandle", Str),
            ("spec.source.snapshotHandle", Str),
            ("spec.sourceVolumeMode", Str),
            ("spec.volumeSnapshotClassName", Str),
            ("spec.volumeSnapshotRef", Struct),
            ("spec.volumeSnapshotRef.name", Str),
            ("spec.volumeSnapshotRef.namespace", Str),
            ("spec.volumeSnapshotRef.uid", Str),
            ("status", Struct),
            ("status.readyToUse", Bool),
            ("status.restoreSize", Quantity),
            ("status.error", Struct),
            ("status.error.message", Str),
            ("status.snapshotHandle", Str),
        ],
        "StorageClass" => &[
            ("provisioner", Str),
            ("volumeBindingMode", Enum),
            ("allowedTopologies", List),
            ("allowedTopologies.0", Struct),
            ("allowedTopologies.0.matchLabelExpressions", List),
            ("allowedTopologies.0.matchLabelExpressions.0", Struct),
            ("allowedTopologies.0.matchLabelExpressions.0.key", Str),
            ("allowedTopologies.0.matchLabelExpressions.0.values", List),
            ("allowedTopologies.0.matchLabelExpressions.0.values.0", Str),
        ],
        "PersistentVolumeClaim" => &[
            ("spec", Struct),
            ("spec.storageClassName", Str),
            ("spec.volumeName", Str),
            ("spec.volumeMode", Str),
            ("spec.dataSource", Struct),
            ("spec.dataSource.apiGroup", Str),
            ("spec.dataSource.kind", Str),
            ("spec.dataSource.name", Str),
            ("spec.dataSourceRef", Struct),
            ("spec.dataSourceRef.apiGroup", Str),
            ("spec.dataSourceRef.kind", Str),
            ("spec.dataSourceRef.name", Str),
            ("spec.dataSourceRef.namespace", Str),
            ("spec.resources", Struct),
            ("spec.resources.requests", Map),
            ("spec.resources.requests.storage", Quantity),
            ("status", Struct),
            ("status.phase", Str),
            ("status.capacity", Map),
            ("status.capacity.storage", Quantity),
        ],
        "PersistentVolume" => &[
            ("spec", Struct),
            ("spec.storageClassName", Str),
            ("spec.csi", Struct),
            ("spec.csi.driver", Str),
            ("spec.csi.volumeHandle", Str),
            ("spec.local", Struct),
            ("spec.local.path", Str),
            ("spec.nodeAffinity", Struct),
            ("spec.nodeAffinity.required", Struct),
            ("spec.nodeAffinity.required.nodeSelectorTerms", List),
            ("spec.nodeAffinity.required.nodeSelectorTerms.0", Struct),
            (
                "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions",
                List,
            ),
            (
                "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.key",
                Str,
            ),
            (
                "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.operator",
                Str,
            ),
            (
                "spec.nodeAffinity.required.nodeSelectorTerms.0.matchExpressions.0.values",
                List,
            ),
            (
                "spec.nodeAffinity.required.nodeSelectorTerms.0.matchFields",
                List,
            ),
            ("spec.volumeMode", Str),
            ("spec.claimRef", Struct),
            ("spec.claimRef.namespace", Str),
            ("spec.claimRef.name", Str),
        ],
        "Node" => &[],
        other => panic!("no model paths for {other}"),
    };
    paths.extend(specific.iter().map(|(p, t)| ((*p).to_owned(), *t)));
    paths
}

/// An entry of a map or a list, rather than a field of an object.
fn is_map_entry(path: &str) -> bool {
    [
        "metadata.labels.",
        "metadata.annotations.",
        ".requests.",
        ".capacity.",
    ]
    .iter()
    .any(|map| path.contains(map))
        || path
            .rsplit('.')
            .next()
            .is_some_and(|t| t.parse::<usize>().is_ok())
}

/// Splits a model path into tokens; label and annotation keys (which contain dots) are one.
fn tokens(path: &str) -> Vec<String> {
    for map in ["metadata.labels.", "metadata.annotations."] {
        if let Some(key) = path.strip_prefix(map) {
            let mut t: Vec<String> = map
                .trim_end_matches('.')
                .split('.')
                .map(Into::into)
                .collect();
            t.push(key.to_owned());
            return t;
        }
    }
    path.split('.').map(Into::into).collect()
}

/// Sets `value` at `tokens`, creating objects (or arrays, for numeric tokens) on the way.
fn set(root: &mut Value, tokens: &[String], value: Value) {
    let (last, parents) = tokens.split_last().unwrap();
    let mut here = root;
    for (i, token) in parents.iter().enumerate() {
        let next_is_index = tokens[i + 1].parse::<usize>().is_ok();
        let fresh = || {
            if next_is_index { json!([]) } else { json!({}) }
        };
        here = match token.parse::<usize>() {
            Ok(index) => {
                let items = here.as_array_mut().expect("an array on the path");
                if items.len() <= index {
                    items.push(fresh());
                }
                &mut items[index]
            }
            Err(_) => {
                let map = here.as_object_mut().expect("an object on the path");
                let slot = map.entry(token.clone()).or_insert_with(fresh);
                if slot.is_null() {
                    *slot = fresh();
                }
                slot
            }
        };
    }
    match last.parse::<usize>() {
        Ok(index) => {
            let items = here.as_array_mut().expect("an array at the end");
            if items.len() <= index {
                items.push(value);
            } else {
                items[index] = value;
            }
        }
        Err(_) => {
            here.as_object_mut()
                .expect("an object at the end")
                .insert(last.clone(), value);
        }
    }
}

/// Removes the value at `tokens` if it is there.
fn remove(root: &mut Value, tokens: &[String]) {
    let (last, parents) = tokens.split_last().unwrap();
    let mut here = root;
    for token in parents {
        let next = match token.parse::<usize>() {
            Ok(i) => here.get_mut(i),
            Err(_) => here.get_mut(token.as_str()),
        };
        match next {
            Some(v) => here = v,
            None => return,
        }
    }
    match (here, last.parse::<usize>()) {
        (Value::Array(items), Ok(i)) if i < items.len() => {
            items.remove(i);
        }
        (Value::Object(map), _) => {
            map.remove(last);
        }
        _ => {}
    }
}

/// Values of the wrong JSON type for `ty` (null is tested separately: it means absent).
fn wrong_values(ty: Ty) -> Vec<Value> {
    let number = json!(42);
    let array = json!([1]);
    let object = json!({"a": 1});
    let string = json!("text");
    let boolean = json!(true);
    match ty {
        Ty::Str => vec![number, array, object, boolean],
        Ty::Bool => vec![number, array, object, string],
        // A quantity may be a JSON number (`storage: 1073741824`).
        Ty::Quantity => vec![array, object, boolean, string],
        // A map of strings or quantities: a boolean value is as wrong as a non-map.
        Ty::Map => vec![number, array, string, boolean, json!({"a": true})],
        Ty::List => vec![number, object, string, boolean],
        Ty::Struct => vec![number, array, string, boolean],
        Ty::Enum => vec![number, array, object, json!("Sometimes")],
    }
}

fn with_uid(mut review: Value, uid: &str) -> Value {
    review["request"]["uid"] = json!(uid);
    review
}

/// How a review whose object cannot be read must be answered: a 400 denial naming `needle`,
/// or for nodes an allow with a warning naming it.
fn assert_not_silently_allowed(kind: &str, response: &Value, needle: &str, case: &str) {
    if kind == "Node" {
        assert_eq!(response["allowed"], true, "{case}: {response}");
        let warned = response["warnings"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w.as_str().is_some_and(|w| w.contains(needle)))
        });
        assert!(warned, "{case}: no warning naming {needle:?}: {response}");
        assert!(response.get("patch").is_none(), "{case}: {response}");
    } else {
        assert_eq!(
            response["allowed"], false,
            "{case}: silent allow: {response}"
        );
        assert_eq!(response["status"]["code"], 400, "{case}: {response}");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{case}: message does not name {needle:?}: {response}"
        );
    }
}

/// The path as serde_path_to_error prints it, from the request: `request.object.spec.x[0].y`.
fn printed_path(path: &str) -> String {
    let mut out = String::from("request.object");
    for token in tokens(path) {
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else {
            out.push('.');
            out.push_str(&token);
        }
    }
    out
}

#[tokio::test]
async fn wrong_json_types_in_every_field_the_rules_read_are_refused_not_allowed() {
    let app = app();
    let mut checked = 0;
    for (kind, base, webhooks) in bases() {
        for (path, ty) in model_paths(kind) {
            for (i, mut wrong) in wrong_values(ty).into_iter().enumerate() {
                // Only the annotations a rule reads are decoded: put the bad value under one.
                if path == "metadata.annotations" && wrong.is_object() {
                    wrong = json!({ KEPT_ANNOTATIONS[0]: true });
                }
                let mut review = with_uid(base.clone(), &format!("wrong-{kind}-{path}-{i}"));
                set(
                    &mut review["request"]["object"],
                    &tokens(&path),
                    wrong.clone(),
                );
                for webhook in webhooks.iter() {
                    let case = format!("{kind} {path} = {wrong}");
                    let response = answered(&app, webhook, &review, &case).await;
                    assert_not_silently_allowed(kind, &response, &printed_path(&path), &case);
                    checked += 1;
                }
            }
            if is_map_entry(&path) {
                let mut review = with_uid(base.clone(), &format!("null-entry-{kind}-{path}"));
                set(
                    &mut review["request"]["object"],
                    &tokens(&path),
                    Value::Null,
                );
                for webhook in webhooks.iter() {
                    let case = format!("{kind} {path} = null (a map entry)");
                    let response = answered(&app, webhook, &review, &case).await;
                    assert_not_silently_allowed(kind, &response, &printed_path(&path), &case);
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} cases");
}

#[tokio::test]
async fn null_in_any_field_the_rules_read_means_absent() {
    let app = app();
    let mut checked = 0;
    for (kind, base, webhooks) in bases() {
        for (path, _) in model_paths(kind) {
            // Entries of a map (a label's value, `requests.storage`) or a list are not fields
            // that can be omitted: a null there is a wrong type, refused like the others.
            if is_map_entry(&path) {
                continue;
            }
            let uid = format!("null-{kind}-{path}");
            let mut with_null = with_uid(base.clone(), &uid);
            set(
                &mut with_null["request"]["object"],
                &tokens(&path),
                Value::Null,
            );
            let mut without = with_uid(base.clone(), &uid);
            remove(&mut without["request"]["object"], &tokens(&path));
            for webhook in webhooks.iter() {
                let case = format!("{kind} {path} = null");
                let got = answered(&app, webhook, &with_null, &case).await;
                let expected = answered(&app, webhook, &without, &case).await;
                assert_eq!(
                    got, expected,
                    "{case} /{webhook}: null is not treated as absent"
                );
                assert_ne!(
                    got["status"]["code"], 400,
                    "{case} /{webhook}: null refused as unreadable: {got}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} cases");
}

#[tokio::test]
async fn truncated_reviews_are_400_json() {
    let app = app();
    let mut checked = 0;
    for (kind, base, webhooks) in bases() {
        let body = serde_json::to_vec(&base).unwrap();
        let n = body.len();
        for cut in [1, 2, n / 10, n / 4, n / 3, n / 2, 2 * n / 3, n - 2, n - 1] {
            let truncated = body[..cut].to_vec();
            for webhook in webhooks.iter() {
                let case = format!("{kind} cut at {cut} of {n}");
                let out = refused(&app, webhook, truncated.clone(), &case).await;
                assert_eq!(out["code"], 400, "{case}: {out}");
                assert_eq!(out["reason"], "json", "{case}: {out}");
                assert!(
                    out["message"].as_str().unwrap().contains("not valid JSON"),
                    "{case}: {out}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 7 * 9, "only {checked} cases");
}

/// A review of `kind` with one annotation that no rule keeps, padded to about `size` bytes.
fn padded(base: &Value, size: usize) -> Vec<u8> {
    let mut review = base.clone();
    review["request"]["object"]["metadata"]["annotations"]["example.com/padding"] =
        json!("x".repeat(size));
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test]
async fn oversized_bodies_are_413_and_large_ones_are_answered() {
    let limits = Limits {
        max_body_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let limited = app_with(limits);
    for (kind, base, webhooks) in bases() {
        for webhook in webhooks.iter() {
            let case = format!("{kind} oversized");
            let out = refused(&limited, webhook, padded(&base, 2 * 1024 * 1024), &case).await;
            assert_eq!(out["code"], 413, "{case}: {out}");
            assert_eq!(out["reason"], "too_large", "{case}: {out}");

            // Just under the limit: answered as usual (the padding is not kept by any rule).
            let body = padded(&base, 900 * 1024);
            assert!(body.len() < 1024 * 1024);
            let review: Value = serde_json::from_slice(&body).unwrap();
            let large = answered(&limited, webhook, &review, &format!("{kind} large")).await;
            let normal = answered(&limited, webhook, &base, &format!("{kind} normal")).await;
            assert_eq!(
                large, normal,
                "{kind} /{webhook}: padding changed the answer"
            );
        }
    }
    // The default limit is 8 MiB: a 9 MiB review is refused by the default router too.
    let (_, base, _) = &bases()[0];
    let out = refused(&app(), "validate", padded(base, 9 * 1024 * 1024), "9 MiB").await;
    assert_eq!(out["code"], 413, "{out}");
}

#[tokio::test]
async fn a_node_with_ten_thousand_labels_is_answered() {
    let app = app();
    let (_, base, _) = bases().into_iter().find(|(k, _, _)| *k == "Node").unwrap();
    let mut review = with_uid(base, "many-labels");
    let labels = review["request"]["object"]["metadata"]["labels"]
        .as_object_mut()
        .unwrap();
    for i in 0..10_000 {
        labels.insert(format!("example.com/label-{i}"), json!(format!("v{i}")));
    }
    let response = answered(&app, "mutate", &review, "10,000 labels").await;
    assert_eq!(response["allowed"], true, "{response}");

    // The same labels with one wrongly typed value: still answered, with a warning.
    review["request"]["object"]["metadata"]["labels"]["example.com/label-5000"] = json!(5000);
    let response = answered(&app, "mutate", &review, "10,000 labels, one bad").await;
    assert_not_silently_allowed(
        "Node",
        &response,
        "metadata.labels.example.com/label-5000",
        "10,000 labels, one bad",
    );
}

#[tokio::test]
async fn invalid_quantities_are_refused_naming_the_field() {
    let app = app();
    let bad = [
        "12 parsecs",
        "",
        "-",
        "1.2.3Gi",
        "1Zi",
        "Gi",
        "1e400",
        "99999999999999999999999999999999999999999999Ei",
        "0.0000000000000000000000000000000000000001n",
    ];
    let cases = [
        (
            "PersistentVolumeClaim",
            "spec.resources.requests.storage",
            &["validate"][..],
        ),
        (
            "VolumeSnapshot",
            "status.restoreSize",
            &["mutate", "validate"][..],
        ),
        (
            "VolumeSnapshotContent",
            "status.restoreSize",
            &["validate"][..],
        ),
    ];
    for (kind, path, webhooks) in cases {
        let (_, base, _) = bases().into_iter().find(|(k, _, _)| *k == kind).unwrap();
        for quantity in bad {
            let mut review = with_uid(base.clone(), &format!("quantity-{quantity}"));
            set(
                &mut review["request"]["object"],
                &tokens(path),
                json!(quantity),
            );
            for webhook in webhooks.iter() {
                let case = format!("{kind} {path} = {quantity:?}");
                let response = answered(&app, webhook, &review, &case).await;
                assert_not_silently_allowed(kind, &response, &printed_path(path), &case);
                let message = response["status"]["message"].as_str().unwrap();
                assert!(message.contains("quantity"), "{case}: {message}");
            }
        }
    }
}

#[tokio::test]
async fn unicode_and_very_long_names_are_answered() {
    let app = app();
    let names = [
        "日本語-ñ-🙂".to_owned(),
        "\u{202e}evil".to_owned(),
        "a".repeat(100_000),
        "x/y~z".to_owned(),
    ];
    for (kind, base, webhooks) in bases() {
        for name in &names {
            let mut review = with_uid(base.clone(), "names");
            review["request"]["object"]["metadata"]["name"] = json!(name);
            review["request"]["name"] = json!(name);
            for webhook in webhooks.iter() {
                let case = format!("{kind} named {:.20}", name);
                let response = answered(&app, webhook, &review, &case).await;
                assert_ne!(response["status"]["code"], 400, "{case}: {response}");
            }
        }
    }
}

#[tokio::test]
async fn missing_or_null_object_on_create_is_refused() {
    let app = app();
    for (kind, base, webhooks) in bases() {
        for shape in ["missing", "null"] {
            let mut review = with_uid(base.clone(), "no-object");
            let request = review["request"].as_object_mut().unwrap();
            match shape {
                "missing" => {
                    request.remove("object");
                }
                _ => {
                    request.insert("object".into(), Value::Null);
                }
            }
            for webhook in webhooks.iter() {
                let case = format!("{kind} CREATE with {shape} object");
                let response = answered(&app, webhook, &review, &case).await;
                assert_not_silently_allowed(kind, &response, "has no object", &case);
            }
        }
    }
}

#[tokio::test]
async fn old_object_on_create_is_ignored() {
    let app = app();
    for (kind, base, webhooks) in bases() {
        for old in [
            json!(42),
            json!({"metadata": {"name": "other"}}),
            base["request"]["object"].clone(),
        ] {
            let mut review = with_uid(base.clone(), "old-on-create");
            review["request"]["oldObject"] = old.clone();
            let plain = with_uid(base.clone(), "old-on-create");
            for webhook in webhooks.iter() {
                let case = format!("{kind} CREATE with oldObject {old:.40}");
                let got = answered(&app, webhook, &review, &case).await;
                let expected = answered(&app, webhook, &plain, &case).await;
                assert_eq!(got, expected, "{case}");
            }
        }
    }
}

#[tokio::test]
async fn delete_with_null_object_is_allowed_plainly() {
    let app = app();
    for (kind, base, webhooks) in bases() {
        let mut review = with_uid(base.clone(), "delete");
        review["request"]["operation"] = json!("DELETE");
        review["request"]["oldObject"] = base["request"]["object"].clone();
        review["request"]["object"] = Value::Null;
        for webhook in webhooks.iter() {
            let case = format!("{kind} DELETE");
            let response = answered(&app, webhook, &review, &case).await;
            assert_eq!(response["allowed"], true, "{case}: {response}");
            assert!(response.get("patch").is_none(), "{case}: {response}");
            assert!(response.get("warnings").is_none(), "{case}: {response}");
        }
    }
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let app = app();
    for (kind, base, webhooks) in bases() {
        let mut dry = with_uid(base.clone(), "dry");
        dry["request"]["dryRun"] = json!(true);
        let wet = with_uid(base.clone(), "dry");
        for webhook in webhooks.iter() {
            let case = format!("{kind} dry-run");
            let got = answered(&app, webhook, &dry, &case).await;
            let expected = answered(&app, webhook, &wet, &case).await;
            assert_eq!(got, expected, "{case}");
        }
    }
}

#[tokio::test]
async fn update_without_old_object_is_answered() {
    let app = app();
    for (kind, base, webhooks) in bases() {
        for old in ["missing", "null"] {
            let mut review = with_uid(base.clone(), "update-no-old");
            review["request"]["operation"] = json!("UPDATE");
            let request = review["request"].as_object_mut().unwrap();
            if old == "missing" {
                request.remove("oldObject");
            } else {
                request.insert("oldObject".into(), Value::Null);
            }
            for webhook in webhooks.iter() {
                let case = format!("{kind} UPDATE with {old} oldObject");
                let response = answered(&app, webhook, &review, &case).await;
                // Not refused as unreadable: the object itself is fine.
                assert_ne!(response["status"]["code"], 400, "{case}: {response}");
            }
        }
    }
}

#[tokio::test]
async fn wrong_types_in_old_object_on_update_are_refused() {
    let app = app();
    for (kind, base, webhooks) in bases() {
        let mut review = with_uid(base.clone(), "update-bad-old");
        review["request"]["operation"] = json!("UPDATE");
        review["request"]["oldObject"] = base["request"]["object"].clone();
        review["request"]["oldObject"]["metadata"]["labels"] = json!(7);
        for webhook in webhooks.iter() {
            let case = format!("{kind} UPDATE with a bad oldObject");
            let response = answered(&app, webhook, &review, &case).await;
            if kind == "Node" {
                assert_eq!(response["allowed"], true, "{case}: {response}");
                assert!(
                    response["warnings"]
                        .to_string()
                        .contains("request.oldObject.metadata.labels"),
                    "{case}: {response}"
                );
            } else {
                assert_eq!(response["status"]["code"], 400, "{case}: {response}");
                assert!(
                    response["status"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("request.oldObject.metadata.labels"),
                    "{case}: {response}"
                );
            }
        }
    }
}
