//! Kubernetes injection end to end: the webhook over real TLS (certificates from
//! `deploy/k8s/make-certs.sh`, renewed while serving), `baton inject` and the webhook giving the
//! same pod for the example chain, the manifests' own consistency, and `original_dst` behind a
//! real iptables REDIRECT in a network namespace the test makes.

use crate::support::process::{self, Proc, free_port};
use crate::support::upstream::Upstream;
use base64::Engine;
use baton::admin::AppProbes;
use baton::k8s::capture::{InitNetArgs, init_net};
use baton::k8s::inject::inject_stream;
use baton::k8s::mutate::{Outcome, mutate};
use baton::k8s::policy::Policy;
use baton::k8s::settings::Namespace;
use baton::k8s::webhook::{self, Webhook, review};
use baton::server::original_dst;
use baton::tls::{ReloadingCert, acceptor};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use tokio::sync::oneshot;

const HOST: &str = "baton-webhook.baton-system.svc";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-k8s-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn make_certs(out: &Path) {
    let status = Command::new(root().join("deploy/k8s/make-certs.sh"))
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run make-certs.sh (needs openssl)");
    assert!(status.success(), "make-certs.sh failed");
}

fn client(ca: &Path, addr: SocketAddr) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve(HOST, addr)
        .no_proxy()
        .build()
        .unwrap()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join(format!("tests/k8s/fixtures/{name}.json"))).unwrap()
}

struct Running {
    addr: SocketAddr,
    cert: Arc<ReloadingCert>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_webhook(dir: &Path) -> Running {
    let cert = ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let tls = acceptor(cert.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(webhook::serve(
        Arc::new(Webhook::new()),
        listener,
        tls,
        async {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        cert,
        stop: Some(tx),
        task,
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        self.task.await.unwrap();
    }
}

#[test_log::test(tokio::test)]
async fn webhook_over_tls_patches_a_pod_and_refuses_garbage() {
    let dir = scratch("tls");
    make_certs(&dir);
    let hook = start_webhook(&dir).await;
    let http = client(&dir.join("ca.crt"), hook.addr);
    let url = |path: &str| format!("https://{HOST}:{}{path}", hook.addr.port());

    let rsp = http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(rsp.status(), 200);
    let rsp = http
        .post(url("/mutate"))
        .body(fixture("pod"))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let answer: Value = rsp.json().await.unwrap();
    assert_eq!(
        answer["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    let rsp = http
        .post(url("/mutate"))
        .body(fixture("malformed"))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 400);
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"baton_webhook_reviews_total{outcome="injected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"baton_webhook_reviews_total{outcome="malformed"} 1"#),
        "{metrics}"
    );
    hook.stop().await;
}

#[test_log::test(tokio::test)]
async fn webhook_serves_a_renewed_certificate_without_restarting() {
    let (old, new) = (scratch("old"), scratch("new"));
    make_certs(&old);
    make_certs(&new);
    let serving = scratch("serving");
    for f in ["tls.crt", "tls.key"] {
        std::fs::copy(old.join(f), serving.join(f)).unwrap();
    }
    let hook = start_webhook(&serving).await;
    let healthz = format!("https://{HOST}:{}/healthz", hook.addr.port());
    let trusts_old = client(&old.join("ca.crt"), hook.addr);
    let trusts_new = client(&new.join("ca.crt"), hook.addr);
    assert!(trusts_old.get(&healthz).send().await.is_ok());
    assert!(trusts_new.get(&healthz).send().await.is_err());
    assert!(
        !hook.cert.reload_if_changed().unwrap(),
        "nothing changed yet"
    );

    // A half-renewed pair (new certificate, old key) is refused and the old one kept.
    std::fs::copy(new.join("tls.crt"), serving.join("tls.crt")).unwrap();
    assert!(hook.cert.reload_if_changed().is_err());
    assert!(
        client(&old.join("ca.crt"), hook.addr)
            .get(&healthz)
            .send()
            .await
            .is_ok()
    );

    std::fs::copy(new.join("tls.key"), serving.join("tls.key")).unwrap();
    assert!(hook.cert.reload_if_changed().unwrap());
    let fresh = client(&new.join("ca.crt"), hook.addr);
    assert_eq!(fresh.get(&healthz).send().await.unwrap().status(), 200);
    let stale = client(&old.join("ca.crt"), hook.addr);
    assert!(stale.get(&healthz).send().await.is_err());
    hook.stop().await;
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Option<Value>>(text)
        .unwrap()
        .into_iter()
        .flatten()
        .flat_map(|v| match v["kind"].as_str() {
            Some(k) if k.ends_with("List") => v["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![v],
        })
        .collect()
}

fn chain_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/k8s/chain"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn inject_and_webhook_give_the_same_pod_for_the_example_chain() {
    let mut compared = 0;
    for file in chain_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let injected = yaml_docs(&inject_stream(&text, &Policy::default()).unwrap().yaml);
        for (before, after) in yaml_docs(&text).iter().zip(&injected) {
            if before["kind"] != "Deployment" {
                assert_eq!(
                    before,
                    after,
                    "{} changed a {}",
                    file.display(),
                    before["kind"]
                );
                continue;
            }
            // What the ReplicaSet would create, as the API server sends it to the webhook.
            let tpl = &before["spec"]["template"];
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": tpl["metadata"], "spec": tpl["spec"]});
            pod["metadata"]["namespace"] = before["metadata"]["namespace"].clone();
            let review_doc = json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                            "operation": "CREATE", "namespace": "shop", "object": pod},
            });
            let (answer, outcome) =
                review(review_doc.to_string().as_bytes(), true, &Policy::default()).unwrap();
            assert_eq!(outcome, "injected", "{}", file.display());
            let b64 = answer["response"]["patch"].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
            json_patch::patch(&mut pod, &patch).unwrap();
            let want = &after["spec"]["template"];
            assert_eq!(pod["spec"], want["spec"], "{}", file.display());
            assert_eq!(
                pod["metadata"]["annotations"],
                want["metadata"]["annotations"]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 3, "service-a, service-b and service-c");
}

/// A workload's pod template with where it came from.
struct Workload {
    origin: String,
    namespace: String,
    labels: Value,
    selector: Value,
    spec: Value,
}

fn workloads(docs: &[Value]) -> Vec<Workload> {
    docs.iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("Deployment" | "StatefulSet" | "DaemonSet")
            )
        })
        .map(|d| Workload {
            origin: format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            ),
            namespace: d["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
            labels: d["spec"]["template"]["metadata"]["labels"].clone(),
            selector: d["spec"]["selector"]["matchLabels"].clone(),
            spec: d["spec"]["template"]["spec"].clone(),
        })
        .collect()
}

