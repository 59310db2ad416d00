//! restore-readiness: a PVC restored from a VolumeSnapshot (or cloned from a PVC) must have a
//! source it can actually be provisioned from.
//!
//! Without this check the API server accepts the claim and it stays Pending, often for hours,
//! with events that point elsewhere ("snapshot not bound", "waiting for a volume to be
//! created"). Here the person at `kubectl apply` is told at once what is wrong and what to do.
//!
//! The source is `spec.dataSourceRef`, else `spec.dataSource` (current API servers fill both
//! from either). Only `snapshot.storage.k8s.io` `VolumeSnapshot` and core
//! `PersistentVolumeClaim` sources are judged; volume populators are left alone. When both
//! fields are set they must name the same object (the API server requires it, but only checks
//! part of it on older versions). `dataSourceRef.namespace` may point at another namespace:
//! the snapshot is looked up there, and a warning says a ReferenceGrant is needed (grants are
//! not in the cluster view, so their absence is never a denial).
//!
//! Snapshot restores are denied when the snapshot does not exist, is being deleted, has
//! failed (`status.error`), is not ready to use, is larger than the claim, was taken by
//! another CSI driver than the claim's StorageClass provisions with, or has another volume
//! mode (unless its content allows the change). A snapshot that is not ready is denied for that
//! reason alone: its size, driver and mode may not be known yet. Comparisons that need facts
//! the view lacks (no StorageClass, content not bound) are skipped rather than guessed.
//!
//! Clones are denied when the source PVC is in another namespace (CSI cloning is
//! namespace-local), does not exist, is being deleted, or is larger than the clone.
//!
//! Backup tools (Velero, OADP) create restore PVCs before their snapshot is ready and rely on
//! the provisioner retrying; the policy exempts them (`rules.restoreReadiness.exemptions`), or
//! runs this rule in `warn` mode. The engine applies both, not this module.

use crate::cluster::ClusterView;
use crate::model::{PersistentVolumeClaim, Quantity, keys};
use crate::policy::RestoreReadinessConfig;
use crate::rules::default_snapshot_class::claim_class;
use crate::rules::{Audited, Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult};

const SNAPSHOT_GROUP: &str = "snapshot.storage.k8s.io";

/// A claim's data source, whichever field it came from.
struct Source<'a> {
    /// `spec.dataSourceRef` or `spec.dataSource`, for messages.
    field: &'static str,
    group: &'a str,
    kind: &'a str,
    name: &'a str,
    /// Only `dataSourceRef` can name another namespace.
    namespace: Option<&'a str>,
}

impl Source<'_> {
    fn describe(&self) -> String {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!("{}/", self.group)
        };
        match self.namespace {
            Some(ns) => format!("{group}{} {ns}/{}", self.kind, self.name),
            None => format!("{group}{} {}", self.kind, self.name),
        }
    }
}

fn sources(pvc: &PersistentVolumeClaim) -> (Option<Source<'_>>, Option<Source<'_>>) {
    let data_source = pvc.spec.data_source.as_ref().map(|s| Source {
        field: "spec.dataSource",
        group: s.api_group.as_deref().unwrap_or_default(),
        kind: &s.kind,
        name: &s.name,
        namespace: None,
    });
    let data_source_ref = pvc.spec.data_source_ref.as_ref().map(|s| Source {
        field: "spec.dataSourceRef",
        group: s.api_group.as_deref().unwrap_or_default(),
        kind: &s.kind,
        name: &s.name,
        namespace: s.namespace.as_deref().filter(|n| !n.is_empty()),
    });
    (data_source, data_source_ref)
}

/// `"20Gi"` as written, with the exact bytes when they differ from the text.
fn size(q: &Quantity) -> String {
    q.to_string()
}

