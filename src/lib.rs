//! baton: a sidecar that makes identity propagation through a chain of services
//! transparent (RFC 8693 token exchange on every hop), plus `baton-idp`, a small
//! standards-true OpenID Provider with the enrichment exchange policy.
//!
//! Crate map:
//! - [`secret`]: `Token`/`Secret` newtypes that never print themselves.
//! - [`http`]: shared body type, size-limited body reads, JSON and form helpers;
//!   [`http::path`] the one canonical spelling of a request path; [`http::upgrade`] protocol
//!   switches, spliced once both sides agree; [`http::pool`] keep-alive HTTP/1.1 and
//!   multiplexed HTTP/2 connections to a fixed destination; [`http::grpc`] gRPC refusals
//!   (trailers-only `grpc-status`), per-message limits and `grpc-timeout`.
//! - [`shutdown`]: SIGTERM/SIGINT → one trigger, many listeners drain.
//! - [`server`]: the accept loop every listener uses: limits, timeouts, graceful drain, and a
//!   captured connection's original destination.
//! - [`tls`]: certificate files reloaded when they change, for the listeners that serve TLS (the
//!   webhook, the inbound listener) and for client certificates to upstreams.
//! - [`jwt`]: the verification rules (RFC 8725, RFC 9068 §4); [`jwt::keys`] signing and JWK sets;
//!   [`jwt::jwks`] discovery, JWKS cache, unknown-`kid` refetch, readiness.
//! - [`config`]: `sidecar.yaml` → validated `Config`, every problem at once with file, line, field
//!   and reason; its YAML reader and [`config::findings`] serve `idp.yaml` too.
//! - [`confine`]: opaque handles the app holds instead of tokens, swapped back on the way out.
//! - [`inbound`]: canonical path → bearer → verify → route rules → claims header → app.
//! - [`outbound`]: forward proxy and upstream ports → route → exchange → forward.
//! - [`exchange`]: RFC 8693 client; [`exchange::cache`] moka cache, key, TTL, single-flight.
//! - [`admin`], [`telemetry`]: health, readiness, metrics; every metric name in one place;
//!   [`admin::probe`] runs the app's probes that capture mode moved to the admin port.
//! - [`sidecar`]: `baton run`: the three listeners of one sidecar wired together.
//! - [`signin`]: drives an IdP's login form (code + PKCE) to get a user token: `baton login`, demo, tests.
//! - [`idp`]: `baton-idp`, the OpenID Provider and its token-exchange policy.
//! - [`k8s`]: sidecar injection: one pure pod mutation for `baton inject` and `baton webhook`;
//!   `baton init-net` capture rules.
//! - [`page`]: the look of every HTML page (layout, inlined stylesheet, branding, headers) and
//!   [`page::strings`], every word a page shows.
//! - [`dpop`]: DPoP (RFC 9449) proofs: checking, thumbprints, the replay store, a proof key.
//! - [`demo`]: `baton demo`, the whole A→B→C chain in one process; [`demo::app`] the echo app.
//! - [`txn`]: Transaction Tokens: the format and verification the IdP and the sidecar share.
//! - [`spiffe`]: SPIFFE IDs, the peer's ID in an X.509-SVID, JWT-SVID bundles and files.
//! - [`otel`]: OpenTelemetry traces: W3C Trace Context, spans, the bounded OTLP export.
//! - [`cli`]: the `baton` subcommands; [`process`]: logging and exit codes every binary shares.

pub mod admin;
pub mod cli;
pub mod config;
pub mod confine;
pub mod demo;
pub mod dpop;
pub mod exchange;
pub mod http;
pub mod idp;
pub mod inbound;
pub mod jwt;
pub mod k8s;
pub mod otel;
pub mod outbound;
pub mod page;
pub mod process;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sidecar;
pub mod signin;
pub mod spiffe;
pub mod telemetry;
pub mod tls;
pub mod txn;

/// Every program built on this crate (`baton`, `baton-idp`, the demo app, `bare-proxy`, the tests
/// and benchmarks) allocates with mimalloc. A request allocates and frees a few dozen small
/// blocks, and some of its futures are larger than glibc's per-thread cache takes: in
/// `bench/callgrind-process.sh` mimalloc took about 1,300 instructions (3.5 %) off each inbound
/// request.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