fn subset(small: &Value, big: &Value) -> bool {
    small
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| big.get(k) == Some(v)))
}

fn containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect()
}

fn declares(c: &Value, port: &Value) -> bool {
    c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| match port {
            Value::String(name) => p["name"] == *name,
            n => p["containerPort"] == *n,
        })
}

/// A probe's port is declared: a name by its own container, a number by any container of the pod
/// (they share the network; capture's rewritten app probes use the sidecar's 15020).
fn probe_port_declared(spec: &Value, c: &Value, port: &Value) -> bool {
    match port {
        Value::String(_) => declares(c, port),
        n => containers(spec).iter().any(|other| declares(other, n)),
    }
}

/// Selectors match template labels, Services select a workload that declares their target port,
/// probes point at ports their container declares, and no two containers of a pod take one port.
fn check_consistency(docs: &[Value], what: &str) {
    let ws = workloads(docs);
    for w in &ws {
        assert!(
            subset(&w.selector, &w.labels),
            "{what}: {} selector does not match its template labels",
            w.origin
        );
        let mut seen = std::collections::HashSet::new();
        for c in containers(&w.spec) {
            for p in c["ports"].as_array().into_iter().flatten() {
                let n = p["containerPort"].as_u64().unwrap();
                assert!(
                    seen.insert(n),
                    "{what}: {} declares port {n} twice",
                    w.origin
                );
            }
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                let port = &c[probe]["httpGet"]["port"];
                if !port.is_null() {
                    assert!(
                        probe_port_declared(&w.spec, c, port),
                        "{what}: {} {} {probe} port {port} not declared",
                        w.origin,
                        c["name"]
                    );
                }
            }
        }
    }
    for svc in docs.iter().filter(|d| d["kind"] == "Service") {
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = &svc["metadata"]["name"];
        let target = ws
            .iter()
            .find(|w| w.namespace == ns && subset(&svc["spec"]["selector"], &w.labels))
            .unwrap_or_else(|| panic!("{what}: Service {name} selects no workload"));
        for port in svc["spec"]["ports"].as_array().unwrap() {
            let tp = &port["targetPort"];
            assert!(
                containers(&target.spec).iter().any(|c| declares(c, tp)),
                "{what}: Service {name} targets port {tp} that {} does not declare",
                target.origin
            );
        }
    }
}

