//! `clients[]` of `idp.yaml`: credentials (secret, secret_file, secret_env, jwks, jwks_file,
//! spiffe_id),
//! redirect URIs (sign-in and post-logout), grant types and the default audience of
//! `client_credentials`, validated into [`Client`].

use super::secrets::{Sources, Spec, warn_demo};
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
    name: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    jwks: Option<Value>,
    jwks_file: Option<PathBuf>,
    spiffe_id: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    default_audience: Option<String>,
    #[serde(default)]
    dpop_required: bool,
    #[serde(default)]
    dpop_rebind: bool,
}

/// Validates one client at `f` (`clients[i]`); `None` when it has no usable credential.
pub(super) fn client(c: RawClient, f: &str, sources: &Sources, p: &mut Problems) -> Option<Client> {
    check_uris_and_grants(&c, f, p);
    let auth = auth(&c, f, sources, p)?;
    Some(Client {
        name: super::branding::client_name(c.name, f, p),
        id: c.id,
        auth,
        redirect_uris: c.redirect_uris,
        post_logout_redirect_uris: c.post_logout_redirect_uris,
        grant_types: c.grant_types,
        scopes: c.scopes,
        default_audience: c.default_audience,
        dpop_required: c.dpop_required,
        dpop_rebind: c.dpop_rebind,
    })
}

/// Exact absolute redirect URIs, known grant types, and a redirect URI for a code grant.
fn check_uris_and_grants(c: &RawClient, f: &str, p: &mut Problems) {
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
}

/// The client's one credential: a secret (file, environment, or inline under the demo rule) or
/// a JWK set (inline or from a file) for `private_key_jwt`.
fn auth(c: &RawClient, f: &str, sources: &Sources, p: &mut Problems) -> Option<ClientAuth> {
    if let Some(sid) = &c.spiffe_id {
        let others = [
            c.secret.is_some(),
            c.secret_file.is_some(),
            c.secret_env.is_some(),
            c.jwks.is_some(),
            c.jwks_file.is_some(),
        ];
        if others.iter().any(|o| *o) {
            p.push(f, "set either spiffe_id or a secret or JWK set, not both");
            return None;
        }
        return match crate::spiffe::SpiffeId::parse(sid) {
            Ok(id) => Some(ClientAuth::Spiffe(id)),
            Err(e) => {
                p.push(format!("{f}.spiffe_id"), e.to_string());
                None
            }
        };
    }
    let jwks = jwks(c, f, sources, p);
    let spec = Spec {
        name: "secret",
        what: "client secret",
        make: "openssl rand -hex 32",
        inline: c.secret.as_deref(),
        file: c.secret_file.as_deref(),
        env: c.secret_env.as_deref(),
    };
    let secret = sources.read(f, &spec, p);
    let mut demo = Vec::new();
    if let Some(found) = &secret {
        sources.vet(f, &spec, found, &mut demo, p);
    }
    warn_demo(f, &format!("client {}", c.id), &demo, p);
    match (secret.map(|s| s.value), jwks) {
        (Some(s), None) if s.len() >= 8 => Some(ClientAuth::Secret(Secret::new(s))),
        (Some(_), None) => {
            p.push(format!("{f}.secret"), "must be at least 8 characters");
            None
        }
        (None, Some(bytes)) => {
            match KeySet::from_jwks(&bytes, &[Algorithm::ES256, Algorithm::RS256]) {
                Ok(set) if !set.is_empty() => Some(ClientAuth::Jwks(set)),
                _ => {
                    p.push(
                        format!("{f}.jwks"),
                        "must be a JWK set with at least one ES256 or RS256 signing key",
                    );
                    None
                }
            }
        }
        (Some(_), Some(_)) => {
            p.push(f, "set either a secret or a JWK set, not both");
            None
        }
        // An unreadable file or unset variable was recorded, an error at start: a check goes on
        // with the client, so that what refers to it is judged too.
        (None, None) if spec.given() || c.jwks_file.is_some() => {
            Some(ClientAuth::Secret(Secret::new(String::new())))
        }
        (None, None) => {
            p.push(
                f,
                "needs secret_file, secret_env, jwks, jwks_file or spiffe_id",
            );
            None
        }
    }
}

/// The bytes of the client's JWK set, inline or from `jwks_file` (relative to the config).
fn jwks(c: &RawClient, f: &str, sources: &Sources, p: &mut Problems) -> Option<Vec<u8>> {
    match (&c.jwks, &c.jwks_file) {
        (Some(v), None) => Some(serde_json::to_vec(v).unwrap_or_default()),
        (None, Some(path)) => match std::fs::read(sources.base.join(path)) {
            Ok(b) => Some(b),
            Err(e) => {
                let field = format!("{f}.jwks_file");
                let reason = format!("read {}: {e}", path.display());
                match e.kind() {
                    std::io::ErrorKind::NotFound => p.missing(field, reason),
                    _ => p.push(field, reason),
                }
                None
            }
        },
        (Some(_), Some(_)) => {
            p.push(f, "set one of jwks, jwks_file");
            None
        }
        (None, None) => None,
    }
}

/// An absolute URI with a scheme and no fragment (RFC 6749 §3.1.2, RFC 8707 §2).
pub fn absolute_without_fragment(uri: &str) -> bool {
    !uri.contains('#') && url::Url::parse(uri).is_ok_and(|u| !u.cannot_be_a_base())
}
