//! Building JSON patch operations. Pointers are built from tokens, so label and annotation
//! keys containing `/` are escaped (`~1`) correctly.

use json_patch::{AddOperation, PatchOperation, ReplaceOperation};
use jsonptr::{Pointer, PointerBuf};
use serde_json::Value;

use crate::model::ObjectMeta;

/// A JSON pointer from unescaped tokens: `pointer(["metadata", "labels", "a/b"])` is
/// `/metadata/labels/a~1b`.
pub fn pointer<'t>(tokens: impl IntoIterator<Item = &'t str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// A pointer written out in the source: `fixed(const { Pointer::from_static("/spec/x") })`
/// is checked when the program is built and costs one copy when the patch is, where
/// [`pointer`] escapes token by token into a growing String (a thousand instructions for
/// `/spec/nodeName`, on the request path).
pub fn fixed(path: &'static Pointer) -> PointerBuf {
    path.to_buf()
}

pub fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

pub fn replace(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation { path, value })
}

/// A JSON object from its members, moved in. `json!` would serialise every `Value` it is
/// given into a fresh copy (a deep copy per nesting level: on a patched Pod review, a tenth of
/// the whole review's instructions, `benches/profile.sh`).
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    // Inserted one by one: collecting sorts the members into a Vec first.
    let mut object = serde_json::Map::new();
    for (key, value) in members {
        object.insert(key.to_owned(), value);
    }
    Value::Object(object)
}

/// Operations that set `metadata.labels[key] = value` for each pair on the object whose
/// metadata is `meta`, creating `metadata` and its labels map when the object lacks them (an
/// `add` below a missing parent does not apply, and the API server then fails the request).
pub fn set_labels<'a>(
    meta: &ObjectMeta,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    let mut created = meta.labels.is_some();
    for (key, value) in labels {
        if !created {
            if !meta.in_object {
                ops.push(add(
                    pointer(["metadata"]),
                    Value::Object(Default::default()),
                ));
            }
            ops.push(add(
                pointer(["metadata", "labels"]),
                Value::Object(Default::default()),
            ));
            created = true;
        }
        ops.push(add(
            pointer(["metadata", "labels", key]),
            Value::String(value.to_owned()),
        ));
    }
    ops
}

/// A short human description of operations, for warn mode: `add /spec/x = "y"`.
pub fn describe(ops: &[PatchOperation]) -> String {
    ops.iter()
        .map(|op| match op {
            PatchOperation::Add(o) => format!("add {} = {}", o.path, o.value),
            PatchOperation::Replace(o) => format!("replace {} = {}", o.path, o.value),
            PatchOperation::Remove(o) => format!("remove {}", o.path),
            PatchOperation::Move(o) => format!("move {} to {}", o.from, o.path),
            PatchOperation::Copy(o) => format!("copy {} to {}", o.from, o.path),
            PatchOperation::Test(o) => format!("test {} = {}", o.path, o.value),
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
        let json = serde_json::to_value(&ops).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"op": "add", "path": "/metadata/labels", "value": {}},
                {"op": "add", "path": "/metadata/labels/topology.kubernetes.io~1zone", "value": "cn-hangzhou-b"}
            ])
        );
        let mut doc = serde_json::json!({"metadata": {"name": "n"}});
        json_patch::patch(&mut doc, &ops).unwrap();
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
            json_patch::patch(&mut doc, &ops).unwrap();
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
}
