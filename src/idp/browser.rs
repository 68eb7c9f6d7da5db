//! What ties the login pages to one browser (login CSRF defence):
//!
//! - the pre-login cookie, set when `/authorize` shows a form: 32 random bytes, HttpOnly,
//!   SameSite=Lax, `__Host-` prefixed and Secure when the issuer is https (so a sibling
//!   subdomain cannot plant one). The sealed request in the form carries its SHA-256, so a form
//!   is taken only together with the cookie of the browser it was shown to, and a cross-site
//!   POST, which does not carry a Lax cookie, never is;
//! - the origin check ([`same_origin`]), which the sign-out confirmation passes too: a POST whose
//!   `Origin` is not the issuer's, or whose `Sec-Fetch-Site` is `same-site` or `cross-site`, is
//!   refused. Clients that send neither (non-browsers) still need the cookie;
//! - the device cookie, set when a user proves a factor: a sealed note that this browser signed
//!   in as that user, which gives it its own failure counter (see [`super::throttle`]).

use super::config::Factor;
use super::pending::{Pending, TTL};
use crate::http::cookie::{self, Sealer};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Associated data of a sealed device cookie.
const DEVICE: &str = "baton-idp-device";
/// How long a browser stays trusted after the user last signed in with it, in seconds.
pub const DEVICE_TTL: u64 = 30 * 86_400;

fn secure(issuer: &str) -> bool {
    issuer.starts_with("https://")
}

/// The pre-login cookie's name: `__Host-` needs Secure, so only an https issuer gets it.
pub fn login_cookie(issuer: &str) -> &'static str {
    if secure(issuer) {
        "__Host-baton-idp-login"
    } else {
        "baton-idp-login"
    }
}

/// The device cookie's name.
pub fn device_cookie(issuer: &str) -> &'static str {
    if secure(issuer) {
        "__Host-baton-idp-device"
    } else {
        "baton-idp-device"
    }
}

/// The browser's pre-login value: the one its cookie carries when well-formed, else a new one.
/// One value serves every tab, so two sign-ins in progress both complete.
pub fn binding(headers: &HeaderMap, issuer: &str) -> String {
    cookie::read(headers, login_cookie(issuer))
        .filter(|v| URL_SAFE_NO_PAD.decode(v).is_ok_and(|raw| raw.len() == 32))
        .map_or_else(|| crate::secret::random_b64(32), str::to_owned)
}

/// What a sealed request stores of the pre-login value.
pub fn binding_hash(value: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::secret::sha256(&[value.as_bytes()]))
}

/// `Set-Cookie` for the pre-login value, kept as long as a sealed request is.
pub fn set_binding(issuer: &str, value: &str) -> HeaderValue {
    cookie::set(login_cookie(issuer), value, "/", TTL, secure(issuer))
}

/// Whether the request carries the pre-login cookie `pending` was sealed for.
pub fn bound(headers: &HeaderMap, issuer: &str, pending: &Pending) -> bool {
    cookie::read(headers, login_cookie(issuer)).is_some_and(|v| {
        binding_hash(v)
            .as_bytes()
            .ct_eq(pending.browser.as_bytes())
            .into()
    })
}

/// Whether a form POST may have come from one of the IdP's own pages. A browser says where a
/// request comes from in `Sec-Fetch-Site` and `Origin`, which pages cannot set; a request may
/// send each at most once, and:
///
/// - `Sec-Fetch-Site`, when sent, must be `same-origin` (or `none`: the user's own navigation);
/// - `Origin`, when sent, must be the issuer's origin, or `null` together with
///   `Sec-Fetch-Site: same-origin` (a page of ours under a `no-referrer` policy).
///
/// A client that sends neither is not a browser a third-party page could drive; the forms still
/// need the browser's cookie.
pub fn same_origin(headers: &HeaderMap, issuer: &str) -> bool {
    let one = |name: &str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => v.to_str().map(Some).map_err(|_| ()),
            (Some(_), Some(_)) => Err(()),
        }
    };
    let (Ok(site), Ok(origin)) = (one("sec-fetch-site"), one(header::ORIGIN.as_str())) else {
        return false;
    };
    let site = site.map(str::trim);
    let fetch_site_ok = site.is_none_or(|s| matches!(s, "same-origin" | "none"));
    let origin_ok = match origin {
        None => true,
        Some("null") => site == Some("same-origin"),
        Some(origin) => match (url::Url::parse(origin), url::Url::parse(issuer)) {
            (Ok(o), Ok(i)) => {
                o.origin().is_tuple()
                    && o.origin() == i.origin()
                    && o.path() == "/"
                    && o.query().is_none()
            }
            _ => false,
        },
    };
    fetch_site_ok && origin_ok
}

/// A browser where `user` proved `factors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Random id: the key of this browser's failure counter.
    #[serde(rename = "i")]
    pub id: String,
    #[serde(rename = "u")]
    pub(crate) user: String,
    #[serde(rename = "f")]
    pub(crate) factors: Vec<Factor>,
    #[serde(rename = "e")]
    pub(crate) expires_at: u64,
}

impl Device {
    /// Whether this browser already proved `factor` for `user`.
    pub fn trusted(&self, user: &str, factor: Factor) -> bool {
        self.user == user && self.factors.contains(&factor)
    }
}

/// The request's device cookie, if genuine and unexpired.
pub fn device(sealer: &Sealer, headers: &HeaderMap, issuer: &str, now: u64) -> Option<Device> {
    let value = cookie::read(headers, device_cookie(issuer))?;
    let d: Device = serde_json::from_slice(&sealer.open(DEVICE, value)?).ok()?;
    (d.expires_at > now).then_some(d)
}

/// `Set-Cookie` recording that this browser proved `factor` as `user`: the same id when it was
/// already this user's, a new one otherwise.
pub fn remember(
    sealer: &Sealer,
    issuer: &str,
    old: Option<Device>,
    user: &str,
    factor: Factor,
    now: u64,
) -> HeaderValue {
    let mut d = old.filter(|d| d.user == user).unwrap_or_else(|| Device {
        id: crate::secret::random_b64(16),
        user: user.to_owned(),
        factors: Vec::new(),
        expires_at: 0,
    });
    if !d.factors.contains(&factor) {
        d.factors.push(factor);
    }
    d.expires_at = now + DEVICE_TTL;
    let sealed = sealer.seal(DEVICE, &serde_json::to_vec(&d).unwrap_or_default());
    cookie::set(
        device_cookie(issuer),
        &sealed,
        "/",
        DEVICE_TTL,
        secure(issuer),
    )
}

#[cfg(test)]
mod tests;
