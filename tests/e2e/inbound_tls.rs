//! e2e: TLS on the inbound listener with client certificates from a mesh CA (X.509-SVIDs made
//! by the test): a route's `peer:` admits one workload and refuses another, the app gets the
//! verified SPIFFE ID in `x-baton-peer` and never a client's copy, a client without a
//! certificate or with one from another CA fails the handshake, HTTP/2 comes by ALPN (a gRPC
//! call refused as `PERMISSION_DENIED`), and a certificate replaced on disk is served to the
//! next connection without a restart.

use crate::mtls::scratch;
use crate::support::fake_idp::FakeIdp;
use crate::support::test_ca::TestCa;
use crate::support::upstream::Upstream;
use baton::config::Config;
use baton::inbound;
use baton::jwt::Algorithm;
use baton::jwt::keys::SigningKey;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

const X: &str = "spiffe://baton.test/ns/demo/sa/x";
const Y: &str = "spiffe://baton.test/ns/demo/sa/y";

/// A sidecar's config with TLS on the inbound listener, serving `dir/server.pem` and verifying
/// clients against `dir/mesh.pem` as `client_auth` says.
fn config(idp: &FakeIdp, app: &Upstream, dir: &Path, client_auth: &str) -> Config {
    let yaml = format!(
        r#"
issuer: {issuer}
audience: service-b
app: "{app}"
outbound: {{client: {{client_id: service-b, secret: test-only}}}}
inbound:
  tls:
    cert_file: "{dir}/server.pem"
    key_file: "{dir}/server.key"
    client_ca_file: "{dir}/mesh.pem"
    client_auth: {client_auth}
routes:
  - {{name: x-only, path: /x, public: true, peer: {X}}}
  - {{name: domain, path: /domain, public: true, peer: ["spiffe://baton.test/*"]}}
  - {{name: open, path: /, public: true}}
"#,
        issuer = idp.issuer,
        app = app.addr,
        dir = dir.display(),
    );
    Config::from_yaml(&yaml, "sidecar.yaml").expect("test config")
}

