//! Validation of `outbound.routes` and `outbound.ports`, and `host[:port]` parsing.

use super::{ClientCert, Port, RawPort, RawRoute, Route, Tls, WithoutSubject};
use crate::config::findings::Problems;
use crate::config::values::addr;
use url::Url;

pub(super) fn route(i: usize, raw: RawRoute, problems: &mut Problems) -> Option<Route> {
    let at = |f: &str| format!("outbound.routes[{i}].{f}");
    let name = raw.name.filter(|n| !n.is_empty()).or_else(|| {
        problems.push(at("name"), "required");
        None
    })?;
    let tls = raw.tls.map(|t| {
        let client_cert = match (t.cert_file, t.key_file) {
            (Some(cert_file), Some(key_file)) => Some(ClientCert {
                cert_file,
                key_file,
            }),
            (None, None) => None,
            _ => {
                problems.push(at("tls"), "set both cert_file and key_file, or neither");
                None
            }
        };
        Tls {
            ca_file: t.ca_file,
            client_cert,
        }
    });
    let files = tls.iter().flat_map(|t| {
        let cert = t.client_cert.iter();
        let ca = t.ca_file.iter().map(|f| ("tls.ca_file", f));
        ca.chain(cert.flat_map(|c| {
            [
                ("tls.cert_file", &c.cert_file),
                ("tls.key_file", &c.key_file),
            ]
        }))
    });
    for (field, file) in files {
        let reason = format!("{} is not a readable file", file.display());
        if !file.exists() {
            problems.missing(at(field), reason);
        } else if !file.is_file() {
            problems.push(at(field), reason);
        }
    }
    let default_port = if tls.is_some() { 443 } else { 80 };
    let Some((host, port)) = raw
        .host
        .as_deref()
        .and_then(|h| split_authority(h, default_port))
    else {
        problems.push(at("host"), "required as host[:port], e.g. service-b:8080");
        return None;
    };
    if raw.audience.is_none() && raw.resources.is_empty() {
        problems.push(
            at("audience"),
            "set audience or resources: the token's target",
        );
    }
    for (j, r) in raw.resources.iter().enumerate() {
        match Url::parse(r) {
            Ok(u) if u.fragment().is_none() => {}
            _ => problems.push(
                format!("outbound.routes[{i}].resources[{j}]"),
                "must be an absolute URI without a fragment (RFC 8707 §2)",
            ),
        }
    }
    if raw.requested_lifetime == Some(0) {
        problems.push(at("requested_lifetime"), "must be at least 1 second");
    }
    let without_subject = match raw.without_subject.as_deref() {
        None | Some("deny") => WithoutSubject::Deny,
        Some("client_credentials") => WithoutSubject::ClientCredentials,
        Some(other) => {
            problems.push(
                at("without_subject"),
                format!("{other:?}: use deny or client_credentials"),
            );
            WithoutSubject::Deny
        }
    };
    let dpop = match &raw.dpop {
        None => false,
        Some(super::raw::OnOff::Bool(b)) => *b,
        Some(super::raw::OnOff::Word(w)) if w == "on" => true,
        Some(super::raw::OnOff::Word(w)) if w == "off" => false,
        Some(super::raw::OnOff::Word(_)) => {
            problems.push(at("dpop"), "use on or off");
            false
        }
    };
    Some(Route {
        dpop,
        name,
        host,
        port,
        audience: raw.audience,
        resources: raw.resources,
        scope: raw.scope.filter(|s| !s.trim().is_empty()),
        requested_lifetime: raw.requested_lifetime,
        without_subject,
        tls,
    })
}

pub(super) fn port(
    i: usize,
    raw: RawPort,
    routes: &[Route],
    problems: &mut Problems,
) -> Option<Port> {
    let at = |f: &str| format!("outbound.ports[{i}].{f}");
    let listen = addr(problems, &at("listen"), raw.listen.as_deref().unwrap_or(""));
    let Some(upstream) = raw.upstream.filter(|u| split_authority(u, 80).is_some()) else {
        problems.push(
            at("upstream"),
            "required as host[:port], e.g. service-b:8080",
        );
        return None;
    };
    let name = raw.route.unwrap_or_default();
    let Some(route) = routes.iter().position(|r| r.name == name) else {
        problems.push(at("route"), format!("no route named {name:?}"));
        return None;
    };
    Some(Port {
        listen,
        upstream,
        route,
    })
}

/// Splits `host[:port]` (IPv6 in brackets) into a lowercase host and a port; `None` for what is
/// not an authority, one with userinfo, an empty host or a port that is not a TCP port.
pub fn split_authority(s: &str, default_port: u16) -> Option<(String, u16)> {
    split_parsed(&s.parse().ok()?, default_port)
}

/// [`split_authority`] of an authority `http` has parsed already (a request URI's), without
/// parsing it again: on the outbound hot path, parsing it twice cost as much as the rest of
/// routing the request.
pub fn split_parsed(auth: &http::uri::Authority, default_port: u16) -> Option<(String, u16)> {
    let s = auth.as_str();
    if s.contains('@') {
        return None;
    }
    // The parser admitted `host`, `host:port`, `[v6]` or `[v6]:port`: the last colon starts a
    // port unless a bracket follows it.
    let (host, port) = match s.rfind(':') {
        Some(i) if !s[i..].contains(']') => (&s[..i], &s[i + 1..]),
        _ => (s, ""),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    let port = match port {
        "" => default_port,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        _ => return None,
    };
    Some((host.to_ascii_lowercase(), port))
}
