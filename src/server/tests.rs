//! Accept-loop tests over real loopback sockets: each limit is exercised and the outcome asserted.

use super::*;
use crate::http::full;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

fn quick() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_connections: 2,
        max_body_bytes: 1024,
        max_header_bytes: 8192,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// Starts `serve` with a handler that answers after the number of milliseconds in the path.
async fn start(
    limits: Limits,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Drained>,
) {
    start_with(limits, Arc::new(tokio::sync::Notify::new())).await
}

/// Like `start`, notifying `entered` each time the handler begins a request.
async fn start_with(
    limits: Limits,
    entered: Arc<tokio::sync::Notify>,
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Drained>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let handler = move |req: Request<Incoming>, _info: ConnInfo| {
        entered.notify_one();
        async move {
            let ms: u64 = req
                .uri()
                .path()
                .trim_start_matches('/')
                .parse()
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Response::new(full("done"))
        }
    };
    let task = tokio::spawn(serve(listener, limits, handler, async {
        let _ = rx.await;
    }));
    (addr, tx, task)
}

async fn roundtrip(stream: &mut TcpStream, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads until the peer closes; returns what arrived. Bounded by the test's own timeout.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "server never closed the connection");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let (addr, _tx, _task) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("partial head");
    let rest = read_to_close(&mut s).await;
    assert!(
        !rest.contains("200 OK"),
        "a request without complete headers must not be served"
    );
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_cut_off_at_the_header_read_timeout() {
    // Bytes keep moving, so the 5 s idle timeout never fires: only the 300 ms header-read
    // timeout, on the connection's tick clock, can end this slowloris.
    let (addr, _tx, _task) = start(Limits {
        idle_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..quick()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // A request first: the deadline counts from the start of each head.
    assert!(roundtrip(&mut s, "/0").await.starts_with("HTTP/1.1 200"));
    let began = std::time::Instant::now();
    let head =
        b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Anything the server sends to an unfinished head (an end, a reset) means it gave up.
        let mut probe = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe))
            .await
            .is_ok()
        {
            cut = true;
            break;
        }
    }
    let took = began.elapsed();
    assert!(cut, "the trickled head was never cut off");
    assert!(
        took >= Duration::from_millis(300),
        "cut before the 300 ms header-read timeout: {took:?}"
    );
    // The tick is a quarter of 300 ms; the margin is for a loaded test machine.
    assert!(
        took < Duration::from_secs(2),
        "cut only after {took:?}, long after the 300 ms header-read timeout"
    );
}

