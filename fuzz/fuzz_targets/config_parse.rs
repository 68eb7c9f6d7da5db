//! Any text given as sidecar.yaml or the IdP's YAML is either accepted or refused with located
//! errors, at start-up and in a check; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = baton::config::Config::from_yaml(text, "sidecar.yaml") {
        assert!(!errors.0.is_empty());
        assert!(errors.0.iter().all(|e| e.file == "sidecar.yaml"));
    }
    let report = baton::config::Config::check(text, "sidecar.yaml");
    assert!(report.errors.iter().all(|e| e.file == "sidecar.yaml"));
    if let Err(errors) = baton::idp::Config::from_yaml(text, "idp.yaml") {
        assert!(!errors.0.is_empty());
    }
});
