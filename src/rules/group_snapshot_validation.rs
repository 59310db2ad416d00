//! group-snapshot-validation: what the group snapshot CRDs' CEL rules (external-snapshotter
//! v8.6) enforce, for clusters whose CRDs predate them.
//!
//! VolumeGroupSnapshot: exactly one of `spec.source.selector` and
//! `spec.source.volumeGroupSnapshotContentName`, no empty content name,
//! `spec.volumeGroupSnapshotClassName` not the empty string, and the source immutable on
//! UPDATE. VolumeGroupSnapshotContent: exactly one of `spec.source.volumeHandles` and
//! `spec.source.groupSnapshotHandles`, `spec.volumeGroupSnapshotRef` with a name and a
//! namespace; on UPDATE the source, the reference (its uid once set), the driver and the class
//! name once set do not change. `v1beta1` lacks the driver and class-name rules that `v1beta2`
//! and `v1` have; they are applied to every version, since the objects are stored as
//! `v1beta2` and the snapshot controller relies on them.
//!
//! As for snapshots, a problem the stored object already had is never held against an UPDATE,
//! so an old object can always have its finalizers removed and be deleted.

use crate::cluster::ClusterView;
use crate::model::{LabelSelector, VolumeGroupSnapshot, VolumeGroupSnapshotContent};
use crate::policy::GroupSnapshotValidationConfig;
use crate::rules::snapshot_validation::{immutable, introduced};
use crate::rules::{Check, For, Phase, Rule, RuleId, RuleSettings};
use crate::rules::{Input, Operation, Outcome, RuleResult};

/// `{group=db}` or `unset`, for "from what to what" messages.
fn shown_selector(selector: Option<&LabelSelector>) -> String {
    selector.map_or_else(|| "unset".to_owned(), |s| format!("{{{}}}", s.describe()))
}

fn group_problems(group: &VolumeGroupSnapshot) -> Vec<String> {
    let name = group.metadata.qualified_name();
    let source = &group.spec.source;
    let mut problems = Vec::new();
    match (
        &source.selector,
        source.volume_group_snapshot_content_name.as_deref(),
    ) {
        (Some(_), Some(content)) => problems.push(format!(
            "VolumeGroupSnapshot {name} sets both spec.source.selector and spec.source.volumeGroupSnapshotContentName ({content:?}); exactly one must be set. \
             Use selector to snapshot the claims it selects, or volumeGroupSnapshotContentName to import an existing group snapshot."
        )),
        (None, None) => problems.push(format!(
            "VolumeGroupSnapshot {name} sets neither spec.source.selector nor spec.source.volumeGroupSnapshotContentName; exactly one must be set. \
             Set selector to the labels of the claims to snapshot together, or volumeGroupSnapshotContentName to import an existing group snapshot."
        )),
        (None, Some("")) => problems.push(format!(
            "VolumeGroupSnapshot {name}: spec.source.volumeGroupSnapshotContentName is empty; set it to the name of a VolumeGroupSnapshotContent."
        )),
        _ => {}
    }
    if group.spec.volume_group_snapshot_class_name.as_deref() == Some("") {
        problems.push(format!(
            "VolumeGroupSnapshot {name}: spec.volumeGroupSnapshotClassName must not be the empty string. \
             Name a VolumeGroupSnapshotClass (kubectl get volumegroupsnapshotclass), or leave the field out to use the driver's default class."
        ));
    }
    problems
}

