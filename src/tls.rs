//! TLS from PEM files that may change on disk: a rustls certificate resolver that reloads the
//! certificate and key when they change (a renewed Secret, an X.509-SVID a SPIFFE helper
//! renews; also the outbound side's client certificate for mutual TLS), the fixed acceptors the
//! webhook runs `server::serve_tls` with (one may require a client certificate signed by a
//! given CA, the API server's), and [`ReloadingAcceptor`], the inbound listener's, whose
//! certificate, key and client CA are all read again when they change.

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
    let verifier = client_verifier(ca, ClientAuth::Required)?;
    with_verifier(resolver, verifier, ca)
}

/// Whether a listener that verifies client certificates also admits clients without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client may present no certificate; one it presents must verify.
    Optional,
    /// The handshake fails without a certificate that verifies.
    Required,
}

/// A verifier of client certificates chaining to the CA certificates in the PEM file `ca`.
fn client_verifier(
    ca: &Path,
    auth: ClientAuth,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
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
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::Required => builder,
    };
    builder.build().map_err(|e| fail(e.to_string()))
}

/// A TLS 1.2/1.3 acceptor offering `h2` and `http/1.1`, serving `resolver`'s certificate and
/// checking client certificates with `verifier` (`ca` names its file in errors); every
/// connection makes a full handshake.
fn with_verifier(
    resolver: Arc<ReloadingCert>,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    ca: &Path,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::ClientCa {
            path: ca.to_owned(),
            reason: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    // No resumption: a resumed session keeps the client identity of the handshake it came
    // from, which would outlive a renewed client CA or the certificate itself.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(with_alpn(config))
}

/// The client CA file of a [`ReloadingAcceptor`] and what it asks of clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCa {
    /// PEM CA certificates client certificates must chain to.
    pub file: PathBuf,
    /// Whether a client without a certificate is admitted.
    pub auth: ClientAuth,
}

/// An acceptor whose certificate, key and client CA are read again when their files change,
/// looked at as each connection is accepted: a renewed certificate is served, and a renewed CA
/// trusted, from the next new connection on, with no watcher task and no restart. Files that do
/// not load keep the previous ones in use.
pub struct ReloadingAcceptor {
    cert: Arc<ReloadingCert>,
    client_ca: Option<ClientCa>,
    /// The acceptor in use and the client CA file's stamp it was built from; `None` while a
    /// changed client CA file does not load.
    current: Mutex<(Stamp, Option<TlsAcceptor>)>,
}

impl ReloadingAcceptor {
    /// Loads the certificate pair and, when given, the client CA; fails at start-up when any
    /// is missing, empty or unusable.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<ClientCa>) -> Result<Self, TlsError> {
        let cert = ReloadingCert::load(cert, key)?;
        let stamp = ca_stamp(client_ca.as_ref());
        let acceptor = build(&cert, client_ca.as_ref())?;
        Ok(Self {
            cert,
            client_ca,
            current: Mutex::new((stamp, Some(acceptor))),
        })
    }

    /// The acceptor for the connection being accepted now, after reloading whatever changed.
    /// `None` (the connection is refused) while a client CA file that changed does not load: an
    /// operator who empties or removes it to stop trusting a CA gets no handshake accepted
    /// under the old one. A certificate that fails to reload is replaced by nothing: the old one
    /// is served until the new one loads.
    pub fn current(&self) -> Option<TlsAcceptor> {
        match self.cert.reload_if_changed() {
            Ok(true) => info!(cert = %self.cert.cert.display(), "TLS certificate reloaded"),
            Ok(false) => {}
            Err(e) => warn!(error = %e, "TLS certificate reload failed; keeping the old one"),
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = ca_stamp(self.client_ca.as_ref());
        if now != current.0 {
            // Recorded first: a half-written file is retried only after it changes again.
            current.0 = now;
            match build(&self.cert, self.client_ca.as_ref()) {
                Ok(acceptor) => {
                    info!("client CA reloaded");
                    current.1 = Some(acceptor);
                }
                Err(e) => {
                    warn!(error = %e, "client CA reload failed; refusing connections until it loads");
                    current.1 = None;
                }
            }
        }
        current.1.clone()
    }
}

fn ca_stamp(ca: Option<&ClientCa>) -> Stamp {
    match ca {
        Some(ca) => stamp(&ca.file, &ca.file),
        None => [(None, 0); 2],
    }
}

fn build(cert: &Arc<ReloadingCert>, ca: Option<&ClientCa>) -> Result<TlsAcceptor, TlsError> {
    match ca {
        Some(ca) => with_verifier(cert.clone(), client_verifier(&ca.file, ca.auth)?, &ca.file),
        None => acceptor(cert.clone()).map_err(|e| TlsError::Read {
            path: cert.cert.clone(),
            reason: e.to_string(),
        }),
    }
}

fn with_alpn(mut config: rustls::ServerConfig) -> TlsAcceptor {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}
