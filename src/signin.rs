//! Signs a user in through an OpenID Provider's real login form (authorization code + PKCE S256),
//! the way a browser would (cookies kept, `Origin` sent): `baton login`, `baton demo` and the
//! tests use it to get a user token.

use crate::secret::random_b64;
use crate::secret::{Secret, Token};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{LOCATION, ORIGIN};
use serde::Deserialize;
use url::Url;

/// What the sign-in needs: the client, its redirect URI and the user's credentials.
#[derive(Debug, Clone)]
pub struct Request {
    /// The issuer; endpoints are discovered from it.
    pub issuer: String,
    /// The confidential client the user signs in to (e.g. `service-a`).
    pub client_id: String,
    /// That client's secret (`client_secret_basic` at the token endpoint).
    pub client_secret: Secret,
    /// A redirect URI registered for the client; it is never contacted.
    pub redirect_uri: String,
    /// Space-separated scopes to ask for.
    pub scope: String,
    /// The user's name.
    pub username: String,
    /// The user's password.
    pub password: Secret,
    /// A DPoP key: the code is redeemed with a proof of it, so the tokens are bound to it
    /// (RFC 9449 §5).
    pub dpop: Option<std::sync::Arc<crate::dpop::Holder>>,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    /// The access token (RFC 9068 JWT).
    #[serde(deserialize_with = "token")]
    pub access_token: Token,
    /// The ID token, if the IdP sent one.
    #[serde(default, deserialize_with = "opt_token")]
    pub id_token: Option<Token>,
    /// The refresh token, if the IdP sent one.
    #[serde(default, deserialize_with = "opt_token")]
    pub refresh_token: Option<Token>,
    /// Lifetime of the access token in seconds.
    pub expires_in: Option<u64>,
    /// Granted scope.
    pub scope: Option<String>,
}

fn token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Token, D::Error> {
    String::deserialize(d).map(Token::new)
}

fn opt_token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Token>, D::Error> {
    Option::<String>::deserialize(d).map(|o| o.map(Token::new))
}

/// Why a sign-in failed. Never carries a token, code or password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The IdP could not be reached or answered unreadably.
    #[error("{step}: {source}")]
    Http {
        /// Which step failed.
        step: &'static str,
        /// The transport error.
        source: reqwest::Error,
    },
    /// The IdP answered, but not as the flow expects.
    #[error("{step}: {reason}")]
    Flow {
        /// Which step failed.
        step: &'static str,
        /// What was wrong.
        reason: String,
    },
}

fn flow(step: &'static str, reason: impl Into<String>) -> Error {
    Error::Flow {
        step,
        reason: reason.into(),
    }
}

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
    token_endpoint: String,
}

/// A step-up sign-in (OIDC Core §3.1.2.1): the same IdP session, a stronger `acr`.
#[derive(Debug, Clone)]
pub struct StepUp {
    /// `acr_values` to ask for, e.g. `mfa`.
    pub acr_values: String,
    /// The current ID token, sent as `id_token_hint`.
    pub id_token_hint: Token,
    /// The user's base32 TOTP secret: the one-time code is computed from it (RFC 6238).
    pub totp_secret: Secret,
}

/// What a sign-in returned, and which fields the IdP's pages asked for.
#[derive(Debug)]
pub struct Outcome {
    /// The token endpoint's answer.
    pub tokens: Tokens,
    /// The user-facing fields the IdP asked for, in order (`username`, `password`, `code`).
    pub asked: Vec<String>,
}

/// A client that keeps the IdP's session cookie between sign-ins, like one browser.
pub struct Agent {
    http: reqwest::Client,
}

/// Runs the whole flow: discovery, `/authorize`, the login form, the redirect, the code exchange.
pub async fn password_login(req: &Request) -> Result<Tokens, Error> {
    Ok(Agent::new()?.sign_in(req, None).await?.tokens)
}

