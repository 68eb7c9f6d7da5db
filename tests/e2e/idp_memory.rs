//! `baton-idp` as a process under memory attacks from strangers: a storm of concurrent logins
//! inside a 256 MiB memory cgroup (the limit of `deploy/k8s/idp.yaml`; where no cgroup can be
//! made, the peak RSS is held to the same limit), and a thousand anonymous `/authorize`
//! requests with every parameter at its cap. The IdP must stay alive and within its budget.

use crate::login_abuse::maximal;
use crate::support::idp::{REDIRECT, hidden, login_cookie, pkce};
use crate::support::process::{Proc, deploy_idp_yaml, free_port, scratch};
use reqwest::StatusCode;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
/// The IdP's memory limit in the Kubernetes manifest.
const LIMIT: u64 = 256 * MIB;
/// Password checks at once in these tests; argon2's default `m` is 19 MiB each.
const WORKERS: u64 = 2;

/// A memory cgroup (v1) made under this process's own, removed when dropped.
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// A child cgroup limited to `limit` bytes, or `None` when this system cannot make one
    /// (no v1 memory controller, not root).
    fn new(limit: u64) -> Option<Cgroup> {
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then_some(path)
        })?;
        let base = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        let dir = base.join(format!(
            "baton-e2e-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir(&dir).ok()?;
        let group = Cgroup { dir };
        std::fs::write(group.dir.join("memory.limit_in_bytes"), limit.to_string()).ok()?;
        // Where swap is accounted, the same limit for memory and swap together.
        let _ = std::fs::write(
            group.dir.join("memory.memsw.limit_in_bytes"),
            limit.to_string(),
        );
        Some(group)
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// The most memory the group used, in bytes.
    fn peak(&self) -> u64 {
        self.read("memory.max_usage_in_bytes")
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Processes of the group the kernel's OOM killer ended.
    fn oom_kills(&self) -> u64 {
        self.read("memory.oom_control")
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `VmHWM` (peak resident set) of `pid`, in bytes.
fn peak_rss(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// `deploy/idp.yaml` on a free port, with `WORKERS` password checks and a queue of 8; the
/// process starts inside `cgroup` when there is one.
async fn start_idp(dir: &Path, cgroup: Option<&Cgroup>) -> (Proc, String) {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let text = deploy_idp_yaml(&issuer, &format!("127.0.0.1:{port}"), &dir.join("keys"));
    let config = dir.join("idp.yaml");
    std::fs::write(
        &config,
        format!("{text}\ndemo: true\nlogin:\n  hash_workers: {WORKERS}\n  hash_queue: 8\n"),
    )
    .expect("config");
    let bin = env!("CARGO_BIN_EXE_baton-idp");
    let config = config.to_str().expect("utf-8");
    let log = dir.join("idp.log");
    let mut proc = match cgroup {
        // The shell joins the group, then becomes the IdP: no moment runs outside it.
        Some(g) => {
            let procs = g.dir.join("cgroup.procs");
            let script = format!(
                "echo $$ > '{}' && exec '{bin}' -c '{config}'",
                procs.display()
            );
            Proc::spawn("/bin/sh", &["-c", &script], &log)
        }
        None => Proc::spawn(bin, &["-c", config], &log),
    };
    proc.ready(&format!("{issuer}/.well-known/openid-configuration"))
        .await;
    (proc, issuer)
}

fn client(from: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 40, from)))
        .pool_max_idle_per_host(0)
        .no_proxy()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A login form: its sealed request and the pre-login cookie it is bound to.
async fn form(http: &reqwest::Client, issuer: &str, extra: &[(&str, &str)]) -> (String, String) {
    let (_, challenge) = pkce();
    let mut q: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", "service-a"),
        ("redirect_uri", REDIRECT),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    let rsp = http
        .get(format!("{issuer}/authorize"))
        .query(&q)
        .send()
        .await
        .expect("authorize");
    assert_eq!(rsp.status(), StatusCode::OK);
    let cookie = login_cookie(&rsp);
    (hidden(&rsp.text().await.expect("page"), "request"), cookie)
}

async fn login(
    http: &reqwest::Client,
    issuer: &str,
    form: &(String, String),
    user: &str,
    pw: &str,
) -> reqwest::Response {
    http.post(format!("{issuer}/login"))
        .header("cookie", &form.1)
        .form(&[
            ("request", form.0.as_str()),
            ("username", user),
            ("password", pw),
        ])
        .send()
        .await
        .expect("the IdP answers every login")
}

#[test_log::test(tokio::test)]
async fn fifty_concurrent_logins_under_256_mib_leave_the_idp_alive_and_bounded() {
    let dir = scratch("login-storm");
    let cgroup = Cgroup::new(LIMIT);
    let (mut idp, issuer) = start_idp(&dir, cgroup.as_ref()).await;
    let storm = client(1);
    let mut forms = Vec::new();
    for _ in 0..50 {
        forms.push(form(&storm, &issuer, &[]).await);
    }
    let before = peak_rss(idp.pid());
    // Fifty at once: unknown users (the decoy hash) and wrong passwords for alice.
    let posts = forms.iter().enumerate().map(|(i, f)| {
        let user = if i % 5 == 0 {
            "alice".to_owned()
        } else {
            format!("storm-{i}")
        };
        let (storm, issuer) = (&storm, &issuer);
        async move { login(storm, issuer, f, &user, "not-the-password").await }
    });
    let answers = futures::future::join_all(posts).await;
    let (mut checked, mut busy) = (0, 0);
    for rsp in &answers {
        match rsp.status() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                assert!(rsp.headers().contains_key("retry-after"));
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(checked + busy, 50);
    assert!(idp.alive(), "the IdP survived:\n{}", idp.output());
    let peak = peak_rss(idp.pid());
    // Hashing holds at most WORKERS × 19 MiB; the rest is the process itself.
    let bound = before + WORKERS * 19 * MIB + 16 * MIB;
    println!(
        "login storm: {checked} checked, {busy} told to retry; peak RSS {} MiB (before {} MiB, bound {} MiB)",
        peak / MIB,
        before / MIB,
        bound / MIB
    );
    assert!(peak <= bound, "peak RSS {peak} over {bound}");
    match &cgroup {
        Some(g) => {
            println!("cgroup peak {} MiB of {} MiB", g.peak() / MIB, LIMIT / MIB);
            assert_eq!(g.oom_kills(), 0, "no OOM kill in the group");
            assert!(g.peak() <= LIMIT);
        }
        None => println!("no memory cgroup here: the peak RSS stands for it"),
    }
    // Still serving: alice signs in from another address.
    let home = client(2);
    let f = form(&home, &issuer, &[]).await;
    let rsp = login(
        &home,
        &issuer,
        &f,
        "alice",
        crate::support::idp::ALICE_PASSWORD,
    )
    .await;
    assert_eq!(rsp.status(), StatusCode::SEE_OTHER);
    drop(idp);
    drop(cgroup);
}

#[test_log::test(tokio::test)]
async fn a_thousand_maximal_anonymous_authorize_requests_pin_no_memory() {
    let dir = scratch("authorize-flood");
    let (idp, issuer) = start_idp(&dir, None).await;
    let http = client(3);
    let params = maximal();
    // Ignored parameters fill the rest of the request head (64 KiB): they are never kept.
    let padding = "x".repeat(50_000);
    let mut all = params.clone();
    all.push(("ui_locales", padding.as_str()));
    let flood = |n: usize| {
        let (http, issuer, all) = (&http, &issuer, &all);
        async move {
            for _ in 0..n {
                let (sealed, _) = form(http, issuer, all).await;
                assert!(sealed.len() <= baton::idp::pending::MAX_SEALED);
            }
        }
    };
    flood(100).await; // warm-up: the allocator's arenas and tokio's workers reach their size
    let before = idp.rss_kib() * 1024;
    futures::future::join_all((0..4).map(|_| flood(250))).await;
    let after = idp.rss_kib() * 1024;
    println!(
        "1,000 maximal /authorize: RSS {} → {} MiB",
        before / MIB,
        after / MIB
    );
    // Nothing is kept per request: the growth is allocator noise, far below one request's
    // head (64 KiB) times a thousand.
    assert!(
        after <= before + 8 * MIB,
        "RSS grew from {before} to {after}"
    );
}
