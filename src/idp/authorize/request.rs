//! Reading an authorization request (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2), in two
//! steps: the client and its exact redirect URI, which decide whether anything may be sent to
//! that URI at all; then every other parameter, whose errors go back to the client.

use super::{can_otp, params};
use crate::http::Form;
use crate::idp::config::{Client, Factor};
use crate::idp::errors::{AuthorizeError, OAuthError};
use crate::idp::state::Idp;
use crate::idp::{discovery, targets, verify};
use crate::page::strings;

/// What the client asked, checked and bounded.
pub(super) struct Asked<'q> {
    pub(super) challenge: &'q str,
    pub(super) nonce: Option<&'q str>,
    pub(super) scope: Vec<String>,
    pub(super) resources: Vec<String>,
    /// The factors the requested `acr` needs.
    pub(super) needed: Vec<Factor>,
    pub(super) session: SessionRules<'q>,
    /// `dpop_jkt` (RFC 9449 §10): the thumbprint of the key the code must be redeemed with.
    pub(super) dpop_jkt: Option<&'q str>,
}

/// What decides whether a login session may answer without a page: the `prompt` values,
/// `max_age` and the user `id_token_hint` names.
pub(super) struct SessionRules<'q> {
    prompt: Vec<&'q str>,
    max_age: Option<u64>,
    hinted: Option<String>,
}

impl SessionRules<'_> {
    /// `prompt=none`: no page may be shown.
    pub(super) fn prompt_none(&self) -> bool {
        self.prompt.contains(&"none")
    }

    /// Whether a login session of `user` signed in at `auth_time` may answer without a login
    /// form: the hint's user, fresh enough for `max_age` (`max_age=0` is `prompt=login`, OIDC
    /// Core §3.1.2.1 errata 2), and no `prompt=login` or `select_account` (signing in is how an
    /// account is chosen).
    pub(super) fn may_answer(&self, user: &str, auth_time: u64, now: u64) -> bool {
        self.hinted.as_deref().is_none_or(|u| u == user)
            && self
                .max_age
                .is_none_or(|m| m > 0 && now.saturating_sub(auth_time) <= m)
            && !self
                .prompt
                .iter()
                .any(|p| matches!(*p, "login" | "select_account"))
    }
}

/// The request's client and its registered `redirect_uri` (RFC 9700 §4.11); `Err` is the
/// detail of an error page: nothing may be sent to an unchecked URI.
pub(super) fn client<'a>(idp: &'a Idp, q: &Form) -> Result<(&'a Client, String), &'static str> {
    let s = strings();
    let one = |name: &str| q.one(name).map_err(|_| s.repeated_parameter);
    let client = match one("client_id")? {
        Some(id) => idp.config.clients.get(id).ok_or(s.unknown_client)?,
        None => return Err(s.no_client_id),
    };
    match one("redirect_uri")? {
        Some(r) if client.redirect_uris.iter().any(|u| u == r) => Ok((client, r.to_owned())),
        Some(_) => Err(s.unregistered_redirect_uri),
        None => Err(s.no_redirect_uri),
    }
}

/// The `state` sent back with answers: one that is not repeated and that the IdP would keep.
pub(super) fn state(q: &Form) -> Option<String> {
    q.one("state")
        .ok()
        .flatten()
        .filter(|s| params::text("state", Some(s), params::MAX_STATE, true).is_ok())
        .map(str::to_owned)
}

/// The single-valued parameters read at `/authorize`.
struct Singles<'q> {
    response_type: Option<&'q str>,
    challenge: Option<&'q str>,
    method: Option<&'q str>,
    scope: Option<&'q str>,
    nonce: Option<&'q str>,
    prompt: Option<&'q str>,
    max_age: Option<&'q str>,
    acr_values: Option<&'q str>,
    hint: Option<&'q str>,
    login_hint: Option<&'q str>,
    dpop_jkt: Option<&'q str>,
}

impl<'q> Singles<'q> {
    fn read(q: &'q Form) -> Result<Self, AuthorizeError> {
        let one = |name: &str| {
            q.one(name)
                .map_err(|_| AuthorizeError::request("a parameter is repeated"))
        };
        Ok(Singles {
            response_type: one("response_type")?,
            challenge: one("code_challenge")?,
            method: one("code_challenge_method")?,
            scope: one("scope")?,
            nonce: one("nonce")?,
            prompt: one("prompt")?,
            max_age: one("max_age")?,
            acr_values: one("acr_values")?,
            hint: one("id_token_hint")?,
            login_hint: one("login_hint")?,
            dpop_jkt: one("dpop_jkt")?,
        })
    }

