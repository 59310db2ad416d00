//! Arbitrary bytes as an AdmissionReview body, through decoding and dispatch, for both webhooks
//! against the demo cluster and the built-in policy. Never a panic; an Ok answer is valid JSON
//! echoing the uid, with any patch a base64 string.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_admission::admission::{Webhook, handle_now};
use storage_admission_fuzz::{builtin_policy, check_response, demo_view};

fuzz_target!(|data: &[u8]| {
    for webhook in [Webhook::Mutate, Webhook::Validate] {
        match handle_now(webhook, data, demo_view(), builtin_policy()) {
            Ok(reviewed) => {
                check_response(&reviewed.body, &reviewed.request.uid);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