/// The current RFC 6238 code (SHA-1, 6 digits, 30 s) for a base32 `secret` at `now`.
pub fn totp_code(secret: &Secret, now: u64) -> Option<String> {
    let bytes = totp_rs::Secret::Encoded(secret.expose().trim().to_uppercase())
        .to_bytes()
        .ok()?;
    let t = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        String::new(),
    );
    Some(t.generate(now))
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
        let http = &self.http;
        let well_known = format!(
            "{}/.well-known/openid-configuration",
            req.issuer.trim_end_matches('/')
        );
        let disc: Discovery = http
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
            })?;

        let verifier = random_b64(32);
        let challenge = URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[verifier.as_bytes()]));
        let state = random_b64(16);
        let nonce = random_b64(16);
        let mut authorize = Url::parse(&disc.authorization_endpoint)
            .map_err(|e| flow("discovery", e.to_string()))?;
        {
            let mut q = authorize.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &req.client_id)
                .append_pair("redirect_uri", &req.redirect_uri)
                .append_pair("scope", &req.scope)
                .append_pair("state", &state)
                .append_pair("nonce", &nonce)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(s) = step_up {
                q.append_pair("acr_values", &s.acr_values)
                    .append_pair("id_token_hint", s.id_token_hint.expose());
            }
        }

        // Follow redirects until a page with a form or the client's redirect URI.
        let mut url = authorize;
        let mut asked: Vec<String> = Vec::new();
        for _ in 0..10 {
            if url.as_str().starts_with(&req.redirect_uri) {
                let code = redirect_code(&url, &state)?;
                let tokens =
                    exchange_code(http, &disc.token_endpoint, req, &code, &verifier).await?;
                return Ok(Outcome { tokens, asked });
            }
            let rsp = http
                .get(url.clone())
                .send()
                .await
                .map_err(|source| Error::Http {
                    step: "authorize",
                    source,
                })?;
            let next = if let Some(loc) = location(&rsp, &url)? {
                loc
            } else {
                let page_url = rsp.url().clone();
                let html = rsp.text().await.map_err(|source| Error::Http {
                    step: "login page",
                    source,
                })?;
                let mut page = html;
                loop {
                    match submit_form(http, &page_url, &page, req, step_up, &mut asked).await? {
                        Submitted::Redirect(next) => break next,
                        // Another page (e.g. the code page after the password page).
                        Submitted::Page(p) => page = p,
                    }
                }
            };
            url = next;
        }
        Err(flow("authorize", "too many redirects"))
    }
}

enum Submitted {
    Redirect(Url),
    Page(String),
}

/// Fills the first form on the page with what it asks for and posts it. A field asked for a
/// second time means the first answer was refused.
async fn submit_form(
    http: &reqwest::Client,
    page: &Url,
    html: &str,
    req: &Request,
    step_up: Option<&StepUp>,
    asked: &mut Vec<String>,
) -> Result<Submitted, Error> {
    let form = Form::parse(html).ok_or_else(|| flow("login page", "no form on the page"))?;
    let action = page
        .join(&form.action)
        .map_err(|e| flow("login page", e.to_string()))?;
    let mut fields = form.fields;
    for (name, value) in fields.iter_mut() {
        let answer = match name.as_str() {
            "username" => req.username.clone(),
            "password" => req.password.expose().to_owned(),
            "code" => step_up
                .and_then(|s| totp_code(&s.totp_secret, crate::jwt::unix_now()))
                .ok_or_else(|| flow("login", "the IdP asks for a one-time code"))?,
            _ => continue,
        };
        if asked.contains(name) {
            return Err(flow(
                "login",
                format!("the IdP asked for {name} again: wrong username, password or code?"),
            ));
        }
        asked.push(name.clone());
        *value = answer;
    }
    // The IdP takes a form only with the pre-login cookie its page set (kept by the cookie
    // store) and from its own origin, as a browser sends it.
    let rsp = http
        .post(action.clone())
        .header(ORIGIN, action.origin().ascii_serialization())
        .form(&fields)
        .send()
        .await
        .map_err(|source| Error::Http {
            step: "login",
            source,
        })?;
    match location(&rsp, &action)? {
        Some(next) => Ok(Submitted::Redirect(next)),
        None if rsp.status().is_success() => {
            let html = rsp.text().await.map_err(|source| Error::Http {
                step: "login",
                source,
            })?;
            Ok(Submitted::Page(html))
        }
        None => Err(flow(
            "login",
            format!(
                "the IdP answered {} instead of redirecting: wrong username, password or code?",
                rsp.status()
            ),
        )),
    }
}

fn location(rsp: &reqwest::Response, base: &Url) -> Result<Option<Url>, Error> {
    if !rsp.status().is_redirection() {
        return Ok(None);
    }
    let loc = rsp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| flow("authorize", "redirect without Location"))?;
    base.join(loc)
        .map(Some)
        .map_err(|e| flow("authorize", e.to_string()))
}

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