#[test]
fn deploy_manifests_are_consistent_and_the_injected_chain_too() {
    let mut base = Vec::new();
    for f in [
        "namespace.yaml",
        "webhook.yaml",
        "webhook-config.yaml",
        "idp.yaml",
    ] {
        base.extend(yaml_docs(
            &std::fs::read_to_string(root().join("deploy/k8s").join(f)).unwrap(),
        ));
    }
    check_consistency(&base, "deploy/k8s");
    let mut chain = Vec::new();
    for file in chain_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        chain.extend(yaml_docs(
            &inject_stream(&text, &Policy::default()).unwrap().yaml,
        ));
    }
    check_consistency(&chain, "injected chain");
    // The webhook configuration follows the rules the API server enforces and the ones we chose.
    let cfg = base
        .iter()
        .find(|d| d["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    for hook in cfg["webhooks"].as_array().unwrap() {
        assert_eq!(hook["sideEffects"], "None");
        assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
        assert_eq!(hook["failurePolicy"], "Fail");
        let excluded = hook["namespaceSelector"]["matchExpressions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["key"] == "kubernetes.io/metadata.name"
                    && e["values"]
                        .as_array()
                        .unwrap()
                        .contains(&json!("baton-system"))
            });
        assert!(
            excluded,
            "{} must exclude the webhook's own namespace",
            hook["name"]
        );
    }
}

#[test]
#[allow(unsafe_code)]
fn original_dst_sees_through_a_real_redirect() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a network namespace and iptables");
        return;
    }
    // A thread of its own: unshare(CLONE_NEWNET) moves only this thread (and the processes it
    // spawns) into a fresh namespace that disappears with it; nothing on the host is touched.
    let result = std::thread::spawn(|| -> Result<Vec<SocketAddr>, String> {
        // SAFETY: no preconditions; affects only the calling thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(format!("unshare: {}", std::io::Error::last_os_error()));
        }
        for args in [
            "link set lo up",
            "link add baton0 type veth peer name baton1",
            "link set baton1 up",
            "addr add 10.77.0.1/24 dev baton0",
            "addr add fd77::1/64 dev baton0 nodad",
            "link set baton0 up",
        ] {
            let ok = Command::new("ip")
                .args(args.split(' '))
                .status()
                .map_err(|e| e.to_string())?;
            if !ok.success() {
                return Err(format!("ip {args} failed"));
            }
        }
        let code = init_net(InitNetArgs {
            inbound_ports: vec![8080],
            outbound_ports: vec![80],
            exclude: vec![],
            proxy_uid: 15532,
            dry_run: false,
        });
        if code != ExitCode::SUCCESS {
            return Err("init-net failed".into());
        }
        // Running it again changes nothing and succeeds.
        if init_net(InitNetArgs {
            inbound_ports: vec![8080],
            outbound_ports: vec![80],
            exclude: vec![],
            proxy_uid: 15532,
            dry_run: false,
        }) != ExitCode::SUCCESS
        {
            return Err("second init-net failed".into());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Dual stack, like a sidecar listening on [::]: both families' redirects land here.
            let outbound = tokio::net::TcpListener::bind("[::]:15001").await.unwrap();
            let mut seen = Vec::new();
            // Neither address exists: only the REDIRECT can make these connect.
            for target in ["10.77.0.9:80", "[fd77::9]:80"] {
                // Bounded: without the redirect the SYN would go nowhere.
                let connect = tokio::net::TcpStream::connect(target);
                let _app = tokio::time::timeout(std::time::Duration::from_secs(20), connect)
                    .await
                    .map_err(|_| format!("connect to {target} was not redirected"))?
                    .map_err(|e| format!("{target}: {e}"))?;
                let (accepted, _) = outbound.accept().await.unwrap();
                seen.push(original_dst(&accepted).map_err(|e| format!("{target}: {e}"))?);
            }
            Ok(seen)
        })
    })
    .join()
    .unwrap();
    match result {
        Ok(dst) => {
            let want: Vec<SocketAddr> = vec![
                "10.77.0.9:80".parse().unwrap(),
                "[fd77::9]:80".parse().unwrap(),
            ];
            assert_eq!(dst, want);
        }
        Err(e) if e.starts_with("unshare") => eprintln!("skipped: {e}"),
        Err(e) => panic!("{e}"),
    }
}

