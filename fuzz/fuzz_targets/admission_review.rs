//! Any body POSTed to the webhook gets a review answer or a `Malformed` refusal; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = baton::k8s::policy::Policy::default();
    for namespace_enabled in [false, true] {
        let _ = baton::k8s::webhook::review(data, namespace_enabled, &policy);
    }
});
