//! Keep-alive HTTP/1.1 connections to one fixed destination: the app behind the inbound
//! listener, or one plain-HTTP upstream of the outbound routes.
//!
//! The destination is known at configuration time, so this is a plain stack of idle
//! `hyper::client::conn::http1` senders rather than hyper-util's general pool (keyed by
//! authority, with a task spawned per request to put the connection back). A connection returns
//! to the stack when the response body that came on it has been read to the end (a body dropped
//! unread leaves bytes on the connection, and hyper closes it); a request goes out on the most
//! recently used connection. Each connection's task is woken through a [`Gate`], which holds
//! back the one wake-up hyper sends it for nothing on each response: see there.

pub mod h2;

use super::{Body, BoxError};
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle keep-alive connections kept at most; more are closed when they fall idle.
const MAX_IDLE: usize = 256;

/// A client connection's task side, driven by a task of its own.
type Conn = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Body>;

/// The idle connections, most recently used last.
type Idle = Mutex<Vec<Kept>>;

/// A keep-alive connection as the pool holds it: the handle requests go out on, and the gate
/// its task is woken through.
struct Kept {
    sender: SendRequest<Body>,
    gate: Arc<Gate>,
}

/// Connections to `dest` (`host:port`; an IP address is used as is, a name is resolved at
/// each new connection).
pub struct Pool {
    dest: String,
    connect_timeout: Duration,
    idle: Arc<Idle>,
}

impl Pool {
    /// An empty pool to `dest`; opening a connection may take up to `connect_timeout`.
    pub fn new(dest: impl Into<String>, connect_timeout: Duration) -> Self {
        Self {
            dest: dest.into(),
            connect_timeout,
            idle: Arc::default(),
        }
    }

    /// The `host:port` this pool connects to.
    pub fn dest(&self) -> &str {
        &self.dest
    }

    /// Sends `req` (its URI reduced to origin-form; the caller sets `Host`) on an idle
    /// connection, or on a new one when none is left. A request that an idle connection could
    /// not take (the peer closed it meanwhile) comes back unsent and goes out on the next; a
    /// request that was sent is never sent twice. The response body streams.
    ///
    /// Not an `async fn`: an async fn keeps each by-value argument in its future for the whole
    /// wait, so a request passed down through nested async fns is stored (and copied) once per
    /// level. The URI is fixed here and the request handed straight to the one future.
    pub fn send(
        &self,
        mut req: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, BoxError>> + Send + '_ {
        if req.uri().scheme().is_some() {
            let path = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(path);
        }
        self.checkout_and_send(req)
    }

    async fn checkout_and_send(&self, mut req: Request<Body>) -> Result<Response<Body>, BoxError> {
        loop {
            let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut kept) = pooled else { break };
            if kept.sender.ready().await.is_err() {
                continue;
            }
            match kept.sender.try_send_request(req).await {
                Ok(rsp) => return Ok(self.returning(kept, rsp)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        // Boxed: opening a connection is rare, and its future would size every request's.
        let mut kept = Box::pin(self.connect()).await?;
        let rsp = kept.sender.send_request(req).await?;
        Ok(self.returning(kept, rsp))
    }

    /// `rsp` with a body that puts `kept` back in the pool once read to the end.
    fn returning(&self, kept: Kept, rsp: Response<Incoming>) -> Response<Body> {
        rsp.map(|body| {
            Returning {
                body,
                ended: false,
                back: Some((kept, Arc::downgrade(&self.idle))),
            }
            .boxed()
        })
    }

    /// Sends `req` (origin-form, `Host` set) on a connection of its own that no other request
    /// shares, for a request that asks to switch protocols: on a `101` the connection leaves
    /// HTTP and goes with the response (`hyper::upgrade::on`); otherwise it closes after it.
    pub async fn send_upgradable(
        &self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, BoxError> {
        let io = TokioIo::new(self.dial().await?);
        let (mut sender, conn) = handshake(io).await?;
        let dest = self.dest.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(dest, error = %e, "connection ended with an error");
            }
        });
        Ok(sender.send_request(req).await?)
    }

    /// Opens a connection; its connection task runs until either side closes it.
    async fn connect(&self) -> Result<Kept, BoxError> {
        let io = TokioIo::new(self.dial().await?);
        let (sender, conn) = handshake(io).await?;
        let gate = Arc::new(Gate::default());
        let gated = Gated {
            conn,
            waker: Waker::from(gate.clone()),
            gate: gate.clone(),
        };
        let dest = self.dest.clone();
        tokio::spawn(async move {
            if let Err(e) = gated.await {
                tracing::debug!(dest, error = %e, "connection ended with an error");
            }
        });
        Ok(Kept { sender, gate })
    }

