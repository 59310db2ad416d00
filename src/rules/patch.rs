//! Building JSON patch operations. Pointers are built from tokens, so label and annotation
//! keys containing `/` are escaped (`~1`) correctly.
//!
//! An operation's value is held as JSON text ([`Json`]), rendered when the rule makes it: on
//! the request path a patch is only ever written out, so building it as a
//! `serde_json::Value` tree, serialising the tree and freeing it was pure cost (on a patched
//! Pod review, the node affinity's tree took about 11,000 instructions, `benches/profile.sh`).
//! Where a patch is applied — `review` files, the backfill, tests — [`to_json_patch`] turns it
//! into json-patch's operations.

use std::borrow::Cow;
use std::fmt;

use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
use jsonptr::{Pointer, PointerBuf};
use serde_json::Value;

use crate::json_string::push_quoted;
use crate::model::ObjectMeta;

/// One JSON patch operation (RFC 6902), of the kinds the rules and the backfill make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Add { path: Path, value: Json },
    Replace { path: Path, value: Json },
    Remove { path: Path },
    Test { path: Path, value: Json },
}

/// An operation's path: most are written out in the source ([`fixed`]) and borrowed as they
/// are; those with a name in them ([`pointer`]) are built per patch. (A copy of each fixed
/// path was an allocation and its free on every patched review.)
pub type Path = Cow<'static, Pointer>;

impl Op {
    /// The operation's name, path and value, as its JSON object has them.
    pub fn parts(&self) -> (&'static str, &Pointer, Option<&Json>) {
        match self {
            Self::Add { path, value } => ("add", path, Some(value)),
            Self::Replace { path, value } => ("replace", path, Some(value)),
            Self::Remove { path } => ("remove", path, None),
            Self::Test { path, value } => ("test", path, Some(value)),
        }
    }
}

/// A JSON value as compact JSON text. Valid by construction: made from a `serde_json::Value`,
/// a string, or objects and arrays of other `Json` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(String);

impl Json {
    /// A JSON string.
    pub fn string(value: &str) -> Self {
        let mut text = String::with_capacity(value.len() + 2);
        push_quoted(&mut text, value);
        Self(text)
    }

    /// An object of the members, in the order given (serde_json's `Map` sorts its keys: give
    /// them sorted for the same text).
    pub fn object<const N: usize>(members: [(&str, Json); N]) -> Self {
        // Sized from its parts, so each level of a nested value is one allocation (pushed onto
        // a String from "{", an object grew a dozen times).
        let len = members
            .iter()
            .map(|(key, value)| key.len() + value.0.len() + 4)
            .sum::<usize>();
        let mut text = String::with_capacity(len + 2);
        text.push('{');
        for (i, (key, value)) in members.into_iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            push_quoted(&mut text, key);
            text.push(':');
            text.push_str(&value.0);
        }
        text.push('}');
        Self(text)
    }

    /// An array of the items.
    pub fn array(items: impl IntoIterator<Item = Json>) -> Self {
        let items: Vec<Json> = items.into_iter().collect();
        let len = items.iter().map(|item| item.0.len() + 1).sum::<usize>();
        let mut text = String::with_capacity(len + 2);
        text.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&item.0);
        }
        text.push(']');
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value, parsed back.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.0)
    }
}

/// A value with one string left open, built once and filled per use: one allocation where
/// building the value each time takes one per object, array and string of it (a pinned pod's
/// node affinity, five levels around the node's name, cost 6,500 instructions built each
/// time). Built with the [`Json`] builders around a marker string, so it is valid JSON
/// whatever is filled in.
#[derive(Debug)]
pub struct Template {
    build: fn(Json) -> Json,
    /// The value's text before and after the open string; `None` if the builder dropped the
    /// marker, in which case every use builds the value (slower, still right).
    around: Option<(String, String)>,
}

impl Template {
    pub fn new(build: fn(Json) -> Json) -> Self {
        // No name or label value contains NUL: the marker cannot occur in a real value.
        let marker = Json::string("\0open\0");
        let text = build(marker.clone()).0;
        let around = text
            .split_once(marker.as_str())
            .filter(|(_, after)| !after.contains(marker.as_str()))
            .map(|(before, after)| (before.to_owned(), after.to_owned()));
        Self { build, around }
    }

    /// Whether the value is filled in place (the builder used the open string once).
    pub fn fills_in_place(&self) -> bool {
        self.around.is_some()
    }

    /// The value with `value` as the open string.
    pub fn fill(&self, value: &str) -> Json {
        let Some((before, after)) = &self.around else {
            return (self.build)(Json::string(value));
        };
        let mut text = String::with_capacity(before.len() + value.len() + 2 + after.len());
        text.push_str(before);
        push_quoted(&mut text, value);
        text.push_str(after);
        Json(text)
    }
}

