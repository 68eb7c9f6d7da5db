//! The exchange graph of `idp.yaml`: `grants[]` edges between clients, the RFC 8707 `resources`
//! that stand for a client, and each client's `default_audience`, checked against both.

use super::raw::RawEdge;
use super::{Client, Config, Edge, RESERVED};
use crate::config::Problems;
use crate::idp::claims::conflict;
use std::collections::BTreeMap;

/// Each resource an absolute URI standing for a configured client.
pub(super) fn resources(
    p: &mut Problems,
    resources: &BTreeMap<String, String>,
    clients: &BTreeMap<String, Client>,
) {
    for (uri, aud) in resources {
        let f = format!("resources.{uri}");
        if !super::absolute_without_fragment(uri) {
            p.push(
                &f,
                "must be an absolute URI without a fragment (RFC 8707 §2)",
            );
        }
        if !clients.contains_key(aud) {
            p.push(&f, format!("audience {aud} is not a configured client"));
        }
    }
}

/// The edges, each between configured clients, once, setting no claim the IdP owns, and none
/// setting a claim another edge to the same target sets differently.
pub(super) fn edges(
    raw: Vec<RawEdge>,
    clients: &BTreeMap<String, Client>,
    p: &mut Problems,
) -> Vec<Edge> {
    let mut edges: Vec<Edge> = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let f = format!("grants[{i}]");
        if !clients.contains_key(&e.client) {
            p.push(
                format!("{f}.client"),
                format!("unknown client {}", e.client),
            );
        }
        if !clients.contains_key(&e.target) {
            p.push(
                format!("{f}.target"),
                format!("unknown target {}: targets are client ids", e.target),
            );
        }
        for name in e.claims.keys().filter(|k| RESERVED.contains(&k.as_str())) {
            p.push(format!("{f}.claims.{name}"), "is reserved: the IdP sets it");
        }
        if e.max_lifetime.is_some_and(|m| m == 0 || m > 30 * 86_400) {
            p.push(
                format!("{f}.max_lifetime"),
                "must be between 1 and 2592000 seconds",
            );
        }
        let edge = Edge {
            client: e.client,
            target: e.target,
            scopes: e.scopes,
            claims: e.claims,
            max_lifetime: e.max_lifetime,
            scope_beyond_subject: e.scope_beyond_subject,
        };
        check_against_earlier(p, &f, &edge, &edges);
        edges.push(edge);
    }
    edges
}

/// `edge` (at `f`) is not a second `client → target`, and agrees with every earlier edge to the
/// same target on the claims both set.
fn check_against_earlier(p: &mut Problems, f: &str, edge: &Edge, earlier: &[Edge]) {
    let (client, target) = (&edge.client, &edge.target);
    if earlier
        .iter()
        .any(|g| &g.client == client && &g.target == target)
    {
        p.push(f, format!("duplicate edge {client} → {target}"));
    }
    for (j, other) in earlier.iter().enumerate() {
        if &other.target == target
            && let Some(path) = conflict(&other.claims, &edge.claims)
        {
            p.push(
                format!("{f}.claims.{path}"),
                format!("grants[{j}] also reaches {target} and sets a different value"),
            );
        }
    }
}

/// A client's `default_audience` is a configured client that an edge from it reaches.
pub(super) fn default_audiences(
    cfg: &Config,
    client_fields: &[(String, String)],
    p: &mut Problems,
) {
    for (id, f) in client_fields {
        let Some(aud) = &cfg.clients[id].default_audience else {
            continue;
        };
        if !cfg.clients.contains_key(aud) {
            p.push(
                format!("{f}.default_audience"),
                format!("{aud} is not a configured client"),
            );
        } else if cfg.edge(id, aud).is_none() {
            p.push(
                format!("{f}.default_audience"),
                format!("no grants edge {id} → {aud}: a token for it would be refused"),
            );
        }
    }
}