#[test_log::test(tokio::test)]
async fn webhook_closes_silent_and_idle_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = scratch("idle");
    make_certs(&dir);
    let cert = ReloadingCert::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = baton::server::Limits {
        header_read_timeout: std::time::Duration::from_millis(300),
        idle_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let state = Arc::new(Webhook::new());
    let handler = move |req, _| {
        let state = state.clone();
        async move { webhook::handle(&state, req).await }
    };
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(baton::server::serve_tls(
        listener,
        acceptor(cert).unwrap(),
        limits,
        handler,
        async {
            let _ = rx.await;
        },
    ));
    let bound = std::time::Duration::from_secs(20);

    // A client that never starts the handshake is dropped.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(bound, silent.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "server kept a silent connection"
    );

    // A client that handshakes, asks once, then stays quiet is closed after the idle timeout.
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("ca.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let read_all = tls.read_to_end(&mut got);
    let _ = tokio::time::timeout(bound, read_all)
        .await
        .expect("idle connection closed in time");
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "answered before closing"
    );

    let _ = tx.send(());
    server.await.unwrap();
}

/// The policy `tests/k8s/validate.sh` injects `tests/k8s/workloads.yaml` with: the default sidecar
/// image, and the capture image one workload names.
fn workloads_policy() -> Policy {
    Policy {
        allowed_images: vec!["baton-init:dev".into()],
        ..Policy::default()
    }
}

