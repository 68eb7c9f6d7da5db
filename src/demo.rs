//! `baton demo`: the whole A→B→C chain in one process on free loopback ports: baton-idp, three
//! echo apps and their three sidecars. Signs the demo user in through the real login form, calls
//! A, and prints each hop's token and the one Transaction Token the whole call carried (A issues
//! it, B accepts and C requires it); then calls again to show the exchange cache at work; then
//! calls a path C guards with `acr: [mfa]`, steps up with a one-time code, and calls again.
//! `baton demo --serve` keeps the chain up for a browser: A's sidecar signs users in itself.
//!
//! [`Chain`] is also what the chain e2e tests start, so the demo and the tests run the same wiring.

pub mod app;
mod report;
pub mod trace;

use crate::config::Config;
use crate::idp::{self, Idp};
use crate::secret::{Secret, Token};
use crate::shutdown::{self, Trigger};
use crate::sidecar::{self, Listeners};
use crate::signin;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The demo user of `deploy/idp.yaml`.
pub const DEMO_USER: &str = "alice";
/// Her demo password (documented in `deploy/idp.yaml`).
pub const DEMO_PASSWORD: &str = "wonderland-demo";
/// service-a's registered redirect URI in `deploy/idp.yaml`.
pub const REDIRECT_URI: &str = "http://127.0.0.1:8080/callback";
/// The services of the chain, in call order.
pub const SERVICES: [&str; 3] = ["service-a", "service-b", "service-c"];
/// A path service-c guards with `acr: [mfa]`; A and B forward paths unchanged.
pub const MFA_PATH: &str = "/mfa/report";
/// With [`Options::unreachable_acr`], a path service-c guards with an `acr` the IdP never issues.
pub const UNREACHABLE_PATH: &str = "/hwk/report";

/// Variations of the chain, for tests.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The IdP's access-token lifetime in seconds, instead of the demo config's.
    pub access_lifetime: Option<u64>,
    /// Service-c also guards [`UNREACHABLE_PATH`] with `acr: [hwk]`, which no sign-in gives.
    pub unreachable_acr: bool,
    /// DPoP on every hop: A takes DPoP-bound tokens from outside clients (`optional`), B and C
    /// take nothing else (`required`), and every outbound route asks for bound tokens and
    /// sends a proof per call.
    pub dpop: bool,
    /// The IdP asks for DPoP nonces (`dpop.nonce`, RFC 9449 §8).
    pub dpop_nonce: bool,
    /// Every sidecar's `outbound.dpop_key_rotation` (e.g. `2s`), instead of the default.
    pub dpop_key_rotation: Option<&'static str>,
    /// Every sidecar's `outbound.dpop_alg` (`ES256`), instead of the default (EdDSA).
    pub dpop_alg: Option<&'static str>,
    /// Every app gets an opaque handle instead of its token (`inbound.confine_token`).
    pub confine: bool,
    /// Transaction Tokens on top of the per-hop exchange: the IdP is the Txn-Token Service of
    /// [`TRUST_DOMAIN`], A issues (`txn_token: issue`), B accepts and C requires one.
    pub txn_tokens: bool,
    /// The chain with Txn-Tokens and no per-hop exchange: A verifies the user's access token and
    /// issues a Txn-Token; its outbound side forwards without `Authorization` (`unknown:
    /// passthrough`); B and C mark their routes public and require the Txn-Token.
    pub txn_only: bool,
    /// The chain over gRPC: every sidecar speaks HTTP/2 to its app (`app_protocol: http2`),
    /// and each app calls the next hop over h2c at its sidecar's per-upstream outbound port.
    pub grpc: bool,
    /// Where the chain's spans go (every sidecar and the IdP), when traced.
    pub tracing: Option<TraceTo>,
}

/// Where the chain's spans go.
#[derive(Debug, Clone)]
pub enum TraceTo {
    /// An OTLP/HTTP collector at this base URL (`/v1/traces` appended).
    Otlp(String),
    /// Collected in-process, for [`report`] to draw.
    Memory(crate::otel::Collected),
}

/// The trust domain of the chain's Transaction Tokens ([`Options::txn_tokens`]).
pub const TRUST_DOMAIN: &str = "https://baton.example/trust-domain";

