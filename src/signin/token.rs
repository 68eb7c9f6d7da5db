//! Redeeming the code at the token endpoint, with client authentication and, when the
//! request has a key, a DPoP proof (retried once with the nonce the IdP asks for).

use super::{Error, Request, Tokens, flow};

/// Redeems `code` with the PKCE `verifier`: the tokens.
pub(super) async fn exchange_code(
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
