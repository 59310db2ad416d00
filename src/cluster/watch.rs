//! The live cluster view: one kube-rs watcher per kind feeding its [`Store`].
//!
//! Objects arrive as `DynamicObject`s and are converted straight into the slim model types,
//! so `managedFields`, `last-applied-configuration` and every field no rule reads never reach
//! the cache. A (re)list is buffered and swapped in whole at `InitDone`: after an API server
//! restart or a `410 Gone` the previous content keeps serving until the fresh list is complete.
//! A kind whose API does not exist (the snapshot CRDs are not installed) is marked missing, so
//! the snapshot rules say so instead of failing every request, and the watcher keeps retrying
//! with backoff, picking the CRDs up once they are installed.
//!
//! The snapshot kinds are watched as `v1`. The group snapshot kinds are served as `v1beta1`,
//! `v1beta2` or `v1` depending on the external-snapshotter release, so their version is
//! discovered (the group's preferred version), once for the three, before their watches start,
//! and kept on the index for the Events that name their objects; a cluster without the group
//! snapshot CRDs gets those stores marked missing, and discovery is retried.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;
use kube::api::{ApiResource, DynamicObject};
use kube::core::Version;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use super::{Cached, ClusterIndex, ResourceKind, Store, SyncState};

/// Applies one watcher event to a store. `buffer` holds a list in progress.
/// Returns how many objects could not be converted (they are skipped, with a log line).
pub fn apply_event<T: Cached + DeserializeOwned>(
    store: &Store<T>,
    buffer: &mut Option<Vec<T>>,
    event: Event<DynamicObject>,
) -> usize {
    match event {
        Event::Init => {
            *buffer = Some(Vec::new());
            0
        }
        Event::InitApply(obj) => match convert::<T>(&obj) {
            Some(o) => {
                buffer.get_or_insert_with(Vec::new).push(o);
                0
            }
            None => 1,
        },
        Event::InitDone => {
            store.replace(buffer.take().unwrap_or_default());
            0
        }
        Event::Apply(obj) => match convert::<T>(&obj) {
            Some(o) => {
                store.apply(o);
                0
            }
            None => 1,
        },
        Event::Delete(obj) => {
            let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
            let name = obj.metadata.name.as_deref().unwrap_or_default();
            store.delete(ns, name);
            0
        }
    }
}

fn convert<T: DeserializeOwned>(obj: &DynamicObject) -> Option<T> {
    let result = serde_json::to_value(obj).and_then(serde_json::from_value::<T>);
    match result {
        Ok(o) => Some(o),
        Err(error) => {
            // One unreadable object must not take the whole cache down: skip it, loudly.
            tracing::warn!(
                kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default(),
                namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
                name = obj.metadata.name.as_deref().unwrap_or_default(),
                %error,
                "object skipped: the rules cannot read it"
            );
            None
        }
    }
}

/// Whether a watcher error means the API itself does not exist (a missing CRD).
pub fn is_missing_api(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.is_not_found(),
        watcher::Error::WatchError(status) => status.is_not_found(),
        _ => false,
    }
}

/// What a store should say after a watcher error.
pub fn state_after_error<T: Cached>(store: &Store<T>, error: &watcher::Error) -> Option<SyncState> {
    if is_missing_api(error) {
        return Some(SyncState::Missing(missing_reason(T::KIND)));
    }
    // Any other error: keep serving what we have; a store that never synced stays pending.
    match store.state() {
        SyncState::Missing(_) => Some(SyncState::Pending(format!(
            "watching {}s: {error}",
            T::KIND
        ))),
        // Nothing waits for an optional kind, so nothing else would say why it is not there
        // (a ClusterRole without it is the likely reason): its state does.
        SyncState::Pending(_) if T::KIND.is_optional() => Some(SyncState::Pending(format!(
            "listing {}s failed: {error}",
            T::KIND
        ))),
        _ => None,
    }
}

/// Why a kind's store is missing, for the rules' messages.
fn missing_reason(kind: ResourceKind) -> String {
    if kind.is_snapshot_crd() {
        format!(
            "the {kind} API ({}/v1) is not served: the external-snapshotter CRDs are not installed in this cluster",
            kind.group()
        )
    } else if kind.is_group_snapshot_crd() {
        format!(
            "the {kind} API ({}) is not served: the external-snapshotter group snapshot CRDs are not installed in this cluster",
            kind.group()
        )
    } else {
        format!("the {kind} API is not served by this cluster")
    }
}

