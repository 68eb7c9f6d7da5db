//! Builders shared by the e2e tests.

pub mod fake_idp;
pub mod upstream;
