//! Builders shared by the e2e tests.
pub mod idp;
