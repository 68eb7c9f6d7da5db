//! The generated sidecar configs of the chain's hops, as YAML a user could have written.

use super::{Options, SERVICES, TRUST_DOMAIN, TraceTo};
use std::net::SocketAddr;

/// What every hop's config is written from.
pub(super) struct Wiring<'a> {
    /// The IdP's issuer URL.
    pub(super) issuer: &'a str,
    /// A's inbound URL, where browsers sign in.
    pub(super) edge: &'a str,
    /// Each hop's inbound listener, in call order.
    pub(super) inbound: &'a [SocketAddr],
    /// The chain's variations.
    pub(super) options: &'a Options,
}

/// The sidecar.yaml of hop `i`, its app at `app`, with the options' variations; `grpc_next`
/// is its per-upstream port for the next hop.
pub(super) fn hop(
    w: &Wiring<'_>,
    i: usize,
    app: SocketAddr,
    grpc_next: Option<SocketAddr>,
) -> String {
    let name = SERVICES[i];
    let options = w.options;
    let mut yaml = base(w, i, app, grpc_next);
    let mut inbound_yaml = String::new();
    if options.grpc {
        inbound_yaml.push_str("  app_protocol: http2\n");
    }
    if options.confine {
        inbound_yaml.push_str("  confine_token: true\n");
    }
    if !inbound_yaml.is_empty() {
        yaml.push_str(&format!("inbound:\n{inbound_yaml}"));
    }
    let yaml = if options.dpop {
        let mode = if i == 0 { "optional" } else { "required" };
        let own = format!("http://{}", w.inbound[i]);
        format!("{yaml}dpop:\n  mode: {mode}\n  external_url: {own}\n")
            .replace("      audience: ", "      dpop: on\n      audience: ")
    } else {
        yaml
    };
    let yaml = match options.dpop_key_rotation {
        Some(every) => yaml.replacen(
            "outbound:\n",
            &format!("outbound:\n  dpop_key_rotation: {every}\n"),
            1,
        ),
        None => yaml,
    };
    let yaml = match options.dpop_alg {
        Some(alg) => yaml.replacen("outbound:\n", &format!("outbound:\n  dpop_alg: {alg}\n"), 1),
        None => yaml,
    };
    match &options.tracing {
        Some(TraceTo::Otlp(endpoint)) => {
            format!("{yaml}tracing:\n  endpoint: {endpoint}\n  service_name: {name}-baton\n")
        }
        _ => yaml,
    }
}

/// Hop `i`'s routes, outbound side and Transaction Token mode, before the other variations.
fn base(w: &Wiring<'_>, i: usize, app: SocketAddr, grpc_next: Option<SocketAddr>) -> String {
    let name = SERVICES[i];
    if w.options.txn_only {
        return txn_only_yaml(w.issuer, name, app, w.inbound.get(i + 1), i == 0);
    }
    let mut yaml = sidecar_yaml(
        w.issuer,
        name,
        app,
        SERVICES.get(i + 1).zip(w.inbound.get(i + 1)),
        (i == 0).then_some(w.edge),
        w.options.unreachable_acr,
    );
    if let (Some(port), Some(next), Some(upstream)) =
        (grpc_next, SERVICES.get(i + 1), w.inbound.get(i + 1))
    {
        // The outbound block ends the YAML here: the port joins it.
        yaml.push_str(&format!(
            "  ports:\n    - {{listen: \"{port}\", upstream: \"{upstream}\", route: {next}}}\n"
        ));
    }
    if w.options.txn_tokens {
        let mode = ["issue", "accept", "require"][i];
        yaml.push_str(&format!(
            "txn_token:\n  mode: {mode}\n  audience: {TRUST_DOMAIN}\n"
        ));
    }
    yaml
}

/// The demo clients' inline secrets in `deploy/idp.yaml`.
pub(super) fn idp_demo_secret(client: &str) -> String {
    format!("demo-secret-{client}")
}

/// The sidecar.yaml of one hop: verify tokens addressed to `name` that carry `name` in `grants`,
/// and exchange on calls to the next hop. With `edge`, browsers sign in at this hop; the last
/// hop guards [`MFA_PATH`](super::MFA_PATH) with `acr: [mfa]`.
fn sidecar_yaml(
    issuer: &str,
    name: &str,
    app: SocketAddr,
    next: Option<(&&str, &SocketAddr)>,
    edge: Option<&str>,
    unreachable_acr: bool,
) -> String {
    let outbound_routes = match next {
        Some((next_name, next_addr)) => format!(
            "  routes:\n    - name: {next_name}\n      host: \"{next_addr}\"\n      audience: {next_name}\n"
        ),
        None => "  routes: []\n".to_owned(),
    };
    let grants = format!("    claims:\n      - claim: grants\n        contains: {name}\n");
    let mut routes = String::from("routes:\n");
    if next.is_none() {
        routes.push_str(&format!(
            "  - name: mfa\n    path: /mfa\n    acr: [mfa]\n{grants}"
        ));
        if unreachable_acr {
            routes.push_str(&format!(
                "  - name: hwk\n    path: /hwk\n    acr: [hwk]\n{grants}"
            ));
        }
    }
    routes.push_str(&format!("  - name: default\n    path: /\n{grants}"));
    let login = match edge {
        Some(url) => {
            routes.push_str("    login: browser\n");
            format!("login:\n  external_url: {url}\n  scope: openid profile\n")
        }
        None => String::new(),
    };
    format!(
        "issuer: {issuer}\naudience: {name}\napp: \"{app}\"\n{routes}{login}\
         outbound:\n  client:\n    client_id: {name}\n    secret: {secret}\n{outbound_routes}",
        secret = idp_demo_secret(name),
    )
}

/// The sidecar.yaml of one hop of the chain that carries only a Txn-Token: the first hop
/// verifies the user's token and issues; the others require the Txn-Token on a public route.
/// Calls leave without `Authorization` (`unknown: passthrough`, no exchange).
fn txn_only_yaml(
    issuer: &str,
    name: &str,
    app: SocketAddr,
    next: Option<&SocketAddr>,
    first: bool,
) -> String {
    // The next hop is reached by passthrough and keeps the Txn-Token: it is in the domain.
    let hosts = next.map_or("[]".to_owned(), |n| format!("[\"{n}\"]"));
    let (public, mode) = if first {
        ("", "issue")
    } else {
        ("    public: true\n", "require")
    };
    format!(
        "issuer: {issuer}\naudience: {name}\napp: \"{app}\"\n\
         routes:\n  - name: default\n    path: /\n{public}\
         txn_token:\n  mode: {mode}\n  audience: {TRUST_DOMAIN}\n\
         outbound:\n  unknown: passthrough\n  txn_token_hosts: {hosts}\n  client:\n    client_id: {name}\n    secret: {secret}\n  routes: []\n",
        secret = idp_demo_secret(name),
    )
}
