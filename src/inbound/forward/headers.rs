//! The headers the app gets: baton's own names removed in every spelling, the verified
//! identity set, and the same rule for a request's trailers.

use crate::http::{REQUEST_ID, new_request_id, strip_hop_by_hop};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// Every header name starting with this is baton's: a client's copy never reaches the app.
const OWNED_PREFIX: &[u8] = b"x-baton-";

/// The identity headers the app gets, and their values for this request (`None`: the header
/// is removed).
pub struct Identity<'a> {
    /// Where the verified claims go.
    pub claims_header: &'a HeaderName,
    /// The verified claims, already base64url JSON ([`crate::jwt::Verified::claims_header`]).
    pub claims: Option<&'a HeaderValue>,
    /// Where the client's verified SPIFFE ID goes.
    pub peer_header: &'a HeaderName,
    /// The SPIFFE ID of the client's verified certificate ([`crate::inbound::peer::Peer`]).
    pub peer: Option<&'a HeaderValue>,
}

/// Rewrites the identity headers: every client-supplied copy of a header baton owns is removed
/// in every spelling (`_` for `-`), the verified claims and peer (if any) are set in their
/// headers, and `x-request-id` is generated when absent. `Authorization` stays so the app can
/// propagate it through the outbound listener; `Connection` cannot name it
/// ([`strip_hop_by_hop`]).
pub fn rewrite_headers(headers: &mut HeaderMap, identity: Identity<'_>, drop_underscored: bool) {
    strip_hop_by_hop(headers);
    strip_owned(
        headers,
        [identity.claims_header, identity.peer_header],
        drop_underscored,
    );
    // `insert` replaces every value the client sent under the name: one lookup, not two.
    match identity.claims {
        Some(claims) => headers.insert(identity.claims_header.clone(), claims.clone()),
        None => headers.remove(identity.claims_header),
    };
    // A client's peer header is gone already (`strip_owned`): no lookup without a peer.
    if let Some(peer) = identity.peer {
        headers.insert(identity.peer_header.clone(), peer.clone());
    }
    headers.entry(REQUEST_ID).or_insert_with(new_request_id);
}

