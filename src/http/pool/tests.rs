use super::*;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a test app answers to a request.
type Answer = Arc<dyn Fn(Request<Incoming>) -> Response<Body> + Send + Sync>;

/// An HTTP/1.1 app on loopback answering each request with `answer`; counts the connections it
/// accepts. With `keep_alive` false it closes each connection after one answer.
async fn listen(keep_alive: bool, answer: Answer) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let rsp = answer(req);
                async move { Ok::<_, std::convert::Infallible>(rsp) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .keep_alive(keep_alive)
                    .serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    (addr, accepted)
}

/// An app answering `body` to every request ([`listen`]). The request must arrive in
/// origin-form with the caller's Host, or gets a 400.
async fn app(keep_alive: bool, body: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let answer: Answer = Arc::new(move |req| {
        let mut rsp = Response::new(crate::http::full(body));
        let host = req.headers().get(http::header::HOST);
        if req.uri() != "/x?y=1" || host.is_none_or(|h| h != "app") {
            *rsp.status_mut() = http::StatusCode::BAD_REQUEST;
        }
        rsp
    });
    listen(keep_alive, answer).await
}

fn pool(addr: SocketAddr) -> Pool {
    Pool::new(addr.to_string(), Duration::from_secs(5))
}

/// Bounds `f` to 20 s: a lost wake-up fails the test instead of hanging it.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("done within 20 s")
}

async fn get(pool: &Pool) -> Response<Body> {
    let req = Request::get("http://ignored/x?y=1")
        .header(http::header::HOST, "app")
        .body(crate::http::empty())
        .expect("request");
    let rsp = bounded(pool.send(req)).await.expect("send");
    assert_eq!(rsp.status(), http::StatusCode::OK, "origin-form and Host");
    rsp
}

/// [`get`], with the body read to the end.
async fn read(pool: &Pool) -> bytes::Bytes {
    let body = bounded(get(pool).await.into_body().collect()).await;
    body.expect("body").to_bytes()
}

#[tokio::test]
async fn a_connection_read_to_the_end_carries_the_next_request() {
    let (addr, accepted) = app(true, b"hello").await;
    let pool = pool(addr);
    for _ in 0..20 {
        assert_eq!(read(&pool).await, &b"hello"[..]);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn connections_the_app_closes_are_replaced_without_a_failed_request() {
    let (addr, accepted) = app(false, b"bye").await;
    let pool = pool(addr);
    for _ in 0..10 {
        assert_eq!(read(&pool).await, &b"bye"[..]);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_body_dropped_unread_does_not_return_its_connection() {
    static BIG: [u8; 1 << 20] = [b'x'; 1 << 20];
    let (addr, accepted) = app(true, &BIG).await;
    let pool = pool(addr);
    drop(get(&pool).await);
    assert_eq!(read(&pool).await.len(), BIG.len());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(read(&pool).await.len(), BIG.len());
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the connection read to the end is reused"
    );
}

#[tokio::test]
async fn a_destination_that_is_down_is_an_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let req = Request::get("/")
        .body(crate::http::empty())
        .expect("request");
    assert!(pool(addr).send(req).await.is_err());
}

/// An app that answers each request with its body, echoed as it arrives ([`listen`]).
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let answer: Answer = Arc::new(|req| Response::new(req.into_body().map_err(Into::into).boxed()));
    listen(true, answer).await
}

#[tokio::test]
async fn large_bodies_stream_both_ways_on_one_kept_connection() {
    stream_both_ways().await;
}

/// The same on two threads: the connection's task and the reader of its bodies may run on
/// different ones, and the wake-ups that pass between them must all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways_across_threads() {
    stream_both_ways().await;
}

