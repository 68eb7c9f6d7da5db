//! Builders shared by the e2e tests.

pub mod browser;
pub mod fake_idp;
pub mod idp;
pub mod recorder;
pub mod token_idp;
pub mod tokens;
pub mod upstream;