/// Removes the headers that are a baton-owned one in another spelling: `x-baton-*` and the
/// `identity` headers (claims and peer), with `_` read as `-` (CGI-style servers such as WSGI,
/// Rack and PHP map `x_baton_claims` and `x-baton-claims` to one variable, and may keep
/// either). Names arrive lower-case (hyper folds HTTP/1 names, HTTP/2 requires it), so `_` is
/// the spelling left. With `drop_underscored`, every name holding `_` goes. The exact claims
/// header is left to the caller, which replaces it; the peer header goes in every spelling, as
/// most requests have no peer. One look at each name; the list of names to remove is only made
/// when there is one.
fn strip_owned(headers: &mut HeaderMap, identity: [&HeaderName; 2], drop_underscored: bool) {
    let [claims, peer] = identity.map(|h| h.as_str().as_bytes());
    // Cheapest tests first: most names are neither `x-…` nor as long as an identity header.
    let owned = |name: &HeaderName| {
        let n = name.as_str().as_bytes();
        let prefixed = n.len() >= OWNED_PREFIX.len()
            && n[0] == b'x'
            && folded_eq(&n[..OWNED_PREFIX.len()], OWNED_PREFIX);
        let claims_twin = n.len() == claims.len() && n.contains(&b'_') && folded_eq(n, claims);
        let peer = n.len() == peer.len() && folded_eq(n, peer);
        prefixed || claims_twin || peer || (drop_underscored && n.contains(&b'_'))
    };
    if !headers.keys().any(owned) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| owned(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// The same rule for a request's trailers (HTTP/2, or HTTP/1.1 chunked): a client's trailer
/// spelling a header baton owns is removed, as its header would be, before the app reads it;
/// so are credentials ([`CREDENTIAL_TRAILERS`]), which baton checks only in the headers.
pub struct OwnedTrailers {
    claims_header: HeaderName,
    peer_header: HeaderName,
    /// The Transaction Token's claims header, when `txn_token:` is configured.
    txn_claims_header: Option<HeaderName>,
    drop_underscored: bool,
}

impl OwnedTrailers {
    /// The rule for the identity headers (values are not needed: nothing is set in trailers).
    pub fn new(
        claims_header: &HeaderName,
        peer_header: &HeaderName,
        txn_claims_header: Option<&HeaderName>,
        drop_underscored: bool,
    ) -> Self {
        OwnedTrailers {
            claims_header: claims_header.clone(),
            peer_header: peer_header.clone(),
            txn_claims_header: txn_claims_header.cloned(),
            drop_underscored,
        }
    }

    /// `frame` with owned names removed when it is the trailers; data as it is.
    pub fn strip(&self, frame: http_body::Frame<bytes::Bytes>) -> http_body::Frame<bytes::Bytes> {
        match frame.into_trailers() {
            Ok(mut trailers) => {
                strip_owned(
                    &mut trailers,
                    [&self.claims_header, &self.peer_header],
                    self.drop_underscored,
                );
                // Unlike the headers, the exact claims header is not set again: it goes too,
                // with the Transaction Token and its claims (a trailer is never verified).
                trailers.remove(&self.claims_header);
                let txn = HeaderName::from_static(crate::txn::HEADER);
                // As the peer header is: each name in every spelling.
                strip_owned(&mut trailers, [&txn, &txn], self.drop_underscored);
                if let Some(txn) = &self.txn_claims_header {
                    strip_owned(&mut trailers, [txn, txn], self.drop_underscored);
                }
                for name in CREDENTIAL_TRAILERS {
                    trailers.remove(name);
                }
                http_body::Frame::trailers(trailers)
            }
            Err(data) => data,
        }
    }
}

/// Trailers that would carry a credential the app might read as checked: baton checks the
/// `Authorization` and `DPoP` headers, never trailers, and a confined app must hold no token.
const CREDENTIAL_TRAILERS: [&str; 4] = ["authorization", "proxy-authorization", "dpop", "cookie"];

/// Whether `name` equals `owned` with each `_` of `name` read as `-`.
fn folded_eq(name: &[u8], owned: &[u8]) -> bool {
    name.len() == owned.len()
        && name
            .iter()
            .zip(owned)
            .all(|(&n, &o)| n == o || (n == b'_' && o == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Claims;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use http::header;
    use serde_json::json;

    #[test]
    fn trailers_lose_every_spelling_of_an_owned_name_and_data_passes() {
        let claims = HeaderName::from_static("x-user-claims");
        let peer = HeaderName::from_static("x-peer-id");
        let txn = HeaderName::from_static("x-txn-claims");
        let rule = OwnedTrailers::new(&claims, &peer, Some(&txn), false);
        let mut t = HeaderMap::new();
        for name in [
            "x-user-claims",
            "x_user_claims",
            "x-peer-id",
            "x_peer_id",
            "x-baton-claims",
            "x_baton_txn",
            "txn-token",
            "txn_token",
            "authorization",
            "dpop",
            "cookie",
            "x-txn-claims",
            "x_txn_claims",
            "grpc-status",
            "x-app_trailer",
        ] {
            t.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let kept = rule
            .strip(http_body::Frame::trailers(t))
            .into_trailers()
            .unwrap();
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["grpc-status", "x-app_trailer"]);
        let strict = OwnedTrailers::new(&claims, &peer, None, true);
        let kept = strict
            .strip(http_body::Frame::trailers(kept))
            .into_trailers()
            .unwrap();
        assert_eq!(
            kept.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["grpc-status"]
        );
        let data = rule.strip(http_body::Frame::data(bytes::Bytes::from_static(b"x")));
        assert_eq!(data.into_data().unwrap(), "x");
    }

    /// [`rewrite_headers`] with the default peer header and no peer.
    fn rewrite(
        h: &mut HeaderMap,
        claims_header: &HeaderName,
        claims: Option<&HeaderValue>,
        drop_underscored: bool,
    ) {
        let peer_header = HeaderName::from_static("x-baton-peer");
        let identity = Identity {
            claims_header,
            claims,
            peer_header: &peer_header,
            peer: None,
        };
        rewrite_headers(h, identity, drop_underscored);
    }

    #[test]
    fn the_peer_header_is_only_ever_the_verified_peer() {
        let claims_header = HeaderName::from_static("x-baton-claims");
        let spoof = HeaderValue::from_static("spiffe://td/admin");
        let verified = HeaderValue::from_static("spiffe://td/ns/a/sa/x");
        for peer_header in ["x-baton-peer", "x-peer-id"] {
            let peer_header = HeaderName::from_static(peer_header);
            let twin = peer_header.as_str().replace('-', "_");
            for peer in [None, Some(&verified)] {
                let mut h = HeaderMap::new();
                h.append(&peer_header, spoof.clone());
                h.append(&peer_header, spoof.clone());
                h.append(
                    HeaderName::try_from(twin.as_str()).expect("name"),
                    spoof.clone(),
                );
                let identity = Identity {
                    claims_header: &claims_header,
                    claims: None,
                    peer_header: &peer_header,
                    peer,
                };
                rewrite_headers(&mut h, identity, false);
                let values: Vec<_> = h.get_all(&peer_header).iter().collect();
                assert_eq!(
                    values,
                    peer.into_iter().collect::<Vec<_>>(),
                    "{peer_header}"
                );
                assert!(h.get(twin.as_str()).is_none(), "{twin}");
            }
        }
    }

    #[test]
    fn identity_headers_are_replaced_and_hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        let claims_header = HeaderName::from_static("x-baton-claims");
        h.insert(
            &claims_header,
            HeaderValue::from_static("eyJzdWIiOiJhZG1pbiJ9"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        rewrite(&mut h, &claims_header, None, false);
        assert!(
            h.get(&claims_header).is_none(),
            "spoofed claims header stripped"
        );
        assert!(h.get("x-secret-hop").is_none() && h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(
            h.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            Some(&b"Bearer t"[..])
        );
        assert_eq!(h.get(REQUEST_ID).map(|v| v.len()), Some(32));

        let claims = json!({"sub": "alice"})
            .as_object()
            .cloned()
            .expect("object");
        let value = HeaderValue::try_from(
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json")),
        )
        .expect("header value");
        h.insert(REQUEST_ID, HeaderValue::from_static("given"));
        // A client's claims headers, however many, all give way to the one verified value.
        h.append(
            &claims_header,
            HeaderValue::from_static("eyJzdWIiOiJhZG1pbiJ9"),
        );
        h.append(
            &claims_header,
            HeaderValue::from_static("eyJyb2xlIjoicm9vdCJ9"),
        );
        rewrite(&mut h, &claims_header, Some(&value), false);
        let values: Vec<_> = h.get_all(&claims_header).iter().collect();
        assert_eq!(values.len(), 1, "exactly one claims header reaches the app");
        let sent = URL_SAFE_NO_PAD.decode(values[0].as_bytes()).expect("b64");
        assert_eq!(
            serde_json::from_slice::<Claims>(&sent).expect("json"),
            claims
        );
        assert_eq!(h.get(REQUEST_ID).map(|v| v.as_bytes()), Some(&b"given"[..]));
    }

    #[test]
    fn every_spelling_of_an_owned_header_is_removed() {
        let claims_header = HeaderName::from_static("x-baton-claims");
        let spoof = HeaderValue::from_static("eyJzdWIiOiJhZG1pbiJ9");
        let verified = HeaderValue::from_static("dmVyaWZpZWQ");
        let owned = [
            "x_baton_claims",
            "x-baton_claims",
            "x_baton-claims",
            "x-baton-anything",
            "x_baton_anything",
            "x-baton-",
        ];
        let theirs = [
            "x-request-id",
            "x_request_id",
            "x-batonclaims",
            "x-bato-claims",
            "accept",
        ];
        for claims in [None, Some(&verified)] {
            let mut h = HeaderMap::new();
            for name in owned.iter().chain(&theirs) {
                h.append(HeaderName::from_static(name), spoof.clone());
            }
            rewrite(&mut h, &claims_header, claims, false);
            for name in owned {
                assert!(h.get(name).is_none(), "{name}");
            }
            for name in theirs {
                assert!(h.get(name).is_some(), "{name} is the app's");
            }
            assert_eq!(h.get(&claims_header), claims, "only the verified claims");
        }
        // A custom claims header loses its twins too, and so does every x-baton-* header.
        let custom = HeaderName::from_static("x-user");
        let mut h = HeaderMap::new();
        for name in ["x_user", "x-user", "x-baton-claims", "x_other"] {
            h.insert(HeaderName::from_static(name), spoof.clone());
        }
        rewrite(&mut h, &custom, None, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert!(
            left.contains(&"x_other") && left.contains(&"x-request-id"),
            "{left:?}"
        );
        assert_eq!(left.len(), 2, "{left:?}");
        // With drop_underscored, every name holding `_` goes.
        rewrite(&mut h, &custom, None, true);
        assert!(h.get("x_other").is_none());
    }
}