    /// Caps on everything kept or read (the sealed request, then the code, carry them).
    fn capped(&self, state: Option<&str>) -> Result<(), AuthorizeError> {
        params::text("state", state, params::MAX_STATE, true)?;
        params::text("nonce", self.nonce, params::MAX_NONCE, false)?;
        params::text("prompt", self.prompt, params::MAX_SHORT, true)?;
        params::text("acr_values", self.acr_values, params::MAX_SHORT, true)?;
        params::text("login_hint", self.login_hint, params::MAX_SHORT, false)?;
        params::jkt(self.dpop_jkt)?;
        params::text("id_token_hint", self.hint, params::MAX_ID_TOKEN_HINT, true)
    }
}

/// Everything but the client and redirect URI, checked in order; the first problem is refused.
pub(super) fn parse<'q>(
    idp: &Idp,
    client: &Client,
    q: &'q Form,
    now: u64,
) -> Result<Asked<'q>, AuthorizeError> {
    if q.one("state").is_err() {
        return Err(AuthorizeError::request("parameter state is repeated"));
    }
    no_request_objects(q)?;
    let p = Singles::read(q)?;
    let challenge = code_flow(client, &p)?;
    p.capped(q.one("state").ok().flatten())?;
    let scope = params::scope(p.scope, &discovery::scopes(idp))?;
    let resources = params::resources(&q.all("resource"))?;
    // RFC 8707 §2.1: the same policy as at /token.
    if let Err(e) = targets::audiences(idp, client, &resources) {
        let description = match &e {
            OAuthError::InvalidTarget(d) => d.clone(),
            other => other.to_string(),
        };
        return Err(AuthorizeError::new("invalid_target", description));
    }
    let session = session_rules(idp, &p, now)?;
    let needed = needed(idp, p.acr_values);
    let hinted = session.hinted.as_ref();
    if needed.contains(&Factor::Otp) && hinted.is_some_and(|u| !can_otp(idp, u)) {
        return Err(AuthorizeError::no_otp());
    }
    Ok(Asked {
        challenge,
        nonce: p.nonce,
        scope,
        resources,
        needed,
        session,
        dpop_jkt: p.dpop_jkt,
    })
}

/// OIDC Core §6: request objects are not supported, and never silently ignored.
fn no_request_objects(q: &Form) -> Result<(), AuthorizeError> {
    for (name, error) in [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
    ] {
        if !q.all(name).is_empty() {
            let description = format!("the {name} parameter is not supported");
            return Err(AuthorizeError::new(error, description));
        }
    }
    Ok(())
}

/// `prompt` (`none` alone), `max_age` (seconds) and `id_token_hint` (one of our ID tokens).
fn session_rules<'q>(
    idp: &Idp,
    p: &Singles<'q>,
    now: u64,
) -> Result<SessionRules<'q>, AuthorizeError> {
    let prompt: Vec<&str> = p.prompt.unwrap_or("").split_ascii_whitespace().collect();
    if prompt.contains(&"none") && prompt.len() > 1 {
        return Err(AuthorizeError::request("prompt=none cannot be combined"));
    }
    let max_age = match p.max_age.map(str::parse::<u64>) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(_)) => {
            return Err(AuthorizeError::request(
                "max_age must be a number of seconds",
            ));
        }
    };
    let hinted = match p.hint {
        None => None,
        Some(h) => Some(verify::hint_subject(idp, h, now).ok_or_else(|| {
            AuthorizeError::request("id_token_hint is not an ID token we issued")
        })?),
    };
    Ok(SessionRules {
        prompt,
        max_age,
        hinted,
    })
}

/// The code flow with PKCE S256 (RFC 7636 §4.3), for a client allowed it: the challenge.
fn code_flow<'q>(client: &Client, p: &Singles<'q>) -> Result<&'q str, AuthorizeError> {
    if p.response_type != Some("code") {
        return Err(AuthorizeError::new(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if !client.allows("authorization_code") {
        return Err(AuthorizeError::new(
            "unauthorized_client",
            "client may not use the authorization code grant",
        ));
    }
    let Some(challenge) = p.challenge.filter(|c| params::challenge(c)) else {
        return Err(AuthorizeError::request(
            "code_challenge (S256, 43 characters) is required",
        ));
    };
    if p.method != Some("S256") {
        return Err(AuthorizeError::request(
            "code_challenge_method must be S256",
        ));
    }
    Ok(challenge)
}

/// The factors `acr_values` asks for. They are voluntary (OIDC Core §5.5.1.1): the first
/// configured one wins, else `pwd`.
fn needed(idp: &Idp, acr_values: Option<&str>) -> Vec<Factor> {
    acr_values
        .unwrap_or("")
        .split_ascii_whitespace()
        .find_map(|a| idp.config.acr.get(a))
        .cloned()
        .unwrap_or_else(|| vec![Factor::Pwd])
}
