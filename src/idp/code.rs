//! Authorization codes (RFC 6749 §4.1.2): once the user proved what the pending request needs,
//! a single-use code bound to that request goes back to the client's redirect URI with its
//! `state`. The code's scope is what was asked and the user may have (`openid` always).

use super::authn::Authentication;
use super::pages;
use super::pending::Pending;
use super::state::Idp;
use super::store::CodeGrant;
use crate::http::Body;
use crate::secret::Token;
use http::{HeaderValue, Response};

/// Issues a code for `auth` and redirects to the client with it and `state`, setting `cookies`
/// (a 503 when the store cannot keep the code).
pub(crate) async fn redirect(
    idp: &Idp,
    pending: &Pending,
    auth: Authentication,
    now: u64,
    cookies: &[HeaderValue],
) -> Response<Body> {
    let Ok(code) = issue(idp, pending, auth, now).await else {
        return super::errors::unavailable();
    };
    let mut pairs = vec![("code", code.expose())];
    if let Some(s) = &pending.state {
        pairs.push(("state", s.as_str()));
    }
    let mut rsp = pages::to_client(&idp.config.issuer, &pending.redirect_uri, &pairs);
    pages::set_cookies(&mut rsp, cookies);
    rsp
}

async fn issue(
    idp: &Idp,
    p: &Pending,
    auth: Authentication,
    now: u64,
) -> Result<Token, super::store::StoreError> {
    let user_scope = idp
        .config
        .users
        .get(&auth.user)
        .map(|u| u.scope.clone())
        .unwrap_or_default();
    let scope = p
        .scope
        .iter()
        .filter(|s| *s == "openid" || user_scope.contains(s))
        .cloned()
        .collect();
    let code = Token::new(crate::secret::random_b64(32));
    let grant = CodeGrant {
        client: p.client.clone(),
        redirect_uri: p.redirect_uri.clone(),
        challenge: p.challenge.clone(),
        auth,
        scope,
        resources: p.resources.clone(),
        nonce: p.nonce.clone(),
        expires_at: now + idp.config.lifetimes.code,
        dpop_jkt: p.dpop_jkt.clone(),
    };
    idp.store.put_code(code.sha256(), grant).await?;
    Ok(code)
}
