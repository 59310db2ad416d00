//! `--state FILE`: a cluster view loaded from a file, for running with no API server.
//!
//! The file holds what `kubectl get volumesnapshotclasses,volumesnapshots,volumesnapshotcontents,
//! storageclasses,pvc,pv,nodes -A -o yaml` prints: a `List` (or typed `...List`) of objects, or a
//! stream of YAML/JSON documents, each an object or a list. The file is the whole cluster: a kind
//! it does not mention has no objects.

use std::path::{Path, PathBuf};

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
pub fn parse(text: &str, path: &Path) -> Result<Loaded, StateError> {
    let documents: Vec<Value> =
        crate::yaml::documents(text).map_err(|message| StateError::Syntax {
            path: path.to_owned(),
            message,
        })?;

    let mut objects = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let document = i + 1;
        match doc {
            Value::Null => {}
            Value::Object(mut map) => match map.remove("items") {
                Some(Value::Array(items)) => {
                    objects.extend(items.into_iter().map(|o| (document, o)))
                }
                Some(Value::Null) => {}
                Some(_) => {
                    return Err(StateError::Document {
                        path: path.to_owned(),
                        document,
                        message: "`items` must be a list of objects".into(),
                    });
                }
                None => objects.push((document, Value::Object(map))),
            },
            _ => {
                return Err(StateError::Document {
                    path: path.to_owned(),
                    document,
                    message: "expected a Kubernetes object or List".into(),
                });
            }
        }
    }

    let index = ClusterIndex::new(SyncState::Synced);
    let mut buckets = Buckets::default();
    let mut ignored_kinds = Vec::new();
    for (document, obj) in objects {
        let Some(kind_str) = obj.get("kind").and_then(Value::as_str) else {
            return Err(StateError::Document {
                path: path.to_owned(),
                document,
                message: "an object has no `kind`".into(),
            });
        };
        let Some(kind) = ResourceKind::from_kind(kind_str) else {
            if !ignored_kinds.iter().any(|k| k == kind_str) {
                ignored_kinds.push(kind_str.to_owned());
            }
            continue;
        };
        buckets.push(kind, obj, path)?;
    }
    index.snapshot_classes.replace(buckets.snapshot_classes);
    index.snapshots.replace(buckets.snapshots);
    index.snapshot_contents.replace(buckets.snapshot_contents);
    index.storage_classes.replace(buckets.storage_classes);
    index.pvcs.replace(buckets.pvcs);
    index.pvs.replace(buckets.pvs);
    index.nodes.replace(buckets.nodes);
    Ok(Loaded {
        index,
        ignored_kinds,
    })
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
}

impl Buckets {
    fn push(&mut self, kind: ResourceKind, obj: Value, path: &Path) -> Result<(), StateError> {
        let name = object_name(&obj);
        let wrap = |source| StateError::Object {
            path: path.to_owned(),
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
        }
        Ok(())
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
  kind: Pod
  metadata: {name: ignored}
---
apiVersion: v1
kind: Node
metadata:
  name: cn-hangzhou-b-node1
  labels: {topology.kubernetes.io/zone: cn-hangzhou-b}
"#;
        let loaded = parse(text, Path::new("state.yaml")).unwrap();
        assert_eq!(loaded.ignored_kinds, ["Pod"]);
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
}