async fn exchange_code(
    http: &reqwest::Client,
    token_endpoint: &str,
    req: &Request,
    code: &str,
    verifier: &str,
) -> Result<Tokens, Error> {
    let mut nonce = None;
    // At most twice: an IdP asking for a DPoP nonce (RFC 9449 §8) names it in the refusal.
    for _ in 0..2 {
        let rsp = post_code(http, token_endpoint, req, code, verifier, nonce.as_deref()).await?;
        if rsp.status().is_success() {
            return rsp.json().await.map_err(|source| Error::Http {
                step: "token",
                source,
            });
        }
        let status = rsp.status();
        let fresh = rsp
            .headers()
            .get(crate::dpop::NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = rsp.json().await.unwrap_or_default();
        let error = body
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("unknown");
        match fresh {
            Some(n) if error == "use_dpop_nonce" && nonce.is_none() && req.dpop.is_some() => {
                nonce = Some(n);
            }
            _ => return Err(flow("token", format!("{status}: {error}"))),
        }
    }
    Err(flow("token", "the IdP refused the DPoP nonce it gave"))
}

/// One code redemption, with a DPoP proof (carrying `nonce`) when the request has a key.
async fn post_code(
    http: &reqwest::Client,
    token_endpoint: &str,
    req: &Request,
    code: &str,
    verifier: &str,
    nonce: Option<&str>,
) -> Result<reqwest::Response, Error> {
    let mut post = http.post(token_endpoint);
    if let Some(holder) = &req.dpop {
        let proof = holder
            .proof("POST", token_endpoint, None, nonce, crate::jwt::unix_now())
            .map_err(|e| flow("token", format!("DPoP proof: {e}")))?;
        post = post.header(crate::dpop::HEADER, proof);
    }
    post.basic_auth(
        form_encode(&req.client_id),
        Some(form_encode(req.client_secret.expose())),
    )
    .form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", req.redirect_uri.as_str()),
        ("code_verifier", verifier),
    ])
    .send()
    .await
    .map_err(|source| Error::Http {
        step: "token",
        source,
    })
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The first `<form>` of a page: its action and its named inputs (with their values).
#[derive(Debug, PartialEq)]
struct Form {
    action: String,
    fields: Vec<(String, String)>,
}

impl Form {
    /// A tolerant scan of the login page, enough for forms this project and common IdPs render.
    fn parse(html: &str) -> Option<Self> {
        let start = html.find("<form")?;
        let end = html[start..]
            .find("</form>")
            .map_or(html.len(), |e| start + e);
        let form = &html[start..end];
        let open = &form[..form.find('>')?];
        let action = attr(open, "action").unwrap_or_default();
        let fields = form
            .split("<input")
            .skip(1)
            .filter_map(|tag| {
                let tag = &tag[..tag.find('>')?];
                let name = attr(tag, "name")?;
                Some((name, attr(tag, "value").unwrap_or_default()))
            })
            .collect();
        Some(Self { action, fields })
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = tag[from..].find(&needle) {
        let at = from + i;
        let boundary = at == 0 || tag.as_bytes()[at - 1].is_ascii_whitespace();
        let start = at + needle.len();
        if boundary {
            let len = tag[start..].find('"')?;
            return Some(html_unescape(&tag[start..start + len]));
        }
        from = start;
    }
    None
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_forms_are_read_with_hidden_fields() {
        let html = r#"<main><form method="post" action="/login?x=1&amp;y=2"><input type="hidden" name="csrf" value="a&quot;b">
            <label>User <input id="u" name="username" autocomplete="username"></label>
            <input type="password" name="password"><button>Sign in</button></form></main>"#;
        let form = Form::parse(html).expect("form");
        assert_eq!(form.action, "/login?x=1&y=2");
        assert_eq!(
            form.fields,
            vec![
                ("csrf".into(), "a\"b".into()),
                ("username".into(), String::new()),
                ("password".into(), String::new())
            ]
        );
        assert!(Form::parse("<p>no form</p>").is_none());
    }

    #[test]
    fn redirects_need_the_right_state() {
        let ok = Url::parse("http://app/cb?code=c1&state=s1").expect("url");
        assert_eq!(redirect_code(&ok, "s1").expect("code"), "c1");
        assert!(redirect_code(&ok, "s2").is_err());
        let refused = Url::parse("http://app/cb?error=access_denied&state=s1").expect("url");
        assert!(
            redirect_code(&refused, "s1")
                .unwrap_err()
                .to_string()
                .contains("access_denied")
        );
    }
}