impl From<Value> for Json {
    fn from(value: Value) -> Self {
        // Value's Display is its compact serialisation, and cannot fail.
        Self(value.to_string())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// As json-patch's operations serialise: `{"op", "path", "value"?}`.
impl serde::Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStruct as _};
        let (name, path, value) = self.parts();
        let mut op = serializer.serialize_struct("Op", if value.is_some() { 3 } else { 2 })?;
        op.serialize_field("op", name)?;
        op.serialize_field("path", path)?;
        if let Some(value) = value {
            let raw = serde_json::value::RawValue::from_string(value.0.clone())
                .map_err(S::Error::custom)?;
            op.serialize_field("value", &raw)?;
        }
        op.end()
    }
}

/// The operations as json-patch's, to apply them to a document or send them with kube.
pub fn to_json_patch(ops: &[Op]) -> Result<Vec<PatchOperation>, serde_json::Error> {
    ops.iter()
        .map(|op| {
            Ok(match op {
                Op::Add { path, value } => PatchOperation::Add(AddOperation {
                    path: path.clone().into_owned(),
                    value: value.to_value()?,
                }),
                Op::Replace { path, value } => PatchOperation::Replace(ReplaceOperation {
                    path: path.clone().into_owned(),
                    value: value.to_value()?,
                }),
                Op::Remove { path } => PatchOperation::Remove(RemoveOperation {
                    path: path.clone().into_owned(),
                }),
                Op::Test { path, value } => PatchOperation::Test(TestOperation {
                    path: path.clone().into_owned(),
                    value: value.to_value()?,
                }),
            })
        })
        .collect()
}

/// The operations as one JSON array, as the webhook's response carries them (before base64).
pub fn push_json(out: &mut String, ops: &[Op]) {
    out.push('[');
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let (name, path, value) = op.parts();
        out.push_str("{\"op\":\"");
        out.push_str(name);
        out.push_str("\",\"path\":");
        push_quoted(out, path.as_str());
        if let Some(value) = value {
            out.push_str(",\"value\":");
            out.push_str(value.as_str());
        }
        out.push('}');
    }
    out.push(']');
}

/// A JSON pointer from unescaped tokens: `pointer(["metadata", "labels", "a/b"])` is
/// `/metadata/labels/a~1b`.
pub fn pointer<'t>(tokens: impl IntoIterator<Item = &'t str>) -> Path {
    Cow::Owned(PointerBuf::from_tokens(tokens))
}

/// A pointer written out in the source: `fixed(const { Pointer::from_static("/spec/x") })`
/// is checked when the program is built and borrowed as it is, where [`pointer`] escapes
/// token by token into a growing String (a thousand instructions for `/spec/nodeName`, on the
/// request path).
pub fn fixed(path: &'static Pointer) -> Path {
    Cow::Borrowed(path)
}

pub fn add(path: Path, value: impl Into<Json>) -> Op {
    Op::Add {
        path,
        value: value.into(),
    }
}

pub fn replace(path: Path, value: impl Into<Json>) -> Op {
    Op::Replace {
        path,
        value: value.into(),
    }
}

pub fn remove(path: Path) -> Op {
    Op::Remove { path }
}

/// Operations that set `metadata.labels[key] = value` for each pair on the object whose
/// metadata is `meta`, creating `metadata` and its labels map when the object lacks them (an
/// `add` below a missing parent does not apply, and the API server then fails the request).
pub fn set_labels<'a>(
    meta: &ObjectMeta,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut created = meta.labels.is_some();
    for (key, value) in labels {
        if !created {
            if !meta.in_object {
                ops.push(add(pointer(["metadata"]), Json::object([])));
            }
            ops.push(add(pointer(["metadata", "labels"]), Json::object([])));
            created = true;
        }
        ops.push(add(
            pointer(["metadata", "labels", key]),
            Json::string(value),
        ));
    }
    ops
}

