//! The HTTP client baton opens to an IdP: rustls, no proxy, bounded redirects, never a
//! downgrade from https.

use std::time::Duration;

/// Redirects a discovery or JWKS fetch follows at most.
const MAX_REDIRECTS: usize = 3;

/// The HTTP client for discovery and JWKS: rustls, a 2 s connect timeout, no proxy from the
/// environment (the app's `HTTP_PROXY` may point at this very sidecar), at most 3 redirects and
/// never one from https to http. It keeps no idle connection: a fetch every few minutes gains
/// nothing from one, and a pool holding one runs a reaper on tokio's timer until it has sat idle
/// 90 s.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    client_builder("").build()
}

/// [`http_client`] for `issuer`: with an https issuer every request and every redirect must be
/// https (`https_only`), so neither discovery nor the keys can be fetched over plain HTTP,
/// whatever a redirect says.
pub fn http_client_for(issuer: &str) -> Result<reqwest::Client, reqwest::Error> {
    client_builder(issuer).build()
}

/// The builder of [`http_client_for`], and the base of every client baton opens to an IdP:
/// the token endpoint's ([`crate::exchange::Exchanger`]) changes the redirects and the pool;
/// a test adds its private CA.
pub fn client_builder(issuer: &str) -> reqwest::ClientBuilder {
    let no_downgrade = reqwest::redirect::Policy::custom(|attempt| {
        let from_https = attempt.previous().iter().any(|u| u.scheme() == "https");
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if from_https && attempt.url().scheme() != "https" {
            attempt.error("redirect from https to http refused")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .redirect(no_downgrade)
        .https_only(issuer.starts_with("https:"))
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
}
