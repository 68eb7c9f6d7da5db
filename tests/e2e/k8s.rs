//! Kubernetes injection end to end: the webhook over real TLS (certificates from
//! `deploy/k8s/make-certs.sh`, renewed while serving), `baton inject` and the webhook giving the
//! same pod for the example chain, the manifests' own consistency, and `original_dst` behind a
//! real iptables REDIRECT in a network namespace the test makes.

use crate::support::process::{self, Proc, free_port};
use crate::support::upstream::Upstream;
use base64::Engine;
use baton::admin::AppProbes;
use baton::k8s::capture::{InitNetArgs, init_net, original_dst};
use baton::k8s::inject::inject_stream;
use baton::k8s::mutate::{Outcome, mutate};
use baton::k8s::settings::Namespace;
use baton::k8s::tls::{ReloadingCert, acceptor};
use baton::k8s::webhook::{self, Webhook, review};
use serde::Deserialize;
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
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|d| Option::<Value>::deserialize(d).unwrap())
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
        let injected = yaml_docs(&inject_stream(&text).unwrap().yaml);
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
            let (answer, outcome) = review(review_doc.to_string().as_bytes(), true).unwrap();
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
        chain.extend(yaml_docs(&inject_stream(&text).unwrap().yaml));
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
            proxy_uid: 65532,
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
            proxy_uid: 65532,
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

#[test]
fn generated_sidecar_configs_pass_the_sidecars_own_validation() {
    let (mut checked, mut probe_tables) = (0, 0);
    let mut texts: Vec<String> = chain_files()
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    texts.push(std::fs::read_to_string(root().join("tests/k8s/workloads.yaml")).unwrap());
    for text in texts {
        for doc in yaml_docs(&inject_stream(&text).unwrap().yaml) {
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
        "spec": {"containers": [{
            "name": "web",
            "image": "web:1",
            "ports": [{"name": "http", "containerPort": app.addr.port()}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http",
                               "httpHeaders": [{"name": "X-Probe", "value": "ready"}]}},
            "livenessProbe": {"tcpSocket": {"port": app.addr.port()}},
        }]},
    });
    let Outcome::Injected(out) = mutate(&pod, &Namespace::default(), "Pod/web").unwrap() else {
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
