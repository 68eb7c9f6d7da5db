//! `GET /authorize` (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2): validates the client and its
//! exact redirect URI first (an error page, never a redirect, when either is wrong), then the
//! rest of the request (errors go back to the client with `state`), then shows the login form.
//!
//! Then the login session decides (OIDC Core §3.1.2.1): a session that already proves the
//! factors `acr_values` needs, is fresh enough for `max_age`, belongs to the `id_token_hint`
//! user and is not overridden by `prompt=login` gets a code at once; a session missing only
//! the one-time code gets only the code page (step-up); otherwise the login form. `prompt=none`
//! never shows a page: `login_required` or `interaction_required` go back with `state`.
//! `max_age=0` is `prompt=login` (OIDC Core §3.1.2.1, errata 2). `prompt=select_account` shows
//! the login form (signing in is how an account is chosen). `prompt=consent` asks nothing: every
//! client is registered by the operator, whose configuration is the consent, so there is no
//! consent page and never a `consent_required`. Unknown `prompt` values are ignored.
//! [`Pending`] carries the request, sealed into the page, through the pages [`super::login`]
//! shows; [`params`] bounds what it may hold.

mod params;

use super::config::Factor;
use super::login::{self, html_page};
pub use super::pending::Pending;
use super::{Idp, browser, pending, session};
use crate::http::{Body, Form};
use crate::jwt::{self, Kind, Rules, VerifyError};
use http::{Request, Response, StatusCode, header};
use tracing::info;

/// The authorization endpoint.
pub fn authorize<B>(idp: &Idp, req: &Request<B>, now: u64) -> Response<Body> {
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
    // 2. The rest: errors now go back to the client, with `state` when it is one we would keep.
    let repeated_state = one("state").is_err();
    let state = one("state")
        .ok()
        .flatten()
        .filter(|s| params::text("state", Some(s), params::MAX_STATE, true).is_ok())
        .map(str::to_owned);
    let back = |error: &str, description: &str| {
        redirect_error(idp, &redirect_uri, state.as_deref(), error, description)
    };
    if repeated_state {
        return back("invalid_request", "parameter state is repeated");
    }
    // OIDC Core §6: request objects are not supported, and never silently ignored.
    for (name, error) in [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
    ] {
        if !q.all(name).is_empty() {
            return back(error, &format!("the {name} parameter is not supported"));
        }
    }
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
    let (prompt, max_age, acr_values, hint, login_hint) = match (
        one("prompt"),
        one("max_age"),
        one("acr_values"),
        one("id_token_hint"),
        one("login_hint"),
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
    let Some(challenge) = challenge.filter(|c| params::challenge(c)) else {
        return back(
            "invalid_request",
            "code_challenge (S256, 43 characters) is required",
        );
    };
    if method != Some("S256") {
        return back("invalid_request", "code_challenge_method must be S256");
    }
    // Caps on everything kept or read (the sealed request, then the code, carry them).
    let capped = [
        params::text(
            "state",
            one("state").ok().flatten(),
            params::MAX_STATE,
            true,
        ),
        params::text("nonce", nonce, params::MAX_NONCE, false),
        params::text("prompt", prompt, params::MAX_SHORT, true),
        params::text("acr_values", acr_values, params::MAX_SHORT, true),
        params::text("login_hint", login_hint, params::MAX_SHORT, false),
        params::text("id_token_hint", hint, params::MAX_ID_TOKEN_HINT, true),
    ];
    if let Some(Err((error, description))) = capped.into_iter().find(Result::is_err) {
        return back(error, &description);
    }
    let scope = match params::scope(scope, &super::discovery::scopes(idp)) {
        Ok(s) => s,
        Err((error, description)) => return back(error, &description),
    };
    let resources = match params::resources(&q.all("resource")) {
        Ok(r) => r,
        Err((error, description)) => return back(error, &description),
    };
    // RFC 8707 §2.1: the same policy as at /token, so a code never carries a resource the
    // client could not have asked for there.
    if let Err(e) = super::token::audiences(idp, client, &resources) {
        let description = match &e {
            super::errors::OAuthError::InvalidTarget(d) => d.clone(),
            other => other.to_string(),
        };
        return back("invalid_target", &description);
    }
    let prompt: Vec<&str> = prompt.unwrap_or("").split_ascii_whitespace().collect();
    let prompt_none = prompt.contains(&"none");
    if prompt_none && prompt.len() > 1 {
        return back("invalid_request", "prompt=none cannot be combined");
    }
    let max_age = match max_age.map(str::parse::<u64>) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(_)) => return back("invalid_request", "max_age must be a number of seconds"),
    };
    let hinted = match hint.map(|h| hint_subject(idp, h, now)) {
        None => None,
        Some(Some(sub)) => Some(sub),
        Some(None) => {
            return back(
                "invalid_request",
                "id_token_hint is not an ID token we issued",
            );
        }
    };
    // acr_values are voluntary (OIDC Core §5.5.1.1): the first configured one wins, else `pwd`.
    let needed = acr_values
        .unwrap_or("")
        .split_ascii_whitespace()
        .find_map(|a| idp.config.acr.get(a))
        .cloned()
        .unwrap_or_else(|| vec![Factor::Pwd]);
    if needed.contains(&Factor::Otp) && hinted.as_ref().is_some_and(|u| !can_otp(idp, u)) {
        return back(
            "unmet_authentication_requirements",
            "the user has no one-time-code app enrolled",
        );
    }

    // 3. The login session.
    let current = session::current(idp, req.headers(), now)
        .map(|(_, s)| s)
        .filter(|s| hinted.as_ref().is_none_or(|u| *u == s.user))
        .filter(|s| max_age.is_none_or(|m| m > 0 && now.saturating_sub(s.auth_time()) <= m))
        .filter(|_| {
            !prompt
                .iter()
                .any(|p| matches!(*p, "login" | "select_account"))
        });
    let binding = browser::binding(req.headers(), &idp.config.issuer);
    let pending = Pending {
        client: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        nonce: nonce.map(str::to_owned),
        challenge: challenge.to_owned(),
        scope,
        resources,
        needed,
        user: current.as_ref().map(|s| s.user.clone()),
        browser: browser::binding_hash(&binding),
        expires_at: now + pending::TTL,
    };
    let show = |page: fn(&str, Option<&str>, StatusCode) -> Response<Body>| {
        let Some(sealed) = pending.seal(&idp.sealer) else {
            return back("invalid_request", "the request is too large");
        };
        let mut rsp = page(&sealed, None, StatusCode::OK);
        rsp.headers_mut().append(
            header::SET_COOKIE,
            browser::set_binding(&idp.config.issuer, &binding),
        );
        rsp
    };
    match current {
        Some(s) if s.has(&pending.needed) => {
            info!(client_id = %client.id, "signed in through the session");
            let auth = s.authentication(&idp.config.acr);
            login::code_redirect(idp, &pending, auth, now, &[])
        }
        Some(_) if prompt_none => back(
            "interaction_required",
            "a stronger authentication is needed",
        ),
        Some(s) => {
            if !can_otp(idp, &s.user) {
                return back(
                    "unmet_authentication_requirements",
                    "the user has no one-time-code app enrolled",
                );
            }
            info!(client_id = %client.id, "step-up: one-time code asked");
            show(login::otp_form)
        }
        None if prompt_none => back("login_required", "the user is not signed in"),
        None => {
            info!(client_id = %client.id, "login form shown");
            show(login::form)
        }
    }
}