async fn stream_both_ways() {
    let (addr, accepted) = echo().await;
    let pool = pool(addr);
    for round in 0..3u8 {
        // 4 MiB, more than the sockets' buffers hold, sent in 64 KiB pieces: the request body is
        // still being sent while the answer's body comes back.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, BoxError>>(2);
        let body = http_body_util::StreamBody::new(tokio_stream_from(rx));
        tokio::spawn(async move {
            for i in 0..64u8 {
                let piece = Bytes::from(vec![i ^ round; 64 << 10]);
                if tx.send(Ok(http_body::Frame::data(piece))).await.is_err() {
                    return;
                }
            }
        });
        let req = Request::post("/echo").body(body.boxed()).expect("request");
        let sent = async {
            pool.send(req)
                .await
                .expect("send")
                .into_body()
                .collect()
                .await
        };
        let got = bounded(sent).await.expect("body").to_bytes();
        assert_eq!(got.len(), 4 << 20);
        let expected = (0..64u8).flat_map(|i| std::iter::repeat_n(i ^ round, 64 << 10));
        assert!(
            got.iter().copied().eq(expected),
            "round {round}: bytes in order"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// `rx` as a `Stream`, for [`http_body_util::StreamBody`].
fn tokio_stream_from<T>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn a_body_that_trickles_in_wakes_its_reader_for_each_piece() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut head = [0u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut head).await;
        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for piece in ["one", "two", "three"] {
            out.extend_from_slice(format!("{:x}\r\n{piece}\r\n", piece.len()).as_bytes());
            tokio::io::AsyncWriteExt::write_all(&mut tcp, &out)
                .await
                .expect("write");
            out.clear();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::io::AsyncWriteExt::write_all(&mut tcp, b"0\r\n\r\n")
            .await
            .expect("write");
        // Held open: the connection goes back to the pool, not to its end.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let pool = pool(addr);
    let req = Request::get("/")
        .body(crate::http::empty())
        .expect("request");
    let read = async {
        let mut body = pool.send(req).await.expect("send").into_body();
        let mut pieces = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                pieces.push(data);
            }
        }
        pieces
    };
    let pieces = bounded(read).await;
    assert_eq!(pieces.concat(), b"onetwothree");
    assert!(
        pieces.len() >= 3,
        "each piece is read as it comes: {pieces:?}"
    );
}

/// [`pool`] with room for `open` connections.
fn pool_of(addr: SocketAddr, open: usize) -> Pool {
    let mut pool = pool(addr);
    pool.open = Arc::new(Semaphore::new(open));
    pool
}

#[tokio::test]
async fn with_every_connection_busy_a_request_waits_for_one_to_come_back() {
    let (addr, accepted) = app(true, b"hello").await;
    let pool = pool_of(addr, 1);
    let first = get(&pool).await;
    let second = read(&pool);
    tokio::pin!(second);
    // The one connection is busy until `first`'s body is read: the second request waits.
    let waited = tokio::time::timeout(Duration::from_millis(200), second.as_mut()).await;
    assert!(
        waited.is_err(),
        "a second connection was opened past the limit"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let body = bounded(first.into_body().collect()).await.expect("body");
    assert_eq!(body.to_bytes(), &b"hello"[..]);
    assert_eq!(bounded(second).await, &b"hello"[..]);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "it went out on the same one"
    );
}

#[tokio::test]
async fn a_connection_that_closes_gives_its_place_to_a_waiting_request() {
    let (addr, accepted) = app(false, b"bye").await;
    let pool = pool_of(addr, 1);
    let first = get(&pool).await;
    let second = read(&pool);
    tokio::pin!(second);
    let waited = tokio::time::timeout(Duration::from_millis(200), second.as_mut()).await;
    assert!(
        waited.is_err(),
        "a second connection was opened past the limit"
    );
    drop(first);
    assert_eq!(bounded(second).await, &b"bye"[..]);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn places_given_back_reach_every_waiting_request_in_turn() {
    // An app that closes each connection: places come back by closing, never by a connection
    // put back idle, and each must reach a waiting request.
    let (addr, accepted) = app(false, b"bye").await;
    let pool = pool_of(addr, 1);
    let first = get(&pool).await;
    let (second, third) = (read(&pool), read(&pool));
    tokio::pin!(second, third);
    let both = async { tokio::join!(second.as_mut(), third.as_mut()) };
    let waited = tokio::time::timeout(Duration::from_millis(200), both).await;
    assert!(waited.is_err(), "a connection was opened past the limit");
    drop(first);
    let (b, c) = bounded(async { tokio::join!(second, third) }).await;
    assert_eq!((&b[..], &c[..]), (&b"bye"[..], &b"bye"[..]));
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}
