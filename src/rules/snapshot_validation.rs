//! snapshot-validation: what the snapshot CRDs' CEL rules and the former upstream validation
//! webhook enforce, for clusters whose CRDs predate the CEL rules.
//!
//! VolumeSnapshot: exactly one of `spec.source.persistentVolumeClaimName` and
//! `spec.source.volumeSnapshotContentName`, no empty names, `spec.volumeSnapshotClassName` not
//! the empty string, and the source immutable on UPDATE. VolumeSnapshotContent: exactly one of
//! `spec.source.volumeHandle` and `spec.source.snapshotHandle`, `spec.volumeSnapshotRef` with a
//! name and a namespace, and the source and `sourceVolumeMode` immutable on UPDATE.
//!
//! On UPDATE a structural problem the stored object already had is not held against the
//! change: an object created before this check (or before the CRDs had CEL rules) must still
//! be updatable, above all so its finalizers can be removed and it can be deleted.
//!
//! A VolumeSnapshot created from a PVC whose StorageClass provisioner has no
//! VolumeSnapshotClass at all also gets a warning: it can never be taken. That warning needs
//! the cluster view; when the view is not loaded it is skipped rather than making the whole
//! rule undecidable, since the structural checks need no state.

use crate::cluster::ClusterView;
use crate::model::{VolumeSnapshot, VolumeSnapshotContent};
use crate::policy::SnapshotValidationConfig;
use crate::rules::default_snapshot_class::claim_class;
use crate::rules::{Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult};

/// `"x"` or `unset`, for "from what to what" messages.
pub(crate) fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "unset".to_owned(), |v| format!("{v:?}"))
}

/// Structural problems of a snapshot, each a full sentence.
fn snapshot_problems(snap: &VolumeSnapshot) -> Vec<String> {
    let name = snap.metadata.qualified_name();
    let source = &snap.spec.source;
    let mut problems = Vec::new();
    match (
        source.persistent_volume_claim_name.as_deref(),
        source.volume_snapshot_content_name.as_deref(),
    ) {
        (Some(pvc), Some(content)) => problems.push(format!(
            "VolumeSnapshot {name} sets both spec.source.persistentVolumeClaimName ({pvc:?}) and spec.source.volumeSnapshotContentName ({content:?}); exactly one must be set. \
             Use persistentVolumeClaimName to take a new snapshot of a PVC, or volumeSnapshotContentName to import an existing snapshot."
        )),
        (None, None) => problems.push(format!(
            "VolumeSnapshot {name} sets neither spec.source.persistentVolumeClaimName nor spec.source.volumeSnapshotContentName; exactly one must be set. \
             Set persistentVolumeClaimName to the PVC to snapshot, or volumeSnapshotContentName to import an existing snapshot."
        )),
        (pvc, content) => {
            if pvc == Some("") {
                problems.push(format!(
                    "VolumeSnapshot {name}: spec.source.persistentVolumeClaimName is empty; set it to the name of a PVC in the same namespace."
                ));
            }
            if content == Some("") {
                problems.push(format!(
                    "VolumeSnapshot {name}: spec.source.volumeSnapshotContentName is empty; set it to the name of a VolumeSnapshotContent."
                ));
            }
        }
    }
    if snap.spec.volume_snapshot_class_name.as_deref() == Some("") {
        problems.push(format!(
            "VolumeSnapshot {name}: spec.volumeSnapshotClassName must not be the empty string. \
             Name a VolumeSnapshotClass (kubectl get volumesnapshotclass), or leave the field out to use the driver's default class."
        ));
    }
    problems
}

fn content_problems(content: &VolumeSnapshotContent) -> Vec<String> {
    let name = content.metadata.display_name();
    let source = &content.spec.source;
    let mut problems = Vec::new();
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    match (set(&source.volume_handle), set(&source.snapshot_handle)) {
        (true, true) => problems.push(format!(
            "VolumeSnapshotContent {name} sets both spec.source.volumeHandle and spec.source.snapshotHandle; exactly one must be set. \
             Use snapshotHandle to import an existing snapshot, or volumeHandle for a snapshot the driver takes of that volume."
        )),
        (false, false) => problems.push(format!(
            "VolumeSnapshotContent {name} sets neither spec.source.volumeHandle nor spec.source.snapshotHandle (or sets them empty); exactly one must be set. \
             To import an existing snapshot, set snapshotHandle to its ID in the storage system."
        )),
        _ => {}
    }
    let r = &content.spec.volume_snapshot_ref;
    let missing: Vec<&str> = [("name", &r.name), ("namespace", &r.namespace)]
        .into_iter()
        .filter(|(_, v)| !set(v))
        .map(|(field, _)| field)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "VolumeSnapshotContent {name}: spec.volumeSnapshotRef must have both a name and a namespace (missing: {}). \
             Set them to the VolumeSnapshot this content belongs to.",
            missing.join(", ")
        ));
    }
    problems
}

