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

/// In-tree provisioners and the CSI driver that provisions their volumes under CSI migration
/// (on by default, and the in-tree code removed, in the Kubernetes versions this supports).
const MIGRATED: &[(&str, &str)] = &[
    ("kubernetes.io/aws-ebs", "ebs.csi.aws.com"),
    ("kubernetes.io/gce-pd", "pd.csi.storage.gke.io"),
    ("kubernetes.io/azure-disk", "disk.csi.azure.com"),
    ("kubernetes.io/azure-file", "file.csi.azure.com"),
    ("kubernetes.io/cinder", "cinder.csi.openstack.org"),
    ("kubernetes.io/vsphere-volume", "csi.vsphere.vmware.com"),
    ("kubernetes.io/portworx-volume", "pxd.portworx.com"),
];

/// Whether a CSIDriver can be named `name`: the API server takes only DNS subdomains of at most
/// 63 characters. A provisioner named otherwise (`rancher.io/local-path`) is no CSI driver, so
/// that no CSIDriver has its name says nothing.
pub fn is_csi_driver_name(name: &str) -> bool {
    name.len() <= 63 && super::labels::is_dns_subdomain(name)
}

/// The CSI driver that serves an in-tree `provisioner` by CSI migration, if it is one.
pub fn migration_driver(provisioner: &str) -> Option<&'static str> {
    MIGRATED
        .iter()
        .find(|(in_tree, _)| *in_tree == provisioner)
        .map(|(_, driver)| *driver)
}
