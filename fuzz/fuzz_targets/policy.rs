//! Arbitrary text as a policy file: `Policy::parse` returns Ok or a clear error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use storage_admission::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Err(e) = Policy::parse(&text) {
        assert!(!e.to_string().is_empty(), "an error must say something");
    }
});
