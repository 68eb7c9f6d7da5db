//! The running chain: baton-idp, three echo apps and their sidecars on loopback ports, started
//! in order and stopped together, with calls and sign-ins against service-a.

use super::yaml::{self, Wiring, idp_demo_secret};
use super::{Error, Options, REDIRECT_URI, SERVICES, TRUST_DOMAIN, TraceTo, app};
use crate::config::Config;
use crate::idp::{self, Idp};
use crate::secret::{Secret, Token};
use crate::shutdown::{self, Shutdown, Trigger};
use crate::sidecar::{self, Listeners};
use crate::signin;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
        let Sockets {
            apps,
            listeners,
            inbound,
            outbound,
        } = Sockets::bind(options.grpc).await?;
        let edge = format!("http://{}", inbound[0]);

        let idp = Arc::new(demo_idp(&issuer, &keys_dir, &edge, &options)?);
        let (idp_stop, idp_signal) = shutdown::channel();
        let idp_task = tokio::spawn(idp::serve(idp.clone(), idp_listener, idp_signal.wait()));

        let (app_stop, app_signal) = shutdown::channel();
        let wiring = Wiring {
            issuer: &issuer,
            edge: &edge,
            inbound: &inbound,
            options: &options,
        };
        let mut hops = Vec::new();
        for (i, (app_listener, l)) in apps.into_iter().zip(listeners).enumerate() {
            let proxy = outbound[i];
            hops.push(start_hop(&wiring, i, app_listener, l, proxy, &app_signal).await?);
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

/// Every loopback socket of the chain but the IdP's.
struct Sockets {
    apps: Vec<TcpListener>,
    listeners: Vec<Listeners>,
    inbound: Vec<SocketAddr>,
    outbound: Vec<SocketAddr>,
}

impl Sockets {
    /// Binds every socket first: each sidecar's config names the next hop's inbound port, and
    /// the IdP must know A's sign-in callback before it starts.
    async fn bind(grpc: bool) -> Result<Sockets, Error> {
        let mut apps = Vec::new();
        let mut listeners = Vec::new();
        for i in 0..SERVICES.len() {
            apps.push(loopback().await?);
            // Over gRPC, each hop but the last has a per-upstream port for the next hop.
            let ports = if grpc && i + 1 < SERVICES.len() {
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
        Ok(Sockets {
            apps,
            listeners,
            inbound,
            outbound,
        })
    }
}

/// The demo IdP at `issuer`, keys in `keys_dir`, with A's sign-in at `edge` registered.
fn demo_idp(issuer: &str, keys_dir: &Path, edge: &str, options: &Options) -> Result<Idp, Error> {
    let mut idp_cfg = idp::Config::demo(issuer, keys_dir);
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
    if let Some(TraceTo::Otlp(endpoint)) = &options.tracing {
        idp_cfg.tracing = Some(crate::otel::RawTracing {
            endpoint: Some(endpoint.clone()),
            service_name: Some("baton-idp".to_owned()),
            sampler_ratio: None,
        });
    }
    let mut idp = Idp::new(idp_cfg)?;
    if let Some(TraceTo::Memory(spans)) = &options.tracing {
        idp = idp.with_tracing(crate::otel::Tracing::in_memory("baton-idp", spans.clone())?);
    }
    Ok(idp)
}

/// Starts hop `i`: its echo app on `app_listener`, calling out through the sidecar's outbound
/// listener at `proxy`, and its sidecar on `l`.
async fn start_hop(
    w: &Wiring<'_>,
    i: usize,
    app_listener: TcpListener,
    l: Listeners,
    proxy: SocketAddr,
    app_signal: &Shutdown,
) -> Result<Hop, Error> {
    let name = SERVICES[i];
    let app_addr = app_listener.local_addr()?;
    let grpc_next = l.ports.first().map(TcpListener::local_addr).transpose()?;
    let app_cfg = app::AppConfig {
        name: name.to_owned(),
        next: w.inbound.get(i + 1).map(|addr| format!("http://{addr}/")),
        proxy: Some(format!("http://{proxy}")),
        grpc_next,
    };
    tokio::spawn(app::serve(app_cfg, app_listener, app_signal.clone().wait()));
    let yaml = yaml::hop(w, i, app_addr, grpc_next);
    let cfg = Config::from_yaml(&yaml, &format!("sidecar-{name}.yaml"))?;
    let running = match &w.options.tracing {
        Some(TraceTo::Memory(spans)) => {
            let t = crate::otel::Tracing::in_memory(&format!("{name}-baton"), spans.clone())?;
            sidecar::start_with_tracing(cfg, l, Some(t)).await?
        }
        _ => sidecar::start(cfg, l, None).await?,
    };
    Ok(Hop {
        name,
        app: app_addr,
        sidecar: running,
    })
}

async fn loopback() -> std::io::Result<TcpListener> {
    TcpListener::bind(("127.0.0.1", 0)).await
}
