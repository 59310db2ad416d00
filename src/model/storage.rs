//! `storage.k8s.io/v1` StorageClass and core/v1 PersistentVolumeClaim and PersistentVolume.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::meta::{ObjectMeta, null_as_default};
use super::{Quantity, annotation_is_true, keys};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum VolumeBindingMode {
    Immediate,
    WaitForFirstConsumer,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct StorageClass {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub provisioner: String,
    /// The API server defaults an absent mode to `Immediate` before admission.
    #[serde(default)]
    pub volume_binding_mode: Option<VolumeBindingMode>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_topologies: Vec<AllowedTopologyTerm>,
}

/// One `allowedTopologies` term: every expression must match (AND); terms are ORed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct AllowedTopologyTerm {
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_label_expressions: Vec<TopologyRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct TopologyRequirement {
    #[serde(default, deserialize_with = "null_as_default")]
    pub key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

impl StorageClass {
    pub fn is_default(&self) -> bool {
        annotation_is_true(self.metadata.annotation(keys::DEFAULT_STORAGE_CLASS))
            || annotation_is_true(self.metadata.annotation(keys::DEFAULT_STORAGE_CLASS_BETA))
    }

    /// The effective binding mode (absent means `Immediate`, as the API server defaults it).
    pub fn binding_mode(&self) -> VolumeBindingMode {
        self.volume_binding_mode
            .unwrap_or(VolumeBindingMode::Immediate)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaim {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PersistentVolumeClaimSpec,
    #[serde(default)]
    pub status: Option<PersistentVolumeClaimStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaimSpec {
    /// `Some("")` asks explicitly for no class (static binding only).
    #[serde(default)]
    pub storage_class_name: Option<String>,
    #[serde(default)]
    pub volume_name: Option<String>,
    #[serde(default)]
    pub volume_mode: Option<String>,
    #[serde(default)]
    pub data_source: Option<TypedLocalObjectReference>,
    #[serde(default)]
    pub data_source_ref: Option<TypedObjectReference>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: ResourceRequirements,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct ResourceRequirements {
    #[serde(default, deserialize_with = "null_as_default")]
    pub requests: StorageResources,
}

/// A resource list of which only `storage` is kept. A map would cost a whole B-tree node
/// per claim in the cache for one entry; other resources are checked and dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageResources {
    pub storage: Option<Quantity>,
}

/// By hand, because a derived struct would also accept a JSON array (`requests: [1]` would
/// read as `storage: 1`): a resource list is only ever a map.
impl<'de> Deserialize<'de> for StorageResources {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapOnly;
        impl<'de> serde::de::Visitor<'de> for MapOnly {
            type Value = StorageResources;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of resource quantities")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut storage = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "storage" {
                        storage = Some(map.next_value::<Quantity>()?);
                    } else {
                        // Checked, not kept: a malformed entry is bad input, never ignored.
                        map.next_value::<Quantity>()?;
                    }
                }
                Ok(StorageResources { storage })
            }
        }
        d.deserialize_map(MapOnly)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct PersistentVolumeClaimStatus {
    #[serde(default)]
    pub phase: Option<String>,
    /// The size of the bound volume; what a clone of this claim must at least request.
    #[serde(default, deserialize_with = "null_as_default")]
    pub capacity: StorageResources,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct TypedLocalObjectReference {
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct TypedObjectReference {
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl PersistentVolumeClaim {
    /// The class the claim asks for: `spec.storageClassName`, or the legacy beta annotation.
    /// `None` means "the cluster's default class"; `Some("")` means "no class".
    pub fn requested_class(&self) -> Option<&str> {
        self.spec.storage_class_name.as_deref().or_else(|| {
            self.metadata
                .annotation(keys::PVC_STORAGE_CLASS_BETA)
                .map(String::as_str)
        })
    }

    pub fn requested_storage(&self) -> Option<&Quantity> {
        self.spec.resources.requests.storage.as_ref()
    }

    /// `Filesystem` unless the claim says otherwise (the API server's default).
    pub fn volume_mode(&self) -> &str {
        self.spec.volume_mode.as_deref().unwrap_or("Filesystem")
    }

    /// The size of the bound volume (`status.capacity.storage`), when bound.
    pub fn capacity(&self) -> Option<&Quantity> {
        self.status
            .as_ref()
            .and_then(|s| s.capacity.storage.as_ref())
    }

    pub fn bound_volume(&self) -> Option<&str> {
        self.spec.volume_name.as_deref().filter(|n| !n.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolume {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: PersistentVolumeSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeSpec {
    #[serde(default)]
    pub storage_class_name: Option<String>,
    #[serde(default)]
    pub csi: Option<CsiSource>,
    #[serde(default)]
    pub local: Option<LocalSource>,
    #[serde(default)]
    pub node_affinity: Option<VolumeNodeAffinity>,
    #[serde(default)]
    pub volume_mode: Option<String>,
    #[serde(default)]
    pub claim_ref: Option<ClaimRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct CsiSource {
    #[serde(default, deserialize_with = "null_as_default")]
    pub driver: String,
    #[serde(default)]
    pub volume_handle: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct LocalSource {
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct ClaimRef {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct VolumeNodeAffinity {
    #[serde(default)]
    pub required: Option<NodeSelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(default, deserialize_with = "null_as_default")]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// A node selector term: every expression must match (AND); terms are ORed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct NodeSelectorRequirement {
    #[serde(default, deserialize_with = "null_as_default")]
    pub key: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub operator: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub values: Vec<String>,
}

impl PersistentVolume {
    pub fn csi_driver(&self) -> Option<&str> {
        self.spec
            .csi
            .as_ref()
            .map(|c| c.driver.as_str())
            .filter(|d| !d.is_empty())
    }

    pub fn node_selector_terms(&self) -> &[NodeSelectorTerm] {
        self.spec
            .node_affinity
            .as_ref()
            .and_then(|a| a.required.as_ref())
            .map(|r| r.node_selector_terms.as_slice())
            .unwrap_or_default()
    }
}

crate::model::map_only!(
    StorageClass,
    AllowedTopologyTerm,
    TopologyRequirement,
    PersistentVolumeClaim,
    PersistentVolumeClaimSpec,
    ResourceRequirements,
    PersistentVolumeClaimStatus,
    TypedLocalObjectReference,
    TypedObjectReference,
    PersistentVolume,
    PersistentVolumeSpec,
    CsiSource,
    LocalSource,
    ClaimRef,
    VolumeNodeAffinity,
    NodeSelector,
    NodeSelectorTerm,
    NodeSelectorRequirement
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_class_defaults_and_topologies() {
        let sc: StorageClass = serde_json::from_str(
            r#"{"metadata":{"name":"csi-disk","annotations":{"storageclass.kubernetes.io/is-default-class":"true"}},
                "provisioner":"diskplugin.csi.alibabacloud.com",
                "allowedTopologies":[{"matchLabelExpressions":[{"key":"topology.kubernetes.io/zone","values":["cn-hangzhou-d"]}]}]}"#,
        )
        .unwrap();
        assert!(sc.is_default());
        assert_eq!(sc.binding_mode(), VolumeBindingMode::Immediate);
        assert_eq!(
            sc.allowed_topologies[0].match_label_expressions[0].values,
            ["cn-hangzhou-d"]
        );
        assert!(serde_json::from_str::<StorageClass>(r#"{"volumeBindingMode":"Later"}"#).is_err());
    }

    #[test]
    fn a_resource_list_must_be_a_map() {
        let parse = |json: &str| serde_json::from_str::<PersistentVolumeClaim>(json);
        let err = parse(r#"{"spec":{"resources":{"requests":[1]}}}"#).unwrap_err();
        assert!(
            err.to_string().contains("a map of resource quantities"),
            "{err}"
        );
        let pvc = parse(r#"{"spec":{"resources":{"requests":{"cpu":"500m"}}}}"#).unwrap();
        assert_eq!(
            pvc.requested_storage(),
            None,
            "other resources are checked, then dropped"
        );
        assert!(parse(r#"{"spec":{"resources":{"requests":{"cpu":true}}}}"#).is_err());
        assert!(
            parse(r#"{"spec":{"resources":{"requests":{"storage":null}}}}"#).is_err(),
            "a null entry in a resource list is not a quantity"
        );
    }

    #[test]
    fn pvc_class_storage_and_sources() {
        let pvc: PersistentVolumeClaim = serde_json::from_str(
            r#"{"metadata":{"name":"r","namespace":"default","annotations":{"volume.beta.kubernetes.io/storage-class":"old"}},
                "spec":{"resources":{"requests":{"storage":"20Gi"}},
                        "dataSourceRef":{"apiGroup":"snapshot.storage.k8s.io","kind":"VolumeSnapshot","name":"s","namespace":"backup"}}}"#,
        )
        .unwrap();
        assert_eq!(pvc.requested_class(), Some("old"));
        assert_eq!(pvc.volume_mode(), "Filesystem");
        assert_eq!(
            pvc.requested_storage().unwrap().as_integer(),
            Some(21_474_836_480)
        );
        assert_eq!(
            pvc.spec.data_source_ref.unwrap().namespace.as_deref(),
            Some("backup")
        );
        assert!(
            serde_json::from_str::<PersistentVolumeClaim>(
                r#"{"spec":{"resources":{"requests":{"storage":"lots"}}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn pv_driver_and_affinity() {
        let pv: PersistentVolume = serde_json::from_str(
            r#"{"metadata":{"name":"pv1"},"spec":{"csi":{"driver":"d","volumeHandle":"h"},
                "nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"In","values":["n1"]}]}]}}}}"#,
        )
        .unwrap();
        assert_eq!(pv.csi_driver(), Some("d"));
        assert_eq!(
            pv.node_selector_terms()[0].match_expressions[0].values,
            ["n1"]
        );
    }
}

impl NodeSelectorTerm {
    /// Kubernetes node-selector semantics: every expression and field requirement must hold;
    /// a term with no requirements matches no node.
    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.match_expressions.is_empty() && self.match_fields.is_empty() {
            return false;
        }
        self.holds(node_name, labels)
    }

    /// Whether every requirement holds (true for a term without any).
    fn holds(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.match_expressions
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self
                .match_fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches(Some(node_name)))
    }
}

/// Node requirements that must all hold, borrowed from where they are written: a pod's
/// `nodeSelector` (each label an `In` of one value) and up to two selector terms (a pod's
/// required term, a volume's). It is the one term these would concatenate into, without
/// copying a key or a value: a pod checked against its bound volumes asks for it per pair of
/// terms, on the request path.
#[derive(Debug, Clone, Copy)]
pub struct NodeConstraint<'a> {
    /// A pod's `nodeSelector`; empty for none.
    pub labels: &'a BTreeMap<String, String>,
    pub terms: [Option<&'a NodeSelectorTerm>; 2],
}

/// No labels, for constraints made of terms only.
static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl<'a> NodeConstraint<'a> {
    /// One selector term alone.
    pub fn term(term: &'a NodeSelectorTerm) -> Self {
        Self {
            labels: &NO_LABELS,
            terms: [Some(term), None],
        }
    }

    fn terms(&self) -> impl Iterator<Item = &'a NodeSelectorTerm> {
        self.terms.into_iter().flatten()
    }

    /// As for the concatenated term: every requirement must hold, and a constraint without
    /// any requirement matches no node.
    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        let empty = self.labels.is_empty()
            && self
                .terms()
                .all(|t| t.match_expressions.is_empty() && t.match_fields.is_empty());
        !empty
            && self
                .labels
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
            && self.terms().all(|t| t.holds(node_name, labels))
    }

    /// The node names a `metadata.name In` field allows, if one does.
    pub fn names(&self) -> Option<&'a [String]> {
        self.terms()
            .flat_map(|t| &t.match_fields)
            .find(|f| f.key == "metadata.name" && f.operator == "In")
            .map(|f| f.values.as_slice())
    }

    /// A label key and the values one of them must have (a `nodeSelector` label, or an `In`
    /// expression), if there is one.
    pub fn label_values(&self) -> Option<(&'a str, &'a [String])> {
        if let Some((key, value)) = self.labels.iter().next() {
            return Some((key, std::slice::from_ref(value)));
        }
        self.terms()
            .flat_map(|t| &t.match_expressions)
            .find(|e| e.operator == "In")
            .map(|e| (e.key.as_str(), e.values.as_slice()))
    }
}

impl NodeSelectorRequirement {
    fn matches(&self, value: Option<&str>) -> bool {
        let numeric = |v: Option<&str>| v.and_then(|v| v.parse::<i64>().ok());
        let bound = || self.values.first().and_then(|b| b.parse::<i64>().ok());
        match self.operator.as_str() {
            "In" => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            "NotIn" => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            "Gt" => matches!((numeric(value), bound()), (Some(v), Some(b)) if v > b),
            "Lt" => matches!((numeric(value), bound()), (Some(v), Some(b)) if v < b),
            _ => false,
        }
    }
}

#[cfg(test)]
mod selector_tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn node_selector_operators() {
        let labels: BTreeMap<String, String> = [
            ("zone".to_string(), "b".to_string()),
            ("cpus".to_string(), "8".to_string()),
        ]
        .into();
        let term = |e: Vec<NodeSelectorRequirement>| NodeSelectorTerm {
            match_expressions: e,
            match_fields: vec![],
        };
        assert!(term(vec![req("zone", "In", &["a", "b"])]).matches("n", &labels));
        assert!(!term(vec![req("zone", "NotIn", &["b"])]).matches("n", &labels));
        assert!(term(vec![req("rack", "DoesNotExist", &[])]).matches("n", &labels));
        assert!(
            term(vec![req("cpus", "Gt", &["4"]), req("zone", "Exists", &[])]).matches("n", &labels)
        );
        assert!(!term(vec![req("cpus", "Lt", &["4"])]).matches("n", &labels));
        assert!(
            !term(vec![]).matches("n", &labels),
            "an empty term matches nothing"
        );
        let by_name = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", "In", &["n"])],
        };
        assert!(by_name.matches("n", &labels));
        assert!(!by_name.matches("m", &labels));
    }

    /// A constraint must answer as the one term its parts concatenate into (the pod's
    /// `nodeSelector` as `In` expressions first), for every node and every mix of parts.
    #[test]
    fn a_constraint_matches_as_its_concatenated_term() {
        let terms = [
            NodeSelectorTerm::default(),
            NodeSelectorTerm {
                match_expressions: vec![req("zone", "In", &["b", "c"])],
                match_fields: vec![],
            },
            NodeSelectorTerm {
                match_expressions: vec![req("disk", "NotIn", &["hdd"])],
                match_fields: vec![req("metadata.name", "In", &["n1", "n3"])],
            },
            NodeSelectorTerm {
                match_expressions: vec![
                    req("cpus", "Gt", &["4"]),
                    req("rack", "DoesNotExist", &[]),
                ],
                match_fields: vec![],
            },
        ];
        let selectors: [BTreeMap<String, String>; 3] = [
            BTreeMap::new(),
            [("zone".to_string(), "b".to_string())].into(),
            [
                ("zone".to_string(), "c".to_string()),
                ("disk".to_string(), "ssd".to_string()),
            ]
            .into(),
        ];
        let nodes: Vec<(&str, BTreeMap<String, String>)> = [
            ("n1", vec![("zone", "b"), ("cpus", "8")]),
            ("n2", vec![("zone", "c"), ("disk", "ssd"), ("cpus", "2")]),
            ("n3", vec![("zone", "c"), ("disk", "ssd"), ("cpus", "16")]),
            ("n4", vec![("zone", "d"), ("rack", "r1"), ("disk", "hdd")]),
        ]
        .into_iter()
        .map(|(name, labels)| {
            let labels = labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()));
            (name, labels.collect())
        })
        .collect();
        let mut checked = 0;
        for selector in &selectors {
            let parts: Vec<Vec<&NodeSelectorTerm>> = std::iter::once(vec![])
                .chain(terms.iter().map(|t| vec![t]))
                .chain(
                    terms
                        .iter()
                        .flat_map(|a| terms.iter().map(move |b| vec![a, b])),
                )
                .collect();
            for part in &parts {
                let constraint = NodeConstraint {
                    labels: selector,
                    terms: [part.first().copied(), part.get(1).copied()],
                };
                let concatenated = NodeSelectorTerm {
                    match_expressions: selector
                        .iter()
                        .map(|(k, v)| req(k, "In", &[v]))
                        .chain(part.iter().flat_map(|t| t.match_expressions.clone()))
                        .collect(),
                    match_fields: part.iter().flat_map(|t| t.match_fields.clone()).collect(),
                };
                for (name, labels) in &nodes {
                    assert_eq!(
                        constraint.matches(name, labels),
                        concatenated.matches(name, labels),
                        "{selector:?} {part:?} on {name}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 3 * (1 + 4 + 16) * 4);
    }

    #[test]
    fn a_constraint_names_what_narrows_it() {
        let by_zone = NodeSelectorTerm {
            match_expressions: vec![req("disk", "Exists", &[]), req("zone", "In", &["b", "c"])],
            match_fields: vec![],
        };
        let by_name = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", "In", &["n1"])],
        };
        fn only<'a>(terms: &[&'a NodeSelectorTerm]) -> NodeConstraint<'a> {
            NodeConstraint {
                labels: &NO_LABELS,
                terms: [terms.first().copied(), terms.get(1).copied()],
            }
        }
        let none = BTreeMap::new();
        assert_eq!(only(&[&by_zone]).names(), None);
        assert_eq!(
            only(&[&by_zone]).label_values(),
            Some(("zone", &["b".to_string(), "c".to_string()][..]))
        );
        assert_eq!(
            only(&[&by_zone, &by_name]).names(),
            Some(&["n1".to_string()][..])
        );
        let selector: BTreeMap<String, String> = [("disk".to_string(), "ssd".to_string())].into();
        let with_selector = NodeConstraint {
            labels: &selector,
            terms: [Some(&by_zone), None],
        };
        assert_eq!(
            with_selector.label_values(),
            Some(("disk", &["ssd".to_string()][..])),
            "a nodeSelector label narrows to one value"
        );
        assert_eq!(only(&[]).label_values(), None);
        assert!(
            !only(&[]).matches("n1", &selector),
            "no requirement matches nothing"
        );
        assert!(NodeConstraint::term(&by_name).matches("n1", &none));
    }

    #[test]
    fn explicit_nulls_are_absent_fields() {
        // The API server may send `null` for any omitted field; found by tests/bad_input_reviews.rs.
        let sc: StorageClass = serde_json::from_str(
            r#"{"metadata":null,"provisioner":null,"allowedTopologies":[{"matchLabelExpressions":[{"key":null,"values":null}]}]}"#,
        )
        .unwrap();
        assert_eq!(sc.provisioner, "");
        assert_eq!(sc.metadata, ObjectMeta::default());
        let pvc: PersistentVolumeClaim = serde_json::from_str(
            r#"{"spec":{"resources":null,"dataSource":{"kind":null,"name":null}}}"#,
        )
        .unwrap();
        assert!(pvc.spec.resources.requests.storage.is_none());
        let pvc: PersistentVolumeClaim = serde_json::from_str(r#"{"spec":null}"#).unwrap();
        assert!(pvc.spec.storage_class_name.is_none());
        let pv: PersistentVolume = serde_json::from_str(
            r#"{"spec":{"csi":{"driver":null},"local":{"path":null},"nodeAffinity":{"required":{"nodeSelectorTerms":null}}}}"#,
        )
        .unwrap();
        assert_eq!(pv.spec.csi.unwrap().driver, "");
    }
}