fn content_problems(content: &VolumeGroupSnapshotContent) -> Vec<String> {
    let name = content.metadata.display_name();
    let source = &content.spec.source;
    let mut problems = Vec::new();
    match (
        source.volume_handles.is_some(),
        source.group_snapshot_handles.is_some(),
    ) {
        (true, true) => problems.push(format!(
            "VolumeGroupSnapshotContent {name} sets both spec.source.volumeHandles and spec.source.groupSnapshotHandles; exactly one must be set. \
             Use groupSnapshotHandles to import an existing group snapshot, or volumeHandles for one the driver takes of those volumes."
        )),
        (false, false) => problems.push(format!(
            "VolumeGroupSnapshotContent {name} sets neither spec.source.volumeHandles nor spec.source.groupSnapshotHandles; exactly one must be set. \
             To import an existing group snapshot, set groupSnapshotHandles to its IDs in the storage system."
        )),
        _ => {}
    }
    let r = &content.spec.volume_group_snapshot_ref;
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let missing: Vec<&str> = [("name", &r.name), ("namespace", &r.namespace)]
        .into_iter()
        .filter(|(_, v)| !set(v))
        .map(|(field, _)| field)
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "VolumeGroupSnapshotContent {name}: spec.volumeGroupSnapshotRef must have both a name and a namespace (missing: {}). \
             Set them to the VolumeGroupSnapshot this content belongs to.",
            missing.join(", ")
        ));
    }
    problems
}

/// The operation's stored object on UPDATE; `Err` for operations the rule does not judge.
fn old_of<'a, T>(input: &Input<'a, T>) -> Result<Option<&'a T>, ()> {
    match input.operation {
        Operation::Create => Ok(None),
        Operation::Update => Ok(input.old_object),
        _ => Err(()),
    }
}

pub fn check_group(
    input: &Input<'_, VolumeGroupSnapshot>,
    _view: &dyn ClusterView,
    _cfg: &GroupSnapshotValidationConfig,
) -> RuleResult {
    let group = input.object;
    let Ok(old) = old_of(input) else {
        return Ok(Outcome::allow());
    };
    let mut outcome = Outcome::allow();
    for p in introduced(group_problems(group), old.map(group_problems)) {
        outcome = outcome.with_denial(p);
    }
    if let Some(old) = old {
        let what = format!("VolumeGroupSnapshot {}", group.metadata.qualified_name());
        let (o, n) = (&old.spec.source, &group.spec.source);
        if o.selector != n.selector {
            outcome = outcome.with_denial(format!(
                "{what}: spec.source.selector is immutable and cannot change from {} to {}. \
                 To snapshot other claims, create a new VolumeGroupSnapshot instead.",
                shown_selector(o.selector.as_ref()),
                shown_selector(n.selector.as_ref()),
            ));
        }
        outcome.denials.extend(immutable(
            &what,
            "spec.source.volumeGroupSnapshotContentName",
            o.volume_group_snapshot_content_name.as_deref(),
            n.volume_group_snapshot_content_name.as_deref(),
        ));
    }
    Ok(outcome)
}

