//! What `baton-idp check` reports beyond errors: warnings about parts of a valid config that
//! can never take effect (a redirect URI no grant uses, an edge no grant walks).

use super::{Config, TOKEN_EXCHANGE};
use crate::config::Problems;

/// Warnings about a valid config: parts that can never take effect.
pub(super) fn warnings(cfg: &Config, client_fields: &[(String, String)], p: &mut Problems) {
    // client id → its field path (`clients[i]`), in file order.
    let field_of = |id: &str| {
        client_fields
            .iter()
            .find(|(cid, _)| cid == id)
            .map(|(_, f)| f.as_str())
    };
    for (id, f) in client_fields {
        let Some(c) = cfg.clients.get(id) else {
            continue;
        };
        if !c.redirect_uris.is_empty() && !c.allows("authorization_code") {
            p.warn(
                format!("{f}.redirect_uris"),
                "registered, but authorization_code is not among grant_types: no sign-in uses them",
            );
        }
        let has_edge = cfg.grants.iter().any(|e| &e.client == id);
        if c.allows("client_credentials") && !has_edge {
            p.warn(
                format!("{f}.grant_types"),
                format!(
                    "client_credentials is allowed but no grants edge starts at {id}: every \
                     request fails with invalid_target"
                ),
            );
        }
        if c.default_audience.is_some() && !c.allows("client_credentials") {
            p.warn(
                format!("{f}.default_audience"),
                "only client_credentials uses it, and this client may not use that grant",
            );
        }
    }
    for (i, e) in cfg.grants.iter().enumerate() {
        let Some(c) = cfg.clients.get(&e.client) else {
            continue;
        };
        // An edge is walked by token exchange, by client_credentials, or by a sign-in that asks
        // for a resource standing for the target (RFC 8707 at /authorize).
        let by_resource =
            c.allows("authorization_code") && cfg.resources.values().any(|aud| aud == &e.target);
        if !c.allows(TOKEN_EXCHANGE) && !c.allows("client_credentials") && !by_resource {
            let at = field_of(&e.client).unwrap_or("clients");
            p.warn(
                format!("grants[{i}]"),
                format!(
                    "{} → {} is never used: {at}.grant_types has neither token exchange nor \
                     client_credentials, and no sign-in resource stands for {}",
                    e.client, e.target, e.target
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
