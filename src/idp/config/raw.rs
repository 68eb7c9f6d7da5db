//! `idp.yaml` as written, before validation: the serde types the reader fills, with the
//! defaults of the fields a file may leave out.

use super::Factor;
use super::client::RawClient;
use crate::jwt::Claims;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Accept inline secrets and the examples' published values (with a warning each).
    #[serde(default)]
    pub(super) demo: bool,
    #[serde(default)]
    pub(super) issuer: String,
    #[serde(default = "default_listen")]
    pub(super) listen: String,
    #[serde(default = "default_admin_listen")]
    pub(super) admin_listen: String,
    pub(super) keys: Option<RawKeys>,
    #[serde(default)]
    pub(super) lifetimes: RawLifetimes,
    #[serde(default = "default_depth")]
    pub(super) max_chain_depth: usize,
    #[serde(default)]
    pub(super) clients: Vec<RawClient>,
    #[serde(default)]
    pub(super) users: Vec<RawUser>,
    #[serde(default)]
    pub(super) grants: Vec<RawEdge>,
    #[serde(default)]
    pub(super) resources: BTreeMap<String, String>,
    #[serde(default = "default_acr")]
    pub(super) acr: BTreeMap<String, Vec<Factor>>,
    #[serde(default)]
    pub(super) login: RawLogin,
    #[serde(default)]
    pub(super) branding: super::branding::RawBranding,
    pub(super) store: Option<super::store::RawStore>,
    pub(super) txn_tokens: Option<super::txn::RawTxnTokens>,
    #[serde(default)]
    pub(super) dpop: super::dpop::RawDpop,
    #[serde(default)]
    pub(super) trusted_issuers: Vec<super::trusted::RawTrusted>,
    pub(super) spiffe: Option<super::spiffe::RawSpiffe>,
    pub(super) tracing: Option<crate::otel::RawTracing>,
}

fn default_acr() -> BTreeMap<String, Vec<Factor>> {
    BTreeMap::from([
        ("pwd".into(), vec![Factor::Pwd]),
        ("mfa".into(), vec![Factor::Pwd, Factor::Otp]),
    ])
}

fn default_listen() -> String {
    "127.0.0.1:9000".into()
}

fn default_admin_listen() -> String {
    "127.0.0.1:9001".into()
}

fn default_depth() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    pub(super) dir: PathBuf,
    #[serde(default = "default_alg")]
    pub(super) algorithm: String,
}

pub(super) fn default_alg() -> String {
    "ES256".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLifetimes {
    pub(super) access: u64,
    pub(super) id: u64,
    pub(super) code: u64,
    pub(super) refresh: u64,
    pub(super) session: u64,
    pub(super) sign_in: u64,
}

impl Default for RawLifetimes {
    fn default() -> Self {
        Self {
            access: 300,
            id: 300,
            code: 60,
            refresh: 86_400,
            session: 28_800,
            sign_in: 86_400,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) username: String,
    pub(super) password_hash: Option<String>,
    pub(super) password_hash_file: Option<PathBuf>,
    pub(super) password_hash_env: Option<String>,
    #[serde(default)]
    pub(super) claims: Claims,
    #[serde(default)]
    pub(super) scope: String,
    pub(super) totp_secret: Option<String>,
    pub(super) totp_secret_file: Option<PathBuf>,
    pub(super) totp_secret_env: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEdge {
    pub(super) client: String,
    pub(super) target: String,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) claims: Claims,
    pub(super) max_lifetime: Option<u64>,
    #[serde(default)]
    pub(super) scope_beyond_subject: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    #[serde(default = "default_hash_workers")]
    pub(super) hash_workers: usize,
    #[serde(default = "default_hash_queue")]
    pub(super) hash_queue: usize,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            hash_workers: default_hash_workers(),
            hash_queue: default_hash_queue(),
        }
    }
}

/// One check per core, at most four: the memory bound stays 4 × 19 MiB.
fn default_hash_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

fn default_hash_queue() -> usize {
    16
}
