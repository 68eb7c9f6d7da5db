//! The `client_credentials` grant (RFC 6749 §4.4): a token for the client itself (`sub` = client
//! id) addressed to the requested audience or RFC 8707 resources (or, when the request names
//! neither, the client's `default_audience`), along a configured edge; scope ⊆ the client's
//! scopes.

use crate::http::Form;
use crate::idp::config::Client;
use crate::idp::errors::OAuthError;
use crate::idp::issue::{base_claims, bind, sign, token_type};
use crate::idp::state::Idp;
use crate::idp::targets;
use serde_json::{Value, json};

/// Issues the client's own access token.
pub fn client_credentials(
    idp: &Idp,
    client: &Client,
    form: &Form,
    jkt: Option<&str>,
    now: u64,
) -> Result<Value, OAuthError> {
    let targets = audience(idp, client, form)?;
    let scope: Vec<String> = match form.one("scope")? {
        Some(s) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        None => client.scopes.clone(),
    };
    if scope.iter().any(|s| !client.scopes.contains(s)) {
        return Err(OAuthError::InvalidScope(
            "a requested scope is not allowed for this client".into(),
        ));
    }
    let lifetime = idp.config.lifetimes.access;
    let mut claims = base_claims(idp, &client.id, &client.id, now, lifetime);
    claims.insert("aud".into(), targets::aud_value(&targets));
    if !scope.is_empty() {
        claims.insert("scope".into(), json!(scope.join(" ")));
    }
    bind(&mut claims, jkt);
    let access = sign(idp, "at+jwt", &claims)?;
    Ok(json!({
        "access_token": access,
        "token_type": token_type(jkt),
        "expires_in": lifetime,
        "scope": scope.join(" "),
    }))
}

/// The audiences asked, else the client's `default_audience`; each along an edge of the client.
fn audience(idp: &Idp, client: &Client, form: &Form) -> Result<Vec<String>, OAuthError> {
    let named = !form.all("audience").is_empty() || !form.all("resource").is_empty();
    let targets = match &client.default_audience {
        _ if named => targets::requested(idp, form)?,
        Some(aud) => vec![aud.clone()],
        None => {
            return Err(OAuthError::InvalidTarget(
                "audience or resource required: send audience (the client id of the service \
                 to call) or resource (an RFC 8707 resource URI), or give the client a \
                 default_audience"
                    .into(),
            ));
        }
    };
    for t in &targets {
        if idp.config.edge(&client.id, t).is_none() {
            return Err(OAuthError::InvalidTarget(format!(
                "client may not call {t}"
            )));
        }
    }
    Ok(targets)
}