/// The problems of `new` that `old` did not already have (all of them on CREATE).
pub(crate) fn introduced(new: Vec<String>, old: Option<Vec<String>>) -> Vec<String> {
    match old {
        Some(old) => new.into_iter().filter(|p| !old.contains(p)).collect(),
        None => new,
    }
}

/// A denial when an immutable field changed, saying from what to what.
pub(crate) fn immutable(
    kind_and_name: &str,
    field: &str,
    old: Option<&str>,
    new: Option<&str>,
) -> Option<String> {
    (old != new).then(|| {
        format!(
            "{kind_and_name}: {field} is immutable and cannot change from {} to {}. \
             To snapshot or import something else, create a new object instead.",
            shown(old),
            shown(new)
        )
    })
}

pub fn check_snapshot(
    input: &Input<'_, VolumeSnapshot>,
    view: &dyn ClusterView,
    _cfg: &SnapshotValidationConfig,
) -> RuleResult {
    let snap = input.object;
    let mut outcome = Outcome::allow();
    let old = match input.operation {
        Operation::Create => None,
        Operation::Update => input.old_object,
        _ => return Ok(outcome),
    };
    for p in introduced(snapshot_problems(snap), old.map(snapshot_problems)) {
        outcome = outcome.with_denial(p);
    }
    if let Some(old) = old {
        let what = format!("VolumeSnapshot {}", snap.metadata.qualified_name());
        let (o, n) = (&old.spec.source, &snap.spec.source);
        outcome.denials.extend(
            [
                immutable(
                    &what,
                    "spec.source.persistentVolumeClaimName",
                    o.persistent_volume_claim_name.as_deref(),
                    n.persistent_volume_claim_name.as_deref(),
                ),
                immutable(
                    &what,
                    "spec.source.volumeSnapshotContentName",
                    o.volume_snapshot_content_name.as_deref(),
                    n.volume_snapshot_content_name.as_deref(),
                ),
            ]
            .into_iter()
            .flatten(),
        );
    }
    // A group's members get their class from the group: no warning about their PVC's driver.
    if input.operation == Operation::Create
        && outcome.denials.is_empty()
        && !snap.is_group_member()
        && let Some(warning) = no_snapshot_class_warning(snap, view)
    {
        outcome = outcome.with_warning(warning);
    }
    Ok(outcome)
}

/// The warning for a snapshot whose source PVC's provisioner has no VolumeSnapshotClass.
/// Best effort: anything the view cannot tell means no warning.
fn no_snapshot_class_warning(snap: &VolumeSnapshot, view: &dyn ClusterView) -> Option<String> {
    let namespace = snap.metadata.namespace.as_deref().unwrap_or_default();
    let pvc_name = snap
        .spec
        .source
        .persistent_volume_claim_name
        .as_deref()
        .filter(|n| !n.is_empty())?;
    let pvc = view.pvc(namespace, pvc_name).ok()??;
    let class = claim_class(&pvc, view).ok()?;
    let provisioner = class.provisioner()?;
    let classes = view.snapshot_classes_for_driver(provisioner).ok()?;
    if classes.iter().any(|c| !c.metadata.is_being_deleted()) {
        return None;
    }
    Some(format!(
        "VolumeSnapshot {}: {} of PVC {namespace}/{pvc_name} provisions with {provisioner}, which has no VolumeSnapshotClass, so the snapshot cannot be taken. Check: kubectl get volumesnapshotclass",
        snap.metadata.qualified_name(),
        class.describe(),
    ))
}

