use std::collections::BTreeMap;

use serde::Deserialize;

use super::meta::ObjectMeta;

/// A Node: only its name and labels matter to the rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct Node {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
}

impl Node {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }
}

crate::model::map_only!(Node);
