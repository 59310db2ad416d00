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
//! discovered (the group's preferred version) before the watch starts; a cluster without the
//! group snapshot CRDs gets those stores marked missing, and discovery is retried.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject};
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

/// Where a kind is served, as far as discovery tells.
pub(crate) enum Served {
    At(ApiResource),
    Missing,
}

/// The API to watch a kind through: `v1` for every kind but the group snapshot kinds, whose
/// served version (the group's preferred one) is discovered.
pub(crate) async fn served_api(client: &Client, kind: ResourceKind) -> Result<Served, kube::Error> {
    if !kind.is_group_snapshot_crd() {
        return Ok(Served::At(api_resource(kind)));
    }
    match kube::discovery::group(client, kind.group()).await {
        Ok(group) => Ok(match group.recommended_kind(kind.as_str()) {
            Some((resource, _)) => Served::At(resource),
            None => Served::Missing,
        }),
        Err(kube::Error::Discovery(kube::error::DiscoveryError::MissingApiGroup(_))) => {
            Ok(Served::Missing)
        }
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Served::Missing),
        Err(error) => Err(error),
    }
}

/// Discovers where `T` is served, marking its store missing (and retrying with backoff)
/// while it is not.
async fn discover<T: Cached>(client: &Client, store: &Store<T>) -> ApiResource {
    let mut delay = std::time::Duration::from_secs(5);
    loop {
        match served_api(client, T::KIND).await {
            Ok(Served::At(resource)) => {
                tracing::info!(kind = %T::KIND, version = %resource.version, "watching");
                return resource;
            }
            Ok(Served::Missing) => {
                if !matches!(store.state(), SyncState::Missing(_)) {
                    tracing::warn!(kind = %T::KIND, "API not served; rules that need it will say so; retrying");
                }
                store.set_state(SyncState::Missing(missing_reason(T::KIND)));
            }
            Err(error) => {
                tracing::warn!(kind = %T::KIND, %error, "discovery failed; retrying with backoff");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(300));
    }
}

fn api_resource(kind: ResourceKind) -> ApiResource {
    let group = kind.group();
    ApiResource {
        group: group.to_owned(),
        version: "v1".to_owned(),
        api_version: if group.is_empty() {
            "v1".to_owned()
        } else {
            format!("{group}/v1")
        },
        kind: kind.as_str().to_owned(),
        plural: kind.plural().to_owned(),
    }
}

/// Runs one kind's watch until the task is dropped.
async fn run<T: Cached + DeserializeOwned>(client: Client, store: &Store<T>) {
    run_with(client, store, watcher::Config::default()).await
}

/// Runs one kind's watch, listing and watching with `config`, until the task is dropped.
async fn run_with<T: Cached + DeserializeOwned>(
    client: Client,
    store: &Store<T>,
    config: watcher::Config,
) {
    let resource = discover(&client, store).await;
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
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

/// Starts a watch per kind feeding `index`; pods and CSIDrivers only with `controller` (its
/// audit is the only reader of those stores). The tasks run until aborted.
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
        spawn!(group_snapshot_classes),
        spawn!(group_snapshots),
        spawn!(group_snapshot_contents),
    ];
    if controller {
        tasks.push(spawn!(csi_drivers));
        // Pods are the most numerous objects of a cluster, and the audit only asks about
        // Pending ones: the API server filters them (a pod that leaves Pending arrives as a
        // delete), so neither the list nor the cache holds Running pods.
        let config = watcher::Config::default().fields("status.phase=Pending");
        tasks.push(tokio::spawn(async move {
            run_with(client, &index.pods, config).await
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
        assert_eq!(tasks.len(), 10);
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
        assert_eq!(tasks.len(), 12);
        let (mut pod_list, mut csi_list) = (None, false);
        // One request per watch, and one discovery per group snapshot kind before its watch.
        for _ in 0..tasks.len() + 3 {
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