pub fn check(
    input: &Input<'_, PersistentVolumeClaim>,
    view: &dyn ClusterView,
    _cfg: &RestoreReadinessConfig,
) -> RuleResult {
    if input.operation != Operation::Create {
        return Ok(Outcome::allow());
    }
    let pvc = input.object;
    let namespace = pvc.metadata.namespace.as_deref().unwrap_or_default();
    let (data_source, data_source_ref) = sources(pvc);
    if let (Some(a), Some(b)) = (&data_source, &data_source_ref) {
        let same = a.group == b.group
            && a.kind == b.kind
            && a.name == b.name
            && b.namespace.is_none_or(|ns| ns == namespace);
        if !same {
            return Ok(Outcome::deny(format!(
                "PersistentVolumeClaim {} sets spec.dataSource ({}) and spec.dataSourceRef ({}) to different objects; \
                 the API server requires them to match when both are set. Set only spec.dataSourceRef (needed for a source in another namespace), or make both the same.",
                pvc.metadata.qualified_name(),
                a.describe(),
                b.describe()
            )));
        }
    }
    // dataSourceRef says most (it may name a namespace); but when both are set the user most
    // likely wrote dataSource and the API server copied it, so messages name that field.
    let field = if data_source.is_some() {
        "spec.dataSource"
    } else {
        "spec.dataSourceRef"
    };
    let Some(mut source) = data_source_ref.or(data_source) else {
        return Ok(Outcome::allow());
    };
    source.field = field;
    match (source.group, source.kind) {
        (SNAPSHOT_GROUP, "VolumeSnapshot") => restore(pvc, namespace, &source, view),
        ("", "PersistentVolumeClaim") => clone(pvc, namespace, &source, view),
        _ => Ok(Outcome::allow()),
    }
}

/// The group snapshot a member snapshot belongs to and the error it reports, if any. Best
/// effort: a group the view cannot show (its CRDs missing) means no quote, not no decision.
fn group_error(
    snap: &crate::model::VolumeSnapshot,
    namespace: &str,
    view: &dyn ClusterView,
) -> Option<(String, String)> {
    let group = snap.group_name()?;
    let found = view.group_snapshot(namespace, group).ok()??;
    Some((group.to_owned(), found.error_message()?.to_owned()))
}