/// The version the cluster serves `kind`'s API group at; `None`: not served (its CRDs are not
/// installed). `v1` for every kind but the group snapshot kinds, whose version is discovered:
/// one request (`/apis`), whose answer holds for the three kinds alike, so ask it once per
/// group, not per kind.
pub(crate) async fn served_version(
    client: &Client,
    kind: ResourceKind,
) -> Result<Option<String>, kube::Error> {
    if !kind.is_group_snapshot_crd() {
        return Ok(Some("v1".to_owned()));
    }
    match client.list_api_groups().await {
        Ok(groups) => Ok(preferred_version(&groups, kind.group())),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}

/// The version discovery picks for `group` among the cluster's API groups: the one the API
/// server prefers (for CRDs, the served version first in Kubernetes' version priority: `v1`,
/// then `v1beta2`, then `v1beta1`), or, should it name none it serves, the served version
/// first in that priority. `None`: the group is not served.
pub(crate) fn preferred_version(groups: &APIGroupList, group: &str) -> Option<String> {
    let group = groups.groups.iter().find(|g| g.name == group)?;
    let served = || group.versions.iter().map(|v| v.version.as_str());
    group
        .preferred_version
        .as_ref()
        .map(|v| v.version.as_str())
        .filter(|preferred| served().any(|v| v == *preferred))
        .or_else(|| served().max_by_key(|v| Version::parse(v).priority()))
        .map(str::to_owned)
}

/// Discovers the version the group snapshot kinds are served at, marking their stores missing
/// (and retrying with backoff) while the cluster does not serve them.
async fn discover_group_snapshots(client: &Client, index: &ClusterIndex) -> String {
    let mut delay = std::time::Duration::from_secs(5);
    loop {
        match served_version(client, ResourceKind::VolumeGroupSnapshot).await {
            Ok(Some(version)) => {
                tracing::info!(group = ResourceKind::VolumeGroupSnapshot.group(), %version, "watching");
                return version;
            }
            Ok(None) => {
                if !matches!(index.group_snapshots.state(), SyncState::Missing(_)) {
                    tracing::warn!(
                        group = ResourceKind::VolumeGroupSnapshot.group(),
                        "API not served; rules that need it will say so; retrying"
                    );
                }
                for kind in GROUP_SNAPSHOT_KINDS {
                    index.set_state(kind, SyncState::Missing(missing_reason(kind)));
                }
            }
            Err(error) => {
                tracing::warn!(group = ResourceKind::VolumeGroupSnapshot.group(), %error, "discovery failed; retrying with backoff");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(300));
    }
}

/// The kinds of the group snapshot API: one set of CRDs, served at one version.
const GROUP_SNAPSHOT_KINDS: [ResourceKind; 3] = [
    ResourceKind::VolumeGroupSnapshotClass,
    ResourceKind::VolumeGroupSnapshot,
    ResourceKind::VolumeGroupSnapshotContent,
];

fn api_resource(kind: ResourceKind, version: &str) -> ApiResource {
    let group = kind.group();
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.as_str().to_owned(),
        plural: kind.plural().to_owned(),
    }
}

/// Watches the group snapshot kinds: their version is discovered once for the three and
/// recorded on the index (Events name the objects at it), then each is watched at it. A kind
/// that version lacks (CRDs installed in part) is marked missing by its watch's 404, as any
/// kind whose API is not served.
async fn run_group_snapshots(client: Client, index: &ClusterIndex) {
    let version = discover_group_snapshots(&client, index).await;
    index.set_served_version(ResourceKind::VolumeGroupSnapshot, &version);
    let config = watcher::Config::default;
    tokio::join!(
        watch_at(
            client.clone(),
            &index.group_snapshot_classes,
            &version,
            config()
        ),
        watch_at(client.clone(), &index.group_snapshots, &version, config()),
        watch_at(client, &index.group_snapshot_contents, &version, config()),
    );
}

/// Runs one `v1` kind's watch until the task is dropped.
async fn run<T: Cached + DeserializeOwned>(client: Client, store: &Store<T>) {
    watch_at(client, store, "v1", watcher::Config::default()).await
}

/// Runs one kind's watch at `version`, listing and watching with `config`, until the task is
/// dropped.
async fn watch_at<T: Cached + DeserializeOwned>(
    client: Client,
    store: &Store<T>,
    version: &str,
    config: watcher::Config,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &api_resource(T::KIND, version));
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let done = matches!(event, Event::InitDone);
                apply_event(store, &mut buffer, event);
                if done {
                    tracing::info!(kind = %T::KIND, objects = store.len(), "cache synced");
                }
            }
            Err(error) => {
                if let Some(state) = state_after_error(store, &error) {
                    if matches!(state, SyncState::Missing(_))
                        && !matches!(store.state(), SyncState::Missing(_))
                    {
                        tracing::warn!(kind = %T::KIND, %error, "API not served; rules that need it will say so; retrying");
                    } else if T::KIND.is_optional() && state != store.state() {
                        tracing::warn!(kind = %T::KIND, %error, "cannot list an optional kind (is it in the ClusterRole?); explain's diagnoses that need it say nothing; retrying with backoff");
                    }
                    store.set_state(state);
                } else {
                    tracing::warn!(kind = %T::KIND, %error, "watch failed; retrying with backoff");
                }
            }
        }
    }
}

