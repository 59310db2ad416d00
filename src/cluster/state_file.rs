//! `--state FILE`: a cluster view loaded from a file, for running with no API server.
//!
//! The file holds what `kubectl get volumesnapshotclasses,volumesnapshots,volumesnapshotcontents,
//! storageclasses,pvc,pv,nodes,pods,csidrivers -A -o yaml` prints: a `List` (or typed `...List`) of
//! objects, or a stream of YAML/JSON documents, each an object or a list. The file is the whole
//! cluster: a kind it does not mention has no objects. Except CSIDrivers, optional knowledge
//! ([`ResourceKind::is_optional`]): a file without any was most likely written without asking for
//! them, and reading that as "no CSI driver is installed" would blame every provisioner, so their
//! store is then unavailable (`explain` does not judge provisioners) rather than empty.

use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{ClusterIndex, ResourceKind, SyncState};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid YAML or JSON: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("state file {path}, document {document}: {message}")]
    Document {
        path: PathBuf,
        document: usize,
        message: String,
    },
    #[error("state file {path}: {kind} {name}: {source}")]
    Object {
        path: PathBuf,
        kind: ResourceKind,
        name: String,
        source: serde_json::Error,
    },
}

/// What loading a state file found.
pub struct Loaded {
    pub index: ClusterIndex,
    /// Kinds in the file that no rule reads (`Pod`, `Deployment`, ...), ignored.
    pub ignored_kinds: Vec<String>,
}

pub fn load(path: &Path) -> Result<Loaded, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses a state file's text; `path` only names the file in errors.
///
/// A state file can hold hundreds of thousands of objects. Each document is converted while it
/// is read ([`Document`]'s `Deserialize`): a List's `items` one object at a time, each into a
/// small JSON tree and then into the slim model, so the file text, the slim objects and one
/// object's tree are all that is in memory at once, never a tree of the whole file.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, StateError> {
    let documents: Vec<Document> =
        crate::yaml::documents_as(text).map_err(|message| StateError::Syntax {
            path: path.to_owned(),
            message,
        })?;

    let mut buckets = Buckets::default();
    let mut ignored_kinds: Vec<String> = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let document = |message: String| StateError::Document {
            path: path.to_owned(),
            document: i + 1,
            message,
        };
        let converted = match doc {
            Document::Empty => continue,
            Document::NotAnObject => {
                return Err(document("expected a Kubernetes object or List".into()));
            }
            Document::ItemsNotAList => {
                return Err(document("`items` must be a list of objects".into()));
            }
            Document::Objects(converted) => converted,
        };
        match converted.error {
            None => {}
            Some(ObjectError::NoKind { item: None }) => {
                return Err(document("the object has no `kind`".into()));
            }
            Some(ObjectError::NoKind { item: Some(item) }) => {
                return Err(document(format!("item {item} of `items` has no `kind`")));
            }
            Some(ObjectError::Invalid { kind, name, source }) => {
                return Err(StateError::Object {
                    path: path.to_owned(),
                    kind,
                    name,
                    source,
                });
            }
        }
        buckets.append(converted.buckets);
        for kind in converted.ignored_kinds {
            if !ignored_kinds.contains(&kind) {
                ignored_kinds.push(kind);
            }
        }
    }

    let index = ClusterIndex::new(SyncState::Synced);
    index.snapshot_classes.replace(buckets.snapshot_classes);
    index.snapshots.replace(buckets.snapshots);
    index.snapshot_contents.replace(buckets.snapshot_contents);
    index.storage_classes.replace(buckets.storage_classes);
    index.pvcs.replace(buckets.pvcs);
    index.pvs.replace(buckets.pvs);
    index.nodes.replace(buckets.nodes);
    index.pods.replace(buckets.pods);
    index
        .group_snapshot_classes
        .replace(buckets.group_snapshot_classes);
    index.group_snapshots.replace(buckets.group_snapshots);
    index
        .group_snapshot_contents
        .replace(buckets.group_snapshot_contents);
    if buckets.csi_drivers.is_empty() {
        index
            .csi_drivers
            .set_state(SyncState::Pending(NO_CSI_DRIVERS.to_owned()));
    } else {
        index.csi_drivers.replace(buckets.csi_drivers);
    }
    Ok(Loaded {
        index,
        ignored_kinds,
    })
}

