//! The webhook's TLS: a rustls certificate resolver that reloads the certificate and key files
//! when they change (a renewed Secret; also the outbound side's client certificate for mutual
//! TLS), and the acceptor `server::serve_tls` runs with, which may
//! require a client certificate signed by a given CA (the API server's).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or held no PEM item of the expected kind.
    #[error("read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The client CA file holds no usable CA certificate.
    #[error("client CA {path}: {reason}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key does not match the certificate, or its type is unsupported.
    #[error("certificate {cert} with key {key}: {reason}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// Serves the certificate from two PEM files and swaps it when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    stamp: Mutex<Option<Stamp>>,
}

/// Modification times and sizes of the two files, to notice a change cheaply.
type Stamp = [(Option<SystemTime>, u64); 2];

impl ReloadingCert {
    /// Loads the chain (`cert`, leaf first) and the PKCS#8/PKCS#1/SEC1 `key`; fails at start-up
    /// when either is missing, empty or they do not match.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp(cert, key);
        let loaded = load_pair(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Arc::new(loaded)),
            stamp: Mutex::new(Some(stamp)),
        }))
    }

    /// Reloads when a file changed since the last look. `Ok(true)` when a new certificate is in
    /// use; on error the previous certificate stays in use.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.cert, &self.key);
        let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref() == Some(&now) {
            return Ok(false);
        }
        // Record the stamp first: a half-written pair is retried only after it changes again.
        *last = Some(now);
        let loaded = load_pair(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        Ok(true)
    }

    /// The certificate in use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reloads every `every` until the process ends, logging changes and failures.
    pub fn watch(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(1)));
            loop {
                tick.tick().await;
                match self.reload_if_changed() {
                    Ok(true) => info!(cert = %self.cert.display(), "TLS certificate reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(error = %e, "TLS certificate reload failed; keeping the old one")
                    }
                }
            }
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// As a client certificate (mutual TLS to an upstream), the files are looked at on each
/// handshake: a renewed certificate is presented from the next new connection on, with no
/// watcher task. A pair that does not load keeps the previous one in use.
impl rustls::client::ResolvesClientCert for ReloadingCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        match self.reload_if_changed() {
            Ok(true) => info!(cert = %self.cert.display(), "client certificate reloaded"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "client certificate reload failed; keeping the old one"),
        }
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    };
    [one(cert), one(key)]
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path, reason: String| TlsError::Read {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| read(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(read(cert, "no CERTIFICATE in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| read(key, e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, der, &provider).map_err(|e| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A TLS 1.2/1.3 acceptor offering `h2` and `http/1.1`, serving `resolver`'s certificate.
pub fn acceptor(resolver: Arc<ReloadingCert>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(with_alpn(config))
}

/// Like [`acceptor`], and the handshake fails unless the client presents a certificate chain to
/// one of the CA certificates in the PEM file `ca` (read once, at start-up).
pub fn acceptor_with_client_ca(
    resolver: Arc<ReloadingCert>,
    ca: &Path,
) -> Result<TlsAcceptor, TlsError> {
    let fail = |reason: String| TlsError::ClientCa {
        path: ca.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| fail(e.to_string()))? {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no CERTIFICATE in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| fail(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    Ok(with_alpn(config))
}

fn with_alpn(mut config: rustls::ServerConfig) -> TlsAcceptor {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}