/// Every config generated for the example workloads passes the sidecar's own validation, and
/// annotations whose generated config it would refuse never get through `baton inject`: the
/// stream is refused with the sidecar's reason.
#[test]
fn generated_sidecar_configs_pass_the_sidecars_own_validation() {
    let (mut checked, mut probe_tables) = (0, 0);
    let mut texts: Vec<String> = chain_files()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    texts.push(std::fs::read_to_string(root().join("tests/k8s/workloads.yaml")).unwrap());
    for text in texts {
        for doc in yaml_docs(&inject_stream(&text, &workloads_policy()).unwrap().yaml) {
            let templates = [
                doc.pointer("/spec/template"),
                doc.pointer("/spec/jobTemplate/spec/template"),
                Some(&doc),
            ];
            for tpl in templates.into_iter().flatten() {
                let Some(yaml) = tpl
                    .pointer("/metadata/annotations/baton.dev~1sidecar-config")
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                // The app probes handed to the sidecar are a table its parser takes.
                for c in tpl["spec"]["initContainers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    for e in c["env"].as_array().into_iter().flatten() {
                        if e["name"] == "BATON_APP_PROBES" {
                            let table = e["value"].as_str().unwrap();
                            AppProbes::from_json(table).expect("a valid probe table");
                            probe_tables += 1;
                        }
                    }
                }
                if let Err(e) = baton::config::Config::from_yaml(yaml, "sidecar.yaml") {
                    // The client secret is a mounted file that only exists in the pod.
                    let real: Vec<_> =
                        e.0.iter()
                            .filter(|p| p.field != "outbound.client.secret_file")
                            .collect();
                    assert!(
                        real.is_empty(),
                        "generated config of {} is refused: {real:?}\n{yaml}",
                        doc["metadata"]["name"]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} generated configs checked");
    assert!(probe_tables >= 1, "no capture workload with probes checked");

    let service_b =
        std::fs::read_to_string(root().join("deploy/k8s/chain/service-a.yaml")).unwrap();
    let mut refused = 0;
    for (routes, reason) in [
        (
            "service-b:8080/x?=service-b",
            "outbound.routes[0].host: required as host[:port]",
        ),
        (
            "service-b:8080=svc, service-c:8080=svc",
            "outbound.routes[1].name: duplicate route name",
        ),
        (
            "service-b:8080=service-b, service-b:9090=service-b",
            "outbound.routes[1].name: duplicate route name",
        ),
    ] {
        let text = service_b.replace(
            "baton.dev/outbound-routes: service-b:8080=service-b",
            &format!("baton.dev/outbound-routes: \"{routes}\""),
        );
        assert_ne!(text, service_b);
        let e = inject_stream(&text, &Policy::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "Deployment/shop/service-a: baton.dev/outbound-routes: the sidecar would refuse \
                 the config generated from the annotations: {reason}"
            )),
            "{routes}: {e}"
        );
        refused += 1;
    }
    assert_eq!(refused, 3);
}

/// Capture end to end without a cluster: the injector rewrites an app's probes, and the real
/// `baton run`, given the sidecar's `BATON_APP_PROBES` as kubelet would start it, answers
/// kubelet's rewritten probes on its admin port by probing the app.
#[test_log::test(tokio::test)]
async fn a_captured_apps_probes_reach_it_through_the_sidecars_admin_port() {
    let app = Upstream::start().await;
    let pod = json!({
        "metadata": {"annotations": {
            "baton.dev/inject": "enabled",
            "baton.dev/config": "web-baton",
            "baton.dev/capture": "iptables",
            "baton.dev/app-port": app.addr.port().to_string(),
        }},
        "spec": {"securityContext": {"runAsUser": 10001}, "containers": [{
            "name": "web",
            "image": "web:1",
            "ports": [{"name": "http", "containerPort": app.addr.port()}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http",
                               "httpHeaders": [{"name": "X-Probe", "value": "ready"}]}},
            "livenessProbe": {"tcpSocket": {"port": app.addr.port()}},
        }]},
    });
    let Outcome::Injected(out) =
        mutate(&pod, &Namespace::default(), &Policy::default(), "Pod/web").unwrap()
    else {
        panic!("not injected");
    };
    let web = &out["spec"]["containers"][0];
    let sidecar = &out["spec"]["initContainers"][1];
    assert_eq!(sidecar["name"], "baton");
    assert_eq!(sidecar["env"][0]["name"], "BATON_APP_PROBES");
    let table = sidecar["env"][0]["value"].as_str().unwrap();

    let dir = process::scratch("app-probes");
    let (inbound, outbound, admin) = (free_port(), free_port(), free_port());
    let config = dir.join("sidecar.yaml");
    std::fs::write(
        &config,
        format!(
            "issuer: http://127.0.0.1:1\naudience: web\napp: \"{app}\"\n\
             listeners: {{inbound: \"127.0.0.1:{inbound}\", outbound: \"127.0.0.1:{outbound}\", admin: \"127.0.0.1:{admin}\"}}\n\
             outbound: {{client: {{client_id: web, secret: test-only}}}}\n",
            app = app.addr,
        ),
    )
    .unwrap();
    let args = ["run", "--workers", "1", "-c", config.to_str().unwrap()];
    let baton = env!("CARGO_BIN_EXE_baton");
    let mut sidecar = Proc::spawn_with_env(
        baton,
        &args,
        &[("BATON_APP_PROBES", table)],
        &dir.join("sidecar.log"),
    );
    // The IdP is unreachable, so /readyz stays 503; the app probes do not depend on it.
    sidecar
        .ready(&format!("http://127.0.0.1:{admin}/healthz"))
        .await;

    // What kubelet now does: GET <pod>:15020<path>, here the admin listener.
    let http = process::http_client();
    let kubelet = |probe: &str| {
        let get = &web[probe]["httpGet"];
        assert_eq!(get["port"], 15020, "{probe}");
        let url = format!("http://127.0.0.1:{admin}{}", get["path"].as_str().unwrap());
        http.get(url).header("user-agent", "kube-probe/1.31").send()
    };
    let rsp = kubelet("readinessProbe").await.unwrap();
    assert_eq!(rsp.status(), 200);
    let seen = app.last().expect("the app was probed");
    assert_eq!(seen.path, "/ready");
    assert_eq!(seen.headers["x-probe"], "ready");
    assert_eq!(seen.headers["user-agent"], "kube-probe/1.31");
    let requests = app.requests();
    assert_eq!(kubelet("livenessProbe").await.unwrap().status(), 200);
    assert_eq!(app.requests(), requests, "a TCP probe sends no request");
    let unknown = format!("http://127.0.0.1:{admin}/app-health/web/startupz");
    assert_eq!(http.get(unknown).send().await.unwrap().status(), 404);

    // A table that does not parse is config: the sidecar refuses to start and says why.
    let mut broken = Proc::spawn_with_env(
        baton,
        &args,
        &[(
            "BATON_APP_PROBES",
            r#"{"/app-health/web/livez": {"exec": {}}}"#,
        )],
        &dir.join("broken.log"),
    );
    let status = broken.exited(std::time::Duration::from_secs(15)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(64),
        "{}",
        broken.output()
    );
    assert!(
        broken
            .output()
            .contains("BATON_APP_PROBES: not a JSON object of probes"),
        "{}",
        broken.output()
    );
}

