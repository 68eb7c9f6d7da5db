//! Form parsing never panics and a repeated single-valued parameter is always reported.
#![no_main]

use baton::http::Form;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    for name in ["grant_type", "subject_token", "resource", "scope"] {
        let all = form.all(name);
        match form.one(name) {
            Ok(Some(v)) => assert_eq!(all, vec![v]),
            Ok(None) => assert!(all.is_empty()),
            Err(_) => assert!(all.len() > 1),
        }
    }
});