pub fn check_content(
    input: &Input<'_, VolumeSnapshotContent>,
    _view: &dyn ClusterView,
    _cfg: &SnapshotValidationConfig,
) -> RuleResult {
    let content = input.object;
    let mut outcome = Outcome::allow();
    let old = match input.operation {
        Operation::Create => None,
        Operation::Update => input.old_object,
        _ => return Ok(outcome),
    };
    for p in introduced(content_problems(content), old.map(content_problems)) {
        outcome = outcome.with_denial(p);
    }
    if let Some(old) = old {
        let what = format!("VolumeSnapshotContent {}", content.metadata.display_name());
        let (o, n) = (&old.spec, &content.spec);
        outcome.denials.extend(
            [
                immutable(
                    &what,
                    "spec.source.volumeHandle",
                    o.source.volume_handle.as_deref(),
                    n.source.volume_handle.as_deref(),
                ),
                immutable(
                    &what,
                    "spec.source.snapshotHandle",
                    o.source.snapshot_handle.as_deref(),
                    n.source.snapshot_handle.as_deref(),
                ),
                // The CRD lets sourceVolumeMode be set later (old contents lack it), but
                // never changed or removed once set.
                o.source_volume_mode.as_ref().and_then(|_| {
                    immutable(
                        &what,
                        "spec.sourceVolumeMode",
                        o.source_volume_mode.as_deref(),
                        n.source_volume_mode.as_deref(),
                    )
                }),
            ]
            .into_iter()
            .flatten(),
        );
    }
    Ok(outcome)
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("snapshot-validation"),
    policy_key: "snapshotValidation",
    phases: &[Phase::Validating],
    operations: &[Operation::Create, Operation::Update],
    checks: &[
        Check::VolumeSnapshot(For::webhook(|input, view, policy| {
            check_snapshot(input, view, &policy.rules.snapshot_validation)
        })),
        Check::VolumeSnapshotContent(For::webhook(|input, view, policy| {
            check_content(input, view, &policy.rules.snapshot_validation)
        })),
    ],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.snapshot_validation),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::rules::Phase;
    use crate::testing::*;

    fn snap() -> VolumeSnapshot {
        snapshot("default", "snap")
    }

    fn content() -> VolumeSnapshotContent {
        snapshot_content("content")
    }

    fn demo() -> ClusterIndex {
        cluster([
            csi_disk().into(),
            nfs_class().into(),
            default_snapclass().into(),
            pvc("default", "disk-pvc").class("csi-disk").into(),
            pvc("default", "nfs-pvc").class("nfs").into(),
        ])
    }

    fn run_snap(op: Operation, new: &VolumeSnapshot, old: Option<&VolumeSnapshot>) -> Outcome {
        let input = input(op, Phase::Validating, new, old);
        check_snapshot(&input, &demo(), &Default::default()).unwrap()
    }

    fn run_content(
        op: Operation,
        new: &VolumeSnapshotContent,
        old: Option<&VolumeSnapshotContent>,
    ) -> Outcome {
        let input = input(op, Phase::Validating, new, old);
        check_content(&input, &demo(), &Default::default()).unwrap()
    }

    fn from_pvc(name: &str) -> VolumeSnapshot {
        snap().source_pvc(name)
    }

    #[test]
    fn valid_snapshots_are_allowed() {
        assert!(run_snap(Operation::Create, &from_pvc("disk-pvc"), None).is_empty());
        assert!(
            run_snap(
                Operation::Create,
                &snap().source_content("c").class("x"),
                None
            )
            .is_empty()
        );
        // A missing source PVC is the default-class rule's business, not a structural problem.
        assert!(run_snap(Operation::Create, &from_pvc("not-there"), None).is_empty());
    }

    #[test]
    fn exactly_one_source() {
        let out = run_snap(
            Operation::Create,
            &snap().source_pvc("p").source_content("c"),
            None,
        );
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            d.contains("VolumeSnapshot default/snap sets both")
                && d.contains("(\"p\")")
                && d.contains("exactly one"),
            "{d}"
        );
        let out = run_snap(Operation::Create, &snap(), None);
        assert!(out.denials[0].contains("sets neither"), "{out:?}");
        let out = run_snap(Operation::Create, &snap().source_pvc(""), None);
        assert!(
            out.denials[0].contains("persistentVolumeClaimName is empty"),
            "{out:?}"
        );
        let out = run_snap(Operation::Create, &snap().source_content(""), None);
        assert!(
            out.denials[0].contains("volumeSnapshotContentName is empty"),
            "{out:?}"
        );
    }

    #[test]
    fn empty_class_name_is_denied() {
        let out = run_snap(Operation::Create, &from_pvc("disk-pvc").class(""), None);
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(d.contains("must not be the empty string"), "{d}");
    }

    #[test]
    fn source_is_immutable_and_the_message_says_from_what_to_what() {
        let out = run_snap(Operation::Update, &from_pvc("b"), Some(&from_pvc("a")));
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(d.contains("spec.source.persistentVolumeClaimName is immutable and cannot change from \"a\" to \"b\""), "{d}");

        let imported = snap().source_content("c");
        let out = run_snap(Operation::Update, &imported, Some(&from_pvc("a")));
        assert!(
            out.denials
                .iter()
                .any(|d| d.contains("from \"a\" to unset")),
            "{out:?}"
        );
        assert!(
            out.denials
                .iter()
                .any(|d| d.contains("from unset to \"c\"")),
            "{out:?}"
        );

        // Unrelated updates, and the controller filling in the class, are fine.
        let mut with_class = from_pvc("a");
        with_class.spec.volume_snapshot_class_name = Some("default-snapclass".into());
        assert!(run_snap(Operation::Update, &with_class, Some(&from_pvc("a"))).is_empty());
    }

    #[test]
    fn problems_the_stored_object_already_had_do_not_block_updates() {
        let legacy = snap().source_pvc("p").source_content("c");
        let finalizer_removed = legacy.clone().resource_version("2");
        assert!(run_snap(Operation::Update, &finalizer_removed, Some(&legacy)).is_empty());
        // But a new problem is still refused.
        let worse = legacy.clone().class("");
        let out = run_snap(Operation::Update, &worse, Some(&legacy));
        assert_eq!(out.denials.len(), 1, "{out:?}");
    }

    #[test]
    fn driver_without_any_snapshot_class_warns_on_create_only() {
        let out = run_snap(Operation::Create, &from_pvc("nfs-pvc"), None);
        assert!(out.denials.is_empty());
        let [w] = out.warnings.as_slice() else {
            panic!("{out:?}")
        };
        assert!(w.contains("StorageClass nfs of PVC default/nfs-pvc provisions with nfs.csi.k8s.io, which has no VolumeSnapshotClass"), "{w}");
        assert!(w.len() < 250, "{w}");
        assert!(
            run_snap(
                Operation::Update,
                &from_pvc("nfs-pvc"),
                Some(&from_pvc("nfs-pvc"))
            )
            .is_empty()
        );
        // A group's member gets its class from the group: nothing to warn about.
        for member in [
            from_pvc("nfs-pvc").group_member("g"),
            from_pvc("nfs-pvc").group_finalizer(),
        ] {
            assert!(
                run_snap(Operation::Create, &member, None).is_empty(),
                "{member:?}"
            );
        }
    }

    #[test]
    fn unloaded_state_skips_only_the_warning() {
        let view = ClusterIndex::unavailable("starting");
        let ok = from_pvc("nfs-pvc");
        let input = input(Operation::Create, Phase::Validating, &ok, None);
        assert!(
            check_snapshot(&input, &view, &Default::default())
                .unwrap()
                .is_empty()
        );
        let bad = snap();
        let input = crate::testing::input(Operation::Create, Phase::Validating, &bad, None);
        assert_eq!(
            check_snapshot(&input, &view, &Default::default())
                .unwrap()
                .denials
                .len(),
            1
        );
    }

    fn good_content() -> VolumeSnapshotContent {
        content()
            .deletion_policy("Retain")
            .driver(DRIVER)
            .snapshot_handle("s-1")
            .snapshot_ref(Some("default"), Some("snap"))
    }

    #[test]
    fn valid_content_is_allowed() {
        assert!(run_content(Operation::Create, &good_content(), None).is_empty());
    }

    #[test]
    fn content_needs_exactly_one_handle_and_a_full_ref() {
        let out = run_content(
            Operation::Create,
            &content()
                .volume_handle("v")
                .snapshot_handle("s")
                .snapshot_ref(Some("default"), Some("snap")),
            None,
        );
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(d.contains("VolumeSnapshotContent content sets both"), "{d}");
        let out = run_content(
            Operation::Create,
            &content().snapshot_ref(None, Some("snap")),
            None,
        );
        assert_eq!(out.denials.len(), 2, "{out:?}");
        assert!(out.denials[0].contains("sets neither"), "{out:?}");
        assert!(out.denials[1].contains("(missing: namespace)"), "{out:?}");
        let out = run_content(Operation::Create, &content().snapshot_handle("s"), None);
        assert!(
            out.denials[0].contains("(missing: name, namespace)"),
            "{out:?}"
        );
    }

    #[test]
    fn content_source_and_volume_mode_are_immutable() {
        let old = good_content();
        let mut new = old.clone();
        new.spec.source.snapshot_handle = Some("s-2".into());
        let out = run_content(Operation::Update, &new, Some(&old));
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            d.contains(
                "spec.source.snapshotHandle is immutable and cannot change from \"s-1\" to \"s-2\""
            ),
            "{d}"
        );

        // sourceVolumeMode may be filled in later, but not changed or removed once set.
        let mut with_mode = old.clone();
        with_mode.spec.source_volume_mode = Some("Filesystem".into());
        assert!(run_content(Operation::Update, &with_mode, Some(&old)).is_empty());
        let mut block = with_mode.clone();
        block.spec.source_volume_mode = Some("Block".into());
        assert!(
            run_content(Operation::Update, &block, Some(&with_mode)).denials[0]
                .contains("from \"Filesystem\" to \"Block\"")
        );
        assert_eq!(
            run_content(Operation::Update, &old, Some(&with_mode))
                .denials
                .len(),
            1
        );
    }

    #[test]
    fn legacy_invalid_content_can_still_be_updated() {
        let legacy = content().snapshot_handle("s");
        let update = legacy.clone().resource_version("9");
        assert!(run_content(Operation::Update, &update, Some(&legacy)).is_empty());
    }
}