/// A memory cgroup (v1) of its own with `limit` bytes, removed when dropped; `None` when the test
/// cannot make one (not root, no v1 memory controller).
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    fn create(name: &str, limit: u64) -> Option<MemoryCgroup> {
        let root = Path::new("/sys/fs/cgroup/memory");
        if !root.join("cgroup.procs").exists() {
            return None;
        }
        let dir = root.join(format!("baton-{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        let cg = MemoryCgroup { dir };
        std::fs::write(cg.dir.join("memory.limit_in_bytes"), limit.to_string()).ok()?;
        Some(cg)
    }

    fn read(&self, file: &str) -> u64 {
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The kernel's count of OOM kills in this cgroup (0 where the kernel does not say).
    fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `VmHWM` of /proc/PID/status: the peak resident set size, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The real `baton webhook` on `port` (HTTPS) and `health` (plain), inside `cgroup` when given.
fn spawn_webhook(
    dir: &Path,
    port: u16,
    health: u16,
    extra: &[&str],
    cgroup: Option<&MemoryCgroup>,
) -> Proc {
    let baton = env!("CARGO_BIN_EXE_baton");
    let (listen, health_listen) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{health}"));
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let mut args = vec![
        "webhook",
        "--listen",
        &listen,
        "--health-listen",
        &health_listen,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let log = dir.join("webhook.log");
    match cgroup {
        // The shell joins the cgroup, then becomes the webhook: every byte it ever maps counts.
        Some(cg) => {
            let procs = cg.dir.join("cgroup.procs");
            let script = format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display());
            let mut sh = vec!["-c", script.as_str(), baton];
            sh.extend_from_slice(&args);
            Proc::spawn("/bin/sh", &sh, &log)
        }
        None => Proc::spawn(baton, &args, &log),
    }
}

/// POSTs `total` bytes of `[0,0,…]` chunked (no Content-Length, as a client that hides the size
/// would) over TLS and HTTP/1.1; returns the status line's code, or 0 when the connection ended
/// without one.
async fn chunked_flood(ca: &Path, addr: SocketAddr, total: usize) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(HOST).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let _ = tls.write_all(head.as_bytes()).await;
    let prefix = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"a":["#;
    let chunk = "0,".repeat(32 * 1024);
    let mut sent = 0;
    let mut first = true;
    while sent < total {
        let data = if first {
            format!("{prefix}{chunk}")
        } else {
            chunk.clone()
        };
        first = false;
        let frame = format!("{:x}\r\n{data}\r\n", data.len());
        if tls.write_all(frame.as_bytes()).await.is_err() {
            break;
        }
        sent += data.len();
    }
    let _ = tls.write_all(b"1\r\n0\r\n0\r\n\r\n").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tls.read_to_end(&mut got),
    )
    .await;
    String::from_utf8_lossy(&got)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A review of a pod that passes injection and holds about `values` JSON values (env entries).
fn big_pod_review(values: usize) -> String {
    // Each entry is five values: the object, two names and two strings.
    let env: Vec<Value> = (0..values / 5)
        .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
        .collect();
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-big", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE", "namespace": "shop", "object": {
            "metadata": {"name": "big", "annotations": {"baton.dev/config": "big-baton"}},
            "spec": {"containers": [{"name": "app", "image": "app:1", "env": env}]}}}})
    .to_string()
}

