//! Shared pieces of the fuzz targets: the demo cluster and policies (loaded once), every golden
//! review, structured edits of an object, and the invariants every answer must meet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::Engine as _;
use serde_json::{Map, Value};
use storage_admission::cluster::{ClusterIndex, state_file};
use storage_admission::policy::Policy;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn root() -> &'static Path {
    Path::new(ROOT)
}

/// The demo cluster of the golden tests (`src/dev/state.yaml`).
pub fn demo_view() -> &'static ClusterIndex {
    static VIEW: OnceLock<ClusterIndex> = OnceLock::new();
    VIEW.get_or_init(|| {
        state_file::load(&root().join("src/dev/state.yaml"))
            .expect("src/dev/state.yaml loads")
            .index
    })
}

pub fn builtin_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(Policy::builtin)
}

/// A policy with node label rules, so the node rule has something to derive and patch.
pub fn node_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::load(&root().join("tests/golden/topology/node-topology/policy.yaml"))
            .expect("the node-topology golden policy loads")
    })
}

fn review_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/golden is readable")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            review_files(&path, out);
        } else if path.file_name().is_some_and(|n| n == "review.json") {
            out.push(path);
        }
    }
}

/// Every golden review that has an object, with its kind.
pub fn captured() -> &'static [(String, Value)] {
    static REVIEWS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    REVIEWS.get_or_init(|| {
        let mut files = Vec::new();
        review_files(&root().join("tests/golden"), &mut files);
        // The captured review `serve --dev` embeds (its golden case reads it from there).
        files.push(root().join("src/dev/review.json"));
        files
            .iter()
            .filter_map(|f| {
                let review: Value =
                    serde_json::from_slice(&std::fs::read(f).expect("readable")).expect("JSON");
                let kind = review["request"]["kind"]["kind"].as_str()?.to_owned();
                review["request"]["object"]
                    .is_object()
                    .then_some((kind, review))
            })
            .collect()
    })
}

fn collect_paths(value: &Value, prefix: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(k.clone());
                out.insert(prefix.clone());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(i.to_string());
                out.insert(prefix.clone());
                collect_paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn collect_strings(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if s.len() < 200 => {
            out.insert(s.clone());
        }
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                collect_strings(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Paths worth editing: every path any golden object has, plus the annotations and labels the
/// rules read.
pub fn known_paths() -> &'static [Vec<String>] {
    static PATHS: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let mut out = BTreeSet::new();
        for (_, review) in captured() {
            for field in ["object", "oldObject"] {
                collect_paths(&review["request"][field], &mut Vec::new(), &mut out);
            }
        }
        let keys = storage_admission::model::keys::KEPT_ANNOTATIONS;
        for key in keys {
            out.insert(vec!["metadata".into(), "annotations".into(), (*key).into()]);
        }
        for label in [
            "topology.kubernetes.io/zone",
            "topology.kubernetes.io/region",
            "failure-domain.beta.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region",
            "kubernetes.io/hostname",
            "install.example.com/location",
        ] {
            out.insert(vec!["metadata".into(), "labels".into(), label.into()]);
        }
        out.into_iter().collect()
    })
}

/// Strings worth trying: every string in the goldens and the demo state, and some nasty ones.
pub fn known_strings() -> &'static [String] {
    static STRINGS: OnceLock<Vec<String>> = OnceLock::new();
    STRINGS.get_or_init(|| {
        let mut out = BTreeSet::new();
        for (_, review) in captured() {
            collect_strings(review, &mut out);
        }
        for s in [
            "",
            " ",
            "0",
            "-1",
            "1e400",
            "1e-400",
            "99999999999999999999999999999999999999999Ei",
            "0.0000000000000000000000000000000000001n",
            "1.5.5Gi",
            "+",
            "-",
            ".",
            "1Zi",
            "NaN",
            "日本語",
            "ñ",
            "\u{0}",
            "a/b",
            "~1",
            "/",
            "a~b",
            "WaitForFirstConsumer",
            "Immediate",
        ] {
            out.insert(s.to_owned());
        }
        out.into_iter().collect()
    })
}

#[derive(Debug, Clone, Arbitrary)]
pub enum FuzzString {
    Known(u16),
    Raw(String),
    Repeated(char, u16),
    Quantity(u64, u8, u8),
}

