//! Grants per second of running baton-idp replicas (memory or postgres store), driven over
//! loopback by `bench/idp-store.sh`: session sign-ins (code + PKCE through an existing login
//! session: `/authorize` → code → `/token`), refresh grants (each worker rotating its own
//! family), token exchanges of alice's token (service-a → service-b) and client-credentials
//! grants. Requests go round the replicas given.
//!
//! Usage: idp_store SECONDS CONCURRENCY URL[,URL…]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const REDIRECT: &str = "http://127.0.0.1:8080/callback";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

struct Ctx {
    http: reqwest::Client,
    urls: Vec<String>,
    next: AtomicUsize,
}

impl Ctx {
    fn url(&self) -> &str {
        &self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()]
    }

    async fn token(&self, client: &str, form: &[(&str, &str)]) -> Option<serde_json::Value> {
        let rsp = self
            .http
            .post(format!("{}/token", self.url()))
            .basic_auth(client, Some(format!("demo-secret-{client}")))
            .form(form)
            .send()
            .await
            .ok()?;
        if !rsp.status().is_success() {
            return None;
        }
        rsp.json().await.ok()
    }

    /// A code for alice through `session` (the login session cookie), redeemed.
    async fn session_sign_in(&self, session: &str) -> Option<serde_json::Value> {
        let verifier = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let rsp = self
            .http
            .get(format!("{}/authorize", self.url()))
            .header("cookie", session)
            .query(&[
                ("response_type", "code"),
                ("client_id", "service-a"),
                ("redirect_uri", REDIRECT),
                ("scope", "openid profile"),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .ok()?;
        let loc = url::Url::parse(rsp.headers().get("location")?.to_str().ok()?).ok()?;
        let code = loc.query_pairs().find(|(k, _)| k == "code")?.1.into_owned();
        self.token(
            "service-a",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
            ],
        )
        .await
    }
}

/// alice's login session cookie, through the password form once.
async fn password_sign_in(ctx: &Ctx) -> String {
    let url = ctx.urls[0].clone();
    let rsp = ctx
        .http
        .get(format!("{url}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "service-a"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    let cookie = rsp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("baton-idp-login="))
        .and_then(|v| v.split(';').next())
        .expect("login cookie")
        .to_owned();
    let html = rsp.text().await.expect("page");
    let needle = "name=\"request\" value=\"";
    let start = html.find(needle).expect("request field") + needle.len();
    let request = &html[start..start + html[start..].find('"').expect("quote")];
    let rsp = ctx
        .http
        .post(format!("{url}/login"))
        .header("cookie", cookie)
        .form(&[
            ("request", request),
            ("username", "alice"),
            ("password", "wonderland-demo"),
        ])
        .send()
        .await
        .expect("login");
    rsp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("baton-idp="))
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_owned()
}

/// Runs `op` from `conc` workers for `secs`; operations per second and failures.
async fn measure<F, Fut>(secs: u64, conc: usize, op: F) -> (f64, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let workers: Vec<_> = (0..conc)
        .map(|w| {
            let (op, ok, failed) = (op.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    if op(w).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed) as f64 / elapsed,
        failed.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let conc: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(16);
    let urls: Vec<String> = args
        .get(3)
        .expect("URL[,URL…]")
        .split(',')
        .map(str::to_owned)
        .collect();
    let ctx = Arc::new(Ctx {
        http: reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        urls,
        next: AtomicUsize::new(0),
    });
    let session = Arc::new(password_sign_in(&ctx).await);
    let alice = ctx.session_sign_in(&session).await.expect("first sign-in");
    let access = Arc::new(alice["access_token"].as_str().expect("access").to_owned());

    let c = ctx.clone();
    let s = session.clone();
    let sign_ins = measure(secs, conc, move |_| {
        let (c, s) = (c.clone(), s.clone());
        async move { c.session_sign_in(&s).await.is_some() }
    })
    .await;

    // One refresh family per worker.
    let mut chains = Vec::new();
    for _ in 0..conc {
        let t = ctx.session_sign_in(&session).await.expect("sign-in");
        chains.push(tokio::sync::Mutex::new(
            t["refresh_token"].as_str().expect("refresh").to_owned(),
        ));
    }
    let chains = Arc::new(chains);
    let c = ctx.clone();
    let refreshes = measure(secs, conc, move |w| {
        let (c, chains) = (c.clone(), chains.clone());
        async move {
            let mut rt = chains[w].lock().await;
            let form = [
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            match c.token("service-a", &form).await {
                Some(t) => {
                    *rt = t["refresh_token"].as_str().unwrap_or_default().to_owned();
                    true
                }
                None => false,
            }
        }
    })
    .await;

    let c = ctx.clone();
    let a = access.clone();
    let exchanges = measure(secs, conc, move |_| {
        let (c, a) = (c.clone(), a.clone());
        async move {
            let form = [
                ("grant_type", EXCHANGE),
                ("subject_token", a.as_str()),
                ("subject_token_type", ACCESS),
                ("audience", "service-b"),
            ];
            c.token("service-a", &form).await.is_some()
        }
    })
    .await;

    let c = ctx.clone();
    let cc = measure(secs, conc, move |_| {
        let c = c.clone();
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("audience", "service-b"),
            ];
            c.token("service-a", &form).await.is_some()
        }
    })
    .await;

    for (name, (rate, failed)) in [
        ("session sign-ins (code + PKCE)", sign_ins),
        ("refresh grants", refreshes),
        ("token exchanges", exchanges),
        ("client-credentials grants", cc),
    ] {
        println!("{name:32} {rate:9.0}/s  failed {failed}");
    }
}