/// Any pod author can make the API server send a review: ten at once of 3 MiB, hidden-size
/// floods, pods just under the body cap that blow the value budget, and the largest pods that
/// pass it, against the real `baton webhook` in a 128 MiB memory cgroup (its Deployment's limit)
/// where the test can make one. After each round it is alive, answers a normal review, and its
/// peak RSS stayed under the limit.
#[test_log::test(tokio::test(flavor = "multi_thread", worker_threads = 4))]
async fn ten_concurrent_oversized_reviews_leave_the_webhook_under_its_memory_limit() {
    const LIMIT: u64 = 128 << 20;
    let dir = process::scratch("webhook-flood");
    make_certs(&dir);
    let cgroup = MemoryCgroup::create("webhook-flood", LIMIT);
    if cgroup.is_none() {
        eprintln!("no memory cgroup (needs root and cgroup v1): peak RSS checked only");
    }
    let (port, health) = (free_port(), free_port());
    let mut hook = spawn_webhook(&dir, port, health, &[], cgroup.as_ref());
    hook.ready(&format!("http://127.0.0.1:{health}/healthz"))
        .await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let ca = dir.join("ca.crt");
    let url = format!("https://{HOST}:{port}/mutate/namespace-enabled");
    // One connection per request; half of them HTTP/2, half HTTP/1.1.
    let clients: Vec<reqwest::Client> = (0..10)
        .map(|i| {
            let pem = std::fs::read(&ca).unwrap();
            let b = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                .resolve(HOST, addr)
                .no_proxy()
                .timeout(std::time::Duration::from_secs(30));
            if i % 2 == 0 { b.http1_only() } else { b }.build().unwrap()
        })
        .collect();
    let zeros = |bytes: usize| {
        format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},"operation":"CREATE","object":{{"a":[{}0]}}}}}}"#,
            "0,".repeat(bytes / 2)
        )
    };
    let three_mib = zeros(3 << 20);
    let under_cap = zeros((1 << 20) - 4096);
    assert!(under_cap.len() < baton::k8s::webhook::MAX_REVIEW_BYTES);
    let big = big_pod_review(baton::k8s::webhook::parse::MAX_POD_VALUES - 200);

    let good = fixture("pod");
    let answers_a_normal_review = |hook: &mut Proc| {
        assert!(hook.alive(), "webhook died:\n{}", hook.output());
        let (client, url, good) = (&clients[1], url.clone(), good.clone());
        async move {
            let rsp = client.post(url).body(good).send().await.unwrap();
            assert_eq!(rsp.status(), 200);
            let answer: Value = rsp.json().await.unwrap();
            assert_eq!(answer["response"]["allowed"], true);
            assert_eq!(answer["response"]["patchType"], "JSONPatch");
        }
    };

    let mut peaks = Vec::new();
    // (round, body, HTTP status, whether the answer is a patch rather than a refusal)
    for (round, body, want, patch) in [
        ("3 MiB declared", &three_mib, 413, false),
        ("just under the cap, 512 Ki values", &under_cap, 200, false),
        ("largest pod within the budget", &big, 200, true),
    ] {
        let (mut answered, mut busy, mut cut) = (0, 0, 0);
        for _ in 0..3 {
            let sends = clients
                .iter()
                .map(|c| c.post(&url).body(body.clone()).send());
            for rsp in futures::future::join_all(sends).await {
                // A refusal (413, 429) may come before the body is all sent; the connection then
                // ends under the client's upload, which reqwest reports as an error.
                let Ok(rsp) = rsp else {
                    cut += 1;
                    continue;
                };
                let status = rsp.status().as_u16();
                assert!(status == want || status == 429, "{round}: {status}");
                if status == 429 {
                    busy += 1;
                    continue;
                }
                answered += 1;
                if status == 200 {
                    let answer: Value = rsp.json().await.unwrap();
                    let injected = answer["response"]["patchType"] == "JSONPatch";
                    let too_big = answer["response"]["status"]["code"] == 413;
                    assert!(if patch { injected } else { too_big }, "{round}: {answer}");
                }
            }
            answers_a_normal_review(&mut hook).await;
        }
        eprintln!("{round}: {answered} answered {want}, {busy} answered 429, {cut} cut short");
        if want == 200 {
            assert!(answered > 0, "{round}: no review was answered");
        }
        peaks.push((round, peak_rss_kib(hook.pid())));
    }
    let floods = (0..10).map(|_| chunked_flood(&ca, addr, 3 << 20));
    for status in futures::future::join_all(floods).await {
        assert!(matches!(status, 413 | 429 | 0), "chunked flood: {status}");
    }
    answers_a_normal_review(&mut hook).await;
    peaks.push(("3 MiB chunked", peak_rss_kib(hook.pid())));

    let metrics = process::http_client()
        .get(format!("http://127.0.0.1:{health}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    eprintln!("peak RSS after each round (KiB): {peaks:?}");
    eprintln!(
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("reviews_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (round, kib) in &peaks {
        assert!(
            *kib > 0 && kib * 1024 < LIMIT,
            "{round}: peak RSS {kib} KiB"
        );
    }
    if let Some(cg) = &cgroup {
        let max = cg.read("memory.max_usage_in_bytes");
        eprintln!(
            "cgroup peak usage: {} KiB of {} KiB",
            max / 1024,
            LIMIT / 1024
        );
        assert_eq!(cg.oom_kills(), 0, "the kernel OOM-killed in the cgroup");
        assert!(max < LIMIT, "cgroup peak {max}");
    }
    assert!(hook.alive());
}

/// Make a CA and a client certificate (clientAuth) it signs, with openssl, in `dir`.
fn client_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_key, ca_crt) = (format!("{name}-ca.key"), format!("{name}-ca.crt"));
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            &ca_key,
            "-out",
            &ca_crt,
            "-subj",
            &format!("/CN={name} CA"),
            "-days",
            "1",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &["-keyout", &key, "-out", &csr, "-subj", "/CN=kube-apiserver"],
    ]
    .concat());
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &crt,
        "-days",
        "1",
        "-extfile",
        "client.ext",
    ]);
    let mut identity = std::fs::read(dir.join(&crt)).unwrap();
    identity.extend(std::fs::read(dir.join(&key)).unwrap());
    let pem = dir.join(format!("{name}-identity.pem"));
    std::fs::write(&pem, identity).unwrap();
    (dir.join(ca_crt), pem)
}

