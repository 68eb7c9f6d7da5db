//! The walk through the IdP's pages as a browser makes it: discovery, `/authorize` with PKCE,
//! redirects followed and forms filled until the client's redirect URI brings the code.

use super::form::{Submitted, submit_form};
use super::token::exchange_code;
use super::{Agent, Error, Outcome, Request, StepUp, flow, location};
use crate::secret::random_b64;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use url::Url;

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

impl Agent {
    /// A fresh client with an empty cookie jar.
    pub fn new() -> Result<Agent, Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|source| Error::Http {
                step: "build client",
                source,
            })?;
        Ok(Agent { http })
    }

    /// Signs in (or, with `step_up`, steps up) through the IdP's pages; fills the username,
    /// password and one-time-code fields the pages ask for.
    pub async fn sign_in(&self, req: &Request, step_up: Option<&StepUp>) -> Result<Outcome, Error> {
        let disc = self.discover(&req.issuer).await?;
        let verifier = random_b64(32);
        let state = random_b64(16);
        // Follow redirects until a page with a form or the client's redirect URI.
        let mut url = authorize_url(&disc, req, step_up, &verifier, &state)?;
        let mut asked: Vec<String> = Vec::new();
        for _ in 0..10 {
            if url.as_str().starts_with(&req.redirect_uri) {
                let code = redirect_code(&url, &state)?;
                let tokens =
                    exchange_code(&self.http, &disc.token_endpoint, req, &code, &verifier).await?;
                return Ok(Outcome { tokens, asked });
            }
            url = self.follow(&url, req, step_up, &mut asked).await?;
        }
        Err(flow("authorize", "too many redirects"))
    }

    /// The IdP's endpoints, from its discovery document.
    async fn discover(&self, issuer: &str) -> Result<Discovery, Error> {
        let well_known = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        self.http
            .get(&well_known)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|source| Error::Http {
                step: "discovery",
                source,
            })?
            .json()
            .await
            .map_err(|source| Error::Http {
                step: "discovery",
                source,
            })
    }

    /// Where `url` leads: its redirect, or where its page's forms lead once filled in.
    async fn follow(
        &self,
        url: &Url,
        req: &Request,
        step_up: Option<&StepUp>,
        asked: &mut Vec<String>,
    ) -> Result<Url, Error> {
        let rsp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|source| Error::Http {
                step: "authorize",
                source,
            })?;
        if let Some(loc) = location(&rsp, url)? {
            return Ok(loc);
        }
        let page_url = rsp.url().clone();
        let mut page = rsp.text().await.map_err(|source| Error::Http {
            step: "login page",
            source,
        })?;
        loop {
            match submit_form(&self.http, &page_url, &page, req, step_up, asked).await? {
                Submitted::Redirect(next) => return Ok(next),
                // Another page (e.g. the code page after the password page).
                Submitted::Page(p) => page = p,
            }
        }
    }
}

/// The authorization request (code, PKCE S256 of `verifier`, `state`, a fresh `nonce`), with
/// `acr_values` and `id_token_hint` for a step-up.
fn authorize_url(
    disc: &Discovery,
    req: &Request,
    step_up: Option<&StepUp>,
    verifier: &str,
    state: &str,
) -> Result<Url, Error> {
    let challenge = URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[verifier.as_bytes()]));
    let nonce = random_b64(16);
    let mut authorize =
        Url::parse(&disc.authorization_endpoint).map_err(|e| flow("discovery", e.to_string()))?;
    let mut q = authorize.query_pairs_mut();
    q.append_pair("response_type", "code")
        .append_pair("client_id", &req.client_id)
        .append_pair("redirect_uri", &req.redirect_uri)
        .append_pair("scope", &req.scope)
        .append_pair("state", state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if let Some(s) = step_up {
        q.append_pair("acr_values", &s.acr_values)
            .append_pair("id_token_hint", s.id_token_hint.expose());
    }
    drop(q);
    Ok(authorize)
}

/// The code in the client's redirect, once its `state` is the one sent.
fn redirect_code(url: &Url, state: &str) -> Result<String, Error> {
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    if let Some(error) = get("error") {
        return Err(flow("authorize", format!("the IdP refused: {error}")));
    }
    if get("state").as_deref() != Some(state) {
        return Err(flow("authorize", "state mismatch"));
    }
    get("code").ok_or_else(|| flow("authorize", "no code in the redirect"))
}

#[cfg(test)]
mod tests;