/// Why the chain could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A loopback port could not be bound.
    #[error("bind a loopback port: {0}")]
    Bind(#[from] std::io::Error),
    /// The IdP could not start.
    #[error("start baton-idp: {0}")]
    Idp(#[from] idp::IdpError),
    /// A generated sidecar config was refused (a bug in this module).
    #[error("sidecar config: {0}")]
    Config(#[from] crate::config::ConfigErrors),
    /// A sidecar could not start.
    #[error("start sidecar: {0}")]
    Sidecar(#[from] sidecar::Error),
    /// A sidecar never loaded the IdP's keys.
    #[error("{0}: JWKS never loaded")]
    NotReady(&'static str),
    /// Signing in failed.
    #[error("sign in: {0}")]
    SignIn(#[from] signin::Error),
    /// Calling the chain failed.
    #[error("call service-a: {0}")]
    Call(#[from] reqwest::Error),
    /// Calling the chain over gRPC failed.
    #[error("call service-a over gRPC: {0}")]
    Grpc(#[from] app::grpc::CallError),
    /// Tracing could not start.
    #[error(transparent)]
    Tracing(#[from] crate::otel::Error),
}

/// One service of the chain: its echo app and its sidecar.
pub struct Hop {
    /// `service-a`, `service-b` or `service-c`.
    pub name: &'static str,
    /// Where the echo app listens (loopback only; reached through the sidecar).
    pub app: SocketAddr,
    /// The running sidecar.
    pub sidecar: sidecar::Running,
}

/// The running chain.
pub struct Chain {
    /// The IdP's issuer URL.
    pub issuer: String,
    /// The IdP, for its counters.
    pub idp: Arc<Idp>,
    /// A, B and C.
    pub hops: Vec<Hop>,
    /// Where a browser opens the chain: A's inbound listener, which signs users in.
    pub edge: String,
    keys_dir: PathBuf,
    apps: Trigger,
    idp_stop: Option<Trigger>,
    idp_task: Option<tokio::task::JoinHandle<()>>,
}

impl Chain {
    /// Starts baton-idp (demo config, fresh keys in a temporary directory), the three apps and
    /// their sidecars, and waits until every sidecar has loaded the IdP's keys.
    pub async fn start() -> Result<Chain, Error> {
        Chain::start_with(Options::default()).await
    }

    /// [`Chain::start`] with `options`.
    pub async fn start_with(options: Options) -> Result<Chain, Error> {
        let idp_listener = loopback().await?;
        let issuer = format!("http://{}", idp_listener.local_addr()?);
        let keys_dir = std::env::temp_dir().join(format!(
            "baton-demo-{}-{}",
            std::process::id(),
            crate::secret::random_u64()
        ));

        // Bind every socket first: each sidecar's config names the next hop's inbound port, and
        // the IdP must know A's sign-in callback before it starts.
        let mut apps = Vec::new();
        let mut listeners = Vec::new();
        for i in 0..SERVICES.len() {
            apps.push(loopback().await?);
            // Over gRPC, each hop but the last has a per-upstream port for the next hop.
            let ports = if options.grpc && i + 1 < SERVICES.len() {
                vec![loopback().await?]
            } else {
                Vec::new()
            };
            listeners.push(Listeners {
                inbound: loopback().await?,
                outbound: loopback().await?,
                admin: loopback().await?,
                ports,
            });
        }
        let inbound: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.inbound.local_addr())
            .collect::<Result<_, _>>()?;
        let outbound: Vec<SocketAddr> = listeners
            .iter()
            .map(|l| l.outbound.local_addr())
            .collect::<Result<_, _>>()?;
        let edge = format!("http://{}", inbound[0]);

        let mut idp_cfg = idp::Config::demo(&issuer, &keys_dir);
        if let Some(a) = idp_cfg.clients.get_mut(SERVICES[0]) {
            a.redirect_uris
                .push(format!("{edge}{}", crate::config::login::CALLBACK_PATH));
            // The sidecar's default post_logout_redirect_uri: external_url + `/`.
            a.post_logout_redirect_uris.push(format!("{edge}/"));
        }
        if let Some(access) = options.access_lifetime {
            idp_cfg.lifetimes.access = access;
        }
        idp_cfg.dpop.nonce = options.dpop_nonce;
        if options.txn_tokens || options.txn_only {
            idp_cfg.txn_tokens = Some(idp::config::TxnTokens {
                audience: TRUST_DOMAIN.to_owned(),
                lifetime: idp::config::TXN_DEFAULT_LIFETIME,
                clients: vec![SERVICES[0].to_owned()],
                unsigned_subject_clients: Vec::new(),
            });
        }
        let tracing = options.tracing.clone();
        if let Some(TraceTo::Otlp(endpoint)) = &tracing {
            idp_cfg.tracing = Some(crate::otel::RawTracing {
                endpoint: Some(endpoint.clone()),
                service_name: Some("baton-idp".to_owned()),
                sampler_ratio: None,
            });
        }
        let mut idp = Idp::new(idp_cfg)?;
        if let Some(TraceTo::Memory(spans)) = &tracing {
            idp = idp.with_tracing(crate::otel::Tracing::in_memory("baton-idp", spans.clone())?);
        }
        let idp = Arc::new(idp);
        let (idp_stop, idp_signal) = shutdown::channel();
        let idp_task = tokio::spawn(idp::serve(idp.clone(), idp_listener, idp_signal.wait()));

        let (app_stop, app_signal) = shutdown::channel();
        let mut hops = Vec::new();
        for (i, (app_listener, l)) in apps.into_iter().zip(listeners).enumerate() {
            let name = SERVICES[i];
            let app_addr = app_listener.local_addr()?;
            let next = inbound.get(i + 1).map(|addr| format!("http://{addr}/"));
            let grpc_next = l.ports.first().map(TcpListener::local_addr).transpose()?;
            let app_cfg = app::AppConfig {
                name: name.to_owned(),
                next,
                proxy: Some(format!("http://{}", outbound[i])),
                grpc_next,
            };
            tokio::spawn(app::serve(app_cfg, app_listener, app_signal.clone().wait()));
            let mut yaml = sidecar_yaml(
                &issuer,
                name,
                app_addr,
                SERVICES.get(i + 1).zip(inbound.get(i + 1)),
                (i == 0).then_some(edge.as_str()),
                options.unreachable_acr,
            );
            if let (Some(port), Some(next), Some(upstream)) =
                (grpc_next, SERVICES.get(i + 1), inbound.get(i + 1))
            {
                // The outbound block ends the YAML here: the port joins it.
                yaml.push_str(&format!(
                    "  ports:\n    - {{listen: \"{port}\", upstream: \"{upstream}\", route: {next}}}\n"
                ));
            }
            if options.txn_only {
                yaml = txn_only_yaml(&issuer, name, app_addr, inbound.get(i + 1), i == 0);
            } else if options.txn_tokens {
                let mode = ["issue", "accept", "require"][i];
                yaml.push_str(&format!(
                    "txn_token:\n  mode: {mode}\n  audience: {TRUST_DOMAIN}\n"
                ));
            }
            let mut inbound_yaml = String::new();
            if options.grpc {
                inbound_yaml.push_str("  app_protocol: http2\n");
            }
            if options.confine {
                inbound_yaml.push_str("  confine_token: true\n");
            }
            if !inbound_yaml.is_empty() {
                yaml.push_str(&format!("inbound:\n{inbound_yaml}"));
            }
            let yaml = if options.dpop {
                let mode = if i == 0 { "optional" } else { "required" };
                let own = format!("http://{}", inbound[i]);
                format!("{yaml}dpop:\n  mode: {mode}\n  external_url: {own}\n")
                    .replace("      audience: ", "      dpop: on\n      audience: ")
            } else {
                yaml
            };
            let yaml = match options.dpop_key_rotation {
                Some(every) => yaml.replacen(
                    "outbound:\n",
                    &format!("outbound:\n  dpop_key_rotation: {every}\n"),
                    1,
                ),
                None => yaml,
            };
            let yaml = match options.dpop_alg {
                Some(alg) => {
                    yaml.replacen("outbound:\n", &format!("outbound:\n  dpop_alg: {alg}\n"), 1)
                }
                None => yaml,
            };
            let yaml = match &tracing {
                Some(TraceTo::Otlp(endpoint)) => format!(
                    "{yaml}tracing:\n  endpoint: {endpoint}\n  service_name: {name}-baton\n"
                ),
                _ => yaml,
            };
            let cfg = Config::from_yaml(&yaml, &format!("sidecar-{name}.yaml"))?;
            let running = match &tracing {
                Some(TraceTo::Memory(spans)) => {
                    let t =
                        crate::otel::Tracing::in_memory(&format!("{name}-baton"), spans.clone())?;
                    sidecar::start_with_tracing(cfg, l, Some(t)).await?
                }
                _ => sidecar::start(cfg, l, None).await?,
            };
            hops.push(Hop {
                name,
                app: app_addr,
                sidecar: running,
            });
        }
        for hop in &hops {
            if !hop.sidecar.ready(Duration::from_secs(10)).await {
                return Err(Error::NotReady(hop.name));
            }
        }
        Ok(Chain {
            issuer,
            idp,
            hops,
            edge,
            keys_dir,
            apps: app_stop,
            idp_stop: Some(idp_stop),
            idp_task: Some(idp_task),
        })
    }

    /// Signs `user` in at service-a through the IdP's login form (code + PKCE).
    pub async fn sign_in(&self, user: &str, password: &str) -> Result<signin::Tokens, Error> {
        Ok(signin::password_login(&self.signin_request(user, password)).await?)
    }

    /// The sign-in request for `user` at service-a (for a [`signin::Agent`] that keeps the IdP
    /// session, e.g. to step up later).
    pub fn signin_request(&self, user: &str, password: &str) -> signin::Request {
        signin::Request {
            issuer: self.issuer.clone(),
            client_id: SERVICES[0].to_owned(),
            client_secret: Secret::new(idp_demo_secret(SERVICES[0])),
            redirect_uri: REDIRECT_URI.to_owned(),
            scope: "openid profile".to_owned(),
            username: user.to_owned(),
            password: Secret::new(password),
            dpop: None,
        }
    }

    /// `user`'s TOTP secret from the demo IdP config (published there, demo only).
    pub fn totp_secret(&self, user: &str) -> Option<Secret> {
        self.idp.config().users.get(user)?.totp_secret.clone()
    }

    /// Calls service-a's sidecar with `token` at `path`; returns the status and the JSON body.
    pub async fn call(&self, token: &Token, path: &str) -> Result<(u16, Value), Error> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()?;
        let rsp = http
            .get(format!("http://{}{path}", self.hops[0].sidecar.inbound))
            .bearer_auth(token.expose())
            .send()
            .await?;
        let status = rsp.status().as_u16();
        let body = rsp.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Calls service-a's sidecar over gRPC (h2c, [`app::grpc::METHOD`]) with `token`, if any.
    pub async fn call_grpc(&self, token: Option<&Token>) -> Result<app::grpc::Answer, Error> {
        let mut metadata = http::HeaderMap::new();
        if let Some(t) = token {
            let mut v = http::HeaderValue::try_from(format!("Bearer {}", t.expose()))
                .map_err(|e| app::grpc::CallError::Build(e.into()))?;
            v.set_sensitive(true);
            metadata.insert(http::header::AUTHORIZATION, v);
        }
        let client = app::grpc::Client::default();
        Ok(app::grpc::call(&client, self.hops[0].sidecar.inbound, &metadata).await?)
    }

    /// Stops the IdP only (fault demonstrations); the sidecars keep running.
    pub async fn stop_idp(&mut self) {
        self.idp.shutdown_tracing();
        if let Some(stop) = self.idp_stop.take() {
            stop.fire();
        }
        if let Some(task) = self.idp_task.take() {
            let _ = task.await;
        }
    }

    /// Stops everything and removes the temporary key directory.
    pub async fn stop(mut self) {
        self.stop_idp().await;
        for hop in self.hops.drain(..) {
            hop.sidecar.stop().await;
        }
        self.apps.fire();
        let _ = std::fs::remove_dir_all(&self.keys_dir);
    }
}

async fn loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", 0)).await
}

/// The demo clients' inline secrets in `deploy/idp.yaml`.
fn idp_demo_secret(client: &str) -> String {
    format!("demo-secret-{client}")
}

/// The sidecar.yaml of one hop: verify tokens addressed to `name` that carry `name` in `grants`,
/// and exchange on calls to the next hop. With `edge`, browsers sign in at this hop; the last
/// hop guards [`MFA_PATH`] with `acr: [mfa]`.
fn sidecar_yaml(
    issuer: &str,
    name: &str,
    app: SocketAddr,
    next: Option<(&&str, &SocketAddr)>,
    edge: Option<&str>,
    unreachable_acr: bool,
) -> String {
    let outbound_routes = match next {
        Some((next_name, next_addr)) => format!(
            "  routes:\n    - name: {next_name}\n      host: \"{next_addr}\"\n      audience: {next_name}\n"
        ),
        None => "  routes: []\n".to_owned(),
    };
    let grants = format!("    claims:\n      - claim: grants\n        contains: {name}\n");
    let mut routes = String::from("routes:\n");
    if next.is_none() {
        routes.push_str(&format!(
            "  - name: mfa\n    path: /mfa\n    acr: [mfa]\n{grants}"
        ));
        if unreachable_acr {
            routes.push_str(&format!(
                "  - name: hwk\n    path: /hwk\n    acr: [hwk]\n{grants}"
            ));
        }
    }
    routes.push_str(&format!("  - name: default\n    path: /\n{grants}"));
    let login = match edge {
        Some(url) => {
            routes.push_str("    login: browser\n");
            format!("login:\n  external_url: {url}\n  scope: openid profile\n")
        }
        None => String::new(),
    };
    format!(
        "issuer: {issuer}\naudience: {name}\napp: \"{app}\"\n{routes}{login}\
         outbound:\n  client:\n    client_id: {name}\n    secret: {secret}\n{outbound_routes}",
        secret = idp_demo_secret(name),
    )
}

/// The sidecar.yaml of one hop of the chain that carries only a Txn-Token: the first hop
/// verifies the user's token and issues; the others require the Txn-Token on a public route.
/// Calls leave without `Authorization` (`unknown: passthrough`, no exchange).
fn txn_only_yaml(
    issuer: &str,
    name: &str,
    app: SocketAddr,
    next: Option<&SocketAddr>,
    first: bool,
) -> String {
    // The next hop is reached by passthrough and keeps the Txn-Token: it is in the domain.
    let hosts = next.map_or("[]".to_owned(), |n| format!("[\"{n}\"]"));
    let (public, mode) = if first {
        ("", "issue")
    } else {
        ("    public: true\n", "require")
    };
    format!(
        "issuer: {issuer}\naudience: {name}\napp: \"{app}\"\n\
         routes:\n  - name: default\n    path: /\n{public}\
         txn_token:\n  mode: {mode}\n  audience: {TRUST_DOMAIN}\n\
         outbound:\n  unknown: passthrough\n  txn_token_hosts: {hosts}\n  client:\n    client_id: {name}\n    secret: {secret}\n  routes: []\n",
        secret = idp_demo_secret(name),
    )
}

/// `baton demo`; with `serve`, keeps the chain up for a browser until Ctrl-C or SIGTERM; with
/// `grpc`, runs the chain over gRPC.
pub async fn main(serve: bool, grpc: bool) -> ExitCode {
    let result = match (serve, grpc) {
        (true, _) => run_serve().await,
        (false, true) => run_grpc().await,
        (false, false) => run().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let spans = crate::otel::Collected::default();
    let chain = Chain::start_with(Options {
        txn_tokens: true,
        tracing: Some(TraceTo::Memory(spans.clone())),
        ..Options::default()
    })
    .await?;
    let out = report::Report::new(&chain);
    out.started();
    let agent = signin::Agent::new()?;
    let req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
    let tokens = agent.sign_in(&req, None).await?.tokens;
    out.signed_in(&tokens);
    let before = chain.idp.exchanges();
    spans.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let (status, body) = chain.call(&tokens.access_token, "/").await?;
    out.first_call(status, &body, chain.idp.exchanges() - before);
    out.trace(&collected_trace(&spans).await);
    out.txn_tokens(&body);
    let before = chain.idp.exchanges();
    let (status, _) = chain.call(&tokens.access_token, "/").await?;
    out.second_call(status, chain.idp.exchanges() - before);

    // Step-up: C demands mfa on MFA_PATH; the challenge travels back through B and A.
    let (status, body) = chain.call(&tokens.access_token, MFA_PATH).await?;
    out.challenged(status, &body);
    let stepped = step_up(&chain, &agent, &req, &tokens).await?;
    out.stepped_up(&stepped);
    let (status, body) = chain.call(&stepped.tokens.access_token, MFA_PATH).await?;
    out.after_step_up(status, &body);
    chain.stop().await;
    Ok(())
}

/// `baton demo --grpc`: the same chain and per-hop table, every hop a gRPC call.
async fn run_grpc() -> Result<(), Error> {
    let chain = Chain::start_with(Options {
        grpc: true,
        ..Options::default()
    })
    .await?;
    let out = report::Report::new(&chain);
    out.started_grpc();
    let tokens = chain.sign_in(DEMO_USER, DEMO_PASSWORD).await?;
    out.signed_in(&tokens);
    let before = chain.idp.exchanges();
    let answer = chain.call_grpc(Some(&tokens.access_token)).await?;
    out.first_grpc_call(&answer, chain.idp.exchanges() - before);
    let before = chain.idp.exchanges();
    let answer = chain.call_grpc(Some(&tokens.access_token)).await?;
    out.second_grpc_call(&answer, chain.idp.exchanges() - before);
    let answer = chain.call_grpc(None).await?;
    out.grpc_refused(&answer);
    chain.stop().await;
    Ok(())
}

/// The tree of the call just made: the trace of the `inbound` span at service-a that started
/// one, once its spans are in (the exporters gather for a moment; at most 3 s).
async fn collected_trace(spans: &crate::otel::Collected) -> String {
    use opentelemetry::trace::TraceId;
    let root = |all: &[(Arc<str>, opentelemetry_sdk::trace::SpanData)]| {
        all.iter()
            .find(|(service, s)| {
                &**service == "service-a-baton"
                    && s.name == "inbound"
                    && s.parent_span_id == opentelemetry::trace::SpanId::INVALID
            })
            .map(|(_, s)| s.span_context.trace_id())
    };
    let (mut drawn, mut last) = (String::new(), 0);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let all = spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let trace = root(&all).unwrap_or(TraceId::INVALID);
        let n = all
            .iter()
            .filter(|(_, s)| s.span_context.trace_id() == trace)
            .count();
        drawn = trace::tree(&all, trace);
        // A, B, C: inbound and app; A and B: outbound, exchange; the IdP: two token requests;
        // more with Txn-Tokens. Done once that many are in and no more came.
        if n >= 12 && n == last {
            break;
        }
        last = n;
    }
    drawn
}

/// Steps `tokens`' user up to `mfa` in the same IdP session: `id_token_hint`, `acr_values=mfa`
/// and the current one-time code from the user's demo TOTP secret.
pub async fn step_up(
    chain: &Chain,
    agent: &signin::Agent,
    req: &signin::Request,
    tokens: &signin::Tokens,
) -> Result<signin::Outcome, Error> {
    let hint = tokens.id_token.clone().ok_or_else(|| {
        Error::SignIn(signin::Error::Flow {
            step: "step-up",
            reason: "no ID token to send as id_token_hint".into(),
        })
    })?;
    let totp_secret = chain.totp_secret(&req.username).ok_or_else(|| {
        Error::SignIn(signin::Error::Flow {
            step: "step-up",
            reason: "the user has no TOTP secret".into(),
        })
    })?;
    let s = signin::StepUp {
        acr_values: "mfa".into(),
        id_token_hint: hint,
        totp_secret,
    };
    Ok(agent.sign_in(req, Some(&s)).await?)
}

async fn run_serve() -> Result<(), Error> {
    let chain = Chain::start().await?;
    let out = report::Report::new(&chain);
    out.started();
    out.serving(&chain.edge);
    let signal = shutdown::os_signal().await;
    eprintln!("baton demo: {signal}: stopping");
    chain.stop().await;
    Ok(())
}