    /// A TCP connection to `dest`, within the connect timeout.
    async fn dial(&self) -> Result<TcpStream, BoxError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.dest))
            .await
            .map_err(|_| format!("connect to {} timed out", self.dest))??;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }
}

/// An HTTP/1.1 client connection over `io`. Each message is flattened into one buffer and
/// written with one `write`: hyper's default for a socket, vectored writes, walks a queue of
/// buffers per message, which costs more than copying the small heads and bodies a sidecar
/// mostly forwards (callgrind: about 200 instructions per request); a large body is still written
/// a buffer at a time.
fn handshake(
    io: TokioIo<TcpStream>,
) -> impl Future<Output = hyper::Result<(SendRequest<Body>, Conn)>> {
    hyper::client::conn::http1::Builder::new()
        .writev(false)
        .handshake(io)
}

/// How a kept connection's task is woken. hyper's response body is a channel from the
/// connection's task to the reader, and each time the reader takes a piece from it, hyper wakes
/// the connection's task so that it may send the next, even when there is no next: the piece
/// was the last and the sending side is gone (hyper 1.12 and 1.13, `body::chan`). That is one
/// poll of the task, and of hyper's connection state machine, for nothing on every response:
/// 1,160 instructions per request through the inbound listener, 3.5 % of its work; the gate
/// costs 240 of them back (callgrind, `bench/RESULTS.md`, 2026-12-05 05:14 UTC).
///
/// So the task polls its connection with a waker of this gate's, and [`Returning`] names the
/// gate in [`HOLDING`] while it reads a piece: a wake-up of the gate on this thread meanwhile is
/// held back, and passed on unless the piece was the body's last. Wake-ups from elsewhere (the
/// socket, a new request, another thread) pass straight through.
#[derive(Default)]
struct Gate {
    /// The connection task's own waker.
    task: AtomicWaker,
    /// A wake-up held back while the body was read.
    held: AtomicBool,
    /// The task's polls of the connection, for the tests.
    #[cfg(test)]
    polls: std::sync::atomic::AtomicUsize,
}

thread_local! {
    /// The gate whose wake-ups are held back on this thread: set while [`Returning`] reads a
    /// piece of its body.
    static HOLDING: Cell<*const Gate> = const { Cell::new(std::ptr::null()) };
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if HOLDING.get() == Arc::as_ptr(self) {
            self.held.store(true, Ordering::Relaxed);
        } else {
            self.task.wake();
        }
    }
}

/// [`HOLDING`] set to one gate for as long as this lives, then back to what it was (even when
/// the body's poll panics: a gate left there would hold back wake-ups that are needed).
struct Holding(*const Gate);

impl Holding {
    fn on(gate: &Arc<Gate>) -> Self {
        Self(HOLDING.replace(Arc::as_ptr(gate)))
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        HOLDING.set(self.0);
    }
}

/// A kept connection as its task drives it: polled with its gate's waker.
struct Gated {
    conn: Conn,
    gate: Arc<Gate>,
    waker: Waker,
}

impl Future for Gated {
    type Output = hyper::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        #[cfg(test)]
        this.gate.polls.fetch_add(1, Ordering::Relaxed);
        this.gate.task.register(cx.waker());
        Pin::new(&mut this.conn).poll(&mut Context::from_waker(&this.waker))
    }
}

/// A response body; puts its connection back in the pool once read to the end.
struct Returning {
    body: Incoming,
    ended: bool,
    back: Option<(Kept, Weak<Idle>)>,
}

impl http_body::Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &this.back {
            Some((kept, _)) => {
                let polled = {
                    let _holding = Holding::on(&kept.gate);
                    Pin::new(&mut this.body).poll_frame(cx)
                };
                if kept.gate.held.swap(false, Ordering::Relaxed) {
                    let last = match &polled {
                        Poll::Ready(None) => true,
                        Poll::Ready(Some(Ok(_))) => this.body.is_end_stream(),
                        _ => false,
                    };
                    if !last {
                        kept.gate.task.wake();
                    }
                }
                polled
            }
            None => Pin::new(&mut this.body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => this.back = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if !(self.ended || http_body::Body::is_end_stream(&self.body)) {
            return;
        }
        if let Some((kept, idle)) = self.back.take()
            && let Some(idle) = idle.upgrade()
        {
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests;
