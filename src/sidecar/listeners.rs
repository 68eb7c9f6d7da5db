//! The sockets of one sidecar: bound first, so that a port in use stops `baton run` before
//! anything starts.

use super::Error;
use crate::config::Config;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The sockets of one sidecar, bound before anything else starts.
pub struct Listeners {
    /// Client traffic for the app.
    pub inbound: TcpListener,
    /// The app's forward-proxy calls.
    pub outbound: TcpListener,
    /// Health, readiness, metrics, config.
    pub admin: TcpListener,
    /// One per `outbound.ports` entry, in config order.
    pub ports: Vec<TcpListener>,
}

impl Listeners {
    /// Binds the addresses `cfg` names.
    pub async fn bind(cfg: &Config) -> Result<Self, Error> {
        let l = &cfg.listeners;
        let mut ports = Vec::with_capacity(cfg.outbound.ports.len());
        for p in &cfg.outbound.ports {
            ports.push(bind("outbound port", p.listen).await?);
        }
        Ok(Self {
            inbound: bind("inbound", l.inbound).await?,
            outbound: bind("outbound", l.outbound).await?,
            admin: bind("admin", l.admin).await?,
            ports,
        })
    }

    /// Binds every listener on `127.0.0.1:0` (tests and `baton demo`).
    pub async fn ephemeral(cfg: &Config) -> Result<Self, Error> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut ports = Vec::with_capacity(cfg.outbound.ports.len());
        for _ in &cfg.outbound.ports {
            ports.push(bind("outbound port", any).await?);
        }
        Ok(Self {
            inbound: bind("inbound", any).await?,
            outbound: bind("outbound", any).await?,
            admin: bind("admin", any).await?,
            ports,
        })
    }
}

async fn bind(name: &'static str, addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { name, addr, source })
}