/// A short human description of operations, for warn mode: `add /spec/x = "y"`.
pub fn describe(ops: &[Op]) -> String {
    ops.iter()
        .map(|op| match op.parts() {
            (name, path, Some(value)) => format!("{name} {path} = {value}"),
            (name, path, None) => format!("{name} {path}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(json: Value) -> ObjectMeta {
        #[derive(serde::Deserialize)]
        struct Object {
            #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
            metadata: ObjectMeta,
        }
        serde_json::from_value::<Object>(json).unwrap().metadata
    }

    #[test]
    fn escapes_slashes_and_creates_the_labels_map() {
        let ops = set_labels(
            &meta(serde_json::json!({"metadata": {"name": "n"}})),
            [("topology.kubernetes.io/zone", "cn-hangzhou-b")],
        );
        let mut text = String::new();
        push_json(&mut text, &ops);
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"op": "add", "path": "/metadata/labels", "value": {}},
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}
            ])
        );
        let mut doc = serde_json::json!({"metadata": {"name": "n"}});
        json_patch::patch(&mut doc, &to_json_patch(&ops).unwrap()).unwrap();
        assert_eq!(
            doc["metadata"]["labels"]["topology.kubernetes.io/zone"],
            "cn-hangzhou-b"
        );
    }

    #[test]
    fn existing_labels_map_is_not_recreated() {
        let ops = set_labels(
            &meta(serde_json::json!({"metadata": {"labels": {}}})),
            [("rack", "r1")],
        );
        assert_eq!(ops.len(), 1);
        assert_eq!(describe(&ops), "add /metadata/labels/rack = \"r1\"");
    }

    #[test]
    fn missing_or_null_metadata_is_created_first() {
        for object in [serde_json::json!({}), serde_json::json!({"metadata": null})] {
            let ops = set_labels(&meta(object.clone()), [("rack", "r1")]);
            assert_eq!(
                describe(&ops),
                "add /metadata = {}, add /metadata/labels = {}, add /metadata/labels/rack = \"r1\""
            );
            let mut doc = object;
            json_patch::patch(&mut doc, &to_json_patch(&ops).unwrap()).unwrap();
            assert_eq!(doc["metadata"]["labels"]["rack"], "r1");
        }
        assert!(set_labels(&meta(serde_json::json!({})), []).is_empty());
    }

    #[test]
    fn a_fixed_pointer_is_the_one_its_tokens_make() {
        assert_eq!(
            fixed(const { Pointer::from_static("/spec/affinity/nodeAffinity") }),
            pointer(["spec", "affinity", "nodeAffinity"])
        );
        assert_eq!(
            fixed(const { Pointer::from_static("/a~1b") }),
            pointer(["a/b"])
        );
    }

    #[test]
    fn json_values_are_the_text_serde_json_writes() {
        let value = serde_json::json!({
            "a": {"say \"hi\"\n": "ünï\u{1}code ✓", "empty": {}, "none": []},
            "m": "x".repeat(40),
            "z": [1, -2, 3.5, 1e300, 0.1, u64::MAX, i64::MIN, null, true, false],
        });
        assert_eq!(Json::from(value.clone()).as_str(), value.to_string());
        let built = Json::object([
            (
                "a",
                Json::object([
                    ("empty", Json::object([])),
                    ("none", Json::array([])),
                    ("say \"hi\"\n", Json::string("ünï\u{1}code ✓")),
                ]),
            ),
            ("m", Json::string(&"x".repeat(40))),
            ("z", Json::from(value["z"].clone())),
        ]);
        assert_eq!(built.as_str(), value.to_string());
        assert_eq!(built.to_value().unwrap(), value);
    }

    #[test]
    fn a_patch_is_written_as_serde_json_writes_json_patchs_operations() {
        let value = Json::from(serde_json::json!({"k": ["v", 1, null]}));
        let ops = [
            add(pointer(["spec", "a/b", "0"]), value.clone()),
            remove(fixed(const { Pointer::from_static("/spec/nodeName") })),
            replace(pointer(["a"]), Json::string("b\"")),
            Op::Test {
                path: pointer([]),
                value,
            },
        ];
        for ops in [&ops[..], &ops[..1], &[]] {
            let mut ours = String::new();
            push_json(&mut ours, ops);
            let theirs = serde_json::to_string(&to_json_patch(ops).unwrap()).unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(serde_json::to_string(ops).unwrap(), theirs, "Serialize");
        }
        assert_eq!(
            describe(&ops[..3]),
            "add /spec/a~1b/0 = {\"k\":[\"v\",1,null]}, remove /spec/nodeName, replace /a = \"b\\\"\""
        );
    }

    #[test]
    fn a_template_filled_is_the_value_built_around_the_string() {
        fn build(open: Json) -> Json {
            Json::object([(
                "a",
                Json::array([Json::object([("values", Json::array([open]))])]),
            )])
        }
        let template = Template::new(build);
        assert!(template.around.is_some());
        for value in ["n1", "say \"hi\"\n", "", "\0open\0"] {
            assert_eq!(
                template.fill(value),
                build(Json::string(value)),
                "{value:?}"
            );
        }
        // A builder that drops the open string, or uses it twice, is built on every use.
        let twice = Template::new(|open| Json::array([open.clone(), open]));
        assert!(twice.around.is_none());
        assert_eq!(twice.fill("x").as_str(), r#"["x","x"]"#);
        let dropped = Template::new(|_| Json::object([]));
        assert_eq!(dropped.fill("x").as_str(), "{}");
    }
}
