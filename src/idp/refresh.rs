//! Refresh tokens (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).
//!
//! Every refresh token belongs to a grant [`Family`]: the chain of tokens rotated from one
//! authorization code, named by the `grant_id` its access tokens carry. Only the family's newest
//! token works. A rotated-away token presented again means one of two parties holds a stolen
//! copy, so the whole family is revoked (its refresh token, and through
//! [`revocation`](super::revocation) every access token descending from it, exchanged ones
//! included) and the caller gets `invalid_grant`. A family whose login session ended is
//! refused the same way.

use super::config::Client;
use super::errors::OAuthError;
use super::login::Authentication;
use super::revocation::{Lineage, Root};
use super::token::{audiences, issue_user_tokens};
use super::{Idp, random};
use crate::http::{Body, Form, json};
use crate::secret::Token;
use http::{Response, StatusCode};
use serde_json::json;
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{info, warn};

/// The shared state of one chain of rotated refresh tokens.
#[derive(Debug)]
pub struct Family {
    /// The `grant_id` of every token issued in this family.
    id: String,
    /// The hash of the only refresh token that works; `None` once the family is revoked.
    current: Option<[u8; 32]>,
}

/// A family shared by its tokens and its code.
pub type FamilyRef = Arc<Mutex<Family>>;

/// A refresh token's server-side record. Rotated tokens stay stored (until their expiry) so that
/// their reuse is recognised.
#[derive(Debug)]
pub struct RefreshGrant {
    pub(crate) client: String,
    pub(crate) auth: Authentication,
    /// The scope originally granted; a refresh may ask for less, never more.
    pub(crate) scope: Vec<String>,
    /// RFC 8707 resource URIs originally granted; a refresh may narrow them.
    pub(crate) resources: Vec<String>,
    /// The earlier of the refresh lifetime and the sign-in's end (`lifetimes.sign_in`).
    pub(crate) expires_at: u64,
    pub(crate) family: FamilyRef,
}

impl RefreshGrant {
    /// Whether the grant's session or family was revoked.
    fn revoked(&self, f: &Family, idp: &Idp, now: u64) -> bool {
        let lineage = Lineage {
            user: &self.auth.user,
            auth_time: self.auth.auth_time,
            sid: self.auth.sid.as_deref(),
            grant: Some(&f.id),
        };
        idp.state.revocations.is_revoked(&lineage, now)
    }
}

pub(crate) fn lock(f: &Mutex<Family>) -> MutexGuard<'_, Family> {
    match f.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Starts a family for the tokens issued from one authorization code.
pub fn new_family() -> FamilyRef {
    Arc::new(Mutex::new(Family {
        id: random(16),
        current: None,
    }))
}

