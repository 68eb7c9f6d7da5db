//! What the IdP shows a browser: the password and one-time-code forms, refusal pages, the frame
//! every page shares (self-contained, never cached, framed or leaking a referrer to other
//! sites), and the 303 that sends the browser on.

use crate::http::{Body, full};
use http::{HeaderValue, Response, StatusCode, header};

/// The one-time-code form for the sealed request `request`.
pub fn otp_form(request: &str, error: Option<&str>, status: StatusCode) -> Response<Body> {
    let alert = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{alert}<p>Enter the 6-digit code from your authenticator app.</p>
<form method="post" action="/otp">
<input type="hidden" name="request" value="{request}">
<p><label for="code">One-time code</label><br><input id="code" name="code" inputmode="numeric" pattern="[0-9]{{6}}" maxlength="6" autocomplete="one-time-code" required autofocus></p>
<p><button type="submit">Verify</button></p>
</form>"#,
        request = escape(request),
    );
    html_page(status, "One-time code", &body)
}

/// The login form for the sealed request `request`.
pub fn form(request: &str, error: Option<&str>, status: StatusCode) -> Response<Body> {
    let alert = error
        .map(|e| format!("<p role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"{alert}<form method="post" action="/login">
<input type="hidden" name="request" value="{request}">
<p><label for="username">Username</label><br><input id="username" name="username" autocomplete="username" required autofocus></p>
<p><label for="password">Password</label><br><input id="password" type="password" name="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>"#,
        request = escape(request),
    );
    html_page(status, "Sign in", &body)
}

/// A refusal page with `status` (no redirect: the request may not be the user's).
pub fn refusal(status: StatusCode, message: &str) -> Response<Body> {
    html_page(
        status,
        "Sign-in request refused",
        &format!("<p role=\"alert\">{}</p>", escape(message)),
    )
}

/// A 400 page for requests that cannot safely be redirected.
pub fn error_page(message: &str) -> Response<Body> {
    refusal(StatusCode::BAD_REQUEST, message)
}

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
pub fn to_client(issuer: &str, redirect_uri: &str, pairs: &[(&str, &str)]) -> Response<Body> {
    let mut all = pairs.to_vec();
    all.push(("iss", issuer));
    redirect(redirect_uri, &all)
        .unwrap_or_else(|| error_page("The redirect_uri is not a valid URL."))
}

/// Appends a `Set-Cookie` for each of `cookies`.
pub fn set_cookies(rsp: &mut Response<Body>, cookies: &[HeaderValue]) {
    for c in cookies {
        rsp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
}

/// A self-contained HTML page (no external assets), never cached or framed, sending no
/// referrer to other sites.
pub fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title></head>\n<body><main><h1>{t}</h1>\n{body}\n</main></body></html>\n",
        t = escape(title)
    );
    let mut rsp = Response::new(full(html));
    *rsp.status_mut() = status;
    let h = rsp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with
    // the form's POST, which the origin check must refuse. Other sites still get no referrer.
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    rsp
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
