//! `explain KIND NAME`: why a claim, snapshot, group snapshot or pod is stuck, from a state
//! file or, read-only, from the cluster of the current kubeconfig context (the group snapshot
//! kinds at the version the cluster serves, discovered as the watches discover it).
//!
//! In a cluster, only what the chain needs is read, and only with GET and LIST: the
//! explanation runs on an empty view that records each lookup (`Recording`); what it asked
//! for is fetched (a GET per object, a LIST of one namespace for a claim's pods or a group's
//! members, a LIST where it asked about all objects of a kind: nodes, the default classes),
//! and it runs again, until it asks for nothing new. The diagnosis itself never knows where
//! its view came from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use kube::Client;

use super::{Error, Outcome, load_policy, load_state, runtime};
use crate::cli::{ExplainArgs, Output};
use crate::cluster::fetch::is_dns_label;
use crate::cluster::watch::served_version;
use crate::cluster::{ClusterIndex, ClusterView, Lookup, ResourceKind, Store, SyncState};
use crate::explain::{self, Explanation, Target, Verdict};
use crate::model::labels::is_dns_subdomain;
use crate::model::{
    Node, NodeConstraint, PersistentVolume, PersistentVolumeClaim, StorageClass,
    TopologyRequirement, VolumeSnapshot, VolumeSnapshotClass, VolumeSnapshotContent,
};
use crate::policy::Policy;

/// More rounds than any chain has objects in a row (claim → snapshot → content → class ...).
const MAX_ROUNDS: usize = 12;

pub fn explain(args: ExplainArgs) -> Result<Outcome, Error> {
    let policy = load_policy(args.policy.as_deref())?;
    // A bad kind is a usage error before any file or cluster is touched.
    explain::Target::parse(&args.kind, &args.name, "").map_err(|e| Error::usage(e.to_string()))?;
    let (index, namespace) = match &args.state {
        Some(path) => (
            load_state(path)?,
            args.namespace
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        ),
        None => runtime()?.block_on(async {
            let client = Client::try_default().await.map_err(Error::Cluster)?;
            let namespace = args
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_owned());
            let target = Target::parse(&args.kind, &args.name, &namespace)
                .map_err(|e| Error::usage(e.to_string()))?;
            Ok::<_, Error>((gather(&client, &target, &policy).await?, namespace))
        })?,
    };
    let target = Target::parse(&args.kind, &args.name, &namespace)
        .map_err(|e| Error::usage(e.to_string()))?;
    let explanation = explain::explain(&target, &index, &policy, SystemTime::now())
        .map_err(|e| Error::input(format!("cannot explain {target}: {e}")))?;
    print!("{}", render(&explanation, args.output));
    Ok(match explanation.verdict {
        Verdict::Clear => Outcome::Success,
        Verdict::Blocked => Outcome::Blocked,
    })
}

pub fn render(explanation: &Explanation, output: Output) -> String {
    match output {
        Output::Text => explain::render_text(explanation),
        Output::Json => serde_json::to_string_pretty(explanation).unwrap_or_default() + "\n",
    }
}

/// What the explanation asked the view for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Wanted {
    Get {
        kind: ResourceKind,
        namespace: String,
        name: String,
    },
    List(ResourceKind),
    /// The objects of a namespaced kind in one namespace (a claim's pods, a group's members).
    ListIn {
        kind: ResourceKind,
        namespace: String,
    },
}

impl Wanted {
    fn kind(&self) -> ResourceKind {
        match self {
            Wanted::Get { kind, .. } | Wanted::List(kind) | Wanted::ListIn { kind, .. } => *kind,
        }
    }
}

/// A view that answers from `index` and records every lookup.
struct Recording<'a> {
    index: &'a ClusterIndex,
    asked: Mutex<BTreeSet<Wanted>>,
}

