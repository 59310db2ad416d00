use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::keys::KEPT_ANNOTATIONS;

/// The part of `metadata` the rules read.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Set on CREATE when the client asked the API server to pick the name.
    #[serde(default)]
    pub generate_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
    /// Labels. Kept for every kind: nodes are matched by them and the node rule patches them.
    /// `None` when the object has no `labels` map at all (a patch must then create it).
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Only the annotations listed in [`KEPT_ANNOTATIONS`](super::keys::KEPT_ANNOTATIONS).
    #[serde(default, deserialize_with = "kept_annotations")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub owner_references: Vec<OwnerReference>,
    /// Finalizers (the snapshot controller marks group members with one).
    #[serde(default, deserialize_with = "null_as_default")]
    pub finalizers: Vec<String>,
    /// Whether the object had a `metadata` map at all (absent and `null` are not). A patch
    /// that adds under `/metadata` must create it first when not: the API server never sends
    /// such an object, but a hand-made review can (found by the `patch` fuzz target).
    #[serde(skip)]
    pub in_object: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_version: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

impl ObjectMeta {
    /// For an object's `metadata` field: records that the map was there (see `in_object`).
    pub fn deserialize_field<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<Self>::deserialize(d)? {
            Some(meta) => Self {
                in_object: true,
                ..meta
            },
            None => Self::default(),
        })
    }

    /// The name as a person would recognise it on CREATE, when the API server has not picked
    /// it yet: `generateName` followed by `*`.
    pub fn display_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        match &self.generate_name {
            Some(prefix) => format!("{prefix}*"),
            None => "<unnamed>".to_owned(),
        }
    }

    /// `namespace/name` for namespaced objects, `name` for cluster-scoped ones.
    pub fn qualified_name(&self) -> String {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => format!("{ns}/{}", self.display_name()),
            _ => self.display_name(),
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&String> {
        self.annotations.get(key)
    }

    pub fn label(&self, key: &str) -> Option<&String> {
        self.labels.as_ref().and_then(|l| l.get(key))
    }

    pub fn is_being_deleted(&self) -> bool {
        self.deletion_timestamp.is_some()
    }
}

/// Treats an explicit JSON `null` like an absent field.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Keeps only the annotations the rules read. `last-applied-configuration` alone can be larger
/// than the rest of an object, so it must never reach a cache.
fn kept_annotations<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    struct KeptVisitor;
    impl<'de> Visitor<'de> for KeptVisitor {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of string annotations")
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if KEPT_ANNOTATIONS.contains(&key.as_ref()) {
                    kept.insert(key.into_owned(), map.next_value::<String>()?);
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(kept)
        }
    }
    d.deserialize_option(KeptVisitor)
}

crate::model::map_only!(ObjectMeta, OwnerReference);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_unread_annotations_and_keeps_known_ones() {
        let meta: ObjectMeta = serde_json::from_str(
            r#"{"name":"c","annotations":{
                "kubectl.kubernetes.io/last-applied-configuration":"{\"big\":1}",
                "snapshot.storage.kubernetes.io/is-default-class":"true"}}"#,
        )
        .unwrap();
        assert_eq!(meta.annotations.len(), 1);
        assert_eq!(
            meta.annotation("snapshot.storage.kubernetes.io/is-default-class")
                .map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn null_maps_and_lists_are_empty() {
        let meta: ObjectMeta = serde_json::from_str(
            r#"{"name":"n","annotations":null,"labels":null,"ownerReferences":null}"#,
        )
        .unwrap();
        assert!(meta.annotations.is_empty());
        assert!(meta.labels.is_none());
        assert!(meta.owner_references.is_empty());
    }

    #[test]
    fn wrong_annotation_value_type_is_an_error() {
        let err = serde_json::from_str::<ObjectMeta>(
            r#"{"annotations":{"snapshot.storage.kubernetes.io/is-default-class":true}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn display_name_uses_generate_name_before_the_server_picks_one() {
        let meta = ObjectMeta {
            generate_name: Some("restore-".into()),
            namespace: Some("apps".into()),
            ..Default::default()
        };
        assert_eq!(meta.qualified_name(), "apps/restore-*");
    }
}
