//! `sidecar.yaml` → validated [`Config`]; every problem names the file, the line, the field and
//! the reason.
//!
//! - `yaml`: the reader both `sidecar.yaml` and `idp.yaml` go through: one parse that keeps
//!   positions, unknown fields and values of the wrong type collected rather than fatal.
//! - [`findings`]: what validation found ([`Problems`] while collecting, a [`Report`] of errors
//!   and warnings after); shared by the IdP's config and the Kubernetes annotations.
//! - The sections: `sidecar` (top level, listeners, inbound, admin), `limits` (`jwks:`,
//!   `limits:`), [`routes`] (inbound routes), [`inbound_tls`] (TLS on the inbound listener,
//!   route `peer:` rules), [`outbound`], [`login`] (browser sign-in);
//!   [`values`]: the durations and addresses they share.

pub mod dpop;
pub mod findings;
pub mod inbound_tls;
pub mod issuers;
mod limits;
pub mod login;
pub mod outbound;
pub mod routes;
mod sidecar;
pub mod txn;
pub mod values;
pub(crate) mod yaml;

pub use dpop::{DpopMode, DpopSettings};
pub use findings::{ConfigErrors, Finding, Missing, Problems, Report};
pub use routes::{Access, ClaimRule, Requirements, Route};
pub(crate) use sidecar::tracing_section;
pub use sidecar::{
    AdminSettings, AppProtocol, Config, InboundSettings, JwksSettings, Listeners, Mode,
};

#[cfg(test)]
mod tests;