impl Recording<'_> {
    fn get(&self, kind: ResourceKind, namespace: &str, name: &str) {
        self.record(Wanted::Get {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    fn list(&self, kind: ResourceKind) {
        self.record(Wanted::List(kind));
    }

    fn record(&self, wanted: Wanted) {
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(wanted);
        }
    }
}

impl ClusterView for Recording<'_> {
    fn snapshot_class(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotClass>>> {
        self.get(ResourceKind::VolumeSnapshotClass, "", name);
        self.index.snapshot_class(name)
    }
    fn snapshot_classes_for_driver(&self, driver: &str) -> Lookup<Vec<Arc<VolumeSnapshotClass>>> {
        self.list(ResourceKind::VolumeSnapshotClass);
        self.index.snapshot_classes_for_driver(driver)
    }
    fn snapshot(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<VolumeSnapshot>>> {
        self.get(ResourceKind::VolumeSnapshot, namespace, name);
        self.index.snapshot(namespace, name)
    }
    fn snapshot_content(&self, name: &str) -> Lookup<Option<Arc<VolumeSnapshotContent>>> {
        self.get(ResourceKind::VolumeSnapshotContent, "", name);
        self.index.snapshot_content(name)
    }
    fn storage_class(&self, name: &str) -> Lookup<Option<Arc<StorageClass>>> {
        self.get(ResourceKind::StorageClass, "", name);
        self.index.storage_class(name)
    }
    fn default_storage_classes(&self) -> Lookup<Vec<Arc<StorageClass>>> {
        self.list(ResourceKind::StorageClass);
        self.index.default_storage_classes()
    }
    fn pvc(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<PersistentVolumeClaim>>> {
        self.get(ResourceKind::PersistentVolumeClaim, namespace, name);
        self.index.pvc(namespace, name)
    }
    fn pv(&self, name: &str) -> Lookup<Option<Arc<PersistentVolume>>> {
        self.get(ResourceKind::PersistentVolume, "", name);
        self.index.pv(name)
    }
    fn node(&self, name: &str) -> Lookup<Option<Arc<Node>>> {
        self.get(ResourceKind::Node, "", name);
        self.index.node(name)
    }
    fn node_label_values(&self, key: &str) -> Lookup<Vec<(String, usize)>> {
        self.list(ResourceKind::Node);
        self.index.node_label_values(key)
    }
    fn count_nodes_matching_topology(&self, term: &[TopologyRequirement]) -> Lookup<usize> {
        self.list(ResourceKind::Node);
        self.index.count_nodes_matching_topology(term)
    }
    fn any_node_satisfies(&self, constraint: &NodeConstraint<'_>) -> Lookup<bool> {
        self.list(ResourceKind::Node);
        self.index.any_node_satisfies(constraint)
    }
    fn pvcs_matching(
        &self,
        namespace: &str,
        selector: &crate::model::LabelSelector,
    ) -> Lookup<Vec<Arc<PersistentVolumeClaim>>> {
        self.list(ResourceKind::PersistentVolumeClaim);
        self.index.pvcs_matching(namespace, selector)
    }
    fn group_snapshot_class(
        &self,
        name: &str,
    ) -> Lookup<Option<Arc<crate::model::VolumeGroupSnapshotClass>>> {
        self.get(ResourceKind::VolumeGroupSnapshotClass, "", name);
        self.index.group_snapshot_class(name)
    }
    fn group_snapshot_classes_for_driver(
        &self,
        driver: &str,
    ) -> Lookup<Vec<Arc<crate::model::VolumeGroupSnapshotClass>>> {
        self.list(ResourceKind::VolumeGroupSnapshotClass);
        self.index.group_snapshot_classes_for_driver(driver)
    }
    fn group_snapshot(
        &self,
        namespace: &str,
        name: &str,
    ) -> Lookup<Option<Arc<crate::model::VolumeGroupSnapshot>>> {
        self.get(ResourceKind::VolumeGroupSnapshot, namespace, name);
        self.index.group_snapshot(namespace, name)
    }
    fn group_snapshot_content(
        &self,
        name: &str,
    ) -> Lookup<Option<Arc<crate::model::VolumeGroupSnapshotContent>>> {
        self.get(ResourceKind::VolumeGroupSnapshotContent, "", name);
        self.index.group_snapshot_content(name)
    }
    fn pod(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<crate::model::Pod>>> {
        self.get(ResourceKind::Pod, namespace, name);
        self.index.pod(namespace, name)
    }
    /// The pods of the claim's namespace are listed (all of them, not only Pending ones).
    fn pods_using_claim(&self, namespace: &str, name: &str) -> Lookup<Vec<Arc<crate::model::Pod>>> {
        self.record(Wanted::ListIn {
            kind: ResourceKind::Pod,
            namespace: namespace.to_owned(),
        });
        self.index.pods_using_claim(namespace, name)
    }
    /// The snapshots of the group's namespace are listed.
    fn group_members(&self, namespace: &str, group: &str) -> Lookup<Vec<Arc<VolumeSnapshot>>> {
        self.record(Wanted::ListIn {
            kind: ResourceKind::VolumeSnapshot,
            namespace: namespace.to_owned(),
        });
        self.index.group_members(namespace, group)
    }
    fn csi_driver(&self, name: &str) -> Lookup<Option<Arc<crate::model::CsiDriver>>> {
        self.get(ResourceKind::CsiDriver, "", name);
        self.index.csi_driver(name)
    }
}

/// Reads from the API, with GET and LIST only, the objects explaining `target` needs.
pub async fn gather(
    client: &Client,
    target: &Target,
    policy: &Policy,
) -> Result<ClusterIndex, Error> {
    let index = ClusterIndex::new(SyncState::Synced);
    let mut done: BTreeSet<Wanted> = BTreeSet::new();
    let mut roots = BTreeMap::new();
    for _ in 0..MAX_ROUNDS {
        let recording = Recording {
            index: &index,
            asked: Mutex::new(BTreeSet::new()),
        };
        // The answer on a partial view is thrown away: only what it asked for counts.
        let _ = explain::explain(target, &recording, policy, SystemTime::now());
        let asked = recording.asked.into_inner().unwrap_or_default();
        let listed: BTreeSet<ResourceKind> = done
            .iter()
            .chain(&asked)
            .filter_map(|w| match w {
                Wanted::List(kind) => Some(*kind),
                Wanted::Get { .. } | Wanted::ListIn { .. } => None,
            })
            .collect();
        let new: Vec<Wanted> = asked
            .into_iter()
            .filter(|w| !done.contains(w))
            // An object of a kind that is listed anyway needs no GET of its own.
            .filter(|w| !matches!(w, Wanted::Get { kind, .. } if listed.contains(kind)))
            .collect();
        if new.is_empty() {
            return Ok(index);
        }
        for wanted in new {
            match fetch(client, &index, &wanted, &mut roots).await {
                Ok(()) => {}
                // Optional knowledge (which CSI drivers are installed): a read the cluster
                // refuses leaves that store unavailable, the diagnoses that need it say
                // nothing, and the rest is still explained.
                Err(error) if wanted.kind().is_optional() => {
                    tracing::warn!(kind = %wanted.kind(), %error, "cannot read an optional kind: the findings that need it are not looked for");
                    index.set_state(wanted.kind(), SyncState::Pending(error.to_string()));
                }
                Err(error) => return Err(error),
            }
            done.insert(wanted);
        }
    }
    Ok(index)
}

/// Where `kind` is served: `/api/v1`, `/apis/GROUP/v1`, or for the group snapshot kinds the
/// version discovery picks (`v1beta1`, `v1beta2` or `v1`), asked once per API group, as the
/// watches ask it. `None`: not served, so no objects of the kind.
async fn root(
    client: &Client,
    kind: ResourceKind,
    roots: &mut BTreeMap<&'static str, Option<String>>,
) -> Result<Option<String>, Error> {
    let group = kind.group();
    if let Some(root) = roots.get(group) {
        return Ok(root.clone());
    }
    let root = match served_version(client, kind).await {
        Ok(Some(version)) if group.is_empty() => Some(format!("/api/{version}")),
        Ok(Some(version)) => Some(format!("/apis/{group}/{version}")),
        Ok(None) => None,
        Err(source) => {
            return Err(Error::ClusterRead {
                what: format!("the {group} API (discovery)"),
                source,
            });
        }
    };
    roots.insert(group, root.clone());
    Ok(root)
}

/// `ROOT/KIND` or `ROOT/namespaces/NS/KIND`.
fn path(root: &str, kind: ResourceKind, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{root}/namespaces/{ns}/{}", kind.plural()),
        None => format!("{root}/{}", kind.plural()),
    }
}

fn namespaced(kind: ResourceKind) -> bool {
    matches!(
        kind,
        ResourceKind::PersistentVolumeClaim
            | ResourceKind::VolumeSnapshot
            | ResourceKind::VolumeGroupSnapshot
            | ResourceKind::Pod
    )
}

#[derive(serde::Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

async fn fetch(
    client: &Client,
    index: &ClusterIndex,
    wanted: &Wanted,
    roots: &mut BTreeMap<&'static str, Option<String>>,
) -> Result<(), Error> {
    let kind = wanted.kind();
    // A kind the cluster does not serve: no objects of it.
    let Some(root) = root(client, kind, roots).await? else {
        return Ok(());
    };
    match wanted {
        Wanted::Get {
            kind,
            namespace,
            name,
        } => {
            // A name that is not a valid object name cannot exist, and is never put in a path.
            let valid = is_dns_subdomain(name) && (!namespaced(*kind) || is_dns_label(namespace));
            if !valid {
                return Ok(());
            }
            let url = format!(
                "{}/{name}",
                path(
                    &root,
                    *kind,
                    namespaced(*kind).then_some(namespace.as_str())
                )
            );
            let Some(text) = read(client, &url, &format!("{kind} {name}")).await? else {
                return Ok(());
            };
            load(index, *kind, Load::One, &text, format_args!("{url}"))
        }
        Wanted::ListIn { kind, namespace } => {
            if !is_dns_label(namespace) {
                return Ok(());
            }
            let url = path(&root, *kind, Some(namespace));
            let text = read(client, &url, &format!("{kind} objects in {namespace}"))
                .await?
                .unwrap_or_else(|| "{}".to_owned());
            // A claim's pods, a group's members: added to what other reads put in the store.
            load(index, *kind, Load::Add, &text, format_args!("{url}"))
        }
        Wanted::List(kind) => {
            let url = path(&root, *kind, None);
            // No snapshot CRDs: no objects of those kinds.
            let text = read(client, &url, &format!("{} objects", kind))
                .await?
                .unwrap_or_else(|| "{}".to_owned());
            load(index, *kind, Load::Replace, &text, format_args!("{url}"))
        }
    }
}

/// How a read's body goes into the store of its kind.
#[derive(Clone, Copy)]
enum Load {
    /// One object (a GET).
    One,
    /// A LIST's objects, next to what the store holds (a namespace's objects).
    Add,
    /// A LIST's objects, instead of what the store holds (every object of the kind).
    Replace,
}

/// Puts what a read returned into `kind`'s store: the one place that maps kinds to stores.
fn load(
    index: &ClusterIndex,
    kind: ResourceKind,
    how: Load,
    text: &str,
    at: std::fmt::Arguments<'_>,
) -> Result<(), Error> {
    fn into<T: crate::cluster::Cached + serde::de::DeserializeOwned>(
        store: &Store<T>,
        how: Load,
        text: &str,
        at: std::fmt::Arguments<'_>,
    ) -> Result<(), Error> {
        match how {
            Load::One => apply(store, text, at),
            Load::Add => add(store, text, at),
            Load::Replace => replace(store, text, at),
        }
    }
    use ResourceKind as K;
    match kind {
        K::VolumeSnapshotClass => into(&index.snapshot_classes, how, text, at),
        K::VolumeSnapshot => into(&index.snapshots, how, text, at),
        K::VolumeSnapshotContent => into(&index.snapshot_contents, how, text, at),
        K::StorageClass => into(&index.storage_classes, how, text, at),
        K::PersistentVolumeClaim => into(&index.pvcs, how, text, at),
        K::PersistentVolume => into(&index.pvs, how, text, at),
        K::Node => into(&index.nodes, how, text, at),
        K::Pod => into(&index.pods, how, text, at),
        K::VolumeGroupSnapshotClass => into(&index.group_snapshot_classes, how, text, at),
        K::VolumeGroupSnapshot => into(&index.group_snapshots, how, text, at),
        K::VolumeGroupSnapshotContent => into(&index.group_snapshot_contents, how, text, at),
        K::CsiDriver => into(&index.csi_drivers, how, text, at),
    }
}

fn apply<T: crate::cluster::Cached + serde::de::DeserializeOwned>(
    store: &Store<T>,
    text: &str,
    at: std::fmt::Arguments<'_>,
) -> Result<(), Error> {
    store.apply(crate::model::parse_at::<T>(text, at).map_err(Error::input)?);
    Ok(())
}

/// Each object of a LIST added to `store` (a namespace's objects, next to other namespaces').
fn add<T: crate::cluster::Cached + serde::de::DeserializeOwned>(
    store: &Store<T>,
    text: &str,
    at: std::fmt::Arguments<'_>,
) -> Result<(), Error> {
    let list = crate::model::parse_at::<List<T>>(text, at).map_err(Error::input)?;
    for item in list.items {
        store.apply(item);
    }
    Ok(())
}

fn replace<T: crate::cluster::Cached + serde::de::DeserializeOwned>(
    store: &Store<T>,
    text: &str,
    at: std::fmt::Arguments<'_>,
) -> Result<(), Error> {
    let list = crate::model::parse_at::<List<T>>(text, at).map_err(Error::input)?;
    store.replace(list.items);
    Ok(())
}

/// GET `url`: the body, or `None` on 404 (the object, or the kind, does not exist).
async fn read(client: &Client, url: &str, what: &str) -> Result<Option<String>, Error> {
    let request = axum::http::Request::get(url)
        .body(Vec::new())
        .map_err(|e| Error::input(format!("{url}: {e}")))?;
    match client.request_text(request).await {
        Ok(text) => Ok(Some(text)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(Error::ClusterRead {
            what: what.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode};
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{ApiHandle, mock_client, policy, respond, status};

    /// Answers the next call, which must be a GET of `path`, with `answer`.
    async fn expect_get(handle: &mut ApiHandle, path: &str, answer: Option<Value>) {
        let (request, send) = handle
            .next_request()
            .await
            .unwrap_or_else(|| panic!("expected GET {path}, but explain is done"));
        assert_eq!(request.method(), Method::GET, "{}", request.uri());
        assert_eq!(request.uri().path(), path);
        send.send_response(match answer {
            Some(body) => respond(StatusCode::OK, &body),
            None => status(404, "NotFound"),
        });
    }

    /// Runs `explain` of `target` against the mocked API in a task, for the test to answer
    /// its requests one by one.
    fn spawn_explain(
        client: kube::Client,
        target: Target,
    ) -> tokio::task::JoinHandle<Result<explain::Explanation, Error>> {
        tokio::spawn(async move {
            let index = gather(&client, &target, &policy::default()).await?;
            Ok(explain::explain(&target, &index, &policy::default(), SystemTime::now()).unwrap())
        })
    }

    #[tokio::test]
    async fn reads_only_what_the_chain_needs_and_writes_nothing() {
        let (client, mut handle) = mock_client();
        let target = Target::parse("pvc", "data", "app").unwrap();
        let run = tokio::spawn(async move {
            gather(&client, &target, &policy::default())
                .await
                .map(|index| {
                    let target = Target::parse("pvc", "data", "app").unwrap();
                    explain::explain(&target, &index, &policy::default(), SystemTime::now())
                        .unwrap()
                })
        });
        // Round 1: the claim.
        expect_get(
            &mut handle,
            "/api/v1/namespaces/app/persistentvolumeclaims/data",
            Some(json!({"metadata": {"name": "data", "namespace": "app"},
                        "spec": {"storageClassName": "disk-d", "volumeName": "pv-d"}})),
        )
        .await;
        // Round 2: its class and its volume (in the order of the lookups' kinds).
        expect_get(
            &mut handle,
            "/apis/storage.k8s.io/v1/storageclasses/disk-d",
            Some(json!({"metadata": {"name": "disk-d"}, "provisioner": "d.csi",
                        "allowedTopologies": [{"matchLabelExpressions": [
                            {"key": "topology.kubernetes.io/zone", "values": ["cn-hangzhou-d"]}]}]})),
        )
        .await;
        expect_get(&mut handle, "/api/v1/persistentvolumes/pv-d", Some(json!({
            "metadata": {"name": "pv-d"},
            "spec": {"csi": {"driver": "d.csi", "volumeHandle": "h"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["cn-hangzhou-d"]}]}]}}}
        })))
        .await;
        // Round 3: the nodes, once, as a LIST.
        expect_get(&mut handle, "/api/v1/nodes", Some(json!({"items": [
            {"metadata": {"name": "n1", "labels": {"topology.kubernetes.io/zone": "cn-hangzhou-b"}}}
        ]})))
        .await;
        let explanation = run.await.unwrap().unwrap();
        let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
        assert_eq!(
            ids,
            [
                "pvc.volume-affinity-no-node",
                "pvc.allowed-topologies-no-node"
            ]
        );
        // Every client is gone: nothing else was sent, so nothing was written.
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_snapshot_follows_its_claim_and_volume_and_lists_only_the_classes() {
        let (client, mut handle) = mock_client();
        let target = Target::parse("vs", "nightly", "app").unwrap();
        let run = spawn_explain(client, target);
        expect_get(
            &mut handle,
            "/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/nightly",
            Some(json!({"metadata": {"name": "nightly", "namespace": "app"},
                        "spec": {"source": {"persistentVolumeClaimName": "data"}}})),
        )
        .await;
        expect_get(
            &mut handle,
            "/api/v1/namespaces/app/persistentvolumeclaims/data",
            Some(json!({"metadata": {"name": "data", "namespace": "app"},
                        "spec": {"volumeName": "pv-1"}})),
        )
        .await;
        expect_get(
            &mut handle,
            "/api/v1/persistentvolumes/pv-1",
            Some(json!({"metadata": {"name": "pv-1"},
                        "spec": {"csi": {"driver": "d.csi", "volumeHandle": "h"}}})),
        )
        .await;
        // Asked before the volume was known (the claim names no class): the default classes.
        expect_get(
            &mut handle,
            "/apis/storage.k8s.io/v1/storageclasses",
            Some(json!({"items": []})),
        )
        .await;
        // No snapshot CRD served for classes (404): no classes, not an error.
        expect_get(
            &mut handle,
            "/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses",
            None,
        )
        .await;
        let explanation = run.await.unwrap().unwrap();
        let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["snapshot.no-default-class"]);
        assert!(
            explanation.findings[0]
                .message
                .contains("it has no VolumeSnapshotClass at all"),
            "{}",
            explanation.findings[0].message
        );
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_missing_claim_is_one_get_and_a_forbidden_read_is_a_cluster_error() {
        let (client, mut handle) = mock_client();
        let target = Target::parse("vs", "nightly", "app").unwrap();
        let run = tokio::spawn(async move { gather(&client, &target, &policy::default()).await });
        expect_get(
            &mut handle,
            "/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots/nightly",
            None,
        )
        .await;
        let index = run.await.unwrap().unwrap();
        assert!(handle.next_request().await.is_none());
        assert_eq!(index.snapshots.len(), 0);

        let (client, mut handle) = mock_client();
        let target = Target::parse("pvc", "data", "app").unwrap();
        let run = tokio::spawn(async move { gather(&client, &target, &policy::default()).await });
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(status(403, "Forbidden"));
        let Err(err) = run.await.unwrap() else {
            panic!("a refused read must fail explain");
        };
        assert_eq!(err.exit_code(), super::super::exit::CLUSTER, "{err}");
        assert!(
            err.to_string()
                .contains("cannot read PersistentVolumeClaim data"),
            "{err}"
        );
    }

    /// Discovery of a cluster serving the group snapshot API at `v1beta2` (and `v1beta1`).
    async fn expect_discovery(handle: &mut ApiHandle) {
        const GROUP: &str = "groupsnapshot.storage.k8s.io";
        let version = |v: &str| json!({"groupVersion": format!("{GROUP}/{v}"), "version": v});
        expect_get(
            handle,
            "/apis",
            Some(json!({
                "kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": GROUP, "versions": [version("v1beta2"), version("v1beta1")],
                            "preferredVersion": version("v1beta2")}]
            })),
        )
        .await;
    }

    #[tokio::test]
    async fn a_group_snapshot_is_read_at_the_version_the_cluster_serves() {
        let (client, mut handle) = mock_client();
        let target = Target::parse("vgs", "g", "app").unwrap();
        let run = spawn_explain(client, target);
        // The group snapshot API: discovered once, then each kind read at v1beta2 (not v1).
        expect_discovery(&mut handle).await;
        expect_get(
            &mut handle,
            "/apis/groupsnapshot.storage.k8s.io/v1beta2/namespaces/app/volumegroupsnapshots/g",
            Some(json!({"metadata": {"name": "g", "namespace": "app"},
                        "spec": {"source": {"selector": {"matchLabels": {"app": "db"}}},
                                 "volumeGroupSnapshotClassName": "gc"},
                        "status": {"boundVolumeGroupSnapshotContentName": "gsc"}})),
        )
        .await;
        expect_get(
            &mut handle,
            "/apis/groupsnapshot.storage.k8s.io/v1beta2/volumegroupsnapshotcontents/gsc",
            Some(json!({"metadata": {"name": "gsc"},
                        "spec": {"driver": "d.csi", "source": {"volumeHandles": ["h"]},
                                 "volumeGroupSnapshotRef": {"name": "g", "namespace": "app"}},
                        "status": {"readyToUse": false, "error": {"message": "quota exceeded"}}})),
        )
        .await;
        let explanation = run.await.unwrap().unwrap();
        let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["group.content-error"]);
        assert!(
            explanation.findings[0]
                .message
                .contains("\"quota exceeded\"")
        );
        // GETs only, and nothing after: nothing was written.
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_group_naming_a_missing_class_gets_that_class_at_the_served_version() {
        let (client, mut handle) = mock_client();
        let target = Target::parse("vgs", "g", "app").unwrap();
        let run = spawn_explain(client, target);
        expect_discovery(&mut handle).await;
        expect_get(
            &mut handle,
            "/apis/groupsnapshot.storage.k8s.io/v1beta2/namespaces/app/volumegroupsnapshots/g",
            Some(json!({"metadata": {"name": "g", "namespace": "app"},
                        "spec": {"source": {"selector": {"matchLabels": {"app": "db"}}},
                                 "volumeGroupSnapshotClassName": "gc"}})),
        )
        .await;
        // Not bound: its class, one GET at v1beta2 (not a LIST of every class).
        expect_get(
            &mut handle,
            "/apis/groupsnapshot.storage.k8s.io/v1beta2/volumegroupsnapshotclasses/gc",
            None,
        )
        .await;
        let explanation = run.await.unwrap().unwrap();
        let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["group.class-missing"]);
        // GETs only, and nothing after: nothing was written.
        assert!(handle.next_request().await.is_none());
    }

    #[tokio::test]
    async fn a_cluster_without_the_group_snapshot_api_has_no_group_snapshots() {
        let (client, mut handle) = mock_client();
        let target = Target::parse("vgs", "g", "app").unwrap();
        let run = spawn_explain(client, target);
        expect_get(
            &mut handle,
            "/apis",
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})),
        )
        .await;
        let explanation = run.await.unwrap().unwrap();
        let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["group.not-found"]);
        assert!(handle.next_request().await.is_none());
    }

    /// Answers every request from `objects` by path (404 for others) until explain is done;
    /// the requests, in order, as `METHOD path?query`.
    async fn serve(mut handle: ApiHandle, objects: BTreeMap<&'static str, Value>) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            seen.push(format!("{} {}", request.method(), request.uri()));
            send.send_response(match objects.get(request.uri().path()) {
                Some(body) => respond(StatusCode::OK, body),
                None => status(404, "NotFound"),
            });
        }
        seen
    }

    #[tokio::test]
    async fn a_pod_and_a_claim_waiting_for_it_read_the_namespace_pods_only() {
        let objects = BTreeMap::from([
            (
                "/api/v1/namespaces/shop/pods/redis-0",
                json!({
                "metadata": {"name": "redis-0", "namespace": "shop"},
                "spec": {"nodeName": "n1", "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "cache"}}]},
                "status": {"phase": "Pending"}}),
            ),
            (
                "/api/v1/namespaces/shop/persistentvolumeclaims/cache",
                json!({
                "metadata": {"name": "cache", "namespace": "shop"},
                "spec": {"storageClassName": "wffc"}}),
            ),
            (
                "/apis/storage.k8s.io/v1/storageclasses/wffc",
                json!({
                "metadata": {"name": "wffc"}, "provisioner": "d.csi",
                "volumeBindingMode": "WaitForFirstConsumer"}),
            ),
            (
                "/apis/storage.k8s.io/v1/csidrivers/d.csi",
                json!({"metadata": {"name": "d.csi"}, "spec": {"attachRequired": true}}),
            ),
            (
                "/api/v1/namespaces/shop/pods",
                json!({"items": [{
                "metadata": {"name": "redis-0", "namespace": "shop"},
                "spec": {"nodeName": "n1", "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "cache"}}]},
                "status": {"phase": "Pending"}}]}),
            ),
        ]);
        for (kind, name, id, reads) in [
            (
                "pod",
                "redis-0",
                "pod.pinned-wffc",
                &[
                    "GET /api/v1/namespaces/shop/pods/redis-0",
                    "GET /api/v1/namespaces/shop/persistentvolumeclaims/cache",
                    "GET /apis/storage.k8s.io/v1/storageclasses/wffc",
                    "GET /apis/storage.k8s.io/v1/csidrivers/d.csi",
                    "GET /api/v1/namespaces/shop/pods",
                ][..],
            ),
            (
                "pvc",
                "cache",
                "pvc.wffc-no-consumer",
                &[
                    "GET /api/v1/namespaces/shop/persistentvolumeclaims/cache",
                    "GET /apis/storage.k8s.io/v1/storageclasses/wffc",
                    "GET /apis/storage.k8s.io/v1/csidrivers/d.csi",
                    "GET /api/v1/namespaces/shop/pods",
                ][..],
            ),
        ] {
            let (client, handle) = mock_client();
            let target = Target::parse(kind, name, "shop").unwrap();
            let run = tokio::spawn(async move {
                let index = gather(&client, &target, &policy::default()).await?;
                Ok::<_, Error>(
                    explain::explain(&target, &index, &policy::default(), SystemTime::now())
                        .unwrap(),
                )
            });
            let seen = serve(handle, objects.clone()).await;
            let explanation = run.await.unwrap().unwrap();
            // GETs only (LISTs are GETs of a collection); the pods of the namespace, not all.
            assert_eq!(seen, reads, "{kind}");
            let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
            assert_eq!(ids, [id], "{kind}");
        }
    }

    #[tokio::test]
    async fn a_provisioner_s_csi_driver_is_one_get_and_a_refused_one_is_no_finding() {
        let claim = json!({"metadata": {"name": "data", "namespace": "app"},
                           "spec": {"storageClassName": "fast"}});
        let class = json!({"metadata": {"name": "fast"}, "provisioner": "ebs.csi.aws.com"});
        for (answer, ids, fact) in [
            // Not there: the driver is not installed.
            (
                status(404, "NotFound"),
                &["pvc.provisioner-unserved"][..],
                Some("does not exist"),
            ),
            // Not ours to read (the user cannot read CSIDrivers): nothing can be told, and
            // the claim is still explained.
            (status(403, "Forbidden"), &[][..], None),
            (
                respond(
                    StatusCode::OK,
                    &json!({"metadata": {"name": "ebs.csi.aws.com"}, "spec": {}}),
                ),
                &[][..],
                Some("installed"),
            ),
        ] {
            let (client, mut handle) = mock_client();
            let target = Target::parse("pvc", "data", "app").unwrap();
            let run = tokio::spawn(async move {
                let index = gather(&client, &target, &policy::default()).await?;
                Ok::<_, Error>(
                    explain::explain(&target, &index, &policy::default(), SystemTime::now())
                        .unwrap(),
                )
            });
            expect_get(
                &mut handle,
                "/api/v1/namespaces/app/persistentvolumeclaims/data",
                Some(claim.clone()),
            )
            .await;
            expect_get(
                &mut handle,
                "/apis/storage.k8s.io/v1/storageclasses/fast",
                Some(class.clone()),
            )
            .await;
            let (request, send) = handle.next_request().await.unwrap();
            assert_eq!(request.method(), Method::GET);
            assert_eq!(
                request.uri().path(),
                "/apis/storage.k8s.io/v1/csidrivers/ebs.csi.aws.com"
            );
            send.send_response(answer);
            let explanation = run.await.unwrap().unwrap();
            let found: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
            assert_eq!(found, ids);
            let step = explanation
                .chain
                .iter()
                .find(|s| s.object.kind == "CSIDriver");
            assert_eq!(step.map(|s| s.fact.as_str()), fact);
            // One GET of the one driver, and nothing written.
            assert!(handle.next_request().await.is_none());
        }
    }

    #[tokio::test]
    async fn a_group_s_members_are_read_with_a_list_of_its_namespace() {
        const GROUP: &str = "groupsnapshot.storage.k8s.io";
        let version = json!({"groupVersion": format!("{GROUP}/v1"), "version": "v1"});
        let member = |name: &str, ready: bool| {
            json!({"metadata": {"name": name, "namespace": "app", "ownerReferences": [
                      {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeGroupSnapshot", "name": "g", "uid": "u"}]},
                   "spec": {"source": {"volumeSnapshotContentName": format!("c-{name}")}},
                   "status": {"readyToUse": ready}})
        };
        let objects = BTreeMap::from([
            (
                "/apis",
                json!({"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": GROUP, "versions": [version], "preferredVersion": version}]}),
            ),
            (
                "/apis/groupsnapshot.storage.k8s.io/v1/namespaces/app/volumegroupsnapshots/g",
                json!({
                "metadata": {"name": "g", "namespace": "app"},
                "spec": {"source": {"selector": {"matchLabels": {"app": "db"}}}, "volumeGroupSnapshotClassName": "gc"},
                "status": {"boundVolumeGroupSnapshotContentName": "gsc"}}),
            ),
            (
                "/apis/groupsnapshot.storage.k8s.io/v1/volumegroupsnapshotcontents/gsc",
                json!({
                "metadata": {"name": "gsc"},
                "spec": {"driver": "d.csi", "source": {"volumeHandles": ["h"]},
                         "volumeGroupSnapshotRef": {"name": "g", "namespace": "app"}},
                "status": {"readyToUse": false}}),
            ),
            (
                "/apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots",
                json!({"items": [member("m1", true), member("m2", false)]}),
            ),
        ]);
        let (client, handle) = mock_client();
        let target = Target::parse("vgs", "g", "app").unwrap();
        let run = spawn_explain(client, target);
        let seen = serve(handle, objects).await;
        let explanation = run.await.unwrap().unwrap();
        assert_eq!(
            seen,
            [
                // One discovery for the group's kinds.
                "GET /apis",
                "GET /apis/groupsnapshot.storage.k8s.io/v1/namespaces/app/volumegroupsnapshots/g",
                "GET /apis/groupsnapshot.storage.k8s.io/v1/volumegroupsnapshotcontents/gsc",
                "GET /apis/snapshot.storage.k8s.io/v1/namespaces/app/volumesnapshots",
            ]
        );
        let ids: Vec<_> = explanation.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["group.members-not-ready"]);
        assert!(
            explanation.findings[0]
                .message
                .contains("VolumeSnapshot m2,")
        );
    }
}
