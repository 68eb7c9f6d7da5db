//! A started sidecar, and the order it stops in.

use crate::jwt::jwks::Jwks;
use crate::server::Drained;
use crate::shutdown::Trigger;
use crate::telemetry::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

/// A started sidecar.
pub struct Running {
    /// Where the inbound listener accepts.
    pub inbound: SocketAddr,
    /// Where the forward proxy accepts (`HTTP_PROXY`).
    pub outbound: SocketAddr,
    /// Where the admin listener accepts.
    pub admin: SocketAddr,
    /// The local upstream ports, in config order.
    pub ports: Vec<SocketAddr>,
    /// The metrics all three listeners record into.
    pub metrics: Arc<Metrics>,
    /// The key cache (readiness).
    pub jwks: Arc<Jwks>,
    pub(super) trigger: Trigger,
    pub(super) admin_trigger: Trigger,
    pub(super) tasks: JoinSet<(&'static str, Drained)>,
    pub(super) admin_task: JoinSet<(&'static str, Drained)>,
    pub(super) tracing: Option<Arc<crate::otel::Tracing>>,
}

impl Running {
    /// Waits until the JWKS has loaded (the readiness latch), at most `limit`.
    pub async fn ready(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.jwks.wait_ready())
            .await
            .is_ok()
    }

    /// Shuts down in that order and reports whether every listener drained cleanly:
    /// `/readyz` turns 503 and the traffic listeners drain; the admin listener stops last.
    pub async fn stop(mut self) -> bool {
        self.trigger.fire();
        let clean = drain(&mut self.tasks).await;
        self.admin_trigger.fire();
        let clean = drain(&mut self.admin_task).await && clean;
        if let Some(t) = &self.tracing {
            t.shutdown();
        }
        clean
    }
}

async fn drain(tasks: &mut JoinSet<(&'static str, Drained)>) -> bool {
    let mut clean = true;
    {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((name, Drained::Clean)) => info!(listener = name, "stopped"),
                Ok((name, Drained::Cut(n))) => {
                    warn!(
                        listener = name,
                        connections = n,
                        "stopped with connections cut"
                    );
                    clean = false;
                }
                Err(e) => {
                    error!(error = %e, "listener task failed");
                    clean = false;
                }
            }
        }
    }
    clean
}
