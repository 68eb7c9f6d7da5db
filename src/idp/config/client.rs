//! `clients[]` of `idp.yaml`: credentials (secret, secret_file, secret_env, jwks, jwks_file),
//! redirect URIs (sign-in and post-logout) and grant types, validated into [`Client`].

use super::{Client, ClientAuth, GRANT_TYPES};
use crate::config::Problems;
use crate::jwt::{Algorithm, keys::KeySet};
use crate::secret::Secret;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    id: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    jwks: Option<Value>,
    jwks_file: Option<PathBuf>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

pub(super) fn client(
    c: RawClient,
    f: &str,
    base: &std::path::Path,
    p: &mut Problems,
) -> Option<Client> {
    for uri in &c.redirect_uris {
        if !absolute_without_fragment(uri) {
            p.push(
                format!("{f}.redirect_uris"),
                format!("{uri} must be absolute without a fragment (RFC 6749 §3.1.2)"),
            );
        }
    }
    for uri in &c.post_logout_redirect_uris {
        if !absolute_without_fragment(uri) {
            p.push(
                format!("{f}.post_logout_redirect_uris"),
                format!("{uri} must be absolute without a fragment (RP-Initiated Logout 1.0 §3)"),
            );
        }
    }
    for g in &c.grant_types {
        if !GRANT_TYPES.contains(&g.as_str()) {
            p.push(
                format!("{f}.grant_types"),
                format!("unknown grant type {g}"),
            );
        }
    }
    if c.grant_types.iter().any(|g| g == "authorization_code") && c.redirect_uris.is_empty() {
        p.push(
            format!("{f}.redirect_uris"),
            "required for authorization_code",
        );
    }
    let secret_env = c.secret_env.as_ref().and_then(|v| std::env::var(v).ok());
    let secret_file = match &c.secret_file {
        Some(path) => match std::fs::read_to_string(base.join(path)) {
            Ok(s) => Some(s.trim_end().to_owned()),
            Err(e) => {
                p.push(
                    format!("{f}.secret_file"),
                    format!("read {}: {e}", path.display()),
                );
                None
            }
        },
        None => None,
    };
    let jwks = match (&c.jwks, &c.jwks_file) {
        (Some(v), None) => Some(serde_json::to_vec(v).unwrap_or_default()),
        (None, Some(path)) => match std::fs::read(base.join(path)) {
            Ok(b) => Some(b),
            Err(e) => {
                p.push(
                    format!("{f}.jwks_file"),
                    format!("read {}: {e}", path.display()),
                );
                None
            }
        },
        (Some(_), Some(_)) => {
            p.push(f, "set one of jwks, jwks_file");
            None
        }
        (None, None) => None,
    };
    let secret = secret_env.or(secret_file).or(c.secret);
    let auth = match (secret, jwks) {
        (Some(s), None) if s.len() >= 8 => ClientAuth::Secret(Secret::new(s)),
        (Some(_), None) => {
            p.push(format!("{f}.secret"), "must be at least 8 characters");
            return None;
        }
        (None, Some(bytes)) => {
            match KeySet::from_jwks(&bytes, &[Algorithm::ES256, Algorithm::RS256]) {
                Ok(set) if !set.is_empty() => ClientAuth::Jwks(set),
                _ => {
                    p.push(
                        format!("{f}.jwks"),
                        "must be a JWK set with at least one ES256 or RS256 signing key",
                    );
                    return None;
                }
            }
        }
        (Some(_), Some(_)) => {
            p.push(f, "set either a secret or a JWK set, not both");
            return None;
        }
        (None, None) => {
            let hint = match &c.secret_env {
                Some(v) => {
                    format!("environment variable {v} is not set and no fallback secret is given")
                }
                None => "needs secret, secret_file, secret_env, jwks or jwks_file".into(),
            };
            p.push(f, hint);
            return None;
        }
    };
    Some(Client {
        id: c.id,
        auth,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        grant_types: c.grant_types,
        scopes: c.scopes,
    })
}

/// An absolute URI with a scheme and no fragment (RFC 6749 §3.1.2, RFC 8707 §2).
pub fn absolute_without_fragment(uri: &str) -> bool {
    !uri.contains('#') && url::Url::parse(uri).is_ok_and(|u| !u.cannot_be_a_base())
}