impl Family {
    /// The `grant_id` its tokens carry.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Mints the family's next refresh token into the token response `body` when `grant` is given
/// (rotation: the previous one stops working). Runs under the family's lock, so two uses of one
/// refresh token cannot both rotate it.
pub(crate) fn settle(
    idp: &Idp,
    f: &mut Family,
    mut body: serde_json::Value,
    grant: Option<RefreshGrant>,
) -> serde_json::Value {
    if let Some(grant) = grant {
        let token = Token::new(random(32));
        let key = token.sha256();
        idp.state.refresh.insert(key, Arc::new(grant));
        f.current = Some(key);
        body["refresh_token"] = json!(token.expose());
    }
    body
}

/// Revokes a family: its current refresh token and every token descending from it, for
/// `auth`'s user.
pub fn revoke(idp: &Idp, family: &Mutex<Family>, auth: &Authentication, now: u64) {
    revoke_locked(idp, &mut lock(family), auth, now);
}

fn revoke_locked(idp: &Idp, f: &mut Family, auth: &Authentication, now: u64) {
    if let Some(k) = f.current.take() {
        idp.state.refresh.invalidate(&k);
    }
    idp.state
        .revocations
        .revoke(&auth.user, Root::Grant(&f.id), auth.auth_time, now);
    info!(grant_id = %f.id, "grant family revoked");
}

/// The grant of a refresh token that still works (RFC 7662 introspection).
pub fn active(idp: &Idp, token: &Token, now: u64) -> Option<Arc<RefreshGrant>> {
    let key = token.sha256();
    let grant = idp.state.refresh.get(&key)?;
    let family = lock(&grant.family);
    let live =
        family.current == Some(key) && grant.expires_at > now && !grant.revoked(&family, idp, now);
    drop(family);
    live.then_some(grant)
}

/// The `grant_type=refresh_token` branch of `/token`: rotation, reuse detection, and an
/// optional narrower `scope` (RFC 6749 §6) or `resource` (RFC 8707 §2.2).
pub fn refresh(
    idp: &Idp,
    client: &Client,
    form: &Form,
    now: u64,
) -> Result<Response<Body>, OAuthError> {
    let token = Token::new(
        form.one("refresh_token")?
            .ok_or_else(|| OAuthError::request("refresh_token required"))?,
    );
    let bad =
        || OAuthError::InvalidGrant("refresh token is invalid, expired or already used".into());
    let key = token.sha256();
    let grant = idp.state.refresh.get(&key).ok_or_else(bad)?;
    if grant.client != client.id {
        return Err(bad());
    }
    let mut family = lock(&grant.family);
    if family.current != Some(key) {
        if family.current.is_some() {
            revoke_locked(idp, &mut family, &grant.auth, now);
            idp.metrics.refresh_reuse();
            warn!(client_id = %client.id, token = %token, "refresh token reused; grant family revoked");
        }
        return Err(bad());
    }
    if grant.expires_at <= now || grant.revoked(&family, idp, now) {
        return Err(bad());
    }
    let scope = match form.one("scope")? {
        Some(s) => {
            let asked: Vec<String> = s.split_ascii_whitespace().map(str::to_owned).collect();
            // Scope values are not echoed: client input, possibly a pasted token.
            if asked.iter().any(|a| !grant.scope.contains(a)) {
                return Err(OAuthError::InvalidScope(
                    "a requested scope was not granted".into(),
                ));
            }
            asked
        }
        None => grant.scope.clone(),
    };
    let resources = narrow(&grant.resources, &form.all("resource"))?;
    let targets = audiences(idp, client, &resources)?;
    let issued = issue_user_tokens(
        idp,
        client,
        &grant.auth,
        family.id(),
        &scope,
        &targets,
        None,
        now,
    )?;
    // The rotated token keeps the original grant (RFC 6749 §6): a narrower request narrows only
    // this access token.
    let next = client.allows("refresh_token").then(|| RefreshGrant {
        client: grant.client.clone(),
        auth: grant.auth.clone(),
        scope: grant.scope.clone(),
        resources: grant.resources.clone(),
        expires_at: grant.expires_at,
        family: grant.family.clone(),
    });
    let body = settle(idp, &mut family, issued, next);
    Ok(json(StatusCode::OK, &body))
}

/// RFC 8707 §2.2: `resource` at the token endpoint must be among those granted; none asked
/// means all of them.
pub fn narrow(granted: &[String], asked: &[&str]) -> Result<Vec<String>, OAuthError> {
    if asked.is_empty() {
        return Ok(granted.to_vec());
    }
    let mut out: Vec<String> = Vec::new();
    for r in asked {
        if !granted.iter().any(|g| g == r) {
            return Err(OAuthError::InvalidTarget(
                "resource was not part of the authorization grant".into(),
            ));
        }
        if !out.iter().any(|o| o == r) {
            out.push((*r).to_owned());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_keeps_a_subset_and_refuses_anything_else() {
        let granted = vec!["https://a.example/".to_owned(), "https://b.example/".into()];
        assert_eq!(narrow(&granted, &[]).expect("all"), granted);
        assert_eq!(
            narrow(&granted, &["https://b.example/", "https://b.example/"]).expect("subset"),
            ["https://b.example/"]
        );
        assert_eq!(
            narrow(&granted, &["https://c.example/"]).map_err(|e| e.code()),
            Err("invalid_target")
        );
        assert_eq!(
            narrow(&[], &["https://a.example/"]).map_err(|e| e.code()),
            Err("invalid_target")
        );
    }
}
