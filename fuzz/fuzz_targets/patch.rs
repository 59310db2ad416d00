//! The mutating webhook's patches, on VolumeSnapshots, StorageClasses and Nodes with fuzzed
//! names, labels and fields: every patch applies to the object it was made for, the patched
//! object needs no further patch (idempotence), and the validating webhook does not deny it
//! for a reason the mutation was meant to fix.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use storage_admission::admission::{RuleStatus, Webhook, handle_now};
use storage_admission::policy::Policy;
use storage_admission_fuzz::{
    Edit, FuzzString, builtin_policy, check_response, demo_view, golden_review, node_policy,
    remove, set, with_object,
};

const CASES: [&str; 4] = [
    "captured/mutate-create-volumesnapshot-disk-snapshot",
    "captured/mutate-create-storageclass-local-storage",
    "captured/mutate-create-storageclass-csi-disk-topology",
    "captured/mutate-create-node-cn-hangzhou-b-node2",
];

fn bases() -> &'static [Value] {
    static BASES: OnceLock<Vec<Value>> = OnceLock::new();
    BASES.get_or_init(|| CASES.iter().map(|c| golden_review(c)).collect())
}

#[derive(Debug, arbitrary::Arbitrary)]
enum LabelsShape {
    Keep,
    Absent,
    Null,
    Empty,
    NoMetadata,
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    case: u8,
    name: Option<FuzzString>,
    labels_shape: LabelsShape,
    labels: Vec<(FuzzString, FuzzString)>,
    edits: Vec<Edit>,
    update: Option<Vec<Edit>>,
}

fn run(
    webhook: Webhook,
    review: &Value,
    policy: &Policy,
) -> storage_admission::admission::Reviewed {
    let body = serde_json::to_vec(review).expect("a Value serialises");
    let reviewed = handle_now(webhook, &body, demo_view(), policy)
        .unwrap_or_else(|e| panic!("a valid envelope must be answered: {e}"));
    check_response(&reviewed.body, &reviewed.request.uid);
    reviewed
}

fuzz_target!(|input: Input| {
    let base = &bases()[usize::from(input.case) % CASES.len()];
    let is_node = base["request"]["kind"]["kind"] == "Node";
    let policy = if is_node {
        node_policy()
    } else {
        builtin_policy()
    };
    let original = base["request"]["object"].clone();

    let mut object = original.clone();
    let labels_path = ["metadata".to_owned(), "labels".to_owned()];
    match input.labels_shape {
        LabelsShape::Keep => {}
        LabelsShape::Absent => remove(&mut object, &labels_path),
        LabelsShape::Null => set(&mut object, &labels_path, Value::Null),
        LabelsShape::Empty => set(&mut object, &labels_path, Value::Object(Default::default())),
        LabelsShape::NoMetadata => remove(&mut object, &labels_path[..1]),
    }
    if let Some(name) = &input.name {
        set(
            &mut object,
            &labels_path[..1]
                .iter()
                .cloned()
                .chain(["name".to_owned()])
                .collect::<Vec<_>>(),
            Value::String(name.build()),
        );
    }
    for (k, v) in input.labels.iter().take(64) {
        let path = [labels_path[0].clone(), labels_path[1].clone(), k.build()];
        set(&mut object, &path, Value::String(v.build()));
    }
    for edit in &input.edits {
        edit.apply(&mut object);
    }
    let old = input.update.as_ref().map(|edits| {
        let mut old = original.clone();
        for edit in edits {
            edit.apply(&mut old);
        }
        old
    });

    let review = with_object(base, object.clone(), old.clone());
    let mutated = run(Webhook::Mutate, &review, policy);
    if mutated.verdict.patch.is_empty() {
        return;
    }
    assert!(mutated.verdict.allowed, "a patch on a denial");

    // 1. The patch applies to the object it was made for.
    let mut patched = object.clone();
    let ops = storage_admission::rules::patch::to_json_patch(&mutated.verdict.patch)
        .unwrap_or_else(|e| panic!("a patch value is not valid JSON: {e}"));
    if let Err(e) = json_patch::patch(&mut patched, &ops) {
        panic!(
            "patch does not apply: {e}\nobject: {object}\npatch: {}",
            serde_json::to_string(&mutated.verdict.patch).unwrap_or_default()
        );
    }

    // 2. Idempotence: the patched object needs no further patch.
    let again = run(
        Webhook::Mutate,
        &with_object(base, patched.clone(), old.clone()),
        policy,
    );
    assert!(
        again.verdict.patch.is_empty(),
        "second patch on a patched object\nobject: {object}\nfirst: {}\nsecond: {}",
        serde_json::to_string(&mutated.verdict.patch).unwrap_or_default(),
        serde_json::to_string(&again.verdict.patch).unwrap_or_default()
    );

    // 3. The validating webhook does not deny the patched object for what the patch fixed.
    let validated = run(
        Webhook::Validate,
        &with_object(base, patched.clone(), old),
        policy,
    );
    let fixed: Vec<_> = mutated
        .verdict
        .rules
        .iter()
        .filter(|r| r.status == RuleStatus::Patched)
        .map(|r| r.rule)
        .collect();
    for report in &validated.verdict.rules {
        assert!(
            !(fixed.contains(&report.rule) && report.status == RuleStatus::Denied),
            "{:?} patched the object and then denied it: {:?}\npatched: {patched}",
            report.rule,
            validated.verdict.denial
        );
    }
});
