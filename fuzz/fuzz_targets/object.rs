//! Structured fuzzing of the object inside a valid envelope: a captured review of each kind,
//! with fuzzer-chosen edits at the paths the models read (and every path the real object has),
//! so the rules' field handling is exercised rather than the JSON parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_admission::admission::{Webhook, handle_now};
use storage_admission_fuzz::{
    Edit, builtin_policy, captured, check_response, demo_view, node_policy, with_object,
};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    case: u8,
    update: bool,
    node_policy: bool,
    edits: Vec<Edit>,
    old_edits: Vec<Edit>,
}

fuzz_target!(|input: Input| {
    let reviews = captured();
    let (_, base) = &reviews[usize::from(input.case) % reviews.len()];
    let mut object = base["request"]["object"].clone();
    for edit in &input.edits {
        edit.apply(&mut object);
    }
    let old = input.update.then(|| {
        let mut old = base["request"]["object"].clone();
        for edit in &input.old_edits {
            edit.apply(&mut old);
        }
        old
    });
    let review = with_object(base, object, old);
    let body = serde_json::to_vec(&review).expect("a Value always serialises");
    let policy = if input.node_policy {
        node_policy()
    } else {
        builtin_policy()
    };
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        let reviewed = handle_now(webhook, &body, demo_view(), policy)
            .unwrap_or_else(|e| panic!("a valid envelope must be answered: {e}"));
        check_response(&reviewed.body, &reviewed.request.uid);
    }
});