/// Why a state file's CSIDriver store is unavailable when the file holds none.
pub const NO_CSI_DRIVERS: &str =
    "the state file holds no CSIDriver objects, so which CSI drivers are installed is not known";

/// One document of the file, already converted to the slim model.
enum Document {
    /// `null` (JSON; empty YAML documents are skipped before they get here).
    Empty,
    NotAnObject,
    ItemsNotAList,
    Objects(Box<Converted>),
}

/// The objects of one document (a List's items, or the document itself).
#[derive(Default)]
struct Converted {
    buckets: Buckets,
    /// Kinds no rule reads (`Pod`, `Deployment`, ...), each once.
    ignored_kinds: Vec<String>,
    /// The first object that could not be converted; the objects after it are skipped unread.
    error: Option<ObjectError>,
}

enum ObjectError {
    /// `item` is the 1-based position in the List's `items`, `None` for a document that is
    /// an object itself.
    NoKind { item: Option<usize> },
    Invalid {
        kind: ResourceKind,
        name: String,
        source: serde_json::Error,
    },
}

impl Converted {
    fn add(&mut self, obj: Value, item: Option<usize>) {
        if self.error.is_some() {
            return;
        }
        let Some(kind_str) = obj.get("kind").and_then(Value::as_str) else {
            self.error = Some(ObjectError::NoKind { item });
            return;
        };
        let Some(kind) = ResourceKind::from_kind(kind_str) else {
            if !self.ignored_kinds.iter().any(|k| k == kind_str) {
                self.ignored_kinds.push(kind_str.to_owned());
            }
            return;
        };
        if let Err(error) = self.buckets.push(kind, obj) {
            self.error = Some(error);
        }
    }
}

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocumentVisitor)
    }
}

/// Anything but a map, `null` or a sequence where a map is expected: consumed, reported as
/// `$value` (the input stays well-formed, so the error is about the shape, not the syntax).
macro_rules! other_shapes {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

struct DocumentVisitor;

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = Document;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kubernetes object or List")
    }

    other_shapes!(Document::NotAnObject);

    fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::Empty)
    }

    fn visit_none<E: de::Error>(self) -> Result<Document, E> {
        Ok(Document::Empty)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Document, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Document::NotAnObject)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        // Until `items` shows up, this may be a single object: keep its fields. A List's
        // other fields (apiVersion, kind, metadata) are small.
        let mut fields = serde_json::Map::new();
        let mut items = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                items = Some(map.next_value::<Items>()?);
            } else {
                let value = map.next_value::<Value>()?;
                fields.insert(key, value);
            }
        }
        Ok(match items {
            None => {
                let mut converted = Box::<Converted>::default();
                converted.add(Value::Object(fields), None);
                Document::Objects(converted)
            }
            Some(Items::List(converted)) => Document::Objects(converted),
            Some(Items::Null) => Document::Objects(Box::default()),
            Some(Items::NotAList) => Document::ItemsNotAList,
        })
    }
}

/// A List's `items`, converted one object at a time.
enum Items {
    List(Box<Converted>),
    Null,
    NotAList,
}

impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemsVisitor)
    }
}

struct ItemsVisitor;

