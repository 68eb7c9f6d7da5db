//! Builders shared by the e2e tests.

pub mod browser;
pub mod fake_idp;
pub mod fault_proxy;
pub mod idp;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod recorder;
pub mod round_robin;
pub mod sidecar;
pub mod test_ca;
pub mod token_idp;
pub mod tokens;
pub mod upstream;
pub mod websocket;