pub fn check_content(
    input: &Input<'_, VolumeGroupSnapshotContent>,
    _view: &dyn ClusterView,
    _cfg: &GroupSnapshotValidationConfig,
) -> RuleResult {
    let content = input.object;
    let Ok(old) = old_of(input) else {
        return Ok(Outcome::allow());
    };
    let mut outcome = Outcome::allow();
    for p in introduced(content_problems(content), old.map(content_problems)) {
        outcome = outcome.with_denial(p);
    }
    let Some(old) = old else {
        return Ok(outcome);
    };
    let what = format!(
        "VolumeGroupSnapshotContent {}",
        content.metadata.display_name()
    );
    let (o, n) = (&old.spec, &content.spec);
    if o.source.volume_handles != n.source.volume_handles {
        outcome = outcome.with_denial(format!(
            "{what}: spec.source.volumeHandles is immutable and cannot change from {} to {}.",
            handles(o.source.volume_handles.as_deref()),
            handles(n.source.volume_handles.as_deref()),
        ));
    }
    if o.source.group_snapshot_handles != n.source.group_snapshot_handles {
        let group = |h: &Option<crate::model::GroupSnapshotHandles>| {
            h.as_ref().map_or_else(
                || "unset".to_owned(),
                |h| {
                    format!(
                        "{:?} with {}",
                        h.volume_group_snapshot_handle,
                        handles(Some(&h.volume_snapshot_handles))
                    )
                },
            )
        };
        outcome = outcome.with_denial(format!(
            "{what}: spec.source.groupSnapshotHandles is immutable and cannot change from {} to {}.",
            group(&o.source.group_snapshot_handles),
            group(&n.source.group_snapshot_handles),
        ));
    }
    let (or, nr) = (&o.volume_group_snapshot_ref, &n.volume_group_snapshot_ref);
    let uid_changed = or.uid.is_some() && or.uid != nr.uid;
    if or.name != nr.name || or.namespace != nr.namespace || uid_changed {
        let shown = |r: &crate::model::VolumeSnapshotRef| {
            format!(
                "{}/{}{}",
                r.namespace.as_deref().unwrap_or("<unset>"),
                r.name.as_deref().unwrap_or("<unset>"),
                r.uid
                    .as_deref()
                    .map(|u| format!(" (uid {u})"))
                    .unwrap_or_default()
            )
        };
        outcome = outcome.with_denial(format!(
            "{what}: spec.volumeGroupSnapshotRef is immutable and cannot change from {} to {}: a content belongs to one VolumeGroupSnapshot for its whole life.",
            shown(or),
            shown(nr)
        ));
    }
    outcome.denials.extend(
        [
            (!o.driver.is_empty())
                .then(|| immutable(&what, "spec.driver", Some(&o.driver), Some(&n.driver)))
                .flatten(),
            o.volume_group_snapshot_class_name.as_ref().and_then(|_| {
                immutable(
                    &what,
                    "spec.volumeGroupSnapshotClassName",
                    o.volume_group_snapshot_class_name.as_deref(),
                    n.volume_group_snapshot_class_name.as_deref(),
                )
            }),
        ]
        .into_iter()
        .flatten(),
    );
    Ok(outcome)
}

/// `["h1", "h2"]` or `unset`.
fn handles(handles: Option<&[String]>) -> String {
    handles.map_or_else(|| "unset".to_owned(), |h| format!("{h:?}"))
}

