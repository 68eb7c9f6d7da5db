//! e2e: mutual TLS to upstreams. The upstream asks for a client certificate from the mesh CA;
//! the sidecar presents the X.509-SVID a helper keeps in files, a renewed one from the next
//! connection on, and refuses an upstream its route's CA does not vouch for.

use crate::support::test_ca::{Leaf, TestCa};
use crate::support::token_idp::{CLIENT_ID, CLIENT_SECRET, FakeIdp};
use baton::config::Problems;
use baton::config::outbound::{RawOutbound, validate};
use baton::http::{Body, empty};
use baton::outbound::{self, Outbound};
use http::{Request, Response, header};
use rustls::pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An upstream that requires a client certificate chaining to `client_ca` and records, per
/// request, the SPIFFE ID of the certificate presented. One request per connection.
pub struct MtlsUpstream {
    pub addr: SocketAddr,
    pub peers: Arc<Mutex<Vec<String>>>,
}

impl MtlsUpstream {
    pub async fn start(leaf: &Leaf, client_ca: &TestCa) -> MtlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let ca = rustls::pki_types::CertificateDer::from_pem_slice(client_ca.pem().as_bytes())
            .expect("CA");
        roots.add(ca).expect("root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.certs.clone(), leaf.key.clone_key())
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let peers = Arc::new(Mutex::new(Vec::new()));
        let seen = peers.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    else {
                        return;
                    };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| match baton::spiffe::id_of_certificate(c) {
                            Ok(id) => id.to_string(),
                            Err(e) => format!("no SPIFFE ID: {e}"),
                        })
                        .unwrap_or_default();
                    let svc = hyper::service::service_fn(move |_req| {
                        seen.lock().expect("lock").push(peer.clone());
                        async { Ok::<_, std::convert::Infallible>(Response::new(empty())) }
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        MtlsUpstream { addr, peers }
    }

    pub fn peers(&self) -> Vec<String> {
        self.peers.lock().expect("lock").clone()
    }
}

pub fn scratch(name: &str) -> std::path::PathBuf {
    crate::spiffe::scratch(name)
}

/// Writes an SVID's certificate and key to `dir/svid.pem` and `dir/svid.key` the way helpers
/// do (new files renamed over the old ones).
pub fn write_svid(dir: &Path, (cert, key): &(String, String)) {
    for (name, text) in [("svid.pem", cert), ("svid.key", key)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

fn outbound(idp: &FakeIdp, routes: &str) -> Outbound {
    let text =
        format!("client: {{client_id: {CLIENT_ID}, secret: {CLIENT_SECRET}}}\nroutes:\n{routes}");
    let raw: RawOutbound = serde_saphyr::from_str(&text).expect("yaml");
    let mut problems = Problems::new("sidecar.yaml");
    let cfg = validate(raw, &mut problems);
    let cfg = problems.finish(cfg).expect("valid outbound config");
    Outbound::new(cfg, Some(&idp.issuer()), Default::default()).expect("outbound")
}

async fn call(s: &Outbound, url: &str, bearer: &str) -> Response<Body> {
    let mut req = Request::get(url).body(empty()).expect("request");
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {bearer}").parse().expect("header"),
    );
    tokio::time::timeout(Duration::from_secs(20), outbound::handle(s, req))
        .await
        .expect("the proxy answered within the bound")
}

#[test_log::test(tokio::test)]
async fn upstream_calls_carry_the_client_certificate_renewed_on_disk() {
    let idp = FakeIdp::start().await;
    let mesh = TestCa::new("mesh");
    let dir = scratch("mtls");
    let ca = mesh.write(&dir, "mesh");
    let up = MtlsUpstream::start(&mesh.leaf(), &mesh).await;
    let (a, b) = (
        "spiffe://baton.test/ns/demo/sa/a",
        "spiffe://baton.test/ns/demo/sa/a2",
    );
    write_svid(&dir, &mesh.svid(a));
    let port = up.addr.port();
    let route = |name: &str, tls: String| {
        format!(
            "  - {{name: {name}, host: \"localhost:{port}\", audience: service-b, tls: {tls}}}\n"
        )
    };
    let mtls = format!(
        "{{ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\"}}",
        ca.display(),
        dir.join("svid.pem").display(),
        dir.join("svid.key").display()
    );
    let s = outbound(&idp, &route("b", mtls.clone()));
    let url = format!("http://localhost:{port}/");
    let rsp = call(&s, &url, &idp.user_token("alice")).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.peers(), vec![a.to_owned()]);

    // The helper renews the SVID: the next connection presents the new one, no restart.
    write_svid(&dir, &mesh.svid(b));
    let rsp = call(&s, &url, &idp.user_token("alice")).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.peers(), vec![a.to_owned(), b.to_owned()]);

    // A half-written pair (a key that is not the certificate's) keeps the last good one.
    let other = mesh.svid("spiffe://baton.test/ns/demo/sa/other");
    std::fs::write(dir.join("svid.key"), &other.1).expect("write");
    let rsp = call(&s, &url, &idp.user_token("alice")).await;
    assert_eq!(rsp.status(), 200);
    assert_eq!(up.peers().last().map(String::as_str), Some(b));

    // Without a client certificate the upstream refuses the handshake: 502, nothing reached it.
    let seen = up.peers().len();
    let plain = outbound(
        &idp,
        &route("b", format!("{{ca_file: \"{}\"}}", ca.display())),
    );
    let rsp = call(&plain, &url, &idp.user_token("alice")).await;
    assert_eq!(rsp.status(), 502);
    assert_eq!(up.peers().len(), seen);

    // A certificate from another CA is refused by the upstream the same way.
    let rogue = TestCa::new("rogue");
    let rogue_dir = scratch("mtls-rogue");
    write_svid(&rogue_dir, &rogue.svid(a));
    let forged = format!(
        "{{ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\"}}",
        ca.display(),
        rogue_dir.join("svid.pem").display(),
        rogue_dir.join("svid.key").display()
    );
    let rsp = call(
        &outbound(&idp, &route("b", forged)),
        &url,
        &idp.user_token("alice"),
    )
    .await;
    assert_eq!(rsp.status(), 502);
    assert_eq!(up.peers().len(), seen);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&rogue_dir);
}

#[test_log::test(tokio::test)]
async fn a_wrong_ca_fails_closed_before_any_request() {
    let idp = FakeIdp::start().await;
    let mesh = TestCa::new("mesh");
    let other = TestCa::new("other");
    let dir = scratch("mtls-ca");
    let wrong_ca = other.write(&dir, "other");
    let up = MtlsUpstream::start(&mesh.leaf(), &mesh).await;
    write_svid(&dir, &mesh.svid("spiffe://baton.test/ns/demo/sa/a"));
    let port = up.addr.port();
    let routes = format!(
        "  - {{name: b, host: \"localhost:{port}\", audience: service-b, tls: {{ca_file: \"{}\", cert_file: \"{}\", key_file: \"{}\"}}}}\n",
        wrong_ca.display(),
        dir.join("svid.pem").display(),
        dir.join("svid.key").display()
    );
    let s = outbound(&idp, &routes);
    let rsp = call(
        &s,
        &format!("http://localhost:{port}/"),
        &idp.user_token("alice"),
    )
    .await;
    assert_eq!(rsp.status(), 502);
    assert!(up.peers().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
