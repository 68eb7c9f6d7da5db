//! The subject phase of an outbound call: the token the app sent in `Authorization`, or the
//! token a handle it sent stands for when tokens are confined to the sidecar.

use super::reject::Reject;
use crate::config::outbound::{Route, WithoutSubject};
use http::{HeaderMap, HeaderValue, header};

/// The subject token of a request on `route`: the one in `headers`, or, when `handles` are
/// given and it is a handle, the token the handle stands for.
pub(super) fn of(
    headers: &HeaderMap,
    route: &Route,
    handles: Option<&crate::confine::Handles>,
) -> Result<Option<Subject>, Reject> {
    let subject = subject(headers, route)?;
    Ok(match (subject, handles) {
        (Some(t), Some(h)) if t.bytes().starts_with(crate::confine::PREFIX.as_bytes()) => {
            Some(unconfine(h, &t)?)
        }
        (other, _) => other,
    })
}

/// The subject token from `Authorization: Bearer` (RFC 6750 §2.1) or `DPoP` (RFC 9449 §7.1: a
/// bound token the inbound listener checked, passed on by the app), or `None` when the route
/// allows `client_credentials`.
fn subject(headers: &HeaderMap, route: &Route) -> Result<Option<Subject>, Reject> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Reject::BadAuthorization(
            "more than one Authorization header",
        ));
    }
    let token = match first {
        None => None,
        Some(v) => {
            let bytes = v.as_bytes();
            let space = bytes.iter().position(|&b| b == b' ');
            let scheme = &bytes[..space.unwrap_or(bytes.len())];
            let after = space.map_or(bytes.len(), |i| i + 1);
            let rest = &bytes[after..];
            let start = after + (rest.len() - rest.trim_ascii_start().len());
            let token = rest.trim_ascii();
            let known =
                scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"dpop");
            if !known || token.is_empty() {
                return Err(Reject::BadAuthorization(
                    "only `Authorization: Bearer <token>` (or `DPoP <token>`) is propagated",
                ));
            }
            // Visible ASCII only, checked without a branch per byte so that it vectorizes: it
            // runs over the whole token on every request.
            let visible = token
                .iter()
                .fold(true, |ok, &b| ok & (b.wrapping_sub(0x21) < 0x5e));
            if !visible {
                return Err(Reject::BadAuthorization("the token is not visible ASCII"));
            }
            Some(Subject {
                value: v.clone(),
                token: start..start + token.len(),
            })
        }
    };
    match (token, route.without_subject) {
        (Some(t), _) => Ok(Some(t)),
        (None, WithoutSubject::ClientCredentials) => Ok(None),
        (None, WithoutSubject::Deny) => Err(Reject::NoSubject(route.name.clone())),
    }
}

/// The token a handle stands for, as a subject; an unknown or expired handle is refused.
fn unconfine(handles: &crate::confine::Handles, handle: &Subject) -> Result<Subject, Reject> {
    let unknown = || Reject::BadAuthorization("unknown or expired token handle");
    let name = std::str::from_utf8(handle.bytes()).map_err(|_| unknown())?;
    let value = handles
        .redeem(name, crate::jwt::unix_now())
        .ok_or_else(unknown)?;
    let start = value
        .as_bytes()
        .iter()
        .position(|&b| b == b' ')
        .map_or(0, |i| i + 1);
    let end = value.as_bytes().len();
    Ok(Subject {
        value,
        token: start..end,
    })
}

/// A subject token, where it sits in the `Authorization` value it came in: a cache hit needs
/// neither a copy of it nor a `str` (the value is shared, not copied, with the request).
pub(super) struct Subject {
    value: HeaderValue,
    token: std::ops::Range<usize>,
}

impl Subject {
    /// The token's bytes, visible ASCII.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.value.as_bytes()[self.token.clone()]
    }
}

#[cfg(test)]
mod tests;
