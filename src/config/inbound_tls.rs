//! `inbound.tls` of `sidecar.yaml`: TLS on the inbound listener, optionally verifying client
//! certificates, and the `peer:` rules a route matches the client's SPIFFE ID with.
//!
//! ```yaml
//! inbound:
//!   tls:
//!     cert_file: /var/run/svid/svid.pem     # PEM chain, leaf first (an X.509-SVID works)
//!     key_file: /var/run/svid/svid.key
//!     client_ca_file: /var/run/svid/bundle.pem   # optional: verify client certificates
//!     client_auth: required                  # or optional; required when client_ca_file is set
//! routes:
//!   - {name: orders, path: /orders, peer: spiffe://example.org/ns/shop/sa/frontend}
//!   - {name: stats, path: /stats, peer: [spiffe://example.org/ns/ops/sa/a, spiffe://ops.example/*]}
//! ```

use super::findings::Problems;
use crate::spiffe::{self, SpiffeId};
use crate::tls::{ClientAuth, ClientCa};
use serde::Deserialize;
use std::path::PathBuf;

/// The validated `inbound.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundTls {
    /// The listener's certificate chain (PEM, leaf first), read again when it changes.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1), read again when it changes.
    pub key_file: PathBuf,
    /// The CA client certificates are verified against, when set; read again when it changes.
    pub client_ca: Option<ClientCa>,
}

/// `inbound.tls` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInboundTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawClientAuth {
    Optional,
    Required,
}

/// Validates `inbound.tls`; a file that is missing here is recorded as missing (a warning in
/// `baton check`), one that is not a file as an error.
pub fn validate(raw: RawInboundTls, p: &mut Problems) -> Option<InboundTls> {
    let at = |f: &str| format!("inbound.tls.{f}");
    for (field, file) in [
        ("cert_file", &raw.cert_file),
        ("key_file", &raw.key_file),
        ("client_ca_file", &raw.client_ca_file),
    ] {
        match file {
            Some(file) if !file.exists() => p.missing(
                at(field),
                format!("{} is not a readable file", file.display()),
            ),
            Some(file) if !file.is_file() => p.push(
                at(field),
                format!("{} is not a readable file", file.display()),
            ),
            _ => {}
        }
    }
    let auth = match raw.client_auth {
        Some(RawClientAuth::Optional) => ClientAuth::Optional,
        Some(RawClientAuth::Required) | None => ClientAuth::Required,
    };
    if raw.client_auth.is_some() && raw.client_ca_file.is_none() {
        p.push(
            at("client_auth"),
            "needs client_ca_file (the CA client certificates are verified against)",
        );
    }
    let client_ca = raw.client_ca_file.map(|file| ClientCa { file, auth });
    match (raw.cert_file, raw.key_file) {
        (Some(cert_file), Some(key_file)) => Some(InboundTls {
            cert_file,
            key_file,
            client_ca,
        }),
        (cert, key) => {
            for (field, set) in [("cert_file", cert.is_some()), ("key_file", key.is_some())] {
                if !set {
                    p.push(at(field), "required with inbound.tls (a PEM file)");
                }
            }
            None
        }
    }
}

/// One client a route's `peer:` admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRule {
    /// Exactly this SPIFFE ID.
    Id(SpiffeId),
    /// Any SPIFFE ID in this trust domain (`spiffe://example.org/*`).
    TrustDomain(String),
}

impl PeerRule {
    /// Whether the client with SPIFFE ID `id` passes this rule.
    pub fn admits(&self, id: &SpiffeId) -> bool {
        match self {
            PeerRule::Id(want) => want == id,
            PeerRule::TrustDomain(td) => id.trust_domain() == td,
        }
    }
}

/// A route's `peer:` as written: one ID or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPeers {
    /// `peer: spiffe://…`.
    One(String),
    /// `peer: [spiffe://…, …]`.
    Many(Vec<String>),
}

