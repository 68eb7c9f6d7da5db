use super::*;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An app on loopback answering `body` to every request; counts the connections it accepts.
/// With `keep_alive` false it closes each connection after one answer.
async fn app(keep_alive: bool, body: &'static [u8]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            // The request arrives in origin-form with the caller's Host, or gets a 400.
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let mut rsp = Response::new(crate::http::full(body));
                let host = req.headers().get(http::header::HOST);
                if req.uri() != "/x?y=1" || host.is_none_or(|h| h != "app") {
                    *rsp.status_mut() = http::StatusCode::BAD_REQUEST;
                }
                Ok::<_, std::convert::Infallible>(rsp)
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

fn pool(addr: SocketAddr) -> Pool {
    Pool::new(addr.to_string(), Duration::from_secs(5))
}

async fn get(pool: &Pool) -> Response<Body> {
    let req = Request::get("http://ignored/x?y=1")
        .header(http::header::HOST, "app")
        .body(crate::http::empty())
        .expect("request");
    let rsp = pool.send(req).await.expect("send");
    assert_eq!(rsp.status(), http::StatusCode::OK, "origin-form and Host");
    rsp
}

/// [`get`], with the body read to the end.
async fn read(pool: &Pool) -> bytes::Bytes {
    let body = get(pool).await.into_body().collect().await;
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
