//! A tiny echo app on 127.0.0.1:0 that records every request it receives.

use baton::http::{Body, full};
use baton::server::{self, Limits};
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What the app saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Path and query.
    pub path: String,
    /// Headers as received.
    pub headers: HeaderMap,
    /// The body.
    pub body: bytes::Bytes,
}

/// A running echo app.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// Starts the app; it answers 200 with `echo: <body>`.
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        let handler = move |req: Request<hyper::body::Incoming>, _| {
            let s = s.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let path = parts
                    .uri
                    .path_and_query()
                    .map_or("/".into(), |p| p.to_string());
                let mut echoed = b"echo: ".to_vec();
                echoed.extend_from_slice(&body);
                s.lock().expect("lock").push(Seen {
                    path,
                    headers: parts.headers,
                    body,
                });
                Response::<Body>::new(full(echoed))
            }
        };
        tokio::spawn(server::serve(
            listener,
            Limits::default(),
            handler,
            std::future::pending(),
        ));
        Upstream { addr, seen }
    }

    /// Number of requests received.
    pub fn requests(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// The last request received.
    pub fn last(&self) -> Option<Seen> {
        self.seen.lock().expect("lock").last().cloned()
    }
}