/// With `--client-ca`, the admission port answers only clients holding a certificate that CA
/// signed; probes and scrapers use the plain health port, which serves nothing else.
#[test_log::test(tokio::test)]
async fn with_a_client_ca_only_the_api_servers_certificate_gets_an_answer() {
    let dir = process::scratch("webhook-client-ca");
    make_certs(&dir);
    let (ca, apiserver) = client_pki(&dir, "apiserver");
    let (_, stranger) = client_pki(&dir, "stranger");
    let (port, health) = (free_port(), free_port());
    let mut hook = spawn_webhook(
        &dir,
        port,
        health,
        &["--client-ca", ca.to_str().unwrap()],
        None,
    );
    hook.ready(&format!("http://127.0.0.1:{health}/healthz"))
        .await;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let url = format!("https://{HOST}:{port}/mutate");
    let server_ca = std::fs::read(dir.join("ca.crt")).unwrap();
    let client = |identity: Option<&Path>| {
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&server_ca).unwrap())
            .resolve(HOST, addr)
            .no_proxy();
        if let Some(p) = identity {
            b = b.identity(reqwest::Identity::from_pem(&std::fs::read(p).unwrap()).unwrap());
        }
        b.build().unwrap()
    };
    for (who, identity) in [
        ("no certificate", None),
        ("another CA's", Some(stranger.as_path())),
    ] {
        let r = client(identity)
            .post(&url)
            .body(fixture("pod"))
            .send()
            .await;
        assert!(r.is_err(), "{who}: answered {:?}", r.map(|r| r.status()));
    }
    let rsp = client(Some(&apiserver))
        .post(&url)
        .body(fixture("pod"))
        .send()
        .await
        .unwrap();
    assert_eq!(rsp.status(), 200);
    let http = process::http_client();
    let plain = |path: &str| format!("http://127.0.0.1:{health}{path}");
    assert_eq!(
        http.post(plain("/mutate"))
            .body(fixture("pod"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let metrics = http
        .get(plain("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"baton_webhook_reviews_total{outcome="injected"} 1"#),
        "{metrics}"
    );
    assert!(hook.alive());

    // A bad flag or CA file stops it at start with 64.
    let mut bad = spawn_webhook(
        &dir,
        free_port(),
        free_port(),
        &["--client-ca", "/nonexistent"],
        None,
    );
    let status = bad.exited(std::time::Duration::from_secs(15)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(64), "{}", bad.output());
    let mut bad = spawn_webhook(
        &dir,
        free_port(),
        free_port(),
        &["--allow-image", "x y"],
        None,
    );
    let status = bad.exited(std::time::Duration::from_secs(15)).await;
    assert_eq!(status.and_then(|s| s.code()), Some(64), "{}", bad.output());
}

/// `baton inject` refuses, with exit 65 and the reason, a workload whose generated config the
/// sidecar would refuse, and input nested past the bound, without spending time on it.
#[test]
fn baton_inject_exits_65_with_the_reason_for_what_the_sidecar_would_refuse() {
    use std::io::Write;
    let run = |input: &str, args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("inject")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Ignore a broken pipe: the input may be refused before it is all read.
        let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let a = std::fs::read_to_string(root().join("deploy/k8s/chain/service-a.yaml")).unwrap();
    let bad = a.replace(
        "baton.dev/outbound-routes: service-b:8080=service-b",
        "baton.dev/outbound-routes: \"service-b:8080/x?=service-b\"",
    );
    let (code, err) = run(&bad, &[]);
    assert_eq!(code, Some(65), "{err}");
    assert!(err.contains("baton.dev/outbound-routes: the sidecar would refuse the config generated from the annotations: outbound.routes[0].host"), "{err}");
    let (code, err) = run(&format!("a: {}", "[".repeat(100_000)), &[]);
    assert_eq!(code, Some(65), "{err}");
    assert!(err.starts_with("baton inject: document 1: "), "{err}");
    let (code, err) = run(&a, &["--sidecar-uid", "0"]);
    assert_eq!(code, Some(64), "{err}");
    let (code, _) = run(&a, &[]);
    assert_eq!(code, Some(0));
}
