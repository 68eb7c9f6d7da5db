//! The raw `sidecar.yaml` made a typed [`Config`]: each section validated by its own module,
//! then what the sections say of each other (routes and the listener's TLS, routes and issuers,
//! browser sign-in and the outbound client).

use super::{AdminSettings, Config, InboundSettings, Listeners, RawConfig};
use crate::config::findings::Problems;
use crate::config::values::{self, addr};
use crate::config::yaml::Document;
use crate::config::{dpop, inbound_tls, issuers, limits, login, outbound, routes};
use crate::http::path::PathRules;

/// Validates every section of `raw`, then what sections say of each other.
pub(super) fn validate(raw: RawConfig, doc: &Document, p: &mut Problems) -> Config {
    if raw.audience.trim().is_empty() || raw.audience.contains('"') {
        p.push("audience", "must be this service's name, e.g. service-b");
    }
    let listeners = Listeners {
        inbound: addr(p, "listeners.inbound", &raw.listeners.inbound),
        outbound: addr(p, "listeners.outbound", &raw.listeners.outbound),
        admin: addr(p, "listeners.admin", &raw.listeners.admin),
    };
    let app = addr(p, "app", &raw.app);
    let claims_header = values::identity_header(
        p,
        "claims_header",
        &raw.claims_header,
        &[],
        "x-baton-claims",
    );
    let peer_header = values::identity_header(
        p,
        "peer_header",
        &raw.peer_header,
        &[&claims_header],
        "x-baton-peer",
    );
    let algorithms = values::algorithms(p, "algorithms", &raw.algorithms);
    if raw.leeway > crate::jwt::MAX_LEEWAY {
        p.push("leeway", "must be at most 60 seconds");
    }
    let jwks = limits::jwks(p, "jwks", raw.jwks);
    let issuers = issuers::validate(
        p,
        issuers::Defaults {
            issuer: &raw.issuer,
            audience: &raw.audience,
            algorithms: &algorithms,
            jwks: &jwks,
        },
        raw.issuers,
    );
    let issuer = issuers
        .first()
        .map(|i| i.issuer.clone())
        .unwrap_or_default();
    let limits = limits::limits(p, raw.limits);
    let routes = routes::validate(raw.routes, p);
    let tls = raw.inbound.tls.and_then(|t| inbound_tls::validate(t, p));
    routes::check_peers(&routes, tls.as_ref(), p);
    issuers::check_routes(&routes, &issuers, p);
    let outbound = outbound::validate(raw.outbound, p);
    let routes_on = routes
        .iter()
        .any(|r| matches!(r.dpop, Some(m) if m != dpop::DpopMode::Off));
    let dpop = dpop::validate(raw.dpop, routes_on, p);
    outbound::check_issuer(&outbound, &issuer, p);
    let login = raw.login.map(|l| login::validate(l, p));
    check_login(p, &routes, login.as_ref(), &outbound, &raw.audience);
    let txn_token = raw.txn_token.map(|t| {
        let taken = [&claims_header, &peer_header];
        crate::config::txn::validate(t, &taken, &outbound.client.client_id, p)
    });
    Config {
        file: p.file().to_owned(),
        issuer,
        issuers,
        audience: raw.audience,
        mode: raw.mode,
        listeners,
        inbound: InboundSettings {
            paths: PathRules {
                escaped_slashes: raw.inbound.escaped_slashes,
                parameters: raw.inbound.path_parameters,
                trailing_dots: raw.inbound.trailing_dots,
            },
            drop_underscore_headers: raw.inbound.drop_underscore_headers,
            confine_token: raw.inbound.confine_token,
            app_protocol: raw.inbound.app_protocol,
            tls,
        },
        admin: AdminSettings {
            expose_config: raw.admin.expose_config,
        },
        app,
        claims_header,
        peer_header,
        algorithms,
        leeway: raw.leeway,
        jwks,
        limits,
        routes,
        outbound,
        login,
        dpop,
        txn_token,
        tracing: tracing_section(p, raw.tracing),
        redacted: redact(doc.to_json()),
    }
}

/// The `tracing:` section, checked as far as it goes without the environment.
pub(crate) fn tracing_section(
    p: &mut Problems,
    raw: Option<crate::otel::RawTracing>,
) -> Option<crate::otel::RawTracing> {
    let raw = raw?;
    if let Err(e) = crate::otel::Settings::resolve_with(Some(&raw), "baton", |_| None) {
        p.push("tracing", e.to_string());
    }
    Some(raw)
}

/// Browser sign-in needs a `login:` section, and signs users in as `outbound.client`, which
/// must therefore be this service.
fn check_login(
    p: &mut Problems,
    routes: &[routes::Route],
    login: Option<&login::Login>,
    outbound: &outbound::Outbound,
    audience: &str,
) {
    if let Some(i) = routes.iter().position(|r| r.browser_login)
        && login.is_none()
    {
        p.push(
            format!("routes[{i}].login"),
            "needs a top-level login: section (at least login.external_url)",
        );
    }
    if login.is_some() && outbound.client.client_id != audience {
        p.push(
            "login",
            "signs users in as outbound.client, whose client_id must equal audience \
             (the IdP addresses the user's access token to that client)",
        );
    }
}

/// Replaces the values of secret-looking keys (`secret`, `password`, `private_key`, `token`).
pub(crate) fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = ["secret", "password", "private_key", "token", "assertion"]
                        .iter()
                        .any(|s| lower.contains(s));
                    if secret && !v.is_null() {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}