/// Why the pod store is empty when the controller does not run.
pub const PODS_NOT_WATCHED: &str =
    "pods are watched only when the controller runs (--controller): only its audit reads them";

/// Why the CSIDriver store is empty when the controller does not run.
pub const CSI_DRIVERS_NOT_WATCHED: &str = "CSIDrivers are watched only when the controller runs (--controller): only its stuck-object diagnoses read them";

/// Starts a watch per kind feeding `index` (one task for the three group snapshot kinds, which
/// share their discovery); pods and CSIDrivers only with `controller` (its audit is the only
/// reader of those stores). The tasks run until aborted.
pub fn spawn_all(
    client: Client,
    index: Arc<ClusterIndex>,
    controller: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    macro_rules! spawn {
        ($field:ident) => {{
            let (client, index) = (client.clone(), index.clone());
            tokio::spawn(async move { run(client, &index.$field).await })
        }};
    }
    let mut tasks = vec![
        spawn!(snapshot_classes),
        spawn!(snapshots),
        spawn!(snapshot_contents),
        spawn!(storage_classes),
        spawn!(pvcs),
        spawn!(pvs),
        spawn!(nodes),
        {
            let (client, index) = (client.clone(), index.clone());
            tokio::spawn(async move { run_group_snapshots(client, &index).await })
        },
    ];
    if controller {
        tasks.push(spawn!(csi_drivers));
        // Pods are the most numerous objects of a cluster, and the audit only asks about
        // Pending ones: the API server filters them (a pod that leaves Pending arrives as a
        // delete), so neither the list nor the cache holds Running pods.
        let config = watcher::Config::default().fields("status.phase=Pending");
        tasks.push(tokio::spawn(async move {
            watch_at(client, &index.pods, "v1", config).await
        }));
    } else {
        // Not `Pending`: readiness must not wait for a list that never comes.
        index
            .pods
            .set_state(SyncState::Missing(PODS_NOT_WATCHED.to_owned()));
        index
            .csi_drivers
            .set_state(SyncState::Missing(CSI_DRIVERS_NOT_WATCHED.to_owned()));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterView;
    use crate::model::VolumeSnapshot;
    use kube::core::Status;

    fn snapshot(name: &str, ready: bool) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": name, "namespace": "default", "managedFields": [{"manager": "kubectl"}],
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"source": {"persistentVolumeClaimName": "disk-pvc"}},
            "status": {"readyToUse": ready}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn pods_are_watched_pending_only_and_only_for_the_controller() {
        // Without the controller: no pod or CSIDriver watch, and stores that do not hold
        // readiness.
        let (client, _api) = crate::testing::mock_client();
        let index = Arc::new(ClusterIndex::unavailable("starting"));
        let tasks = spawn_all(client, index.clone(), false);
        assert_eq!(tasks.len(), 8);
        assert_eq!(
            index.pods.state(),
            SyncState::Missing(PODS_NOT_WATCHED.to_owned())
        );
        assert_eq!(
            index.csi_drivers.state(),
            SyncState::Missing(CSI_DRIVERS_NOT_WATCHED.to_owned())
        );
        tasks.iter().for_each(|t| t.abort());

        // With it: the pod list asks the API server for Pending pods only.
        let (client, mut api) = crate::testing::mock_client();
        let index = Arc::new(ClusterIndex::unavailable("starting"));
        let tasks = spawn_all(client, index.clone(), true);
        assert_eq!(tasks.len(), 10);
        let (mut pod_list, mut csi_list) = (None, false);
        // One request per task: a watch's list, or the group snapshot kinds' one discovery.
        for _ in 0..tasks.len() {
            let (request, _respond) = api.next_request().await.unwrap();
            match request.uri().path() {
                "/api/v1/pods" => pod_list = Some(request.uri().to_string()),
                "/apis/storage.k8s.io/v1/csidrivers" => csi_list = true,
                _ => {}
            }
            if pod_list.is_some() && csi_list {
                break;
            }
        }
        assert!(
            csi_list,
            "a CSIDriver list among the watches' first requests"
        );
        let uri = pod_list.expect("a pod list among the watches' first requests");
        assert!(
            uri.contains("fieldSelector=status.phase%3DPending"),
            "{uri}"
        );
        assert!(matches!(index.pods.state(), SyncState::Pending(_)));
        assert!(matches!(index.csi_drivers.state(), SyncState::Pending(_)));
        tasks.iter().for_each(|t| t.abort());
    }

    /// The cluster's API groups: `groups` as (name, served versions, preferred version).
    fn api_groups(groups: &[(&str, &[&str], Option<&str>)]) -> APIGroupList {
        let version = |group: &str, v: &str| serde_json::json!({"groupVersion": format!("{group}/{v}"), "version": v});
        serde_json::from_value(serde_json::json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": groups.iter().map(|(name, versions, preferred)| {
                let mut group = serde_json::json!({
                    "name": name,
                    "versions": versions.iter().map(|v| version(name, v)).collect::<Vec<_>>(),
                });
                if let Some(p) = preferred {
                    group["preferredVersion"] = version(name, p);
                }
                group
            }).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn discovery_picks_the_version_the_api_server_prefers_else_the_most_stable() {
        const G: &str = "groupsnapshot.storage.k8s.io";
        let pick =
            |groups: &[(&str, &[&str], Option<&str>)]| preferred_version(&api_groups(groups), G);
        // What the API server prefers: for CRDs, v1 over v1beta2 over v1beta1.
        assert_eq!(
            pick(&[(G, &["v1", "v1beta2", "v1beta1"], Some("v1"))]).as_deref(),
            Some("v1")
        );
        assert_eq!(
            pick(&[(G, &["v1beta2", "v1beta1"], Some("v1beta2"))]).as_deref(),
            Some("v1beta2")
        );
        assert_eq!(
            pick(&[(G, &["v1beta1"], Some("v1beta1"))]).as_deref(),
            Some("v1beta1")
        );
        // The server's word counts, even against the priority order.
        assert_eq!(
            pick(&[(G, &["v1beta2", "v1beta1"], Some("v1beta1"))]).as_deref(),
            Some("v1beta1")
        );
        // No preference, or one it does not serve: the served version first in priority,
        // whatever order the list is in.
        assert_eq!(
            pick(&[(G, &["v1beta1", "v1", "v1beta2"], None)]).as_deref(),
            Some("v1")
        );
        assert_eq!(
            pick(&[(G, &["v1beta1", "v1beta2"], None)]).as_deref(),
            Some("v1beta2")
        );
        assert_eq!(
            pick(&[(G, &["v1beta1", "v1beta2"], Some("v1"))]).as_deref(),
            Some("v1beta2")
        );
        // The group snapshot CRDs are not installed: not served, whatever else is.
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick(&[("snapshot.storage.k8s.io", &["v1"], Some("v1"))]),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn group_snapshot_kinds_are_discovered_once_and_watched_at_the_served_version() {
        const G: &str = "groupsnapshot.storage.k8s.io";
        let (client, mut api) = crate::testing::mock_client();
        let index = Arc::new(ClusterIndex::unavailable("starting"));
        let task = {
            let index = index.clone();
            tokio::spawn(async move { run_group_snapshots(client, &index).await })
        };
        let answer = |send: tower_test::mock::SendResponse<_>, groups: APIGroupList| {
            send.send_response(crate::testing::respond(
                axum::http::StatusCode::OK,
                &serde_json::to_value(groups).unwrap(),
            ))
        };
        let (request, send) = api.next_request().await.unwrap();
        assert_eq!(request.uri().path(), "/apis");
        // No group snapshot CRDs: the three stores say so, and discovery is asked again.
        answer(
            send,
            api_groups(&[("snapshot.storage.k8s.io", &["v1"], Some("v1"))]),
        );
        let (request, send) = api.next_request().await.unwrap();
        assert_eq!(request.uri().path(), "/apis");
        for (kind, state) in index.states() {
            if kind.is_group_snapshot_crd() {
                assert!(
                    matches!(&state, SyncState::Missing(r) if r.contains("group snapshot CRDs are not installed")),
                    "{kind}: {state:?}"
                );
            }
        }
        // Installed since: served at v1beta2.
        answer(
            send,
            api_groups(&[(G, &["v1beta2", "v1beta1"], Some("v1beta2"))]),
        );
        // Then one list per kind at v1beta2, and no other discovery.
        let mut lists = Vec::new();
        for _ in 0..3 {
            let (request, _) = api.next_request().await.unwrap();
            lists.push(request.uri().path().to_owned());
        }
        lists.sort();
        assert_eq!(
            lists,
            [
                format!("/apis/{G}/v1beta2/volumegroupsnapshotclasses"),
                format!("/apis/{G}/v1beta2/volumegroupsnapshotcontents"),
                format!("/apis/{G}/v1beta2/volumegroupsnapshots"),
            ]
        );
        // What Events name the objects with.
        assert_eq!(
            index.api_version(ResourceKind::VolumeGroupSnapshotContent),
            format!("{G}/v1beta2")
        );
        task.abort();
    }

    #[test]
    fn the_cluster_role_lets_every_kind_be_listed_and_watched() {
        // A kind the ClusterRole forgets shows only at run time, as a cache that never syncs.
        let rbac = include_str!("../../webhook-config/base/rbac.yaml");
        let docs = crate::yaml::documents(rbac).unwrap();
        let role = docs
            .iter()
            .find(|d| d["kind"] == "ClusterRole")
            .expect("a ClusterRole");
        let grants = |group: &str, resource: &str, verb: &str| {
            role["rules"].as_array().unwrap().iter().any(|rule| {
                let has = |field: &str, value: &str| {
                    rule[field]
                        .as_array()
                        .is_some_and(|values| values.iter().any(|v| v == value))
                };
                has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
            })
        };
        for kind in ResourceKind::ALL {
            for verb in ["list", "watch"] {
                assert!(
                    grants(kind.group(), kind.plural(), verb),
                    "the ClusterRole does not grant {verb} on {kind} ({}/{})",
                    kind.group(),
                    kind.plural()
                );
            }
        }
    }

    #[test]
    fn list_then_watch_events_keep_the_store_current() {
        let index = ClusterIndex::unavailable("starting");
        let store = &index.snapshots;
        let mut buffer = None;
        assert!(
            index.snapshot("default", "a").is_err(),
            "unavailable until the first list"
        );

        apply_event(store, &mut buffer, Event::Init);
        apply_event(store, &mut buffer, Event::InitApply(snapshot("a", false)));
        apply_event(store, &mut buffer, Event::InitApply(snapshot("b", true)));
        apply_event(store, &mut buffer, Event::InitDone);
        assert_eq!(store.len(), 2);
        assert!(
            !index
                .snapshot("default", "a")
                .unwrap()
                .unwrap()
                .ready_to_use()
        );
        assert!(
            index
                .snapshot("default", "a")
                .unwrap()
                .unwrap()
                .metadata
                .annotations
                .is_empty()
        );

        apply_event(store, &mut buffer, Event::Apply(snapshot("a", true)));
        assert!(
            index
                .snapshot("default", "a")
                .unwrap()
                .unwrap()
                .ready_to_use()
        );
        apply_event(store, &mut buffer, Event::Delete(snapshot("b", true)));
        assert_eq!(index.snapshot("default", "b").unwrap(), None);
    }

    #[test]
    fn a_relist_keeps_serving_the_old_content_until_it_completes() {
        let index = ClusterIndex::unavailable("starting");
        let store = &index.snapshots;
        let mut buffer = None;
        for e in [
            Event::Init,
            Event::InitApply(snapshot("old", true)),
            Event::InitDone,
        ] {
            apply_event(store, &mut buffer, e);
        }
        // 410 Gone or an API server restart: the watcher relists.
        apply_event(store, &mut buffer, Event::Init);
        apply_event(store, &mut buffer, Event::InitApply(snapshot("new", true)));
        assert!(
            index.snapshot("default", "old").unwrap().is_some(),
            "still serving during the relist"
        );
        assert_eq!(index.snapshot("default", "new").unwrap(), None);
        apply_event(store, &mut buffer, Event::InitDone);
        assert_eq!(
            index.snapshot("default", "old").unwrap(),
            None,
            "deleted while we were away"
        );
        assert!(index.snapshot("default", "new").unwrap().is_some());
    }

    #[test]
    fn unreadable_objects_are_skipped_not_fatal() {
        let index = ClusterIndex::unavailable("starting");
        let mut buffer = None;
        let mut bad = snapshot("bad", true);
        bad.data["status"]["restoreSize"] = serde_json::json!("lots");
        apply_event(&index.snapshots, &mut buffer, Event::Init);
        assert_eq!(
            apply_event(&index.snapshots, &mut buffer, Event::InitApply(bad)),
            1
        );
        apply_event(
            &index.snapshots,
            &mut buffer,
            Event::InitApply(snapshot("good", true)),
        );
        apply_event(&index.snapshots, &mut buffer, Event::InitDone);
        assert_eq!(index.snapshots.len(), 1);
    }

    #[test]
    fn a_missing_crd_is_reported_and_recovers() {
        let index = ClusterIndex::unavailable("starting");
        let not_found = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
            Status::failure(
                "the server could not find the requested resource",
                "NotFound",
            )
            .with_code(404),
        )));
        assert!(is_missing_api(&not_found));
        let state = state_after_error(&index.snapshots, &not_found).unwrap();
        index.snapshots.set_state(state);
        let err = index.snapshot("default", "s").unwrap_err();
        assert!(
            err.reason
                .contains("external-snapshotter CRDs are not installed"),
            "{}",
            err.reason
        );
        // Once the CRDs are installed, the watcher lists and the store is served again.
        let mut buffer = None;
        for e in [
            Event::Init,
            Event::InitApply(snapshot("s", true)),
            Event::InitDone,
        ] {
            apply_event::<VolumeSnapshot>(&index.snapshots, &mut buffer, e);
        }
        assert!(index.snapshot("default", "s").unwrap().is_some());

        // The group snapshot kinds name their own CRDs.
        let state = state_after_error(&index.group_snapshots, &not_found).unwrap();
        let SyncState::Missing(reason) = state else {
            panic!("{state:?}")
        };
        assert!(
            reason.contains("group snapshot CRDs are not installed")
                && reason.contains("groupsnapshot.storage.k8s.io"),
            "{reason}"
        );

        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
            Status::failure("forbidden", "Forbidden").with_code(403),
        )));
        assert!(!is_missing_api(&forbidden));
        assert_eq!(
            state_after_error(&index.snapshots, &forbidden),
            None,
            "other errors keep the cache"
        );
    }

    #[test]
    fn csi_drivers_that_cannot_be_listed_say_why_and_recover() {
        let index = ClusterIndex::unavailable("waiting for the first list from the API server");
        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(Box::new(
            Status::failure("csidrivers.storage.k8s.io is forbidden", "Forbidden").with_code(403),
        )));
        // Nothing waits for them, so their state is where the reason shows.
        let state = state_after_error(&index.csi_drivers, &forbidden).unwrap();
        let SyncState::Pending(reason) = &state else {
            panic!("{state:?}")
        };
        assert!(
            reason.starts_with("listing CSIDrivers failed: ") && reason.contains("forbidden"),
            "{reason}"
        );
        index.csi_drivers.set_state(state);
        assert!(index.csi_driver("ebs.csi.aws.com").is_err());
        assert!(index.awaited().iter().all(|(kind, _)| !kind.is_optional()));
        // Granted later: the list arrives and the drivers are known.
        let driver = |name: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                "metadata": {"name": name, "managedFields": [{"manager": "helm"}]},
                "spec": {"attachRequired": true, "podInfoOnMount": false}
            }))
            .unwrap()
        };
        let mut buffer = None;
        for e in [
            Event::Init,
            Event::InitApply(driver("ebs.csi.aws.com")),
            Event::InitDone,
        ] {
            apply_event(&index.csi_drivers, &mut buffer, e);
        }
        assert!(index.csi_driver("ebs.csi.aws.com").unwrap().is_some());
        assert_eq!(index.csi_driver("efs.csi.aws.com").unwrap(), None);
        // Once synced, an error keeps what was listed, as for every kind.
        assert_eq!(state_after_error(&index.csi_drivers, &forbidden), None);
    }
}
