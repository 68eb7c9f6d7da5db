//! A loopback TCP round robin in front of several replicas: each accepted connection goes to
//! the next backend, so a client that opens one connection per request lands on a different
//! replica each time. A backend that refuses the connection is skipped for the next one, as a
//! load balancer does (nginx's `proxy_next_upstream error`): a stopped replica costs only the
//! connections that were open to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};

/// A running round robin.
pub struct RoundRobin {
    task: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    /// Listens on `listener` and spreads its connections over `backends` (`host:port`).
    pub fn start(listener: TcpListener, backends: Vec<String>) -> RoundRobin {
        let backends = Arc::new(backends);
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let first = next.fetch_add(1, Ordering::Relaxed);
                let backends = backends.clone();
                tokio::spawn(async move {
                    for k in 0..backends.len() {
                        let backend = &backends[(first + k) % backends.len()];
                        if let Ok(mut out) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                            return;
                        }
                    }
                });
            }
        });
        RoundRobin { task }
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.task.abort();
    }
}