/// This rule in the rule table ([`crate::rules::RULES`]).
pub const RULE: Rule = Rule {
    id: RuleId::new("group-snapshot-validation"),
    policy_key: "groupSnapshotValidation",
    phases: &[Phase::Validating],
    operations: &[Operation::Create, Operation::Update],
    checks: &[
        Check::VolumeGroupSnapshot(For::webhook(|input, view, policy| {
            check_group(input, view, &policy.rules.group_snapshot_validation)
        })),
        Check::VolumeGroupSnapshotContent(For::webhook(|input, view, policy| {
            check_content(input, view, &policy.rules.group_snapshot_validation)
        })),
    ],
    never_denies: false,
    backfill: false,
    settings: |policy| RuleSettings::of(&policy.rules.group_snapshot_validation),
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterIndex;
    use crate::testing::*;

    fn group(
        op: Operation,
        new: &VolumeGroupSnapshot,
        old: Option<&VolumeGroupSnapshot>,
    ) -> Outcome {
        check_group(
            &input(op, Phase::Validating, new, old),
            &ClusterIndex::unavailable("not needed"),
            &Default::default(),
        )
        .unwrap()
    }

    fn content(
        op: Operation,
        new: &VolumeGroupSnapshotContent,
        old: Option<&VolumeGroupSnapshotContent>,
    ) -> Outcome {
        check_content(
            &input(op, Phase::Validating, new, old),
            &ClusterIndex::unavailable("not needed"),
            &Default::default(),
        )
        .unwrap()
    }

    fn db() -> VolumeGroupSnapshot {
        group_snapshot("default", "db-group").selecting(&[("group", "db")])
    }

    fn static_content() -> VolumeGroupSnapshotContent {
        group_snapshot_content("static-group-content")
            .driver(DRIVER)
            .group_handles("group-handle-1", &["s-handle-1", "s-handle-2"])
            .group_ref(Some("default"), Some("static-group"))
    }

    #[test]
    fn exactly_one_source_and_no_empty_names() {
        assert!(group(Operation::Create, &db(), None).is_empty());
        let static_group = group_snapshot("default", "s").source_content("c");
        assert!(group(Operation::Create, &static_group, None).is_empty());
        for (g, says) in [
            (db().source_content("c"), "sets both spec.source.selector"),
            (group_snapshot("default", "g"), "sets neither"),
            (
                group_snapshot("default", "g").source_content(""),
                "volumeGroupSnapshotContentName is empty",
            ),
            (db().class(""), "must not be the empty string"),
        ] {
            let out = group(Operation::Create, &g, None);
            let [d] = out.denials.as_slice() else {
                panic!("{out:?}")
            };
            assert!(d.contains(says), "{d}");
        }
    }

    #[test]
    fn the_source_is_immutable_and_old_problems_are_not_held_against_an_update() {
        let moved = group_snapshot("default", "db-group").selecting(&[("group", "web")]);
        let out = group(Operation::Update, &moved, Some(&db()));
        let [d] = out.denials.as_slice() else {
            panic!("{out:?}")
        };
        assert!(
            d.contains(
                "spec.source.selector is immutable and cannot change from {group=db} to {group=web}"
            ),
            "{d}"
        );
        let out = group(
            Operation::Update,
            &group_snapshot("default", "s").source_content("b"),
            Some(&group_snapshot("default", "s").source_content("a")),
        );
        assert!(out.denials[0].contains("from \"a\" to \"b\""), "{out:?}");
        // Already broken: a label added (or finalizer removed) is allowed.
        let broken = db().class("");
        assert!(
            group(
                Operation::Update,
                &broken.clone().label("x", "y"),
                Some(&broken)
            )
            .is_empty()
        );
        // Other operations are not judged.
        assert!(group(Operation::Delete, &group_snapshot("default", "g"), None).is_empty());
    }

    #[test]
    fn content_needs_one_source_and_a_full_reference() {
        assert!(content(Operation::Create, &static_content(), None).is_empty());
        let dynamic = group_snapshot_content("c")
            .volume_handles(&["v1", "v2"])
            .group_ref(Some("default"), Some("g"));
        assert!(content(Operation::Create, &dynamic, None).is_empty());
        let both = static_content().volume_handles(&["v1"]);
        assert!(content(Operation::Create, &both, None).denials[0].contains("sets both"));
        let neither = group_snapshot_content("c").group_ref(Some("default"), Some("g"));
        assert!(content(Operation::Create, &neither, None).denials[0].contains("sets neither"));
        let no_ns = static_content().group_ref(None, Some("g"));
        assert!(
            content(Operation::Create, &no_ns, None).denials[0].contains("(missing: namespace)")
        );
    }

    #[test]
    fn content_source_reference_driver_and_class_do_not_change() {
        let old = static_content();
        let out = content(
            Operation::Update,
            &old.clone().group_ref(Some("default"), Some("other")),
            Some(&old),
        );
        assert!(
            out.denials[0].contains("from default/static-group to default/other"),
            "{out:?}"
        );
        let out = content(
            Operation::Update,
            &old.clone().group_handles("group-handle-2", &["s-handle-1"]),
            Some(&old),
        );
        assert!(
            out.denials[0].contains("groupSnapshotHandles is immutable"),
            "{out:?}"
        );
        let out = content(Operation::Update, &old.clone().driver("x.csi"), Some(&old));
        assert!(
            out.denials[0].contains("spec.driver is immutable"),
            "{out:?}"
        );
        let mut with_class = old.clone();
        with_class.spec.volume_group_snapshot_class_name = Some("a".into());
        let mut other_class = old.clone();
        other_class.spec.volume_group_snapshot_class_name = Some("b".into());
        let out = content(Operation::Update, &other_class, Some(&with_class));
        assert!(out.denials[0].contains("from \"a\" to \"b\""), "{out:?}");
        // Setting the class for the first time is allowed; so is an unrelated change.
        assert!(content(Operation::Update, &with_class, Some(&old)).is_empty());
        assert!(content(Operation::Update, &old.clone().label("a", "b"), Some(&old)).is_empty());
    }
}
