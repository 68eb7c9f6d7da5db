//! Whom a token is for: `audience` values (client ids) and RFC 8707 `resource` URIs resolved to
//! audiences along the configured edges. The token endpoint and `/authorize` apply the same
//! rules, so a code never carries a resource the client could not have asked for at `/token`.
//! Every refusal is `invalid_target`, and no value the client sent is echoed.

use super::config::{self, Client};
use super::errors::OAuthError;
use super::state::Idp;
use crate::http::Form;
use serde_json::{Value, json};

/// The requested audiences: `audience` values (client ids) plus `resource` URIs mapped through
/// `resources` (RFC 8707 §2: absolute, no fragment). Unknown → `invalid_target`.
pub fn requested(idp: &Idp, form: &Form) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for a in form.all("audience") {
        if !idp.config.clients.contains_key(a) {
            // The value is not echoed: it is client input and may be anything, even a token.
            return Err(OAuthError::InvalidTarget(
                "unknown audience (not a registered client)".into(),
            ));
        }
        if !out.iter().any(|o| o == a) {
            out.push(a.to_owned());
        }
    }
    for r in form.all("resource") {
        let aud = resource_audience(idp, r)?;
        if !out.contains(aud) {
            out.push(aud.clone());
        }
    }
    if out.is_empty() {
        return Err(OAuthError::InvalidTarget(
            "audience or resource required".into(),
        ));
    }
    Ok(out)
}

/// The audience a `resource` stands for (RFC 8707 §2): an absolute URI without a fragment,
/// configured under `resources`; otherwise `invalid_target` (the value is not echoed).
pub fn resource_audience<'a>(idp: &'a Idp, resource: &str) -> Result<&'a String, OAuthError> {
    if !config::absolute_without_fragment(resource) {
        return Err(OAuthError::InvalidTarget(
            "resource must be an absolute URI without a fragment".into(),
        ));
    }
    idp.config
        .resources
        .get(resource)
        .ok_or_else(|| OAuthError::InvalidTarget("unknown resource".into()))
}

/// RFC 8707 resource URIs → audiences (client ids) the client may address: each URI must be
/// configured under `resources` and an edge `client → audience` must exist, the policy
/// `client_credentials` and token exchange apply. Unknown or refused → `invalid_target`.
pub fn audiences(
    idp: &Idp,
    client: &Client,
    resources: &[String],
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for r in resources {
        let aud = resource_audience(idp, r)?;
        if idp.config.edge(&client.id, aud).is_none() {
            return Err(OAuthError::InvalidTarget(format!(
                "client may not request tokens for {aud}"
            )));
        }
        if !out.contains(aud) {
            out.push(aud.clone());
        }
    }
    Ok(out)
}

/// RFC 8707 §2.2: `resource` at the token endpoint must be among those granted; none asked
/// means all of them.
pub fn narrow(granted: &[String], asked: &[&str]) -> Result<Vec<String>, OAuthError> {
    if asked.is_empty() {
        return Ok(granted.to_vec());
    }
    let mut out: Vec<String> = Vec::new();
    for r in asked {
        if !granted.iter().any(|g| g == r) {
            return Err(OAuthError::InvalidTarget(
                "resource was not part of the authorization grant".into(),
            ));
        }
        if !out.iter().any(|o| o == r) {
            out.push((*r).to_owned());
        }
    }
    Ok(out)
}

/// One audience → a string, several → an array (RFC 7519 §4.1.3).
pub fn aud_value(targets: &[String]) -> Value {
    match targets {
        [one] => json!(one),
        many => json!(many),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowing_keeps_a_subset_and_refuses_anything_else() {
        let granted = vec!["https://a.example/".to_owned(), "https://b.example/".into()];
        assert_eq!(narrow(&granted, &[]).expect("all"), granted);
        assert_eq!(
            narrow(&granted, &["https://b.example/", "https://b.example/"]).expect("subset"),
            ["https://b.example/"]
        );
        assert_eq!(
            narrow(&granted, &["https://c.example/"]).map_err(|e| e.code()),
            Err("invalid_target")
        );
        assert_eq!(
            narrow(&[], &["https://a.example/"]).map_err(|e| e.code()),
            Err("invalid_target")
        );
    }
}
