//! What a token from an issuer other than the sidecar's own IdP must also satisfy, and how its
//! claims are reshaped before the route rules and the app see them ([`Profile`]).
//!
//! A foreign issuer (a corporate Keycloak, Entra ID, Okta) speaks for its own users, not for
//! baton's trust domain. So:
//!
//! - `aud` must contain one of the issuer's accepted audiences.
//! - The claims only baton's IdP asserts ([`BATON_OWNED`]: `act`, `may_act`, `grants`) are
//!   removed from a foreign token: a foreign IdP that lets a user or tenant put them in a token
//!   cannot forge a delegation chain or a grant.
//! - Claim mappings copy a value from a path of the token (`realm_access.roles`) to a top-level
//!   claim the route rules name (`roles`). A mapping may not write a claim that carries
//!   identity, timing, binding or delegation ([`RESERVED_TARGETS`]); the target is replaced by
//!   the mapped value, or removed when the path is absent, so the token's own claim of that
//!   name never stands in for the mapping.

use super::{Claims, VerifyError, audiences};
use serde_json::Value;

/// Claims only baton's own IdP asserts; removed from every foreign token.
pub const BATON_OWNED: &[&str] = &["act", "may_act", "grants"];

/// Claims a mapping may not write: the registered claims (RFC 7519 §4.1), key binding (RFC
/// 7800), delegation and grants (RFC 8693, baton), the client and authentication context the
/// route rules check (RFC 9068 §2.2, RFC 9470), and `scope`.
pub const RESERVED_TARGETS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "cnf",
    "act",
    "may_act",
    "grants",
    "client_id",
    "azp",
    "scope",
    "acr",
    "amr",
    "auth_time",
    "sid",
    "nonce",
    "txn",
];

/// Largest number of segments in a mapping's source path.
pub const MAX_PATH_DEPTH: usize = 8;

/// One claim mapping: `target` takes the value found at `source` (object members, outermost
/// first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The top-level claim written.
    pub target: String,
    /// The path read, one member name per segment.
    pub source: Vec<String>,
}

impl Mapping {
    /// A mapping from a dotted path (`realm_access.roles`): `Err` with the reason when the target
    /// is reserved or empty, or the path has an empty segment or is deeper than
    /// [`MAX_PATH_DEPTH`].
    pub fn parse(target: &str, source: &str) -> Result<Mapping, String> {
        if target.is_empty() {
            return Err("a mapping needs a target claim name".into());
        }
        if RESERVED_TARGETS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(target))
        {
            return Err(format!(
                "{target} cannot be a mapping target (reserved: {})",
                RESERVED_TARGETS.join(", ")
            ));
        }
        let source: Vec<String> = source.split('.').map(str::to_owned).collect();
        if source.iter().any(String::is_empty) {
            return Err(
                "the source must be a claim name or a dotted path like realm_access.roles, \
                 without empty segments"
                    .into(),
            );
        }
        if source.len() > MAX_PATH_DEPTH {
            return Err(format!(
                "the source path has more than {MAX_PATH_DEPTH} segments"
            ));
        }
        Ok(Mapping {
            target: target.to_owned(),
            source,
        })
    }
}

/// What a foreign issuer's tokens must carry and how their claims are reshaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Claim mappings, applied together: every source is read from the token as signed.
    pub mappings: Vec<Mapping>,
}

impl Profile {
    /// The claims of a verified foreign token as the rules and the app see them, or `Audience`
    /// when `aud` names none of the accepted audiences.
    pub fn apply(&self, mut claims: Claims) -> Result<Claims, VerifyError> {
        if !audiences(&claims).any(|a| self.audiences.iter().any(|x| x == a)) {
            return Err(VerifyError::Audience);
        }
        let mapped: Vec<(&str, Option<Value>)> = self
            .mappings
            .iter()
            .map(|m| (m.target.as_str(), lookup(&claims, &m.source).cloned()))
            .collect();
        for owned in BATON_OWNED {
            claims.remove(*owned);
        }
        for (target, value) in mapped {
            match value {
                Some(v) => claims.insert(target.to_owned(), v),
                None => claims.remove(target),
            };
        }
        Ok(claims)
    }
}

/// The value at `path` in `claims`, through nested objects only.
pub fn lookup<'a>(claims: &'a Claims, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut at = claims.get(first)?;
    for segment in rest {
        at = at.as_object()?.get(segment)?;
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        v.as_object().cloned().expect("object")
    }

    fn profile(maps: &[(&str, &str)]) -> Profile {
        Profile {
            audiences: vec!["service-b".into(), "api://b".into()],
            mappings: maps
                .iter()
                .map(|(t, s)| Mapping::parse(t, s).expect("valid"))
                .collect(),
        }
    }

    #[test]
    fn nested_roles_are_mapped_and_baton_owned_claims_dropped() {
        let p = profile(&[("roles", "realm_access.roles"), ("teams", "groups")]);
        let got = p
            .apply(claims(json!({
                "iss": "https://corp", "aud": ["x", "api://b"], "sub": "u",
                "realm_access": {"roles": ["admin"]}, "groups": ["g1"],
                "act": {"sub": "forged"}, "may_act": {"sub": "m"}, "grants": ["service-c"],
                "roles": ["self-made"], "cnf": {"jkt": "k"}
            })))
            .expect("accepted");
        assert_eq!(got["roles"], json!(["admin"]));
        assert_eq!(got["teams"], json!(["g1"]));
        for owned in BATON_OWNED {
            assert!(!got.contains_key(*owned), "{owned} removed");
        }
        assert_eq!(got["cnf"], json!({"jkt": "k"}), "a binding only restricts");
    }

    #[test]
    fn an_absent_source_removes_the_target_rather_than_keep_the_tokens_own() {
        let p = profile(&[("roles", "realm_access.roles")]);
        let got = p
            .apply(claims(
                json!({"aud": "service-b", "roles": ["admin"], "realm_access": "not-an-object"}),
            ))
            .expect("accepted");
        assert!(!got.contains_key("roles"));
    }

    #[test]
    fn mappings_read_the_token_as_signed_not_each_others_output() {
        let p = profile(&[("a", "b"), ("b", "c")]);
        let got = p
            .apply(claims(json!({"aud": "service-b", "b": 1, "c": 2})))
            .expect("accepted");
        assert_eq!((got["a"].clone(), got["b"].clone()), (json!(1), json!(2)));
    }

    #[test]
    fn the_audience_must_be_one_accepted() {
        let p = profile(&[]);
        for aud in [
            json!("service-c"),
            json!(["SERVICE-B"]),
            json!([]),
            json!(null),
        ] {
            assert_eq!(
                p.apply(claims(json!({"aud": aud}))).err(),
                Some(VerifyError::Audience)
            );
        }
        assert!(p.apply(claims(json!({"aud": ["z", "service-b"]}))).is_ok());
    }

    #[test]
    fn reserved_targets_and_bad_paths_are_refused() {
        for t in RESERVED_TARGETS {
            assert!(Mapping::parse(t, "roles").is_err(), "{t}");
            let shouted = t.to_ascii_uppercase();
            assert!(Mapping::parse(&shouted, "roles").is_err(), "{shouted}");
        }
        assert!(Mapping::parse("", "roles").is_err());
        assert!(Mapping::parse("roles", "a..b").is_err());
        assert!(Mapping::parse("roles", ".a").is_err());
        assert!(Mapping::parse("roles", "a.b.c.d.e.f.g.h.i").is_err());
        assert!(Mapping::parse("roles", "resource_access.app.roles").is_ok());
    }
}
