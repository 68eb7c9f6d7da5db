//! Bounds on what `/authorize` accepts: every parameter the IdP keeps (in the sealed request,
//! then in the code) has a length and count cap, scopes must be ones the IdP knows
//! (`invalid_scope` otherwise, RFC 6749 §4.1.2.1), and the parameters it reads but does not
//! keep are capped too, so no request is worth more than a few kilobytes to anyone.
//! Parameters the IdP ignores (`ui_locales`, `claims`, `display`, …) are never kept.

/// Longest `state` (RFC 6749 Appendix A.5: printable ASCII).
pub const MAX_STATE: usize = 512;
/// Longest `nonce`.
pub const MAX_NONCE: usize = 256;
/// Longest `scope` parameter.
pub const MAX_SCOPE: usize = 1024;
/// Most scope values in one request.
pub const MAX_SCOPES: usize = 32;
/// Most `resource` parameters (RFC 8707).
pub const MAX_RESOURCES: usize = 8;
/// Longest `resource`.
pub const MAX_RESOURCE: usize = 512;
/// Longest `acr_values`, `prompt` and `login_hint`.
pub const MAX_SHORT: usize = 256;
/// Longest `id_token_hint`.
pub const MAX_ID_TOKEN_HINT: usize = 8192;

use crate::idp::errors::AuthorizeError;

fn request(description: String) -> AuthorizeError {
    AuthorizeError::request(description)
}

/// Checks an optional text parameter: at most `max` bytes of printable characters (no control
/// characters; `ascii` also refuses anything outside printable ASCII).
pub fn text(
    name: &str,
    value: Option<&str>,
    max: usize,
    ascii: bool,
) -> Result<(), AuthorizeError> {
    let Some(v) = value else {
        return Ok(());
    };
    if v.len() > max {
        return Err(request(format!("{name} is longer than {max} bytes")));
    }
    let printable = |c: char| {
        if ascii {
            (' '..='~').contains(&c)
        } else {
            !c.is_control()
        }
    };
    if !v.chars().all(printable) {
        return Err(request(format!("{name} has characters it may not have")));
    }
    Ok(())
}

/// `dpop_jkt` (RFC 9449 §10), when sent: an RFC 7638 SHA-256 thumbprint, 43 base64url
/// characters.
pub fn jkt(value: Option<&str>) -> Result<(), AuthorizeError> {
    let Some(v) = value else {
        return Ok(());
    };
    let thumbprint = v.len() == 43
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !thumbprint {
        return Err(request(
            "dpop_jkt must be a base64url SHA-256 JWK thumbprint".into(),
        ));
    }
    Ok(())
}

/// The requested scope values (`openid` when none), each once, in order. Refused when too long,
/// too many, or naming a scope that is not in `known`.
pub fn scope(raw: Option<&str>, known: &[&str]) -> Result<Vec<String>, AuthorizeError> {
    let raw = raw.unwrap_or("openid");
    if raw.len() > MAX_SCOPE {
        return Err(request(format!("scope is longer than {MAX_SCOPE} bytes")));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, s) in raw.split_ascii_whitespace().enumerate() {
        if i == MAX_SCOPES {
            return Err(request(format!("scope has more than {MAX_SCOPES} values")));
        }
        if !known.contains(&s) {
            return Err(AuthorizeError::new(
                "invalid_scope",
                "a requested scope is unknown",
            ));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// The `resource` parameters, each once, after the count and length caps.
pub fn resources(all: &[&str]) -> Result<Vec<String>, AuthorizeError> {
    if all.len() > MAX_RESOURCES {
        return Err(request(format!(
            "more than {MAX_RESOURCES} resource parameters"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for r in all {
        text("resource", Some(r), MAX_RESOURCE, true)?;
        if !out.iter().any(|o| o == r) {
            out.push((*r).to_owned());
        }
    }
    Ok(out)
}

/// A PKCE S256 challenge: exactly 43 base64url characters (RFC 7636 §4.2).
pub fn challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KNOWN: &[&str] = &["openid", "profile", "update:builds"];

    #[test]
    fn scopes_are_known_deduplicated_and_capped() {
        assert_eq!(scope(None, KNOWN), Ok(vec!["openid".to_owned()]));
        assert_eq!(
            scope(Some("openid  profile openid"), KNOWN),
            Ok(vec!["openid".to_owned(), "profile".to_owned()])
        );
        assert_eq!(
            scope(Some("openid email"), KNOWN).map_err(|e| e.error),
            Err("invalid_scope")
        );
        assert_eq!(
            scope(Some("OPENID"), KNOWN).map_err(|e| e.error),
            Err("invalid_scope")
        );
        let many = vec!["openid"; MAX_SCOPES + 1].join(" ");
        assert_eq!(
            scope(Some(&many), KNOWN).map_err(|e| e.error),
            Err("invalid_request")
        );
        let long = "a ".repeat(30_000);
        assert_eq!(
            scope(Some(&long), KNOWN).map_err(|e| e.error),
            Err("invalid_request")
        );
    }

    #[test]
    fn text_parameters_are_capped_and_printable() {
        assert!(text("state", None, 4, true).is_ok());
        assert!(text("state", Some("abcd"), 4, true).is_ok());
        assert!(text("state", Some("abcde"), 4, true).is_err());
        assert!(text("state", Some("a\nb"), 9, true).is_err());
        assert!(text("state", Some("é"), 9, true).is_err());
        assert!(text("nonce", Some("é"), 9, false).is_ok());
        assert!(text("nonce", Some("\u{7f}"), 9, false).is_err());
        assert!(challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
        assert!(!challenge("short"));
    }

    #[test]
    fn resources_are_counted_and_deduplicated() {
        assert_eq!(
            resources(&["https://a/", "https://a/"]),
            Ok(vec!["https://a/".to_owned()])
        );
        assert!(resources(&["https://a/"; MAX_RESOURCES + 1]).is_err());
        assert!(resources(&[&"x".repeat(MAX_RESOURCE + 1)]).is_err());
    }

    proptest! {
        #[test]
        fn whatever_is_accepted_fits_the_caps(raw in ".{0,3000}") {
            if let Ok(s) = scope(Some(&raw), KNOWN) {
                prop_assert!(s.len() <= KNOWN.len());
            }
            if text("state", Some(&raw), MAX_STATE, true).is_ok() {
                prop_assert!(raw.len() <= MAX_STATE);
            }
        }
    }
}
