//! The HTTPS clients of `tls` routes: each trusts its route's roots only (a `ca_file`, or the
//! system's trust anchors) and presents the route's client certificate, if any.

use super::{UPSTREAM_IDLE, connector};
use crate::config::outbound::Outbound as Config;
use crate::http::Body;
use crate::outbound::Error;
use crate::tls::ReloadingCert;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// An HTTPS client with the trust of one route.
pub(super) type TlsClient = Client<HttpsConnector<HttpConnector>, Body>;

/// Per route (config order), the HTTPS client of a `tls` route, or `None`.
pub(super) type PerRoute = Vec<Option<TlsClient>>;

/// The HTTPS clients of `cfg`'s routes: for HTTP/1.1 calls, and for HTTP/2 calls. Reads every
/// route's `tls.ca_file`; fails when one cannot be read or holds no certificate.
pub(super) fn clients(cfg: &Config) -> Result<(PerRoute, PerRoute), Error> {
    let mut native: Option<Arc<rustls::RootCertStore>> = None;
    let mut tls = Vec::with_capacity(cfg.routes.len());
    let mut tls_h2 = Vec::with_capacity(cfg.routes.len());
    for r in &cfg.routes {
        let Some(t) = &r.tls else {
            tls.push(None);
            tls_h2.push(None);
            continue;
        };
        let roots = match &t.ca_file {
            Some(path) => Arc::new(roots_from(path)?),
            None => native.get_or_insert_with(native_roots).clone(),
        };
        let cert = match &t.client_cert {
            Some(c) => {
                Some(ReloadingCert::load(&c.cert_file, &c.key_file).map_err(Error::ClientCert)?)
            }
            None => None,
        };
        let timeout = cfg.connect_timeout;
        tls.push(Some(tls_client(
            roots.clone(),
            cert.clone(),
            timeout,
            false,
        )?));
        tls_h2.push(Some(tls_client(roots, cert, timeout, true)?));
    }
    Ok((tls, tls_h2))
}

/// An HTTPS-only client trusting exactly `roots`, presenting `cert` when the upstream asks for
/// a client certificate, offering HTTP/1.1 alone in ALPN, or `h2` alone when `h2`.
fn tls_client(
    roots: Arc<rustls::RootCertStore>,
    cert: Option<Arc<ReloadingCert>>,
    connect_timeout: Duration,
    h2: bool,
) -> Result<TlsClient, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::TlsConfig)?
        .with_root_certificates(roots);
    let tls = match cert {
        Some(cert) => {
            let mut tls = builder.with_client_cert_resolver(cert);
            // A resumed session keeps the identity of the handshake it came from: after a
            // renewal the upstream would go on seeing the old certificate. Every connection
            // makes a full handshake and presents the certificate on disk now.
            tls.resumption = rustls::client::Resumption::disabled();
            tls
        }
        None => builder.with_no_client_auth(),
    };
    let mut http = connector(connect_timeout);
    http.enforce_http(false);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only();
    let connector = if h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(UPSTREAM_IDLE)
        .http2_only(h2)
        .build(connector))
}

/// The certificates of the PEM file `path`, and nothing else.
fn roots_from(path: &Path) -> Result<rustls::RootCertStore, Error> {
    let bad = |source: Box<dyn std::error::Error + Send + Sync>| Error::TlsRoots {
        path: path.to_owned(),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.into()))? {
        let cert = cert.map_err(|e| bad(e.into()))?;
        roots.add(cert).map_err(|e| bad(e.into()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(roots)
}

/// The system's trust anchors (what a `tls` route without `ca_file` trusts).
fn native_roots() -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for e in &loaded.errors {
        warn!(error = %e, "reading the system's trust anchors");
    }
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        warn!(
            "no system trust anchors found: tls routes without ca_file will refuse every upstream"
        );
    }
    Arc::new(roots)
}