/// The inbound listener of [`config`] alone, served in the test.
async fn sidecar(idp: &FakeIdp, app: &Upstream, dir: &Path, client_auth: &str) -> SocketAddr {
    let cfg = config(idp, app, dir, client_auth);
    let t = cfg.inbound.tls.clone().expect("inbound.tls");
    let tls = baton::tls::ReloadingAcceptor::load(&t.cert_file, &t.key_file, t.client_ca)
        .expect("TLS files load");
    let state = crate::support::sidecar::inbound(&cfg).state.with_tls(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(inbound::serve(
        Arc::new(state),
        listener,
        std::future::pending(),
    ));
    addr
}

/// A client trusting the mesh CA, presenting `identity` (certificate and key PEM) if given.
fn client(mesh: &TestCa, identity: Option<&(String, String)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(mesh.pem().as_bytes()).expect("CA");
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .tls_info(true);
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}{key}");
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

fn write_server(dir: &Path, (cert, key): &(String, String)) {
    for (name, text) in [("server.pem", cert), ("server.key", key)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
    }
}

/// The DER of the certificate the listener served on `rsp`'s connection.
fn served(rsp: &reqwest::Response) -> Vec<u8> {
    rsp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("TLS info")
        .to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("PEM")
        .to_vec()
}

#[test_log::test(tokio::test)]
async fn peer_rules_admit_one_workload_and_refuse_another() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let mesh = TestCa::new("mesh");
    let dir = scratch("inbound-tls");
    mesh.write(&dir, "mesh");
    let first = mesh.server_pem();
    write_server(&dir, &first);
    let addr = sidecar(&idp, &app, &dir, "required").await;
    let url = |path: &str| format!("https://localhost:{}{path}", addr.port());
    let x = client(&mesh, Some(&mesh.svid(X)));

    // Workload X on X's route: forwarded over HTTP/2 (ALPN), the app told who called, and
    // every client-sent copy of the peer header dropped.
    let rsp = x
        .get(url("/x/orders"))
        .header("x-baton-peer", Y)
        .header("x_baton_peer", Y)
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    assert_eq!(served(&rsp), der(&first.0));
    let seen = app.last().expect("the app got the request");
    let peers: Vec<_> = seen.headers.get_all("x-baton-peer").iter().collect();
    assert_eq!(peers, [X], "only the verified peer");
    assert!(seen.headers.get("x_baton_peer").is_none());

    // Workload Y: refused on X's route, before the app; admitted where its trust domain is.
    let y = client(&mesh, Some(&mesh.svid(Y)));
    let before = app.requests();
    let rsp = y.get(url("/x")).send().await.expect("response");
    assert_eq!(rsp.status(), 403);
    let body: serde_json::Value = rsp.json().await.expect("JSON body");
    assert_eq!(body["error"], "access_denied");
    assert_eq!(app.requests(), before);
    let rsp = y.get(url("/domain")).send().await.expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(app.last().expect("seen").headers["x-baton-peer"], Y);

    // A gRPC call refused by a peer rule reads PERMISSION_DENIED.
    let rsp = y
        .post(url("/x/Svc/Call"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.version(), http::Version::HTTP_2);
    assert_eq!(rsp.headers()["grpc-status"], "7");

    // A certificate that names no SPIFFE ID (or two) is no peer: refused where one is needed,
    // and the app hears of none elsewhere.
    let two = client(&mesh, Some(&mesh.with_uris(&[X, Y])));
    let rsp = two.get(url("/x")).send().await.expect("response");
    assert_eq!(rsp.status(), 403);
    let rsp = two.get(url("/open")).send().await.expect("response");
    assert_eq!(rsp.status(), 200);
    assert!(
        app.last()
            .expect("seen")
            .headers
            .get("x-baton-peer")
            .is_none()
    );

    // No certificate, or one from another CA: no handshake, nothing reaches the app.
    let before = app.requests();
    let none = client(&mesh, None).get(url("/open")).send().await;
    assert!(none.is_err(), "a client without a certificate is refused");
    let rogue = TestCa::new("rogue");
    let forged = client(&mesh, Some(&rogue.svid(X)))
        .get(url("/x"))
        .send()
        .await;
    assert!(forged.is_err(), "a certificate from another CA is refused");
    assert_eq!(app.requests(), before);

    // The certificate renewed on disk is served to the next connection, no restart.
    let second = mesh.server_pem();
    write_server(&dir, &second);
    let rsp = client(&mesh, Some(&mesh.svid(X)))
        .get(url("/x"))
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert_eq!(served(&rsp), der(&second.0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test_log::test(tokio::test)]
async fn optional_client_auth_admits_clients_without_a_certificate_where_no_peer_is_needed() {
    let key = SigningKey::generate(Algorithm::ES256).expect("key");
    let idp = FakeIdp::start(&[&key]).await;
    let app = Upstream::start().await;
    let mesh = TestCa::new("mesh");
    let dir = scratch("inbound-tls-optional");
    mesh.write(&dir, "mesh");
    write_server(&dir, &mesh.server_pem());
    // The whole sidecar, as `baton run` starts it from the config.
    let cfg = config(&idp, &app, &dir, "optional");
    let listeners = baton::sidecar::Listeners::ephemeral(&cfg)
        .await
        .expect("bind");
    let running = baton::sidecar::start(cfg, listeners, None)
        .await
        .expect("start");
    let addr = running.inbound;
    let url = |path: &str| format!("https://localhost:{}{path}", addr.port());
    let anonymous = client(&mesh, None);
    let rsp = anonymous
        .get(url("/open"))
        .header("x-baton-peer", X)
        .send()
        .await
        .expect("response");
    assert_eq!(rsp.status(), 200);
    assert!(
        app.last()
            .expect("seen")
            .headers
            .get("x-baton-peer")
            .is_none()
    );
    let rsp = anonymous.get(url("/x")).send().await.expect("response");
    assert_eq!(rsp.status(), 403);

    // A certificate a client does present must still verify.
    let rogue = TestCa::new("rogue");
    let forged = client(&mesh, Some(&rogue.svid(X)))
        .get(url("/open"))
        .send()
        .await;
    assert!(forged.is_err());

    // The client CA renewed on disk: the old CA's workloads are refused from the next
    // connection on, the new CA's admitted.
    let next = TestCa::new("mesh-next");
    std::fs::write(dir.join("mesh.pem.tmp"), next.pem()).expect("write");
    std::fs::rename(dir.join("mesh.pem.tmp"), dir.join("mesh.pem")).expect("rename");
    let old = client(&mesh, Some(&mesh.svid(X)))
        .get(url("/x"))
        .send()
        .await;
    assert!(old.is_err(), "the replaced CA no longer vouches");
    let renewed = client(&mesh, Some(&next.svid(X)))
        .get(url("/x"))
        .send()
        .await
        .expect("response");
    assert_eq!(renewed.status(), 200);

    // The client CA emptied to stop trusting it: no handshake is accepted under the CA it held
    // before, until a CA loads again.
    std::fs::write(dir.join("mesh.pem"), "").expect("empty");
    let refused = client(&mesh, Some(&next.svid(X)))
        .get(url("/x"))
        .send()
        .await;
    assert!(refused.is_err(), "no client CA, no connection");
    std::fs::write(dir.join("mesh.pem.tmp"), next.pem()).expect("write");
    std::fs::rename(dir.join("mesh.pem.tmp"), dir.join("mesh.pem")).expect("rename");
    let back = client(&mesh, Some(&next.svid(X)))
        .get(url("/x"))
        .send()
        .await
        .expect("response");
    assert_eq!(back.status(), 200);
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}
