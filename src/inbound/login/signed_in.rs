//! Requests from a signed-in browser: the session found by its cookie, its tokens refreshed
//! before they expire, and a step-up started when the app asks for one.

use super::callback::Callback;
use super::challenge::StepUp;
use super::session::Session;
use super::{Browser, Login};
use crate::http::Body;
use crate::jwt::jwks::Verifier;
use crate::secret::Token;
use http::{HeaderMap, Response};
use serde_json::Value;
use tracing::info;

impl Login {
    /// The browser's live session and its access token, refreshed first when it expires within
    /// the skew. A failed refresh ends the session (the browser signs in again).
    pub async fn session(
        &self,
        access: &Verifier,
        headers: &HeaderMap,
        now: u64,
    ) -> Option<(Browser, Token)> {
        let id = self.session_id(headers)?;
        let session = self.sessions.get(&id)?;
        let mut s = session.lock().await;
        if s.needs_refresh(now, self.settings.refresh_skew.as_secs()) {
            match self.refresh(access, &s).await {
                Ok(fresh) => {
                    *s = Session {
                        stepped: s.stepped.take(),
                        ..fresh
                    };
                    self.metrics.login("refreshed");
                }
                Err(e) => {
                    self.metrics.login("refresh_failed");
                    info!(reason = %e, "edge login: refresh failed; session ended");
                    drop(s);
                    self.sessions.remove(&id);
                    return None;
                }
            }
        }
        let token = s.access.clone();
        drop(s);
        Some((Browser { id, session }, token))
    }

    async fn refresh(&self, access: &Verifier, s: &Session) -> Result<Session, Callback> {
        let refresh = s
            .refresh
            .as_ref()
            .ok_or(Callback::BadToken("no refresh token"))?;
        let mut tokens = self
            .client
            .user_grant(vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", refresh.expose().to_owned()),
            ])
            .await
            .map_err(Callback::Token)?;
        // OIDC Core §12.2: the ID token may be omitted on refresh; keep the old one then.
        if tokens.get("id_token").is_none()
            && let Some(obj) = tokens.as_object_mut()
        {
            obj.insert("id_token".into(), Value::String(s.id_token.expose().into()));
        }
        let (mut fresh, _) = self.verify_tokens(access, &tokens, None).await?;
        if fresh.refresh.is_none() {
            fresh.refresh = s.refresh.clone();
        }
        Ok(fresh)
    }

    /// Ends the browser's session after its token was refused by the inbound rules.
    pub fn forget(&self, b: &Browser) {
        self.sessions.remove(&b.id);
    }

    /// After the app answered a browser navigation with an RFC 9470 challenge: a redirect to
    /// step up at the IdP, or `None` when this session just stepped up for the same challenge
    /// (the loop bound: the app's 401 is shown).
    pub async fn step_up(
        &self,
        b: &Browser,
        c: &StepUp,
        cookies: &HeaderMap,
        return_to: &str,
        now: u64,
    ) -> Option<Response<Body>> {
        let s = b.session.lock().await;
        if s.just_stepped(&c.key(), now) {
            info!("edge login: step-up already done for this challenge; showing the app's 401");
            return None;
        }
        let hint = s.id_token.clone();
        drop(s);
        Some(self.start(cookies, return_to, Some((c, &hint)), now).await)
    }
}
