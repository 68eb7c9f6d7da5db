//! `baton demo`: the whole A→B→C chain in one process on free loopback ports: baton-idp, three
//! echo apps and their three sidecars. Signs the demo user in through the real login form, calls
//! A, and prints each hop's token and the one Transaction Token the whole call carried (A issues
//! it, B accepts and C requires it); then calls again to show the exchange cache at work; then
//! calls a path C guards with `acr: [mfa]`, steps up with a one-time code, and calls again.
//! `baton demo --serve` keeps the chain up for a browser: A's sidecar signs users in itself.
//!
//! [`Chain`] is also what the chain e2e tests start, so the demo and the tests run the same wiring.

pub mod app;
mod chain;
mod report;
mod run;
pub mod trace;
mod yaml;

pub use chain::{Chain, Hop};
pub use run::{main, step_up};

use crate::idp;
use crate::sidecar;
use crate::signin;

/// The demo user of `deploy/idp.yaml`.
pub const DEMO_USER: &str = "alice";
/// Her demo password (documented in `deploy/idp.yaml`).
pub const DEMO_PASSWORD: &str = "wonderland-demo";
/// service-a's registered redirect URI in `deploy/idp.yaml`.
pub const REDIRECT_URI: &str = "http://127.0.0.1:8080/callback";
/// The services of the chain, in call order.
pub const SERVICES: [&str; 3] = ["service-a", "service-b", "service-c"];
/// A path service-c guards with `acr: [mfa]`; A and B forward paths unchanged.
pub const MFA_PATH: &str = "/mfa/report";
/// With [`Options::unreachable_acr`], a path service-c guards with an `acr` the IdP never issues.
pub const UNREACHABLE_PATH: &str = "/hwk/report";

/// Variations of the chain, for tests.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The IdP's access-token lifetime in seconds, instead of the demo config's.
    pub access_lifetime: Option<u64>,
    /// Service-c also guards [`UNREACHABLE_PATH`] with `acr: [hwk]`, which no sign-in gives.
    pub unreachable_acr: bool,
    /// DPoP on every hop: A takes DPoP-bound tokens from outside clients (`optional`), B and C
    /// take nothing else (`required`), and every outbound route asks for bound tokens and
    /// sends a proof per call.
    pub dpop: bool,
    /// The IdP asks for DPoP nonces (`dpop.nonce`, RFC 9449 §8).
    pub dpop_nonce: bool,
    /// Every sidecar's `outbound.dpop_key_rotation` (e.g. `2s`), instead of the default.
    pub dpop_key_rotation: Option<&'static str>,
    /// Every sidecar's `outbound.dpop_alg` (`ES256`), instead of the default (EdDSA).
    pub dpop_alg: Option<&'static str>,
    /// Every app gets an opaque handle instead of its token (`inbound.confine_token`).
    pub confine: bool,
    /// Transaction Tokens on top of the per-hop exchange: the IdP is the Txn-Token Service of
    /// [`TRUST_DOMAIN`], A issues (`txn_token: issue`), B accepts and C requires one.
    pub txn_tokens: bool,
    /// The chain with Txn-Tokens and no per-hop exchange: A verifies the user's access token and
    /// issues a Txn-Token; its outbound side forwards without `Authorization` (`unknown:
    /// passthrough`); B and C mark their routes public and require the Txn-Token.
    pub txn_only: bool,
    /// The chain over gRPC: every sidecar speaks HTTP/2 to its app (`app_protocol: http2`),
    /// and each app calls the next hop over h2c at its sidecar's per-upstream outbound port.
    pub grpc: bool,
    /// Where the chain's spans go (every sidecar and the IdP), when traced.
    pub tracing: Option<TraceTo>,
}

/// Where the chain's spans go.
#[derive(Debug, Clone)]
pub enum TraceTo {
    /// An OTLP/HTTP collector at this base URL (`/v1/traces` appended).
    Otlp(String),
    /// Collected in-process, for [`report`] to draw.
    Memory(crate::otel::Collected),
}

/// The trust domain of the chain's Transaction Tokens ([`Options::txn_tokens`]).
pub const TRUST_DOMAIN: &str = "https://baton.example/trust-domain";

/// Why the chain could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A loopback port could not be bound.
    #[error("bind a loopback port: {0}")]
    Bind(#[from] std::io::Error),
    /// The IdP could not start.
    #[error("start baton-idp: {0}")]
    Idp(#[from] idp::IdpError),
    /// A generated sidecar config was refused (a bug in this module).
    #[error("sidecar config: {0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// A sidecar could not start.
    #[error("start sidecar: {0}")]
    Sidecar(#[from] sidecar::Error),
    /// A sidecar never loaded the IdP's keys.
    #[error("{0}: JWKS never loaded")]
    NotReady(&'static str),
    /// Signing in failed.
    #[error("sign in: {0}")]
    SignIn(#[from] signin::Error),
    /// Calling the chain failed.
    #[error("call service-a: {0}")]
    Call(#[from] reqwest::Error),
    /// Calling the chain over gRPC failed.
    #[error("call service-a over gRPC: {0}")]
    Grpc(#[from] app::grpc::CallError),
    /// Tracing could not start.
    #[error(transparent)]
    Tracing(#[from] crate::otel::Error),
}
