//! `txn_tokens:` in `idp.yaml`: baton-idp as the trust domain's Txn-Token Service
//! ([`crate::txn`]): the trust domain's identifier, the tokens' lifetime, and the clients that may
//! ask for them.

use super::{Client, TOKEN_EXCHANGE};
use crate::config::Problems;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Default Txn-Token lifetime, seconds: the draft's tokens are short-lived.
pub const DEFAULT_LIFETIME: u64 = 300;
/// Longest Txn-Token lifetime a config may set, seconds.
pub const MAX_LIFETIME: u64 = 900;

/// The validated `txn_tokens:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTokens {
    /// The trust domain: every Txn-Token's `aud`, and the only `audience` a request may name.
    pub audience: String,
    /// Lifetime of a new Txn-Token, seconds (a replacement never outlives the token it replaces).
    pub lifetime: u64,
    /// Clients that may ask for Txn-Tokens.
    pub clients: Vec<String>,
    /// Of those, the clients that may state the subject themselves (`unsigned_json` subject
    /// tokens, or `self_signed` ones signed with their registered keys), for work that starts
    /// inside the trust domain.
    pub unsigned_subject_clients: Vec<String>,
}

impl TxnTokens {
    /// Whether `client` may ask for a Txn-Token.
    pub fn allows(&self, client: &str) -> bool {
        self.clients.iter().any(|c| c == client)
    }

    /// Whether `client` may state the subject itself (unsigned JSON or a self-signed JWT).
    pub fn allows_unsigned(&self, client: &str) -> bool {
        self.unsigned_subject_clients.iter().any(|c| c == client)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTxnTokens {
    #[serde(default)]
    audience: String,
    #[serde(default = "default_lifetime")]
    lifetime: u64,
    #[serde(default)]
    clients: Vec<String>,
    #[serde(default)]
    unsigned_subject_clients: Vec<String>,
}

fn default_lifetime() -> u64 {
    DEFAULT_LIFETIME
}

/// Validates the section against the registered clients.
pub(super) fn validate(
    raw: RawTxnTokens,
    clients: &BTreeMap<String, Client>,
    p: &mut Problems,
) -> TxnTokens {
    let aud = raw.audience.trim();
    if aud.is_empty() || aud.len() > 256 || aud.chars().any(|c| c.is_whitespace() || c == '"') {
        p.push(
            "txn_tokens.audience",
            "must name the trust domain, e.g. https://baton.example/trust-domain",
        );
    } else if clients.contains_key(aud) {
        p.push(
            "txn_tokens.audience",
            "must not be a client id: a Txn-Token is for the whole trust domain, never one service",
        );
    }
    if raw.lifetime == 0 || raw.lifetime > MAX_LIFETIME {
        p.push(
            "txn_tokens.lifetime",
            format!("must be between 1 and {MAX_LIFETIME} seconds (Txn-Tokens are short-lived)"),
        );
    }
    for (i, id) in raw.clients.iter().enumerate() {
        if id.contains(crate::txn::REQ_WL_SEPARATOR) {
            p.push(
                format!("txn_tokens.clients[{i}]"),
                "a client id with a comma cannot be named in req_wl's chain",
            );
        }
        match clients.get(id) {
            None => p.push(format!("txn_tokens.clients[{i}]"), "no such client"),
            Some(c) if !c.allows(TOKEN_EXCHANGE) => p.push(
                format!("txn_tokens.clients[{i}]"),
                "the client must be allowed the token-exchange grant type",
            ),
            Some(_) => {}
        }
    }
    for (i, id) in raw.unsigned_subject_clients.iter().enumerate() {
        if !raw.clients.contains(id) {
            p.push(
                format!("txn_tokens.unsigned_subject_clients[{i}]"),
                "must also be listed in txn_tokens.clients",
            );
        }
    }
    TxnTokens {
        audience: aud.to_owned(),
        lifetime: raw.lifetime,
        clients: raw.clients,
        unsigned_subject_clients: raw.unsigned_subject_clients,
    }
}