/// Whether `user` has a TOTP secret.
fn can_otp(idp: &Idp, user: &str) -> bool {
    idp.config
        .users
        .get(user)
        .is_some_and(|u| u.totp_secret.is_some())
}

/// The `sub` of an ID token this IdP issued, for any audience; an expired one still counts as a
/// hint (OIDC Core §3.1.2.1), its signature must verify.
fn hint_subject(idp: &Idp, token: &str, now: u64) -> Option<String> {
    let claims = verify_hint(idp, token, now)?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// The claims of an ID token this IdP signed (our key, our `iss`, `typ` of an ID token), for
/// any audience and even expired: what `id_token_hint` needs at /authorize and end-session
/// (OIDC Core §3.1.2.1, RP-Initiated Logout 1.0 §2).
pub(crate) fn verify_hint(idp: &Idp, token: &str, now: u64) -> Option<jwt::Claims> {
    let rules = Rules {
        audience: None,
        kind: Kind::Id,
        ..Rules::access(idp.config.issuer.clone(), String::new())
    };
    let keys = idp.keys();
    let verified = match jwt::verify(token, &keys.verify, &rules, now) {
        Err(VerifyError::Expired) => {
            let exp = jwt::peek_claims(token)?.get("exp")?.as_u64()?;
            jwt::verify(token, &keys.verify, &rules, exp).ok()?
        }
        other => other.ok()?,
    };
    Some(verified.claims)
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
    crate::http::redirect(StatusCode::SEE_OTHER, url.as_str())
}

/// A 400 page for requests that cannot safely be redirected.
pub fn error_page(message: &str) -> Response<Body> {
    html_page(
        StatusCode::BAD_REQUEST,
        "Sign-in request refused",
        &format!("<p role=\"alert\">{}</p>", login::escape(message)),
    )
}