/// The rules of a route's `peer:` at `field`; each must be a SPIFFE ID in its canonical
/// spelling or `spiffe://<trust-domain>/*`.
pub fn peer_rules(raw: RawPeers, field: &str, p: &mut Problems) -> Vec<PeerRule> {
    let list = match raw {
        RawPeers::One(s) => vec![s],
        RawPeers::Many(l) => l,
    };
    if list.is_empty() {
        p.push(field, "must name at least one SPIFFE ID");
    }
    let mut rules = Vec::with_capacity(list.len());
    for (j, s) in list.iter().enumerate() {
        let domain = s
            .strip_prefix("spiffe://")
            .and_then(|rest| rest.strip_suffix("/*"));
        match domain {
            Some(td) if spiffe::valid_trust_domain(td) => {
                rules.push(PeerRule::TrustDomain(td.to_owned()))
            }
            _ => match SpiffeId::parse(s) {
                Ok(id) => rules.push(PeerRule::Id(id)),
                Err(e) => p.push(
                    format!("{field}[{j}]"),
                    format!(
                        "must be a SPIFFE ID (spiffe://trust-domain/path) or \
                         spiffe://trust-domain/*: {e}"
                    ),
                ),
            },
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawInboundTls {
        serde_saphyr::from_str(yaml).expect("yaml")
    }

    #[test]
    fn client_auth_defaults_to_required_and_needs_a_ca() {
        let dir = std::env::temp_dir();
        let f = dir.display();
        let mut p = Problems::new("sidecar.yaml");
        let tls = validate(
            raw(&format!(
                "{{cert_file: {f}/, key_file: {f}/, client_ca_file: /no/such/ca.pem}}"
            )),
            &mut p,
        )
        .expect("both files named");
        assert_eq!(
            tls.client_ca.map(|c| c.auth),
            Some(ClientAuth::Required),
            "required unless said otherwise"
        );
        let report = p.report(|_| None, crate::config::Missing::Warning);
        let errors: Vec<_> = report.errors.iter().map(ToString::to_string).collect();
        let warnings: Vec<_> = report.warnings.iter().map(ToString::to_string).collect();
        // A directory is no file; a file absent here is only a warning in a check.
        assert!(
            errors.iter().any(|e| e.contains("inbound.tls.cert_file")),
            "{errors:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("inbound.tls.client_ca_file")),
            "{warnings:?}"
        );

        let mut p = Problems::new("sidecar.yaml");
        let tls = validate(raw("{key_file: /k, client_auth: optional}"), &mut p);
        assert!(tls.is_none());
        let report = p.report(|_| None, crate::config::Missing::Warning);
        let errors: Vec<_> = report.errors.iter().map(ToString::to_string).collect();
        for needle in [
            "inbound.tls.cert_file: required",
            "inbound.tls.client_auth: needs client_ca_file",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:?}"
            );
        }
    }

    #[test]
    fn peer_rules_are_ids_or_a_trust_domain() {
        let mut p = Problems::new("sidecar.yaml");
        let rules = peer_rules(
            RawPeers::Many(vec![
                "spiffe://example.org/ns/a/sa/x".into(),
                "spiffe://other.example/*".into(),
                "spiffe://Example.org/a".into(),
                "spiffe://example.org/a/*/b".into(),
                "https://example.org/a".into(),
            ]),
            "routes[0].peer",
            &mut p,
        );
        assert_eq!(rules.len(), 2);
        let id = |s: &str| SpiffeId::parse(s).expect("id");
        assert!(rules[0].admits(&id("spiffe://example.org/ns/a/sa/x")));
        assert!(!rules[0].admits(&id("spiffe://example.org/ns/a/sa/y")));
        assert!(!rules[0].admits(&id("spiffe://example.org/ns/a/sa/x/z")));
        assert!(rules[1].admits(&id("spiffe://other.example/any/thing")));
        assert!(!rules[1].admits(&id("spiffe://other.example.evil/a")));
        let errors = p.finish(()).expect_err("three bad ones").0;
        let fields: Vec<_> = errors.iter().map(|e| e.field.clone()).collect();
        assert_eq!(
            fields,
            [
                "routes[0].peer[2]",
                "routes[0].peer[3]",
                "routes[0].peer[4]"
            ]
        );

        let mut p = Problems::new("sidecar.yaml");
        assert!(peer_rules(RawPeers::Many(vec![]), "routes[0].peer", &mut p).is_empty());
        assert!(
            p.finish(()).is_err(),
            "an empty list admits no one: an error"
        );
    }

    const BASE: &str = "issuer: https://idp.example\naudience: service-b\napp: \"127.0.0.1:8080\"\n\
                        outbound: {client: {client_id: service-b, secret: test-only}}\n";

    #[test]
    fn in_sidecar_yaml_a_peer_route_needs_verified_client_certificates() {
        use crate::config::Config;
        let routes = "routes:\n  - {name: a, path: /a, public: true}\n  \
                      - {name: b, path: /b, peer: spiffe://td/x}\n";
        let text = format!("{BASE}{routes}");
        let report = Config::check(&text, "sidecar.yaml");
        let e = report
            .errors
            .iter()
            .find(|e| e.field == "routes[1].peer")
            .expect("a peer rule without client certificates is an error");
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.reason.contains("client_ca_file"), "{e}");

        // With TLS and a client CA named (files absent on this machine: warnings in a check,
        // each at its line; errors at start-up).
        let tls = "inbound:\n  tls:\n    cert_file: /no/such/svid.pem\n    \
                   key_file: /no/such/svid.key\n    client_ca_file: /no/such/bundle.pem\n";
        let text = format!("{BASE}{tls}{routes}peer_header: x-peer\n");
        let report = Config::check(&text, "sidecar.yaml");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let warned: Vec<_> = report
            .warnings
            .iter()
            .map(|w| (w.field.as_str(), w.line))
            .collect();
        assert_eq!(
            warned,
            [
                ("inbound.tls.cert_file", Some(7)),
                ("inbound.tls.key_file", Some(8)),
                ("inbound.tls.client_ca_file", Some(9)),
            ]
        );
        assert!(Config::from_yaml(&text, "sidecar.yaml").is_err());

        // The peer header must be a header of its own.
        let text = format!("{BASE}peer_header: x-baton-claims\n");
        let report = Config::check(&text, "sidecar.yaml");
        assert!(report.errors.iter().any(|e| e.field == "peer_header"));
        let cfg = Config::from_yaml(BASE, "sidecar.yaml").expect("valid");
        assert_eq!(cfg.peer_header, "x-baton-peer");
        assert!(cfg.inbound.tls.is_none());
    }
}
