//! The client's workload identity on a TLS listener that verifies client certificates: the
//! SPIFFE ID of its certificate ([`crate::spiffe::id_of_certificate`]: exactly one `spiffe://`
//! URI SAN, else none), found once per connection and carried to each of its requests as a
//! request extension; a route's `peer:` rules admit it or refuse the request
//! ([`Reject::PeerNotAllowed`]), and the app gets it in `peer_header`. The identity lasts no
//! longer than the certificate that proved it: on a connection kept open past the certificate's
//! `notAfter`, requests have no peer.

use super::Reject;
use crate::config::inbound_tls::PeerRule;
use crate::spiffe::SpiffeId;
use http::HeaderValue;
use std::sync::Arc;

/// The verified SPIFFE ID of the client of a connection, its header value, made once, and the
/// end of its certificate's validity (Unix seconds).
#[derive(Debug, Clone)]
pub struct Peer(Arc<(SpiffeId, HeaderValue)>, u64);

impl Peer {
    /// The peer of a finished handshake: the SPIFFE ID of the client's certificate, which rustls
    /// verified against the client CA. `None` without a certificate, or when it names no SPIFFE
    /// ID or more than one.
    pub fn of(conn: &rustls::ServerConnection) -> Option<Peer> {
        let leaf = conn.peer_certificates()?.first()?;
        let id = match crate::spiffe::id_of_certificate(leaf) {
            Ok(id) => id,
            Err(e) => {
                tracing::debug!(error = %e, "client certificate names no SPIFFE ID");
                return None;
            }
        };
        // A parsed SPIFFE ID holds only characters a header value may carry.
        let header = HeaderValue::from_str(id.as_str()).ok()?;
        let not_after = crate::spiffe::not_after_of_certificate(leaf)?;
        Some(Peer(Arc::new((id, header)), not_after))
    }

    /// Whether the certificate that proved this identity is still valid at `now` (Unix seconds).
    pub fn valid_at(&self, now: u64) -> bool {
        now <= self.1
    }

    /// The SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.0.0
    }

    /// The SPIFFE ID as the header value the app gets.
    pub fn header(&self) -> &HeaderValue {
        &self.0.1
    }
}

/// Admits a request whose connection's peer is `peer` on a route with the `peer:` rules
/// `rules` (none: anyone): one rule must admit the peer's SPIFFE ID.
pub fn admit(rules: &[PeerRule], peer: Option<&Peer>) -> Result<(), Reject> {
    if rules.is_empty() {
        return Ok(());
    }
    match peer {
        Some(p) if rules.iter().any(|r| r.admits(p.id())) => Ok(()),
        _ => Err(Reject::PeerNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_with_rules_needs_a_peer_they_admit() {
        let id = |s: &str| SpiffeId::parse(s).expect("id");
        let peer = |s: &str| Peer(Arc::new((id(s), HeaderValue::from_static("x"))), u64::MAX);
        let rules = [
            PeerRule::Id(id("spiffe://td/a")),
            PeerRule::TrustDomain("ops".into()),
        ];
        assert_eq!(admit(&[], None), Ok(()));
        assert_eq!(admit(&rules, Some(&peer("spiffe://td/a"))), Ok(()));
        assert_eq!(admit(&rules, Some(&peer("spiffe://ops/x/y"))), Ok(()));
        assert_eq!(
            admit(&rules, Some(&peer("spiffe://td/b"))),
            Err(Reject::PeerNotAllowed)
        );
        assert_eq!(admit(&rules, None), Err(Reject::PeerNotAllowed));
    }

    /// A self-signed certificate with the URI SANs `uris` and a DNS name, as DER.
    fn cert(uris: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.subject_alt_names.extend(
            uris.iter()
                .map(|u| rcgen::SanType::URI((*u).try_into().expect("IA5"))),
        );
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn the_peer_is_the_one_spiffe_uri_san() {
        use crate::spiffe::{PeerError, id_of_certificate};
        let x = "spiffe://td/ns/a/sa/x";
        let one = id_of_certificate(&cert(&[x])).expect("one SPIFFE ID");
        assert_eq!(one.as_str(), x);
        // Another URI beside it is not a second identity.
        let beside = id_of_certificate(&cert(&["https://td/x", x])).expect("one SPIFFE ID");
        assert_eq!(beside.as_str(), x);
        assert_eq!(
            id_of_certificate(&cert(&[x, "spiffe://td/ns/a/sa/y"])),
            Err(PeerError::Several)
        );
        assert_eq!(id_of_certificate(&cert(&[])), Err(PeerError::None));
        assert!(matches!(
            id_of_certificate(&cert(&["spiffe://TD/x"])),
            Err(PeerError::Invalid(_))
        ));
        assert!(matches!(
            id_of_certificate(&cert(&["SPIFFE://td/x"])),
            Err(PeerError::Invalid(_))
        ));
        assert_eq!(id_of_certificate(b"not DER"), Err(PeerError::Certificate));
    }

    #[test]
    fn an_identity_ends_with_its_certificate() {
        let id = SpiffeId::parse("spiffe://td/a").expect("id");
        let peer = Peer(Arc::new((id, HeaderValue::from_static("x"))), 1_000);
        assert!(peer.valid_at(999) && peer.valid_at(1_000));
        assert!(!peer.valid_at(1_001));
    }
}
