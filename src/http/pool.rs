//! Keep-alive HTTP/1.1 connections to one fixed destination: the app behind the inbound
//! listener, or one plain-HTTP upstream of the outbound routes.
//!
//! The destination is known at configuration time, so this is a plain stack of idle
//! `hyper::client::conn::http1` senders rather than hyper-util's general pool (keyed by
//! authority, with a task spawned per request to put the connection back). A connection returns
//! to the stack when the response body that came on it has been read to the end (a body dropped
//! unread leaves bytes on the connection, and hyper closes it); a request goes out on the most
//! recently used connection. At most [`MAX_OPEN`] connections are open at once; a request that
//! finds them all busy waits for one.

pub mod h2;

use super::{Body, BoxError};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Idle keep-alive connections kept at most; more are closed when they fall idle.
const MAX_IDLE: usize = 256;

/// Connections open at once at most, busy and idle together. An HTTP/2 client of a listener has
/// up to 100 streams in flight on each of its connections, and over HTTP/1.1 each would take a
/// connection to the destination of its own: past this many, a request waits for a connection
/// to come back or close (its listener's request timeout bounds the wait).
const MAX_OPEN: usize = 1024;

/// A client connection's task side, driven by a task of its own.
type Conn = hyper::client::conn::http1::Connection<TokioIo<TcpStream>, Body>;

/// The idle connections, most recently used last, and the requests waiting for one.
#[derive(Default)]
struct Idle {
    kept: Mutex<Vec<Kept>>,
    /// Requests waiting because every connection is busy.
    waiting: AtomicUsize,
    /// Signalled when a connection comes back while a request waits.
    returned: Notify,
}

/// A keep-alive connection as the pool holds it: the handle requests go out on, and its place
/// under [`MAX_OPEN`], given back when the handle goes; its connection runs on a task of its own.
struct Kept {
    sender: SendRequest<Body>,
    _open: OwnedSemaphorePermit,
}

/// Connections to `dest` (`host:port`; an IP address is used as is, a name is resolved at
/// each new connection).
pub struct Pool {
    dest: String,
    connect_timeout: Duration,
    idle: Arc<Idle>,
    /// One permit per open connection.
    open: Arc<Semaphore>,
}

impl Pool {
    /// An empty pool to `dest`; opening a connection may take up to `connect_timeout`.
    pub fn new(dest: impl Into<String>, connect_timeout: Duration) -> Self {
        Self {
            dest: dest.into(),
            connect_timeout,
            idle: Arc::default(),
            open: Arc::new(Semaphore::new(MAX_OPEN)),
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
        // A place under `MAX_OPEN` handed over while waiting; kept until a connection is opened
        // in it, or dropped (given back) if an idle connection turns up first.
        let mut place = None;
        loop {
            while let Some(mut kept) = self.idle.pop() {
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
            let open = place
                .take()
                .or_else(|| self.open.clone().try_acquire_owned().ok());
            if let Some(open) = open {
                // Boxed: opening a connection is rare, and its future would size every request's.
                let mut kept = Box::pin(self.connect(open)).await?;
                let rsp = kept.sender.send_request(req).await?;
                return Ok(self.returning(kept, rsp));
            }
            // Boxed for the same reason: waiting happens only with every connection busy.
            place = Box::pin(self.idle.wait(&self.open)).await;
        }
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

    /// Opens a connection in the place `open`; its connection task runs until either side
    /// closes it.
    async fn connect(&self, open: OwnedSemaphorePermit) -> Result<Kept, BoxError> {
        let io = TokioIo::new(self.dial().await?);
        let (sender, conn) = handshake(io).await?;
        let dest = self.dest.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(dest, error = %e, "connection ended with an error");
            }
        });
        Ok(Kept {
            sender,
            _open: open,
        })
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

impl Idle {
    /// The most recently used idle connection.
    fn pop(&self) -> Option<Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Puts `kept` back (or lets it close when [`MAX_IDLE`] are idle already) and wakes a
    /// request waiting for a connection, if one is.
    fn put_back(&self, kept: Kept) {
        {
            let mut idle = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push(kept);
            }
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.returned.notify_one();
        }
    }

    /// Waits until a connection may be had: one came back idle (`None`; returns at once when
    /// one is idle already), or one closed and gave its place under `open` back, which is
    /// handed over (dropping it instead would pass it to the next waiter in the semaphore's
    /// queue, never to the counter a later `try_acquire` reads).
    async fn wait(&self, open: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        let _waiting = Waiting::new(&self.waiting);
        let returned = self.returned.notified();
        tokio::pin!(returned);
        // Registered before looking, so a connection put back after the look wakes this wait.
        returned.as_mut().enable();
        if !self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return None;
        }
        tokio::select! {
            () = returned => None,
            place = open.clone().acquire_owned() => place.ok(),
        }
    }
}

/// A request counted in [`Idle::waiting`] while it lives, however its wait ends (a request
/// that times out drops it mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
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
        let polled = Pin::new(&mut this.body).poll_frame(cx);
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
            idle.put_back(kept);
        }
    }
}

#[cfg(test)]
mod tests;
