//! A loopback TCP round robin in front of several replicas: each accepted connection goes to
//! the next backend, so a client that opens one connection per request lands on a different
//! replica each time.

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
        let next = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                let backend = backends[i].clone();
                tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
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
