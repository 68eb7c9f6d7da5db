//! `users[]` of `idp.yaml`: who can sign in through the login form, with a password hash and an
//! optional TOTP secret, each from a file, an environment variable, or inline under the
//! demo-material rule; claims the IdP owns are refused.

use super::raw::RawUser;
use super::secrets::{Sources, Spec, warn_demo};
use super::{RESERVED, User};
use crate::config::Problems;
use crate::secret::Secret;
use std::collections::BTreeMap;

/// Users by username.
pub(super) fn users(
    raw: Vec<RawUser>,
    sources: &Sources,
    p: &mut Problems,
) -> BTreeMap<String, User> {
    let mut users = BTreeMap::new();
    for (i, u) in raw.into_iter().enumerate() {
        let f = format!("users[{i}]");
        let (password_hash, totp_secret) = user_secrets(&u, &f, sources, p);
        for name in u.claims.keys().filter(|k| RESERVED.contains(&k.as_str())) {
            p.push(format!("{f}.claims.{name}"), "is reserved: the IdP sets it");
        }
        if users.contains_key(&u.username) {
            p.push(format!("{f}.username"), "duplicate username");
        }
        users.insert(
            u.username.clone(),
            User {
                username: u.username,
                password_hash: Secret::new(password_hash.unwrap_or_default()),
                claims: u.claims,
                scope: u
                    .scope
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
                totp_secret: totp_secret.map(Secret::new),
            },
        );
    }
    users
}

/// A user's password hash (required, argon2 PHC) and TOTP secret (optional, base32), each from
/// the file, the environment or inline, under the demo-material rule.
fn user_secrets(
    u: &RawUser,
    f: &str,
    sources: &Sources,
    p: &mut Problems,
) -> (Option<String>, Option<String>) {
    let hash = Spec {
        name: "password_hash",
        what: "password hash",
        make: "baton-idp hash-password",
        inline: u.password_hash.as_deref(),
        file: u.password_hash_file.as_deref(),
        env: u.password_hash_env.as_deref(),
    };
    let totp = Spec {
        name: "totp_secret",
        what: "TOTP secret",
        make: "head -c 20 /dev/urandom | base32",
        inline: u.totp_secret.as_deref(),
        file: u.totp_secret_file.as_deref(),
        env: u.totp_secret_env.as_deref(),
    };
    let mut demo = Vec::new();
    let password_hash = sources.read(f, &hash, p);
    match &password_hash {
        Some(found) if argon2::PasswordHash::new(&found.value).is_ok() => {
            sources.vet(f, &hash, found, &mut demo, p);
        }
        Some(_) => p.push(
            format!("{f}.password_hash"),
            "must be an argon2 PHC string: make one with `baton-idp hash-password`",
        ),
        None if hash.given() => {}
        None => p.push(
            f,
            "needs password_hash_file or password_hash_env (make the hash with \
             `baton-idp hash-password`)",
        ),
    }
    let totp_secret = sources.read(f, &totp, p);
    if let Some(found) = &totp_secret {
        if crate::idp::totp::decode(&found.value).is_some() {
            sources.vet(f, &totp, found, &mut demo, p);
        } else {
            p.push(
                format!("{f}.totp_secret"),
                "must be base32 of at least 16 bytes (e.g. `head -c 20 /dev/urandom | base32`)",
            );
        }
    }
    warn_demo(f, &format!("user {}", u.username), &demo, p);
    (password_hash.map(|h| h.value), totp_secret.map(|t| t.value))
}
