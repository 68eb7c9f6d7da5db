//! `idp.yaml` as written → [`Config`], section by section: where the IdP listens and keeps its
//! keys, token lifetimes, clients, users, authentication levels, resources, exchange edges and
//! the login pages' limits. Every problem goes into [`Problems`] under its field path.

use super::client::client;
use super::raw::{RawConfig, RawKeys, RawLifetimes, RawLogin, default_alg};
use super::secrets::Sources;
use super::{Client, Config, Factor, KeysConfig, Lifetimes, LoginLimits, Options};
use super::{check, grants, users};
use crate::config::Problems;
use crate::jwt::Algorithm;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Validates `raw`, read from `file`, into `p`; the config is whole when `p` holds no error.
pub(super) fn validate(raw: RawConfig, file: &str, opts: &Options, p: &mut Problems) -> Config {
    let base = Path::new(file)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let sources = Sources {
        base: &base,
        env: opts.env,
        allow_demo: raw.demo || opts.allow_inline_secrets,
    };
    let issuer = issuer(p, &raw.issuer);
    let listen = addr(p, "listen", &raw.listen, 9000);
    let admin_listen = addr(p, "admin_listen", &raw.admin_listen, 9001);
    let keys = keys(p, raw.keys, &base);
    let lifetimes = lifetimes(p, &raw.lifetimes);
    if raw.max_chain_depth == 0 || raw.max_chain_depth > 32 {
        p.push("max_chain_depth", "must be between 1 and 32");
    }
    let (spiffe, trust_domains) = super::spiffe::spiffe(raw.spiffe, &base, p);
    let (clients, client_fields) = clients(raw.clients, &sources, p);
    super::spiffe::check_clients(&clients, &client_fields, &trust_domains, p);
    let users = users::users(raw.users, &sources, p);
    acr(p, &raw.acr);
    grants::resources(p, &raw.resources, &clients);
    let grants = grants::edges(raw.grants, &clients, p);
    let txn_tokens = raw.txn_tokens.map(|t| super::txn::validate(t, &clients, p));
    let trusted_issuers = super::trusted::validate(
        raw.trusted_issuers,
        &issuer,
        |c| clients.contains_key(c),
        &base,
        p,
    );
    // A foreign `sub` is prefixed to keep it apart from this domain's: no local user or client
    // may already bear a name with that prefix.
    for (i, t) in trusted_issuers.iter().enumerate() {
        let local = users.keys().chain(clients.keys());
        if let Some(taken) = local.into_iter().find(|n| n.starts_with(&t.sub_prefix)) {
            p.push(
                format!("trusted_issuers[{i}].sub_prefix"),
                format!("{taken} is a user or client here: a foreign user could take its name"),
            );
        }
    }
    let cfg = Config {
        trusted_issuers,
        issuer,
        listen,
        admin_listen,
        keys,
        lifetimes,
        max_chain_depth: raw.max_chain_depth,
        clients,
        users,
        grants,
        resources: raw.resources,
        acr: raw.acr,
        login: login_limits(raw.login, p),
        branding: super::branding::theme(raw.branding, &base, p),
        store: super::store::store(raw.store, &sources, p),
        txn_tokens,
        dpop: super::dpop::validate(raw.dpop, p),
        spiffe,
        tracing: crate::config::tracing_section(p, raw.tracing),
    };
    grants::default_audiences(&cfg, &client_fields, p);
    check::warnings(&cfg, &client_fields, p);
    cfg
}

/// The issuer without a trailing slash: an absolute http(s) URL without query or fragment.
fn issuer(p: &mut Problems, raw: &str) -> String {
    let issuer = raw.trim_end_matches('/').to_owned();
    match url::Url::parse(&issuer) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.query().is_none()
                && u.fragment().is_none() => {}
        _ => p.push(
            "issuer",
            "must be an absolute http(s) URL without query or fragment",
        ),
    }
    issuer
}

fn addr(p: &mut Problems, field: &str, raw: &str, default_port: u16) -> SocketAddr {
    raw.parse().unwrap_or_else(|_| {
        p.push(
            field,
            format!("must be an address like 127.0.0.1:{default_port}"),
        );
        SocketAddr::from(([127, 0, 0, 1], default_port))
    })
}

/// Where keys live (relative to the config file's folder) and the algorithm of new keys.
fn keys(p: &mut Problems, raw: Option<RawKeys>, base: &Path) -> KeysConfig {
    let keys = raw.unwrap_or_else(|| {
        p.push(
            "keys",
            "required: where the signing keys live, e.g. {dir: keys}",
        );
        RawKeys {
            dir: PathBuf::new(),
            algorithm: default_alg(),
        }
    });
    let algorithm = match keys.algorithm.as_str() {
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        _ => {
            p.push("keys.algorithm", "must be ES256 or RS256");
            Algorithm::ES256
        }
    };
    KeysConfig {
        dir: base.join(keys.dir),
        algorithm,
    }
}

/// Each lifetime within its bound, and no session outliving the tokens it yields.
fn lifetimes(p: &mut Problems, l: &RawLifetimes) -> Lifetimes {
    for (name, v, max) in [
        ("access", l.access, 86_400),
        ("id", l.id, 86_400),
        ("code", l.code, 600),
        ("refresh", l.refresh, 90 * 86_400),
        ("session", l.session, 30 * 86_400),
        ("sign_in", l.sign_in, 90 * 86_400),
    ] {
        if v == 0 || v > max {
            p.push(
                format!("lifetimes.{name}"),
                format!("must be between 1 and {max} seconds"),
            );
        }
    }
    if l.sign_in < l.session {
        // A session older than `sign_in` would keep handing out codes whose tokens are refused.
        p.push(
            "lifetimes.sign_in",
            "must be at least lifetimes.session: a session may not outlive the tokens it yields",
        );
    }
    Lifetimes {
        access: l.access,
        id: l.id,
        code: l.code,
        refresh: l.refresh,
        session: l.session,
        sign_in: l.sign_in,
    }
}

/// Clients by id, and each valid client's id with its field path (`clients[i]`), in file order.
fn clients(
    raw: Vec<super::client::RawClient>,
    sources: &Sources,
    p: &mut Problems,
) -> (BTreeMap<String, Client>, Vec<(String, String)>) {
    let mut clients = BTreeMap::new();
    let mut fields = Vec::new();
    for (i, c) in raw.into_iter().enumerate() {
        let f = format!("clients[{i}]");
        if let Some(client) = client(c, &f, sources, p) {
            if clients.contains_key(&client.id) {
                p.push(format!("{f}.id"), "duplicate client id");
            }
            fields.push((client.id.clone(), f));
            clients.insert(client.id.clone(), client);
        }
    }
    (clients, fields)
}

/// Every authentication level starts with the password.
fn acr(p: &mut Problems, acr: &BTreeMap<String, Vec<Factor>>) {
    for (name, factors) in acr {
        if factors.first() != Some(&Factor::Pwd) {
            p.push(
                format!("acr.{name}"),
                "must start with pwd: the password is always the first factor",
            );
        }
    }
}

/// The login pages' password-check pool: bounded workers and queue.
fn login_limits(raw: RawLogin, p: &mut Problems) -> LoginLimits {
    if !(1..=64).contains(&raw.hash_workers) {
        p.push("login.hash_workers", "must be between 1 and 64");
    }
    if raw.hash_queue > 4096 {
        p.push("login.hash_queue", "must be at most 4096");
    }
    LoginLimits {
        hash_workers: raw.hash_workers.clamp(1, 64),
        hash_queue: raw.hash_queue.min(4096),
        throttle: super::Limits::default(),
    }
}