impl FuzzString {
    pub fn build(&self) -> String {
        match self {
            Self::Known(i) => {
                let all = known_strings();
                all[usize::from(*i) % all.len()].clone()
            }
            Self::Raw(s) => s.clone(),
            Self::Repeated(c, n) => std::iter::repeat_n(*c, usize::from(*n)).collect(),
            Self::Quantity(n, frac, suffix) => {
                const SUFFIXES: [&str; 20] = [
                    "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P",
                    "E", "e3", "E9", "e-3", "Zi",
                ];
                let s = SUFFIXES[usize::from(*suffix) % SUFFIXES.len()];
                if *frac == 0 {
                    format!("{n}{s}")
                } else {
                    format!("{n}.{frac}{s}")
                }
            }
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum FuzzValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(FuzzString),
    Array(Vec<FuzzValue>),
    Object(Vec<(FuzzString, FuzzValue)>),
    /// Many labels-like entries at once: (count, value).
    Wide(u16, FuzzString),
}

impl FuzzValue {
    pub fn build(&self) -> Value {
        self.build_at(0)
    }

    fn build_at(&self, depth: usize) -> Value {
        if depth > 8 {
            return Value::Null;
        }
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Self::Str(s) => Value::String(s.build()),
            Self::Array(items) => {
                Value::Array(items.iter().map(|v| v.build_at(depth + 1)).collect())
            }
            Self::Object(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.build(), v.build_at(depth + 1)))
                    .collect(),
            ),
            Self::Wide(n, value) => {
                // Many entries, each short: 2,047 values of 65,535 characters would only
                // measure the allocator (a slow unit of the harness, not of the service).
                let value: String = value.build().chars().take(256).collect();
                Value::Object(
                    (0..usize::from(*n) % 2048)
                        .map(|i| {
                            (
                                format!("k{i}.example.com/l{i}"),
                                Value::String(value.clone()),
                            )
                        })
                        .collect(),
                )
            }
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum FuzzPath {
    Known(u16),
    Custom(Vec<FuzzString>),
}

impl FuzzPath {
    pub fn tokens(&self) -> Vec<String> {
        match self {
            Self::Known(i) => {
                let all = known_paths();
                all[usize::from(*i) % all.len()].clone()
            }
            Self::Custom(tokens) => tokens.iter().take(8).map(FuzzString::build).collect(),
        }
    }
}

/// One change to an object.
#[derive(Debug, Clone, Arbitrary)]
pub enum Edit {
    Set(FuzzPath, FuzzValue),
    Remove(FuzzPath),
}

impl Edit {
    pub fn apply(&self, object: &mut Value) {
        match self {
            Self::Set(path, value) => set(object, &path.tokens(), value.build()),
            Self::Remove(path) => remove(object, &path.tokens()),
        }
    }
}

/// Sets `value` at `tokens`, creating objects on the way (replacing scalars in the way).
pub fn set(root: &mut Value, tokens: &[String], value: Value) {
    let Some((last, parents)) = tokens.split_last() else {
        *root = value;
        return;
    };
    let mut here = root;
    for token in parents {
        here = child(here, token);
    }
    match here {
        Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => items[i] = value,
            _ => items.push(value),
        },
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        other => {
            let mut map = Map::new();
            map.insert(last.clone(), value);
            *other = Value::Object(map);
        }
    }
}

fn child<'v>(here: &'v mut Value, token: &str) -> &'v mut Value {
    if let Value::Array(items) = here {
        let i = match token.parse::<usize>() {
            Ok(i) if i < items.len() => i,
            _ => {
                items.push(Value::Object(Map::new()));
                items.len() - 1
            }
        };
        return &mut items[i];
    }
    if !here.is_object() {
        *here = Value::Object(Map::new());
    }
    let Value::Object(map) = here else {
        unreachable!("made an object just above")
    };
    map.entry(token.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
}

pub fn remove(root: &mut Value, tokens: &[String]) {
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut here = root;
    for token in parents {
        here = match here {
            Value::Object(map) => match map.get_mut(token) {
                Some(v) => v,
                None => return,
            },
            Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    match here {
        Value::Object(map) => {
            map.remove(last);
        }
        Value::Array(items) => {
            if let Ok(i) = last.parse::<usize>()
                && i < items.len()
            {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// The review with `object` (and `oldObject`, making it an UPDATE when given) replaced.
pub fn with_object(review: &Value, object: Value, old: Option<Value>) -> Value {
    let mut review = review.clone();
    let request = review["request"]
        .as_object_mut()
        .expect("a golden review has a request");
    request.insert("object".into(), object);
    match old {
        Some(old) => {
            request.insert("oldObject".into(), old);
            request.insert("operation".into(), Value::from("UPDATE"));
        }
        None => {
            request.insert("oldObject".into(), Value::Null);
            request.insert("operation".into(), Value::from("CREATE"));
        }
    }
    review
}

/// The invariants of every answered review: JSON, an AdmissionReview echoing the uid, a patch
/// only as a base64 JSON Patch on an allowed answer, a status on every denial.
pub fn check_response(body: &[u8], uid: &str) -> Option<Vec<Value>> {
    let out: Value = serde_json::from_slice(body).expect("response body must be JSON");
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1", "{out}");
    assert_eq!(out["kind"], "AdmissionReview", "{out}");
    let response = &out["response"];
    assert_eq!(
        response["uid"].as_str(),
        Some(uid),
        "uid must be echoed: {out}"
    );
    let allowed = response["allowed"]
        .as_bool()
        .unwrap_or_else(|| panic!("allowed must be a bool: {out}"));
    if !allowed {
        let code = response["status"]["code"].as_u64().unwrap_or_default();
        assert!(code == 400 || code == 403, "denial code {code}: {out}");
        assert!(
            response["status"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "a denial must say why: {out}"
        );
        assert!(
            response.get("patch").is_none(),
            "a denial with a patch: {out}"
        );
    }
    let patch = response.get("patch")?;
    let encoded = patch
        .as_str()
        .unwrap_or_else(|| panic!("patch must be a base64 string: {out}"));
    assert_eq!(response["patchType"], "JSONPatch", "{out}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_else(|e| panic!("patch is not base64 ({e}): {out}"));
    let ops: Vec<Value> = serde_json::from_slice(&decoded)
        .unwrap_or_else(|e| panic!("patch is not a JSON array ({e}): {out}"));
    assert!(!ops.is_empty(), "an empty patch must be left out: {out}");
    Some(ops)
}

/// One golden review, by its folder under `tests/golden/`.
pub fn golden_review(folder: &str) -> Value {
    // The sample `serve --dev` embeds is its golden case's review.
    let sample = format!("captured/{}", storage_admission::dev::SAMPLE_REVIEW_CASE);
    let path = if folder == sample {
        root().join("src/dev/review.json")
    } else {
        root().join("tests/golden").join(folder).join("review.json")
    };
    serde_json::from_slice(&std::fs::read(&path).expect("golden review exists"))
        .expect("golden review is JSON")
}
