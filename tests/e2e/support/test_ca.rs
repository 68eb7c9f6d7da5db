//! Throw-away certificate authorities made in the test (rcgen): a CA, leaves for `localhost` and
//! `127.0.0.1` signed by it, its PEM in a file for `tls.ca_file`, and a TLS acceptor.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CA whose key lives only in this test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key.
pub struct Leaf {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("baton test CA {name}"));
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `dir/<name>.pem` and returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.pem()).expect("write CA file");
        path
    }

    /// A leaf for `localhost` and `127.0.0.1` signed by this CA.
    pub fn leaf(&self) -> Leaf {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        Leaf {
            certs: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

impl TestCa {
    /// An X.509-SVID for the SPIFFE ID `id` (its one URI SAN) signed by this CA, as a SPIRE
    /// agent writes one: the certificate PEM and the PKCS#8 key PEM.
    pub fn svid(&self, id: &str) -> (String, String) {
        self.with_uris(&[id])
    }

    /// A leaf for `localhost` and `127.0.0.1`, PEM certificate and PKCS#8 key.
    pub fn server_pem(&self) -> (String, String) {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf whose URI SANs are `uris`, PEM certificate and PKCS#8 key.
    pub fn with_uris(&self, uris: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().expect("IA5 URI")))
            .collect();
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}

impl Leaf {
    /// A TLS acceptor (HTTP/1.1) serving this leaf.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(self.certs.clone(), self.key.clone_key())
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(tls))
    }
}
