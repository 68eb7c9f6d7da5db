//! `GET /authorize` (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2): validates the client and its
//! exact redirect URI first (an error page, never a redirect, when either is wrong), then the
//! rest of the request (errors go back to the client with `state`), then shows the login form.
//!
//! A later issue adds sessions, `prompt=none`, `max_age`, `id_token_hint` and `acr_values`
//! step-up here: [`Pending`] carries the request to whichever factors [`super::login`] asks for.

use super::login::{self, html_page};
use super::{Idp, random};
use crate::http::{Body, Form};
use crate::secret::Secret;
use http::{HeaderValue, Request, Response, StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use tracing::info;

/// An authorization request waiting for the user to sign in.
#[derive(Debug)]
pub struct Pending {
    pub(crate) client: String,
    pub(crate) redirect_uri: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) challenge: String,
    pub(crate) scope: Vec<String>,
    /// Per-request CSRF token, echoed by the form.
    pub(crate) csrf: Secret,
    pub(crate) attempts: AtomicU32,
}

/// The authorization endpoint.
pub fn authorize<B>(idp: &Idp, req: &Request<B>, _now: u64) -> Response<Body> {
    let q = Form::parse(req.uri().query().unwrap_or("").as_bytes());
    let one = |name: &str| {
        q.one(name)
            .map_err(|_| format!("parameter {name} is repeated"))
    };
    // 1. Client and redirect URI, before anything may be sent to that URI (RFC 9700 §4.11).
    let client = match one("client_id") {
        Ok(Some(id)) => match idp.config.clients.get(id) {
            Some(c) => c,
            None => return error_page("Unknown client."),
        },
        Ok(None) => return error_page("The request has no client_id."),
        Err(e) => return error_page(&e),
    };
    let redirect_uri = match one("redirect_uri") {
        Ok(Some(r)) if client.redirect_uris.iter().any(|u| u == r) => r.to_owned(),
        Ok(Some(_)) => return error_page("The redirect_uri is not registered for this client."),
        Ok(None) => return error_page("The request has no redirect_uri."),
        Err(e) => return error_page(&e),
    };
    // 2. The rest: errors now go back to the client.
    let state = one("state").ok().flatten().map(str::to_owned);
    let back = |error: &str, description: &str| {
        redirect_error(idp, &redirect_uri, state.as_deref(), error, description)
    };
    let (response_type, challenge, method, scope, nonce) = match (
        one("response_type"),
        one("code_challenge"),
        one("code_challenge_method"),
        one("scope"),
        one("nonce"),
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)) => (a, b, c, d, e),
        _ => return back("invalid_request", "a parameter is repeated"),
    };
    if response_type != Some("code") {
        return back(
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if !client.allows("authorization_code") {
        return back(
            "unauthorized_client",
            "client may not use the authorization code grant",
        );
    }
    let Some(challenge) = challenge.filter(|c| c.len() == 43) else {
        return back(
            "invalid_request",
            "code_challenge (S256, 43 characters) is required",
        );
    };
    if method != Some("S256") {
        return back("invalid_request", "code_challenge_method must be S256");
    }
    let scope: Vec<String> = scope
        .unwrap_or("openid")
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    let id = random(24);
    let csrf = random(24);
    let pending = Pending {
        client: client.id.clone(),
        redirect_uri,
        state,
        nonce: nonce.map(str::to_owned),
        challenge: challenge.to_owned(),
        scope,
        csrf: Secret::new(csrf.clone()),
        attempts: AtomicU32::new(0),
    };
    idp.state.pending.insert(id.clone(), Arc::new(pending));
    info!(client_id = %client.id, "login form shown");
    login::form(&id, &csrf, None, StatusCode::OK)
}

/// Sends the user agent back to the client with an error (RFC 6749 §4.1.2.1, RFC 9207 `iss`).
pub fn redirect_error(
    idp: &Idp,
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> Response<Body> {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    redirect(idp, redirect_uri, &pairs)
}

/// 303 to `redirect_uri` with `pairs` and `iss` added to its query.
pub fn redirect(idp: &Idp, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response<Body> {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page("The redirect_uri is not a valid URL.");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        q.append_pair("iss", &idp.config.issuer);
    }
    let mut rsp = Response::new(crate::http::empty());
    *rsp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        rsp.headers_mut().insert(header::LOCATION, v);
    }
    rsp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    rsp
}

/// A 400 page for requests that cannot safely be redirected.
pub fn error_page(message: &str) -> Response<Body> {
    html_page(
        StatusCode::BAD_REQUEST,
        "Sign-in request refused",
        &format!("<p role=\"alert\">{}</p>", login::escape(message)),
    )
}
