//! The redirect back from the IdP: the pre-login cookie checked and spent, the code redeemed,
//! the tokens verified, and a new session started behind the session cookie.

use super::session::{Session, SessionId};
use super::sign_in::{Pending, login_cookie};
use super::{Login, redirect};
use crate::exchange::ExchangeError;
use crate::http::cookie;
use crate::http::{Body, Form};
use crate::jwt::Verified;
use crate::jwt::jwks::{Verifier, VerifyFailure};
use crate::secret::{Token, constant_time_eq};
use http::{HeaderMap, Request, Response, StatusCode, header};
use serde_json::Value;
use std::sync::Arc;
use tracing::info;

impl Login {
    /// `GET` [`CALLBACK_PATH`](crate::config::login::CALLBACK_PATH): the sign-in with the
    /// query's `state` ends with a session, or is refused.
    pub(super) async fn callback<B>(
        &self,
        access: &Verifier,
        req: &Request<B>,
        now: u64,
    ) -> Result<Response<Body>, Callback> {
        let q = Form::parse(req.uri().query().unwrap_or("").as_bytes());
        let one = |name| q.one(name).map_err(|_| Callback::Malformed);
        if let Some(error) = one("error")? {
            return Err(Callback::Idp(sanitize(error)));
        }
        let (Some(state), Some(code)) = (one("state")?, one("code")?) else {
            return Err(Callback::Malformed);
        };
        let pending = self.claim(req.headers(), state, now)?;
        let session = self.redeem(access, code, &pending, now).await?;
        // A new id at every sign-in (no session fixation); the old session, if any, ends.
        if let Some(old) = self.session_id(req.headers()) {
            self.sessions.remove(&old);
        }
        let id = self.sessions.insert(session);
        self.metrics.login("signed_in");
        info!("edge login: signed in");
        Ok(self.session_started(&pending.return_to, state, &id))
    }

    /// The pre-login cookie of `state`, live and matching, spent: the first callback with this
    /// state wins, a replay is refused.
    fn claim(&self, headers: &HeaderMap, state: &str, now: u64) -> Result<Pending, Callback> {
        let pending = cookie::read(headers, &login_cookie(state))
            .and_then(|v| self.open_pending(v))
            .ok_or(Callback::NoLoginCookie)?;
        if pending.exp < now {
            return Err(Callback::Expired);
        }
        if !constant_time_eq(pending.state.as_bytes(), state.as_bytes()) {
            return Err(Callback::State);
        }
        let fresh = self
            .used_states
            .entry(crate::secret::sha256(&[state.as_bytes()]))
            .or_insert(())
            .is_fresh();
        if !fresh {
            return Err(Callback::Replayed);
        }
        Ok(pending)
    }

    /// Redeems `code` at the token endpoint with the sign-in's PKCE verifier; the verified
    /// session, marked stepped up when the sign-in was a step-up.
    async fn redeem(
        &self,
        access: &Verifier,
        code: &str,
        pending: &Pending,
        now: u64,
    ) -> Result<Session, Callback> {
        let tokens = self
            .client
            .user_grant(vec![
                ("grant_type", "authorization_code".into()),
                ("code", code.to_owned()),
                ("redirect_uri", self.settings.redirect_uri()),
                ("code_verifier", pending.verifier.clone()),
            ])
            .await
            .map_err(Callback::Token)?;
        let (session, _) = self
            .verify_tokens(access, &tokens, Some(&pending.nonce))
            .await?;
        Ok(Session {
            stepped: pending.step_up.clone().map(|k| (k, now)),
            ..session
        })
    }

    /// The redirect to where the sign-in started: the pre-login cookie of `state` cleared, the
    /// session cookie of `id` set.
    fn session_started(&self, return_to: &str, state: &str, id: &SessionId) -> Response<Body> {
        let mut rsp = redirect(return_to);
        let h = rsp.headers_mut();
        h.append(header::SET_COOKIE, self.clear(&login_cookie(state), "/"));
        h.append(
            header::SET_COOKIE,
            cookie::set(
                cookie::SESSION,
                &self.sealer.seal(cookie::SESSION, id),
                "/",
                self.settings.session_ttl.as_secs(),
                self.settings.secure(),
            ),
        );
        rsp
    }

    /// Checks a token response: the ID token (signature, `iss`, `aud`, `exp`, and `nonce` at
    /// sign-in, OIDC Core §3.1.3.7) and the access token (the inbound rules), same subject.
    pub(super) async fn verify_tokens(
        &self,
        access: &Verifier,
        tokens: &Value,
        nonce: Option<&str>,
    ) -> Result<(Session, Arc<Verified>), Callback> {
        let field = |name: &str| tokens.get(name).and_then(Value::as_str).map(Token::new);
        let at = field("access_token").ok_or(Callback::BadToken("no access token"))?;
        let id_token = field("id_token").ok_or(Callback::BadToken("no ID token"))?;
        let id = self
            .id_verifier
            .verify(&id_token)
            .await
            .map_err(|e| Callback::Verify("ID token", e))?;
        if let Some(nonce) = nonce {
            let got = id.claims.get("nonce").and_then(Value::as_str).unwrap_or("");
            if !constant_time_eq(got.as_bytes(), nonce.as_bytes()) {
                return Err(Callback::BadToken("ID token nonce mismatch"));
            }
        }
        let verified = access
            .verify(&at)
            .await
            .map_err(|e| Callback::Verify("access token", e))?;
        if id.claims.get("sub") != verified.claims.get("sub") {
            return Err(Callback::BadToken(
                "ID and access token name different users",
            ));
        }
        let session = Session {
            access: at,
            access_exp: verified.exp,
            id_token,
            refresh: field("refresh_token"),
            stepped: None,
        };
        Ok((session, verified))
    }
}

/// Why a callback was refused. `Display` carries no token, code or state.
#[derive(Debug, thiserror::Error)]
pub(super) enum Callback {
    #[error("the identity provider answered {0}")]
    Idp(String),
    #[error("the callback lacks state or code, or repeats them")]
    Malformed,
    #[error(
        "no sign-in with this state was started in this browser (missing, expired or unreadable login cookie)"
    )]
    NoLoginCookie,
    #[error("the sign-in took too long; start again")]
    Expired,
    #[error("state does not match the sign-in started in this browser")]
    State,
    #[error("this sign-in response was already used")]
    Replayed,
    #[error("the token endpoint refused: {0}")]
    Token(ExchangeError),
    #[error("{0} did not verify: {1}")]
    Verify(&'static str, VerifyFailure),
    #[error("{0}")]
    BadToken(&'static str),
}

impl Callback {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Callback::Token(ExchangeError::Unavailable { .. }) => StatusCode::BAD_GATEWAY,
            Callback::Verify(_, VerifyFailure::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An OAuth error code kept to its RFC 6749 §5.2 characters, safe to log and show.
fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}
