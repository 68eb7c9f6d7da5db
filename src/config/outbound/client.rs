//! `outbound.client`: the sidecar's own identity at the IdP, a client secret (from a file, an
//! environment variable, or inline for demos), a private key for `private_key_jwt`, or a
//! JWT-SVID file for `jwt-spiffe`.

use super::{Client, ClientAuth, RawClient};
use crate::config::findings::Problems;
use crate::config::values::{read_env, read_text};
use crate::jwt::Algorithm;
use crate::jwt::keys::SigningKey;
use crate::secret::Secret;
use std::sync::Arc;

/// Validates `outbound.client`: exactly one credential, read now.
pub(super) fn client(raw: RawClient, problems: &mut Problems) -> Client {
    let client_id = raw.client_id.unwrap_or_else(|| {
        problems.push("outbound.client.client_id", "required");
        String::new()
    });
    let given = [
        raw.secret.is_some(),
        raw.secret_file.is_some(),
        raw.secret_env.is_some(),
        raw.private_key_file.is_some(),
        raw.jwt_svid_file.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        problems.push(
            "outbound.client",
            "set exactly one of secret_file, secret_env, secret (demos), private_key_file or \
             jwt_svid_file",
        );
    }
    let secret = |s: String| ClientAuth::Secret(Secret::new(s.trim_end_matches(['\n', '\r'])));
    let auth = if let Some(s) = raw.secret {
        Some(secret(s))
    } else if let Some(path) = raw.secret_file {
        read_text(problems, "outbound.client.secret_file", &path).map(secret)
    } else if let Some(var) = raw.secret_env {
        read_env(problems, "outbound.client.secret_env", &var).map(secret)
    } else if let Some(path) = raw.private_key_file {
        private_key(&path, raw.kid, raw.alg.as_deref(), problems)
    } else if let Some(path) = raw.jwt_svid_file {
        // Not read now: the helper may write it after the sidecar starts (both start together
        // in a pod). Its absence is only worth a warning; every exchange reads it.
        if !path.exists() {
            problems.warn(
                "outbound.client.jwt_svid_file",
                format!(
                    "{} does not exist yet: exchanges fail until a SPIFFE helper writes it",
                    path.display()
                ),
            );
        }
        Some(ClientAuth::Svid(Arc::new(
            crate::spiffe::svid_file::SvidFile::new(path),
        )))
    } else {
        None
    };
    let auth = auth.unwrap_or_else(|| secret(String::new()));
    Client { client_id, auth }
}

fn private_key(
    path: &std::path::Path,
    kid: Option<String>,
    alg: Option<&str>,
    problems: &mut Problems,
) -> Option<ClientAuth> {
    let alg = match alg.unwrap_or("ES256") {
        "ES256" => Algorithm::ES256,
        "RS256" => Algorithm::RS256,
        other => {
            problems.push(
                "outbound.client.alg",
                format!("{other:?}: use ES256 or RS256"),
            );
            return None;
        }
    };
    let Some(kid) = kid else {
        problems.push(
            "outbound.client.kid",
            "required with private_key_file (the kid registered at the IdP)",
        );
        return None;
    };
    let pem = read_text(problems, "outbound.client.private_key_file", path)?;
    match SigningKey::from_pem(&kid, alg, &pem) {
        Ok(key) => Some(ClientAuth::PrivateKey(Arc::new(key))),
        Err(e) => {
            problems.push("outbound.client.private_key_file", e.to_string());
            None
        }
    }
}
