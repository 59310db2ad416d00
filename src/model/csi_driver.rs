//! `storage.k8s.io/v1` CSIDriver: a CSI driver installed in the cluster registers one, named
//! after the driver (the name a StorageClass gives as its `provisioner`).

use serde::Deserialize;

use super::meta::ObjectMeta;

/// A CSIDriver: only its name matters, to tell whether a class's provisioner is installed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub struct CsiDriver {
    #[serde(default, deserialize_with = "ObjectMeta::deserialize_field")]
    pub metadata: ObjectMeta,
}

crate::model::map_only!(CsiDriver);