#[tokio::test]
async fn slow_handlers_get_504() {
    // The idle timeout longer than the request's: a request with no bytes moving for the idle
    // timeout would end the connection after its answer.
    let (addr, _tx, _task) = start(Limits {
        idle_timeout: Duration::from_secs(5),
        ..quick()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // Ticks pass while the connection serves quick requests: a deadline counts from its own
    // request's start, so a 100 ms request after them is still in time.
    for _ in 0..4 {
        assert!(roundtrip(&mut s, "/0").await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(roundtrip(&mut s, "/100").await.starts_with("HTTP/1.1 200"));
    let began = std::time::Instant::now();
    assert!(roundtrip(&mut s, "/2000").await.starts_with("HTTP/1.1 504"));
    assert!(
        began.elapsed() >= Duration::from_millis(300),
        "504 before the 300 ms request timeout"
    );
    // The connection serves on after a 504.
    assert!(roundtrip(&mut s, "/0").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn slow_h2_streams_get_504() {
    use http_body_util::BodyExt;
    let (addr, _tx, _task) = start(quick()).await;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let get = |path: &str| {
        Request::get(format!("http://x{path}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request")
    };
    let began = std::time::Instant::now();
    let slow = send.send_request(get("/2000")).await.expect("slow stream");
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(began.elapsed() >= Duration::from_millis(300));
    let quick = send.send_request(get("/0")).await.expect("quick stream");
    assert_eq!(quick.status(), StatusCode::OK);
    let body = quick.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"done");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (addr, _tx, _task) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    assert!(roundtrip(&mut s, "/0").await.starts_with("HTTP/1.1 200"));
    assert_eq!(read_to_close(&mut s).await, "");
}

#[tokio::test]
async fn a_connection_in_use_outlives_the_idle_timeout() {
    let (addr, _tx, _task) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // 12 requests 100 ms apart: four times the 300 ms idle timeout, never 300 ms quiet.
    for i in 0..12 {
        let answer = roundtrip(&mut s, "/0").await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {i}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read_to_close(&mut s).await, "", "closed once it falls idle");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_accept() {
    let (addr, _tx, _task) = start(Limits {
        idle_timeout: Duration::from_secs(30),
        ..quick()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        assert!(roundtrip(&mut s, "/0").await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    let _ = extra.write_all(b"GET /0 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(!read_to_close(&mut extra).await.contains("200 OK"));
    drop(held);
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let (addr, _tx, _task) = start(quick()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let big = format!(
        "GET /0 HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(64 << 10)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let answer = read_to_close(&mut s).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let entered = Arc::new(tokio::sync::Notify::new());
    let limits = Limits {
        request_timeout: Duration::from_secs(5),
        ..quick()
    };
    let (addr, tx, task) = start_with(limits, entered.clone()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /500 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    entered.notified().await;
    tx.send(()).expect("shutdown");
    let answer = read_to_close(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(task.await.expect("serve"), Drained::Clean);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener must be closed after shutdown"
    );
}

/// A server whose connections only a drain closes soon (neither the idle timeout nor hyper's
/// wait for the next request head comes first), and a connection to it that has made `requests`
/// requests: as many wake-ups of its task before the drain.
async fn busy_connection(
    requests: usize,
) -> (
    TcpStream,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Drained>,
) {
    let limits = Limits {
        idle_timeout: Duration::from_secs(60),
        header_read_timeout: Duration::from_secs(60),
        ..quick()
    };
    let (addr, tx, task) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    for i in 0..requests {
        let answer = roundtrip(&mut s, "/0").await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "request {i}: {answer:?}"
        );
    }
    (s, tx, task)
}

#[tokio::test]
async fn shutdown_closes_a_busy_connection_once_it_falls_idle() {
    let (mut s, tx, task) = busy_connection(20).await;
    tx.send(()).expect("shutdown");
    assert_eq!(read_to_close(&mut s).await, "");
    // Closed by the drain, not cut when the grace period ran out.
    assert_eq!(task.await.expect("serve"), Drained::Clean);
}

#[tokio::test]
async fn a_dropped_accept_loop_still_drains_its_connections() {
    let (mut s, _tx, task) = busy_connection(3).await;
    task.abort();
    assert!(task.await.is_err_and(|e| e.is_cancelled()));
    assert_eq!(read_to_close(&mut s).await, "");
}

/// An h2c client connection to `addr` that PINGs every 50 ms, with or without streams; the
/// handle requests go out on, and the connection task, which ends when the server closes it.
async fn pinging_h2(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(50))
        .keep_alive_while_idle(true)
        .keep_alive_timeout(Duration::from_secs(5))
        .handshake(TokioIo::new(tcp))
        .await
        .expect("h2c handshake");
    (send, tokio::spawn(conn))
}

#[tokio::test]
async fn an_h2_connection_kept_up_by_pings_alone_is_closed_when_idle() {
    let (addr, _tx, _task) = start(Limits {
        max_connections: 4,
        ..quick()
    })
    .await;
    // No stream ever: the PINGs every 50 ms move bytes, but do not make the connection busy.
    let (_send, conn) = pinging_h2(addr).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(closed.is_ok(), "a connection with only PINGs stays open");
    // One stream, then PINGs only: closed once idle after the stream ended.
    let (mut send, conn) = pinging_h2(addr).await;
    let get = Request::get("http://x/0")
        .body(http_body_util::Empty::new())
        .expect("request");
    let answer = send.send_request(get).await.expect("stream");
    assert_eq!(answer.status(), StatusCode::OK);
    drop(answer);
    let closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(closed.is_ok(), "a connection with only PINGs stays open");
}

#[tokio::test]
async fn an_h2_stream_longer_than_the_idle_timeout_keeps_its_connection() {
    use http_body_util::BodyExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Twelve chunks 100 ms apart: four times the 300 ms idle timeout, never a new stream.
    let handler = |_req: Request<Incoming>, _info: ConnInfo| async {
        let chunks = futures_util::stream::unfold(0u8, |i| async move {
            if i == 12 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let frame = http_body::Frame::data(bytes::Bytes::from_static(b"x"));
            Some((Ok::<_, crate::http::BoxError>(frame), i + 1))
        });
        Response::new(http_body_util::StreamBody::new(chunks).boxed())
    };
    let (_tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, quick(), handler, async {
        let _ = rx.await;
    }));
    let (mut send, _conn) = pinging_h2(addr).await;
    let get = Request::get("http://x/")
        .body(http_body_util::Empty::new())
        .expect("request");
    let answer = send.send_request(get).await.expect("stream");
    let body = answer.into_body().collect().await.expect("the whole body");
    assert_eq!(body.to_bytes().len(), 12);
}

/// Sets its flag when dropped.
struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves, with `quick()` limits, a handler answering 64 MiB in 1 MiB chunks whose body sets
/// `dropped` when it is dropped (by hyper once sent, or by the server when cut).
async fn large_answers(dropped: Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    use http_body_util::BodyExt;
    static CHUNK: [u8; 1 << 20] = [b'x'; 1 << 20];
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handler = move |_req: Request<Incoming>, _info: ConnInfo| {
        let flag = DropFlag(dropped.clone());
        async move {
            let chunks = futures_util::stream::unfold((0u8, flag), |(i, flag)| async move {
                (i < 64).then(|| {
                    let frame = http_body::Frame::data(bytes::Bytes::from_static(&CHUNK));
                    (Ok::<_, crate::http::BoxError>(frame), (i + 1, flag))
                })
            });
            Response::new(http_body_util::StreamBody::new(chunks).boxed())
        }
    };
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, quick(), handler, async {
        let _ = rx.await;
    }));
    // The server runs until the test's runtime ends.
    std::mem::forget(tx);
    addr
}

/// Waits (at most 10 s) for `flag`.
async fn raised(flag: &std::sync::atomic::AtomicBool) -> bool {
    for _ in 0..200 {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn an_h2_response_the_client_never_reads_is_cut_and_its_body_dropped() {
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = large_answers(dropped.clone()).await;
    let tcp = TcpStream::connect(addr).await.expect("connect");
    // The client's stream window is 1 byte and never grows: it never reads.
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1)
        .handshake(TokioIo::new(tcp))
        .await
        .expect("h2c handshake");
    tokio::spawn(conn);
    let get = Request::get("http://x/")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("request");
    let answer = send.send_request(get).await.expect("response head");
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        raised(&dropped).await,
        "the unread response still holds its body"
    );
    drop(answer);
}

#[tokio::test]
async fn an_http1_response_the_client_never_reads_is_dropped_with_its_connection() {
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = large_answers(dropped.clone()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("request");
    // Never read: 64 MiB cannot fit in the socket buffers.
    assert!(
        raised(&dropped).await,
        "the unread response still holds its body"
    );
    drop(s);
}

#[tokio::test]
async fn a_connection_nothing_redirected_knows_both_ends_and_no_original_destination() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = TcpStream::connect(addr).await.expect("connect");
    let (stream, peer) = accept(&listener).await;
    let info = conn_info(&stream, peer).expect("an open socket has ends");
    assert_eq!(info.peer, client.local_addr().expect("client addr"));
    assert_eq!(info.local, addr);
    assert_eq!(info.original_dst, None);
}
