//! What the audit reports: one object breaking one rule, and how the object is referred to
//! (the identity deduplication uses, the reference an Event is attached to). Its own module,
//! so the audit and the stuck-object pass both use it without using each other.

use k8s_openapi::api::core::v1::ObjectReference;

use crate::cluster::{ClusterIndex, ResourceKind};
use crate::model::ObjectMeta;
use crate::rules::RuleId;

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: ResourceKind,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Option<String>,
}

impl ObjectRef {
    pub(crate) fn new(kind: ResourceKind, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name: meta.name.clone(),
            uid: meta.uid.clone().filter(|u| !u.is_empty()),
        }
    }

    /// The identity deduplication uses: the uid (a recreated object is a new object), or the
    /// kind and name when the cache has no uid (a state file).
    pub fn key(&self) -> String {
        match &self.uid {
            Some(uid) => uid.clone(),
            None => format!(
                "{}/{}/{}",
                self.kind,
                self.namespace.as_deref().unwrap_or_default(),
                self.name
            ),
        }
    }

    /// The reference an Event is attached to (`regarding`), at the version `served` says the
    /// cluster serves the kind at (the group snapshot kinds may be `v1beta1` or `v1beta2`).
    pub fn reference(&self, served: &ClusterIndex) -> ObjectReference {
        ObjectReference {
            api_version: Some(served.api_version(self.kind)),
            kind: Some(self.kind.as_str().to_owned()),
            name: Some(self.name.clone()),
            namespace: self.namespace.clone(),
            uid: self.uid.clone(),
            ..ObjectReference::default()
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One object violating one rule, with everything the rule said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    pub object: ObjectRef,
    /// The rule's denials and warnings, one per line, as the webhook would say them.
    pub message: String,
}
