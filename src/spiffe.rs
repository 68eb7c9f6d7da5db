//! SPIFFE workload identity: SPIFFE IDs parsed strictly (SPIFFE-ID §2), the peer's ID read
//! from an X.509-SVID (exactly one `spiffe://` URI SAN), and JWT-SVID trust bundles
//! ([`bundle`]).
//!
//! IDs compare as exact strings once parsed: a trust domain is lower case by definition, so
//! `spiffe://Example.org/a`, `spiffe://example.org/a/` and `spiffe://example.org/a/.` are not
//! spellings of `spiffe://example.org/a`: they do not parse at all.

pub mod bundle;
pub mod svid_file;

use std::fmt;

/// Longest SPIFFE ID accepted, in bytes (SPIFFE-ID §2.3: URIs up to 2048 bytes).
pub const MAX_LEN: usize = 2048;

/// A SPIFFE ID in its only accepted spelling: `spiffe://<trust-domain>[/<segment>...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Byte length of `spiffe://<trust-domain>`.
    td_end: usize,
}

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not `spiffe://` in lower case.
    #[error("must start with spiffe://")]
    Scheme,
    /// Longer than [`MAX_LEN`].
    #[error("longer than 2048 bytes")]
    TooLong,
    /// Empty, or a character other than lower-case letters, digits, `.`, `-`, `_`.
    #[error("the trust domain must be non-empty lower-case letters, digits, '.', '-', '_'")]
    TrustDomain,
    /// An empty, `.` or `..` segment (a trailing slash among them), or a character other than
    /// letters, digits, `.`, `-`, `_`.
    #[error("path segments must be non-empty letters, digits, '.', '-', '_', and not . or ..")]
    Path,
}

const SCHEME: &str = "spiffe://";

impl SpiffeId {
    /// Parses `s` strictly: no upper case in the scheme or trust domain, no port, user info,
    /// query, fragment, percent-encoding, empty or dot segments, or trailing slash.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() > MAX_LEN {
            return Err(IdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(IdError::Scheme)?;
        let (td, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let td_ok = !td.is_empty()
            && td
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
        if !td_ok {
            return Err(IdError::TrustDomain);
        }
        if !path.is_empty() {
            for seg in path[1..].split('/') {
                let ok = !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                if !ok {
                    return Err(IdError::Path);
                }
            }
        }
        Ok(Self {
            uri: s.to_owned(),
            td_end: SCHEME.len() + td.len(),
        })
    }

    /// The trust domain name, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        &self.uri[SCHEME.len()..self.td_end]
    }

    /// The ID as written.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// Whether `name` is a trust domain name as SPIFFE-ID §2.1 spells it.
pub fn valid_trust_domain(name: &str) -> bool {
    SpiffeId::parse(&format!("{SCHEME}{name}")).is_ok_and(|id| id.trust_domain() == name)
}

/// Why a certificate names no SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The certificate did not parse.
    #[error("certificate does not parse")]
    Certificate,
    /// No URI SAN with the `spiffe` scheme.
    #[error("no spiffe:// URI SAN")]
    None,
    /// More than one `spiffe` URI SAN (X509-SVID §2: exactly one).
    #[error("more than one spiffe:// URI SAN")]
    Several,
    /// The one `spiffe` URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    Invalid(IdError),
}

/// The SPIFFE ID of a DER certificate: its one URI SAN whose scheme is `spiffe` (any case),
/// parsed strictly. Another URI SAN beside it is ignored; two `spiffe` ones are refused.
pub fn id_of_certificate(der: &[u8]) -> Result<SpiffeId, PeerError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|_| PeerError::Certificate)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| PeerError::Certificate)?;
    let mut found = None;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        if let GeneralName::URI(uri) = name
            && uri
                .get(..SCHEME.len() - 3)
                .is_some_and(|s| s.eq_ignore_ascii_case("spiffe"))
            && uri.as_bytes().get(SCHEME.len() - 3) == Some(&b':')
        {
            if found.is_some() {
                return Err(PeerError::Several);
            }
            found = Some(*uri);
        }
    }
    SpiffeId::parse(found.ok_or(PeerError::None)?).map_err(PeerError::Invalid)
}

/// The end of a DER certificate's validity (`notAfter`), in Unix seconds; `None` when it does not
/// parse.
pub fn not_after_of_certificate(der: &[u8]) -> Option<u64> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    u64::try_from(cert.validity().not_after.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_parses() {
        let id = SpiffeId::parse("spiffe://example.org/ns/x/sa/y").expect("valid");
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.as_str(), "spiffe://example.org/ns/x/sa/y");
        assert!(SpiffeId::parse("spiffe://example.org").is_ok());
        assert!(SpiffeId::parse("spiffe://td/Path_With-Caps.1").is_ok());
        for bad in [
            "",
            "spiffe://",
            "spiffe:///a",
            "SPIFFE://example.org/a",
            "spiffe://Example.org/a",
            "spiffe://example.org/a/",
            "spiffe://example.org/",
            "spiffe://example.org//a",
            "spiffe://example.org/./a",
            "spiffe://example.org/a/..",
            "spiffe://example.org:8080/a",
            "spiffe://user@example.org/a",
            "spiffe://example.org/a?b",
            "spiffe://example.org/a#b",
            "spiffe://example.org/a%2Fb",
            "spiffe://example.org/a b",
            "https://example.org/a",
        ] {
            assert!(SpiffeId::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("spiffe://td/{}", "a".repeat(MAX_LEN));
        assert_eq!(SpiffeId::parse(&long), Err(IdError::TooLong));
    }

    #[test]
    fn trust_domain_names() {
        assert!(valid_trust_domain("example.org"));
        assert!(!valid_trust_domain("Example.org"));
        assert!(!valid_trust_domain("example.org/a"));
        assert!(!valid_trust_domain(""));
    }
}