fn restore(
    pvc: &PersistentVolumeClaim,
    namespace: &str,
    source: &Source<'_>,
    view: &dyn ClusterView,
) -> RuleResult {
    let claim = format!("PersistentVolumeClaim {}", pvc.metadata.qualified_name());
    let snap_ns = source.namespace.unwrap_or(namespace);
    let name = source.name;
    let snap_ref = format!("VolumeSnapshot {snap_ns}/{name}");
    let mut outcome = Outcome::allow();
    if snap_ns != namespace {
        outcome = outcome.with_warning(format!(
            "{claim} restores from {snap_ref} in another namespace: this needs a ReferenceGrant in {snap_ns} allowing PersistentVolumeClaims from {namespace} to use VolumeSnapshots."
        ));
    }

    let Some(snap) = view.snapshot(snap_ns, name)? else {
        return Ok(outcome.with_denial(format!(
            "{claim} cannot be restored from {snap_ref}: it does not exist. \
             Check with `kubectl get volumesnapshot -n {snap_ns}`, then fix {}.name or create the claim once the snapshot exists.",
            source.field
        )));
    };

    if snap.metadata.is_being_deleted() {
        outcome = outcome.with_denial(format!(
            "{claim} cannot be restored from {snap_ref}: the snapshot is being deleted. \
             Restore from another snapshot (kubectl get volumesnapshot -n {snap_ns})."
        ));
    }
    if let Some(error) = snap.error() {
        let message = error
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("no message");
        outcome = outcome.with_denial(format!(
            "{claim} cannot be restored from {snap_ref}: the snapshot failed: {message}. \
             See `kubectl describe volumesnapshot -n {snap_ns} {name}`; take a new snapshot and restore from that one."
        ));
    }
    if !snap.ready_to_use() {
        // Its size, driver and mode may not be final yet: say only what is certain.
        if outcome.denials.is_empty() {
            outcome = outcome.with_denial(match group_error(&snap, snap_ns, view) {
                Some((group, message)) => format!(
                    "{claim} cannot be restored from {snap_ref} yet: the snapshot is not ready to use, and its VolumeGroupSnapshot {snap_ns}/{group} reports an error: {message}. \
                     See `kubectl describe volumegroupsnapshot -n {snap_ns} {group}`; take a new group snapshot and restore from one of its members."
                ),
                None => format!(
                    "{claim} cannot be restored from {snap_ref} yet: the snapshot is not ready to use. \
                     Wait until `kubectl get volumesnapshot -n {snap_ns} {name}` shows READYTOUSE true, then apply again."
                ),
            });
        }
        return Ok(outcome);
    }

    let content = match snap.bound_content_name() {
        Some(c) => view.snapshot_content(c)?,
        None => None,
    };

    let restore_size = snap.restore_size().or_else(|| {
        content
            .as_ref()
            .and_then(|c| c.status.as_ref())
            .and_then(|s| s.restore_size.as_ref())
    });
    if let (Some(requested), Some(restore_size)) = (pvc.requested_storage(), restore_size)
        && requested.compare(restore_size) == Some(std::cmp::Ordering::Less)
    {
        outcome = outcome.with_denial(format!(
            "{claim} requests {} of storage, but {snap_ref} has a restoreSize of {}: a volume restored from it must be at least that large. \
             Set spec.resources.requests.storage to {} or more.",
            size(requested),
            size(restore_size),
            restore_size.as_str()
        ));
    }

    let snapshot_driver = match content.as_ref().map(|c| c.spec.driver.as_str()) {
        Some(d) if !d.is_empty() => Some(d.to_owned()),
        _ => match snap
            .spec
            .volume_snapshot_class_name
            .as_deref()
            .filter(|c| !c.is_empty())
        {
            Some(class) => view
                .snapshot_class(class)?
                .map(|c| c.driver.clone())
                .filter(|d| !d.is_empty()),
            None => None,
        },
    };
    let class = claim_class(pvc, view)?;
    if let (Some(snapshot_driver), Some(provisioner)) = (snapshot_driver, class.provisioner())
        && snapshot_driver != provisioner
    {
        outcome = outcome.with_denial(format!(
            "{claim} cannot be restored from {snap_ref}: the snapshot was taken by CSI driver {snapshot_driver}, \
             but the claim's {} provisions with {provisioner}, which cannot restore it (the claim would stay Pending with a misleading \"snapshot not bound\" error). \
             Use a StorageClass whose provisioner is {snapshot_driver} (kubectl get storageclass).",
            class.describe()
        ));
    }

    if let Some(content) = &content
        && let Some(source_mode) = content.spec.source_volume_mode.as_deref()
        && source_mode != pvc.volume_mode()
        && !content.allows_volume_mode_change()
    {
        outcome = outcome.with_denial(format!(
            "{claim} asks for volumeMode {}, but {snap_ref} was taken of a {source_mode} volume. \
             Set spec.volumeMode: {source_mode}; or, if the conversion is intended, an administrator can allow it with \
             `kubectl annotate volumesnapshotcontent {} {}=true`.",
            pvc.volume_mode(),
            content.metadata.name,
            keys::ALLOW_VOLUME_MODE_CHANGE
        ));
    }
    Ok(outcome)
}