impl<'de> Visitor<'de> for ItemsVisitor {
    type Value = Items;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of objects")
    }

    other_shapes!(Items::NotAList);

    fn visit_unit<E: de::Error>(self) -> Result<Items, E> {
        Ok(Items::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Items, E> {
        Ok(Items::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Items, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Items, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Items::NotAList)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
        let mut converted = Box::<Converted>::default();
        for item in 1.. {
            if converted.error.is_some() {
                // The error is what gets reported; the rest only has to be read past.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                continue;
            }
            match seq.next_element::<Value>()? {
                Some(obj) => converted.add(obj, Some(item)),
                None => break,
            }
        }
        Ok(Items::List(converted))
    }
}

#[derive(Default)]
struct Buckets {
    snapshot_classes: Vec<crate::model::VolumeSnapshotClass>,
    snapshots: Vec<crate::model::VolumeSnapshot>,
    snapshot_contents: Vec<crate::model::VolumeSnapshotContent>,
    storage_classes: Vec<crate::model::StorageClass>,
    pvcs: Vec<crate::model::PersistentVolumeClaim>,
    pvs: Vec<crate::model::PersistentVolume>,
    nodes: Vec<crate::model::Node>,
    pods: Vec<crate::model::Pod>,
    group_snapshot_classes: Vec<crate::model::VolumeGroupSnapshotClass>,
    group_snapshots: Vec<crate::model::VolumeGroupSnapshot>,
    group_snapshot_contents: Vec<crate::model::VolumeGroupSnapshotContent>,
    csi_drivers: Vec<crate::model::CsiDriver>,
}

impl Buckets {
    fn push(&mut self, kind: ResourceKind, obj: Value) -> Result<(), ObjectError> {
        let name = object_name(&obj);
        let wrap = |source| ObjectError::Invalid {
            kind,
            name: name.clone(),
            source,
        };
        match kind {
            ResourceKind::VolumeSnapshotClass => self
                .snapshot_classes
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::VolumeSnapshot => self
                .snapshots
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::VolumeSnapshotContent => self
                .snapshot_contents
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::StorageClass => self
                .storage_classes
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::PersistentVolumeClaim => {
                self.pvcs.push(serde_json::from_value(obj).map_err(wrap)?)
            }
            ResourceKind::PersistentVolume => {
                self.pvs.push(serde_json::from_value(obj).map_err(wrap)?)
            }
            ResourceKind::Node => self.nodes.push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::Pod => self.pods.push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::VolumeGroupSnapshotClass => self
                .group_snapshot_classes
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::VolumeGroupSnapshot => self
                .group_snapshots
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::VolumeGroupSnapshotContent => self
                .group_snapshot_contents
                .push(serde_json::from_value(obj).map_err(wrap)?),
            ResourceKind::CsiDriver => self
                .csi_drivers
                .push(serde_json::from_value(obj).map_err(wrap)?),
        }
        Ok(())
    }

    fn append(&mut self, mut other: Buckets) {
        self.snapshot_classes.append(&mut other.snapshot_classes);
        self.snapshots.append(&mut other.snapshots);
        self.snapshot_contents.append(&mut other.snapshot_contents);
        self.storage_classes.append(&mut other.storage_classes);
        self.pvcs.append(&mut other.pvcs);
        self.pvs.append(&mut other.pvs);
        self.nodes.append(&mut other.nodes);
        self.pods.append(&mut other.pods);
        self.group_snapshot_classes
            .append(&mut other.group_snapshot_classes);
        self.group_snapshots.append(&mut other.group_snapshots);
        self.group_snapshot_contents
            .append(&mut other.group_snapshot_contents);
        self.csi_drivers.append(&mut other.csi_drivers);
    }
}

fn object_name(obj: &Value) -> String {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterView;

    #[test]
    fn loads_a_kubectl_list_and_a_document_stream() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: snapshot.storage.k8s.io/v1
  kind: VolumeSnapshotClass
  metadata:
    name: default-snapclass
    annotations:
      snapshot.storage.kubernetes.io/is-default-class: "true"
  driver: diskplugin.csi.alibabacloud.com
  deletionPolicy: Delete
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: ignored}
- apiVersion: v1
  kind: Pod
  metadata: {name: pinned, namespace: default}
  spec: {nodeName: n1, containers: [{name: c, image: busybox}]}
  status: {phase: Pending}
---
apiVersion: v1
kind: Node
metadata:
  name: cn-hangzhou-b-node1
  labels: {topology.kubernetes.io/zone: cn-hangzhou-b}
"#;
        let loaded = parse(text, Path::new("state.yaml")).unwrap();
        assert_eq!(loaded.ignored_kinds, ["ConfigMap"]);
        assert_eq!(loaded.index.pods.len(), 1, "pods are read, for the audit");
        let classes = loaded
            .index
            .snapshot_classes_for_driver("diskplugin.csi.alibabacloud.com")
            .unwrap();
        assert!(classes[0].is_default());
        assert!(loaded.index.node("cn-hangzhou-b-node1").unwrap().is_some());
        // Kinds the file does not mention are known to be empty, not unavailable.
        assert_eq!(loaded.index.pvc("default", "x").unwrap(), None);
    }

    #[test]
    fn csi_drivers_are_known_only_from_a_file_that_holds_some() {
        let nodes = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n";
        // Written without asking for CSIDrivers: which drivers are installed is not known.
        let loaded = parse(nodes, Path::new("s.yaml")).unwrap();
        let err = loaded.index.csi_driver("ebs.csi.aws.com").unwrap_err();
        assert_eq!(err.kind, ResourceKind::CsiDriver);
        assert_eq!(err.reason, NO_CSI_DRIVERS);
        assert!(loaded.ignored_kinds.is_empty());
        // With them: the ones listed, and no other.
        let text = format!(
            "{nodes}---\napiVersion: storage.k8s.io/v1\nkind: CSIDriverList\nitems:\n- {{apiVersion: storage.k8s.io/v1, kind: CSIDriver, metadata: {{name: ebs.csi.aws.com}}, spec: {{attachRequired: true}}}}\n"
        );
        let loaded = parse(&text, Path::new("s.yaml")).unwrap();
        assert!(
            loaded
                .index
                .csi_driver("ebs.csi.aws.com")
                .unwrap()
                .is_some()
        );
        assert_eq!(loaded.index.csi_driver("efs.csi.aws.com").unwrap(), None);
    }

    #[test]
    fn errors_name_the_file_and_object() {
        let err = parse("kind: VolumeSnapshot\nmetadata: {name: s, namespace: ns}\nstatus: {readyToUse: maybe}\n", Path::new("s.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("s.yaml") && err.contains("VolumeSnapshot ns/s"),
            "{err}"
        );

        let err = parse("key: [unclosed", Path::new("bad.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("state file bad.yaml is not valid YAML"),
            "{err}"
        );

        let err = parse("- just\n- a list\n", Path::new("l.yaml"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("expected a Kubernetes object"), "{err}");
    }

    fn error(text: &str) -> String {
        parse(text, Path::new("f"))
            .err()
            .expect("an error")
            .to_string()
    }

    #[test]
    fn list_errors_name_the_document_item_and_object() {
        // The error is the first bad object, even after ignored kinds and good objects.
        let list = r#"{"kind":"List","items":[
            {"kind":"Pod","metadata":{"name":"p"}},
            {"kind":"VolumeSnapshot","metadata":{"name":"ok","namespace":"ns"}},
            {"kind":"VolumeSnapshot","metadata":{"name":"bad","namespace":"ns"},"status":{"readyToUse":"maybe"}},
            {"kind":"VolumeSnapshot","metadata":{"name":"also-bad","namespace":"ns"},"status":{"readyToUse":1}}
        ]}"#;
        let err = error(list);
        assert!(
            err.starts_with("state file f: VolumeSnapshot ns/bad: "),
            "{err}"
        );

        assert_eq!(
            error(
                "kind: List\nitems:\n- {kind: Node, metadata: {name: node1}}\n- {metadata: {name: x}}\n"
            ),
            "state file f, document 1: item 2 of `items` has no `kind`"
        );
        assert_eq!(
            error("kind: Node\nmetadata: {name: node1}\n---\nmetadata: {name: x}\n"),
            "state file f, document 2: the object has no `kind`"
        );
        assert_eq!(
            error("kind: List\nitems: {a: b}\n"),
            "state file f, document 1: `items` must be a list of objects"
        );
        assert_eq!(
            error("{\"kind\":\"List\",\"items\":\"x\"}"),
            "state file f, document 1: `items` must be a list of objects"
        );
        assert_eq!(
            error("{\"kind\":\"List\",\"items\":[]} 42"),
            "state file f, document 2: expected a Kubernetes object or List"
        );
        // A syntax error late in a List is still a syntax error, not a half-loaded cluster.
        assert!(
            error(
                "{\"kind\":\"List\",\"items\":[{\"kind\":\"Node\",\"metadata\":{\"name\":\"n\"}},"
            )
            .starts_with("state file f is not valid YAML or JSON"),
        );
    }

    #[test]
    fn loads_json_streams_and_empty_lists() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
              {"kind":"Node","metadata":{"name":"n1","labels":{"topology.kubernetes.io/zone":"a"}}},
              {"kind":"Deployment","metadata":{"name":"d"}}],"metadata":{"resourceVersion":""}}
            {"kind":"NodeList","items":null}
            {"kind":"Node","metadata":{"name":"n2"}}
            null"#;
        let loaded = parse(text, Path::new("s.json")).unwrap();
        assert_eq!(loaded.ignored_kinds, ["Deployment"]);
        assert!(loaded.index.node("n1").unwrap().is_some());
        assert!(loaded.index.node("n2").unwrap().is_some());

        let loaded = parse(
            "apiVersion: v1\nkind: List\nitems: []\n---\n",
            Path::new("e"),
        )
        .unwrap();
        assert!(loaded.ignored_kinds.is_empty());
        assert_eq!(loaded.index.node("n1").unwrap(), None);
    }
}
