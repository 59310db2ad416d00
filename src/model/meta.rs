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
    /// When the object was created (RFC 3339, as the API server writes it): how long a Pending
    /// claim or an unready snapshot has been stuck (`explain`, the controller's stuck Events).
    #[serde(default)]
    pub creation_timestamp: Option<String>,
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

    /// [`ObjectMeta::qualified_name`] as a `Display` value, for messages that are only
    /// sometimes made: nothing is allocated until one is.
    pub fn qualified(&self) -> Qualified<'_> {
        Qualified(self)
    }

    /// `namespace/name` for namespaced objects, `name` for cluster-scoped ones.
    pub fn qualified_name(&self) -> String {
        match self.qualified_parts() {
            // Concatenated in one allocation: every message of every rule starts with it.
            Some(parts) => parts.concat(),
            None => self.qualified().to_string(),
        }
    }

    /// The qualified name as `[namespace, "/", name]`, when both are set: the parts of a
    /// message built with `concat`.
    pub fn qualified_parts(&self) -> Option<[&str; 3]> {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() && !self.name.is_empty() => Some([ns, "/", &self.name]),
            _ => None,
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

    /// `creationTimestamp` as a time; `None` when absent or not `YYYY-MM-DDTHH:MM:SSZ` (the
    /// only form the API server writes).
    pub fn created_at(&self) -> Option<std::time::SystemTime> {
        let seconds = unix_seconds(self.creation_timestamp.as_deref()?)?;
        let seconds = u64::try_from(seconds).ok()?;
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
    }
}

/// Seconds since the epoch of a Kubernetes timestamp (`2026-01-01T00:00:00Z`, optionally with
/// fractional seconds). Days from the civil date after Howard Hinnant's algorithm.
fn unix_seconds(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let time = time.split('.').next()?;
    let num = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let mut t = time.split(':');
    let (h, min, s) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + s)
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

/// See [`ObjectMeta::qualified`].
pub struct Qualified<'a>(&'a ObjectMeta);

impl std::fmt::Display for Qualified<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meta = self.0;
        if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            f.write_str(ns)?;
            f.write_str("/")?;
        }
        if !meta.name.is_empty() {
            return f.write_str(&meta.name);
        }
        match &meta.generate_name {
            Some(prefix) => write!(f, "{prefix}*"),
            None => f.write_str("<unnamed>"),
        }
    }
}

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
    fn creation_timestamps_are_read_as_the_api_server_writes_them() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(
            unix_seconds("2024-02-29T12:30:05.123Z"),
            Some(1_709_209_805)
        );
        assert_eq!(unix_seconds("2026-01-01 00:00:00"), None);
        assert_eq!(unix_seconds("2026-13-01T00:00:00Z"), None);
        let meta: ObjectMeta =
            serde_json::from_str(r#"{"creationTimestamp":"1970-01-01T00:01:00Z"}"#).unwrap();
        assert_eq!(
            meta.created_at(),
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(60))
        );
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

    #[test]
    fn the_qualified_display_and_parts_say_what_qualified_name_says() {
        let meta = |ns: Option<&str>, name: &str, generate: Option<&str>| ObjectMeta {
            namespace: ns.map(Into::into),
            name: name.into(),
            generate_name: generate.map(Into::into),
            ..Default::default()
        };
        for (m, expected) in [
            (meta(Some("apps"), "db", None), "apps/db"),
            (meta(Some("apps"), "", Some("restore-")), "apps/restore-*"),
            (meta(Some(""), "n1", None), "n1"),
            (meta(None, "n1", None), "n1"),
            (meta(None, "", None), "<unnamed>"),
            (meta(Some("apps"), "", None), "apps/<unnamed>"),
        ] {
            assert_eq!(m.qualified_name(), expected, "{m:?}");
            assert_eq!(m.qualified().to_string(), m.qualified_name(), "{m:?}");
            if let Some(parts) = m.qualified_parts() {
                assert_eq!(parts.concat(), m.qualified_name());
            }
        }
        assert!(meta(None, "n1", None).qualified_parts().is_none());
    }
}
