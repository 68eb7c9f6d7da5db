//! What the IdP shows a browser: the sign-in and one-time-code forms, the sign-out confirmation
//! and the signed-out page ([`forms`]), the error pages ([`problem`]), and the 303 that sends the
//! browser on. Every page says who asks (the client's display name) and is drawn by
//! [`crate::page`] with the operator's branding: self-contained, never cached or framed, no
//! referrer to other sites.

mod forms;
mod problem;

pub use forms::{Asking, confirm_sign_out, one_time_code, sign_in, signed_out};
pub use problem::{Problem, error_page};

use crate::http::Body;
use crate::page::Theme;
use http::{HeaderValue, Response, StatusCode, header};

/// 303 to `uri` with `pairs` appended to its query; `None` when `uri` is not a URL.
pub fn redirect(uri: &str, pairs: &[(&str, &str)]) -> Option<Response<Body>> {
    let mut url = url::Url::parse(uri).ok()?;
    if !pairs.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(crate::http::redirect(StatusCode::SEE_OTHER, url.as_str()))
}

/// 303 to a client's `redirect_uri` with `pairs` and the issuer (RFC 9207 `iss`) in its query.
/// Registered redirect URIs are checked as URLs at start, so the error page (in the default
/// look) is for a config changed in code only.
pub fn to_client(issuer: &str, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response<Body> {
    let mut all = pairs.to_vec();
    all.push(("iss", issuer));
    redirect(redirect_uri, &all)
        .unwrap_or_else(|| error_page(Theme::standard(), Problem::BadReturnAddress))
}

/// Appends a `Set-Cookie` for each of `cookies`.
pub fn set_cookies(rsp: &mut Response<Body>, cookies: &[HeaderValue]) {
    for c in cookies {
        rsp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
}
