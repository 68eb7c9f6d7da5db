//! The real `baton` and `baton-idp` binaries as child processes on free loopback ports: config
//! files in a scratch directory, logs captured to a file, readiness by polling, signals, and the
//! resident set size from `/proc/PID/status`.

use rand::Rng;
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest any process may take to become ready.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A free loopback port for a child process to bind: bindable now, never handed out before in
/// this test run, and below the kernel's ephemeral range. A port the kernel picks (`:0`) comes
/// from that range, where every outgoing connection of the tests running beside this one takes
/// its local port too: one took such a port between its release here and the child's bind, and
/// the child could not start ("Address already in use").
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral > 11_000 {
        for _ in 0..1_000 {
            let port = rand::thread_rng().gen_range(10_000..ephemeral);
            if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                given.insert(port);
                return port;
            }
        }
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    given.insert(port);
    port
}

/// A scratch directory unique to this test run.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "baton-faults-{name}-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A running child process, killed when dropped.
pub struct Proc {
    child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `bin args…` with its output in `log`.
    pub fn spawn(bin: &str, args: &[&str], log: &Path) -> Proc {
        Self::spawn_with_env(bin, args, &[], log)
    }

    /// Like [`Proc::spawn`], with `env` (name, value) pairs added to the child's environment.
    pub fn spawn_with_env(bin: &str, args: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "debug")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn");
        Proc {
            child,
            log: log.to_owned(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits")
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`).
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    /// Waits at most `limit` for the process to exit.
    pub async fn exited(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The captured output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `url` until it answers 200; panics with the log if the process dies or the deadline
    /// passes.
    pub async fn ready(&mut self, url: &str) {
        let http = http_client();
        let until = Instant::now() + READY_DEADLINE;
        while Instant::now() < until {
            assert!(self.alive(), "{} exited:\n{}", url, self.output());
            if let Ok(rsp) = http.get(url).send().await
                && rsp.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{url} not ready:\n{}", self.output());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that never uses a proxy from the environment and follows no redirects.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client")
}

/// A running `baton-idp` process built from `deploy/idp.yaml`.
pub struct IdpProc {
    /// The process.
    pub proc: Proc,
    /// Its config file (for `keys rotate` and restarts).
    pub config: PathBuf,
    /// The issuer identifier tokens carry.
    pub issuer: String,
    /// Where it listens (may differ from the issuer when a fault proxy sits in front).
    pub listen: String,
}

/// `deploy/idp.yaml` with `issuer`, listening on `listen`, its admin listener on a free port and
/// its keys in `keys`: the shipped example as a test runs it.
pub fn deploy_idp_yaml(issuer: &str, listen: &str, keys: &Path) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/idp.yaml"))
            .expect("deploy/idp.yaml");
    let text = text
        .replace(
            "issuer: http://127.0.0.1:9000",
            &format!("issuer: {issuer}"),
        )
        .replace("listen: 127.0.0.1:9000", &format!("listen: {listen}"))
        .replace("admin_listen: 127.0.0.1:9001", "admin_listen: 127.0.0.1:0")
        .replace("dir: idp-keys", &format!("dir: {}", keys.display()));
    assert!(
        text.contains(issuer)
            && text.contains(listen)
            && text.contains("admin_listen: 127.0.0.1:0"),
        "deploy/idp.yaml changed shape"
    );
    text
}

impl IdpProc {
    /// Writes an IdP config into `dir` with `issuer` and listening on `listen`, then starts it.
    pub async fn start(dir: &Path, issuer: &str, listen: &str) -> IdpProc {
        let text = deploy_idp_yaml(issuer, listen, &dir.join("keys"));
        let config = dir.join("idp.yaml");
        std::fs::write(&config, text).expect("write idp.yaml");
        let mut idp = IdpProc {
            proc: Self::spawn(&config, dir),
            config,
            issuer: issuer.to_owned(),
            listen: listen.to_owned(),
        };
        idp.proc
            .ready(&format!("http://{listen}/.well-known/openid-configuration"))
            .await;
        idp
    }

    fn spawn(config: &Path, dir: &Path) -> Proc {
        let log = dir.join(format!("idp-{:x}.log", rand::random::<u32>()));
        Proc::spawn(
            env!("CARGO_BIN_EXE_baton-idp"),
            // deploy/idp.yaml's inline secrets are the demo's: accepted only when asked.
            &[
                "--allow-inline-secrets",
                "-c",
                config.to_str().expect("utf-8 path"),
            ],
            &log,
        )
    }

    /// Stops the process with SIGTERM and starts it again on the same config and key directory.
    pub async fn restart(&mut self, dir: &Path) {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.exited(Duration::from_secs(15)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "clean exit: {status:?}"
        );
        self.proc = Self::spawn(&self.config, dir);
        self.proc
            .ready(&format!(
                "http://{}/.well-known/openid-configuration",
                self.listen
            ))
            .await;
    }

    /// A `client_credentials` token of service-a addressed to `audience` (a fresh `jti` each
    /// time, so each one is a new subject for the exchange cache).
    pub async fn client_token(&self, http: &reqwest::Client, audience: &str) -> String {
        let rsp = http
            .post(format!("http://{}/token", self.listen))
            .basic_auth("service-a", Some("demo-secret-service-a"))
            .form(&[("grant_type", "client_credentials"), ("audience", audience)])
            .send()
            .await
            .expect("token request");
        assert_eq!(rsp.status(), 200);
        let body: serde_json::Value = rsp.json().await.expect("JSON");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }
}

/// A running `baton run` process for service-b: inbound → `app`, outbound routes
/// `upstream` (host:port) to audience service-c, admin.
pub struct SidecarProc {
    /// The process.
    pub proc: Proc,
    /// `127.0.0.1:port` of each listener.
    pub inbound: String,
    pub outbound: String,
    pub admin: String,
    /// The sidecar.yaml it runs with.
    pub config: PathBuf,
}

impl SidecarProc {
    /// Writes sidecar.yaml into `dir` (with `extra` appended to the `limits:` and `outbound:`
    /// sections through the two strings) and starts it, waiting for `/readyz`.
    pub async fn start(
        dir: &Path,
        issuer: &str,
        app: &str,
        upstream: &str,
        limits: &str,
        outbound: &str,
    ) -> SidecarProc {
        let (inbound, out, admin) = (free_port(), free_port(), free_port());
        let yaml = format!(
            "issuer: {issuer}\naudience: service-b\n\
             listeners:\n  inbound: \"127.0.0.1:{inbound}\"\n  outbound: \"127.0.0.1:{out}\"\n  admin: \"127.0.0.1:{admin}\"\n\
             app: \"{app}\"\n\
             jwks:\n  fetch_timeout: 1s\n  retry: 1s\n\
             limits:\n{limits}\
             routes:\n  - name: default\n    path: /\n\
             outbound:\n  client: {{client_id: service-b, secret: demo-secret-service-b}}\n  timeout: 2s\n  connect_timeout: 500ms\n{outbound}\
             \n  routes:\n    - {{name: c, host: \"{upstream}\", audience: service-c}}\n"
        );
        let config = dir.join(format!("sidecar-{inbound}.yaml"));
        std::fs::write(&config, yaml).expect("write sidecar.yaml");
        let log = dir.join(format!("sidecar-{inbound}.log"));
        // One worker: the current-thread runtime a sidecar limited to one CPU runs on (the
        // other process tests, compose and the browser chain run one worker per CPU).
        let mut proc = Proc::spawn(
            env!("CARGO_BIN_EXE_baton"),
            &[
                "run",
                "--workers",
                "1",
                "-c",
                config.to_str().expect("utf-8 path"),
            ],
            &log,
        );
        proc.ready(&format!("http://127.0.0.1:{admin}/readyz"))
            .await;
        SidecarProc {
            proc,
            inbound: format!("127.0.0.1:{inbound}"),
            outbound: format!("127.0.0.1:{out}"),
            admin: format!("127.0.0.1:{admin}"),
            config,
        }
    }
}