fn clone(
    pvc: &PersistentVolumeClaim,
    namespace: &str,
    source: &Source<'_>,
    view: &dyn ClusterView,
) -> RuleResult {
    let claim = format!("PersistentVolumeClaim {}", pvc.metadata.qualified_name());
    let name = source.name;
    if let Some(other) = source.namespace.filter(|ns| *ns != namespace) {
        return Ok(Outcome::deny(format!(
            "{claim} cannot be cloned from PersistentVolumeClaim {other}/{name}: a clone must be in the same namespace as its source. \
             Create the clone in namespace {other}, or take a VolumeSnapshot of the source and restore from it."
        )));
    }
    let source_ref = format!("PersistentVolumeClaim {namespace}/{name}");
    let Some(src) = view.pvc(namespace, name)? else {
        return Ok(Outcome::deny(format!(
            "{claim} cannot be cloned from {source_ref}: it does not exist. \
             Check with `kubectl get pvc -n {namespace}`, then fix {}.name.",
            source.field
        )));
    };
    let mut outcome = Outcome::allow();
    if src.metadata.is_being_deleted() {
        outcome = outcome.with_denial(format!(
            "{claim} cannot be cloned from {source_ref}: the source is being deleted. Clone another claim, or restore from a VolumeSnapshot."
        ));
    }
    // The bound volume's size is what the clone must hold; before binding, the request.
    let source_size = src.capacity().or_else(|| src.requested_storage());
    if let (Some(requested), Some(source_size)) = (pvc.requested_storage(), source_size)
        && requested.compare(source_size) == Some(std::cmp::Ordering::Less)
    {
        outcome = outcome.with_denial(format!(
            "{claim} requests {} of storage, but its source {source_ref} holds {}: a clone must be at least as large as its source. \
             Set spec.resources.requests.storage to {} or more.",
            size(requested),
            size(source_size),
            source_size.as_str()
        ));
    }
    Ok(outcome)
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("restore-readiness"),
    policy_key: "restoreReadiness",
    phases: &[Phase::Validating],
    operations: &[Operation::Create],
    checks: &[Check::PersistentVolumeClaim(For::audited(
        |input, view, policy| check(input, view, &policy.rules.restore_readiness),
        // Claims with a data source that are not bound yet: a bound claim got its volume, so
        // its source no longer matters (a restored PVC whose snapshot was deleted since is fine).
        Audited {
            select: |p| {
                let bound = p.bound_volume().is_some()
                    || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
                !bound && (p.spec.data_source.is_some() || p.spec.data_source_ref.is_some())
            },
            phase: Phase::Validating,
            operation: Operation::Create,
        },
    ))],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.restore_readiness),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::model::{VolumeSnapshot, VolumeSnapshotContent};
    use crate::rules::Phase;
    use crate::testing::*;

    const SNAPSHOT_API: Option<&str> = Some("snapshot.storage.k8s.io");

    /// A snapshot of disk-pvc in default-snapclass, without a status yet.
    fn snap(namespace: &str, name: &str) -> VolumeSnapshot {
        snapshot(namespace, name)
            .source_pvc("disk-pvc")
            .class("default-snapclass")
    }

    /// A ready content of DRIVER, 20Gi, taken of a `mode` volume.
    fn content(name: &str, mode: &str) -> VolumeSnapshotContent {
        snapshot_content(name)
            .deletion_policy("Delete")
            .driver(DRIVER)
            .volume_handle("v")
            .source_volume_mode(mode)
            .snapshot_ref(Some("default"), Some("x"))
            .ready("21474836480")
    }

    fn demo() -> ClusterIndex {
        cluster([
            csi_disk().into(),
            nfs_class().into(),
            default_snapclass().into(),
            snap("default", "ready")
                .ready("content-ready", "20Gi")
                .into(),
            snap("backup", "ready")
                .ready("content-ready", "20Gi")
                .into(),
            snap("default", "pending").ready_to_use(false).into(),
            snap("default", "no-status").into(),
            snap("default", "failed").failed("quota exceeded").into(),
            snap("default", "block")
                .ready("content-block", "20Gi")
                .into(),
            snap("default", "block-ok")
                .ready("content-block-ok", "20Gi")
                .into(),
            snap("default", "unbound-class")
                .ready_to_use(true)
                .restore_size("20Gi")
                .into(),
            content("content-ready", "Filesystem").into(),
            content("content-block", "Block").into(),
            content("content-block-ok", "Block")
                .annotate(keys::ALLOW_VOLUME_MODE_CHANGE, "true")
                .into(),
            pvc("default", "src")
                .class("csi-disk")
                .request("20Gi")
                .bound_with_capacity("25Gi")
                .into(),
            pvc("default", "src-pending")
                .class("csi-disk")
                .request("30Gi")
                .into(),
        ])
    }

    /// The claim under test: default/restore, requesting 20Gi.
    fn claim() -> PersistentVolumeClaim {
        pvc("default", "restore").request("20Gi")
    }

    fn from_snapshot(name: &str) -> PersistentVolumeClaim {
        claim()
            .class("csi-disk")
            .data_source(SNAPSHOT_API, "VolumeSnapshot", name)
            .data_source_ref(SNAPSHOT_API, "VolumeSnapshot", name, None)
    }

    fn run_on(view: &dyn ClusterView, claim: &PersistentVolumeClaim) -> Outcome {
        let input = input(Operation::Create, Phase::Validating, claim, None);
        check(&input, view, &Default::default()).unwrap()
    }

    fn run(claim: &PersistentVolumeClaim) -> Outcome {
        run_on(&demo(), claim)
    }

    fn one_denial(out: &Outcome) -> &str {
        match out.denials.as_slice() {
            [d] => d,
            _ => panic!("expected one denial: {out:?}"),
        }
    }

    #[test]
    fn ready_snapshot_of_the_same_driver_and_size_is_allowed() {
        assert!(run(&from_snapshot("ready")).is_empty());
        // `20Gi` and `21474836480` are the same size.
        let mut c = from_snapshot("ready");
        c.spec.resources.requests.storage = Some(Quantity::parse("21474836480").unwrap());
        assert!(run(&c).is_empty());
        // Only dataSource (older API servers), or only dataSourceRef.
        assert!(run(&claim().data_source(SNAPSHOT_API, "VolumeSnapshot", "ready")).is_empty());
        assert!(
            run(&claim().data_source_ref(SNAPSHOT_API, "VolumeSnapshot", "ready", None)).is_empty()
        );
    }

    #[test]
    fn claims_without_a_judged_source_are_left_alone() {
        assert!(run(&claim()).is_empty());
        let populator =
            claim().data_source_ref(Some("populator.example.com"), "VolumeSnapshot", "x", None);
        assert!(run(&populator).is_empty());
        let core_snapshot = claim().data_source(None, "VolumeSnapshot", "x");
        assert!(run(&core_snapshot).is_empty());
        // Only CREATE.
        let c = from_snapshot("missing");
        let input = input(Operation::Update, Phase::Validating, &c, Some(&c));
        assert!(
            check(&input, &demo(), &Default::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn missing_snapshot_is_denied_with_the_command_to_check() {
        let d = run(&from_snapshot("missing")).denials.concat();
        assert!(d.contains("PersistentVolumeClaim default/restore cannot be restored from VolumeSnapshot default/missing: it does not exist"), "{d}");
        assert!(
            d.contains("kubectl get volumesnapshot -n default")
                && d.contains("fix spec.dataSource.name"),
            "{d}"
        );
        // Only dataSourceRef written: that is the field to fix.
        let c = claim().data_source_ref(SNAPSHOT_API, "VolumeSnapshot", "missing", None);
        assert!(run(&c).denials[0].contains("fix spec.dataSourceRef.name"));
    }

    #[test]
    fn not_ready_snapshot_is_denied_for_that_reason_alone() {
        for name in ["pending", "no-status"] {
            // Even with a too-small request and another class, only readiness is said.
            let mut c = from_snapshot(name);
            c.spec.storage_class_name = Some("nfs".into());
            let out = run(&c);
            let d = one_denial(&out);
            assert!(d.contains(&format!("Wait until `kubectl get volumesnapshot -n default {name}` shows READYTOUSE true, then apply again")), "{d}");
        }
    }

    #[test]
    fn not_ready_member_snapshot_quotes_its_group_error() {
        let view = demo();
        view.snapshots.apply(
            snap("default", "member")
                .source_pvc("disk-pvc")
                .group_member("db-group")
                .ready_to_use(false),
        );
        // No error on the group (or no group): the plain not-ready message.
        let d = one_denial(&run_on(&view, &from_snapshot("member"))).to_owned();
        assert!(d.contains("is not ready to use. Wait until"), "{d}");
        view.group_snapshots.apply(
            group_snapshot("default", "db-group")
                .selecting(&[("group", "db")])
                .failed("CreateGroupSnapshot failed: quota exceeded"),
        );
        let out = run_on(&view, &from_snapshot("member"));
        let d = one_denial(&out);
        assert!(
            d.contains("its VolumeGroupSnapshot default/db-group reports an error: CreateGroupSnapshot failed: quota exceeded")
                && d.contains("kubectl describe volumegroupsnapshot -n default db-group"),
            "{d}"
        );
    }

    #[test]
    fn failed_snapshot_is_denied_with_its_error() {
        let out = run(&from_snapshot("failed"));
        let d = one_denial(&out);
        assert!(
            d.contains("the snapshot failed: quota exceeded")
                && d.contains("kubectl describe volumesnapshot -n default failed"),
            "{d}"
        );
    }

    #[test]
    fn snapshot_being_deleted_is_denied_with_the_other_certain_problems() {
        let index = demo();
        let dying = snap("default", "dying")
            .ready("content-ready", "20Gi")
            .deleting();
        index.snapshots.apply(dying);
        let mut c = from_snapshot("dying");
        c.spec.resources.requests.storage = Some(Quantity::parse("10Gi").unwrap());
        let out = run_on(&index, &c);
        assert_eq!(out.denials.len(), 2, "{out:?}");
        assert!(out.denials[0].contains("is being deleted"), "{out:?}");
        assert!(
            out.denials[1].contains("requests 10Gi (10737418240 bytes) of storage"),
            "{out:?}"
        );

        // Being deleted and not ready: one denial, the deletion.
        let dying = snap("default", "dying").ready_to_use(false).deleting();
        index.snapshots.apply(dying);
        let out = run_on(&index, &from_snapshot("dying"));
        assert!(one_denial(&out).contains("is being deleted"));
    }

    #[test]
    fn smaller_than_restore_size_is_denied_naming_both_sizes_exactly() {
        let mut c = from_snapshot("ready");
        c.spec.resources.requests.storage = Some(Quantity::parse("21474836479").unwrap());
        let out = run(&c);
        let d = one_denial(&out);
        assert!(d.contains("requests 21474836479 of storage, but VolumeSnapshot default/ready has a restoreSize of 20Gi (21474836480 bytes)"), "{d}");
        assert!(
            d.contains("Set spec.resources.requests.storage to 20Gi or more"),
            "{d}"
        );
        // Falls back to the content's restoreSize when the snapshot has none.
        let index = demo();
        index.snapshots.apply(
            snap("default", "ready")
                .bound_content("content-ready")
                .ready_to_use(true),
        );
        c.spec.resources.requests.storage = Some(Quantity::parse("1Gi").unwrap());
        assert!(one_denial(&run_on(&index, &c)).contains("restoreSize of 21474836480"));
    }

    #[test]
    fn driver_mismatch_is_denied() {
        let mut c = from_snapshot("ready");
        c.spec.storage_class_name = Some("nfs".into());
        let out = run(&c);
        let d = one_denial(&out);
        assert!(d.contains("taken by CSI driver diskplugin.csi.alibabacloud.com, but the claim's StorageClass nfs provisions with nfs.csi.k8s.io"), "{d}");
        // The class's driver is used when the content is not known.
        let mut c = from_snapshot("unbound-class");
        c.spec.storage_class_name = Some("nfs".into());
        assert!(one_denial(&run(&c)).contains("CSI driver diskplugin.csi.alibabacloud.com"));
        // The default class stands in for a claim that names none.
        let index = demo();
        index.storage_classes.replace([storage_class("nfs")
            .provisioner("nfs.csi.k8s.io")
            .default_class()]);
        let mut c = from_snapshot("ready");
        c.spec.storage_class_name = None;
        assert!(one_denial(&run_on(&index, &c)).contains("the default StorageClass nfs"));
    }

    #[test]
    fn driver_comparison_is_skipped_when_the_provisioner_is_unknown() {
        for class in [Some(""), Some("nope")] {
            let mut c = from_snapshot("ready");
            c.spec.storage_class_name = class.map(Into::into);
            assert!(run(&c).is_empty(), "{class:?}");
        }
        let index = demo();
        index.storage_classes.replace([]);
        let mut c = from_snapshot("ready");
        c.spec.storage_class_name = None;
        assert!(run_on(&index, &c).is_empty());
    }

    #[test]
    fn volume_mode_must_match_unless_the_content_allows_a_change() {
        let out = run(&from_snapshot("block"));
        let d = one_denial(&out);
        assert!(d.contains("asks for volumeMode Filesystem, but VolumeSnapshot default/block was taken of a Block volume"), "{d}");
        assert!(d.contains("kubectl annotate volumesnapshotcontent content-block snapshot.storage.kubernetes.io/allow-volume-mode-change=true"), "{d}");
        assert!(run(&from_snapshot("block-ok")).is_empty());
        assert!(run(&from_snapshot("block").volume_mode("Block")).is_empty());
        // Content not known: skipped.
        assert!(run(&from_snapshot("unbound-class")).is_empty());
    }

    #[test]
    fn different_data_source_and_ref_are_denied() {
        let a = claim().data_source(SNAPSHOT_API, "VolumeSnapshot", "ready");
        let out = run(&a
            .clone()
            .data_source_ref(SNAPSHOT_API, "VolumeSnapshot", "pending", None));
        let d = one_denial(&out);
        assert!(
            d.contains("(snapshot.storage.k8s.io/VolumeSnapshot ready)")
                && d.contains("(snapshot.storage.k8s.io/VolumeSnapshot pending)"),
            "{d}"
        );
        assert!(d.contains("the API server requires them to match"), "{d}");
        // The same object, with the ref naming the claim's own namespace, is fine.
        let same = a.data_source_ref(SNAPSHOT_API, "VolumeSnapshot", "ready", Some("default"));
        assert!(run(&same).is_empty());
    }

    #[test]
    fn cross_namespace_restore_looks_there_and_warns_about_the_grant() {
        let c = claim().data_source_ref(SNAPSHOT_API, "VolumeSnapshot", "ready", Some("backup"));
        let out = run(&c);
        assert!(out.denials.is_empty(), "{out:?}");
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(w.contains("needs a ReferenceGrant in backup"), "{w}");
        assert!(w.len() < 250, "{w}");
        let c = claim().data_source_ref(SNAPSHOT_API, "VolumeSnapshot", "pending", Some("backup"));
        let out = run(&c);
        assert!(one_denial(&out).contains("VolumeSnapshot backup/pending: it does not exist"));
    }

    fn from_pvc(name: &str, size: &str) -> PersistentVolumeClaim {
        pvc("default", "restore")
            .request(size)
            .data_source(None, "PersistentVolumeClaim", name)
            .data_source_ref(None, "PersistentVolumeClaim", name, None)
    }

    #[test]
    fn clones() {
        assert!(run(&from_pvc("src", "25Gi")).is_empty());
        let out = run(&from_pvc("src", "20Gi"));
        assert!(one_denial(&out).contains("requests 20Gi (21474836480 bytes) of storage, but its source PersistentVolumeClaim default/src holds 25Gi"), "{out:?}");
        // Not bound yet: its request is the size.
        assert!(one_denial(&run(&from_pvc("src-pending", "20Gi"))).contains("holds 30Gi"));
        assert!(
            one_denial(&run(&from_pvc("nope", "20Gi")))
                .contains("PersistentVolumeClaim default/nope: it does not exist")
        );
        let index = demo();
        index.pvcs.apply(pvc("default", "src").deleting());
        assert!(
            one_denial(&run_on(&index, &from_pvc("src", "20Gi")))
                .contains("the source is being deleted")
        );
        let c = claim().data_source_ref(None, "PersistentVolumeClaim", "src", Some("other"));
        assert!(
            one_denial(&run(&c)).contains("a clone must be in the same namespace as its source")
        );
    }

    #[test]
    fn unloaded_state_is_unavailable() {
        let view = ClusterIndex::unavailable("starting");
        let c = from_snapshot("ready");
        let input = input(Operation::Create, Phase::Validating, &c, None);
        assert!(check(&input, &view, &Default::default()).is_err());
    }
}
