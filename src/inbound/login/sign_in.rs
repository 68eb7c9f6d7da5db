//! Starting a sign-in: the redirect to the IdP's authorization endpoint and the sealed
//! pre-login cookie that carries the sign-in's secrets until the callback.

use super::challenge::{self, StepUp};
use super::{LOGIN_TTL, Login, MAX_PENDING, redirect, unavailable};
use crate::http::Body;
use crate::http::cookie;
use crate::secret::Token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Response, header};
use serde::{Deserialize, Serialize};
use url::Url;

/// What the pre-login cookie carries, sealed: nothing of it is kept server-side until the
/// callback, so unauthenticated requests cost no memory.
#[derive(Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) state: String,
    pub(super) verifier: String,
    pub(super) nonce: String,
    pub(super) return_to: String,
    /// The challenge key when this sign-in is a step-up (loop bound).
    pub(super) step_up: Option<String>,
    pub(super) exp: u64,
}

/// The pre-login cookie names start with this.
const LOGIN_PREFIX: &str = "baton-login-";

/// The pre-login cookie of the sign-in with `state`: [`LOGIN_PREFIX`] + 8 hex digits of its hash.
pub(super) fn login_cookie(state: &str) -> String {
    let h = crate::secret::sha256(&[state.as_bytes()]);
    format!(
        "{LOGIN_PREFIX}{:02x}{:02x}{:02x}{:02x}",
        h[0], h[1], h[2], h[3]
    )
}

impl Login {
    /// Sends the browser to the IdP's authorization endpoint (OIDC Core §3.1.2.1) and sets the
    /// sealed pre-login cookie. A step-up adds `acr_values`, `max_age` and `id_token_hint`.
    /// `cookies` are the request's headers: earlier pre-login cookies beyond [`MAX_PENDING`],
    /// expired or unreadable, are cleared.
    pub async fn start(
        &self,
        cookies: &HeaderMap,
        return_to: &str,
        step_up: Option<(&StepUp, &Token)>,
        now: u64,
    ) -> Response<Body> {
        let Some(ep) = self.endpoints().await else {
            return unavailable();
        };
        let pending = Pending {
            state: crate::secret::random_b64(16),
            verifier: crate::secret::random_b64(32),
            nonce: crate::secret::random_b64(16),
            return_to: challenge::safe_return(return_to).to_owned(),
            step_up: step_up.map(|(c, _)| c.key()),
            exp: now + LOGIN_TTL,
        };
        let url = self.authorize_url(&ep.authorization_endpoint, &pending, step_up);
        let sealed = serde_json::to_vec(&pending)
            .map(|p| self.sealer.seal(cookie::LOGIN, &p))
            .unwrap_or_default();
        self.metrics.login(if step_up.is_some() {
            "step_up"
        } else {
            "redirect"
        });
        let mut rsp = redirect(url.as_str());
        for stale in self.stale_logins(cookies, now) {
            rsp.headers_mut()
                .append(header::SET_COOKIE, self.clear(stale, "/"));
        }
        rsp.headers_mut().append(
            header::SET_COOKIE,
            cookie::set(
                &login_cookie(&pending.state),
                &sealed,
                "/",
                LOGIN_TTL,
                self.settings.secure(),
            ),
        );
        rsp
    }

    /// The authorization request of `pending` (with PKCE S256), and of the step-up if any.
    fn authorize_url(
        &self,
        endpoint: &Url,
        pending: &Pending,
        step_up: Option<(&StepUp, &Token)>,
    ) -> Url {
        let pkce = URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[pending.verifier.as_bytes()]));
        let mut url = endpoint.clone();
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.settings.redirect_uri())
            .append_pair("scope", &self.settings.scope)
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce)
            .append_pair("code_challenge_method", "S256");
        if let Some((c, hint)) = step_up {
            if let Some(acr) = &c.acr_values {
                q.append_pair("acr_values", acr);
            }
            if let Some(age) = c.max_age {
                q.append_pair("max_age", &age.to_string());
            }
            q.append_pair("id_token_hint", hint.expose());
        }
        drop(q);
        url
    }

    /// The pre-login cookies to clear before one more is set: unreadable or expired ones, and
    /// the oldest live ones so that at most [`MAX_PENDING`] remain with the new one.
    fn stale_logins<'a>(&self, headers: &'a HeaderMap, now: u64) -> Vec<&'a str> {
        let mut live = Vec::new();
        let mut stale = Vec::new();
        for (name, value) in cookie::with_prefix(headers, LOGIN_PREFIX, 64) {
            match self.open_pending(value) {
                Some(p) if p.exp >= now => live.push((p.exp, name)),
                _ => stale.push(name),
            }
        }
        live.sort_unstable();
        let excess = (live.len() + 1).saturating_sub(MAX_PENDING);
        stale.extend(live.into_iter().take(excess).map(|(_, name)| name));
        stale
    }

    pub(super) fn open_pending(&self, value: &str) -> Option<Pending> {
        let plain = self.sealer.open(cookie::LOGIN, value)?;
        serde_json::from_slice(&plain).ok()
    }
}
