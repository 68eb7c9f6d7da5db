use super::*;
use crate::http::full;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An h2c server counting its connections; with `one_each`, each connection goes away
/// (GOAWAY) after its first request.
async fn server(one_each: bool) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (done, mut served) = tokio::sync::mpsc::channel::<()>(1);
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let done = done.clone();
                    async move {
                        let _ = done.try_send(());
                        let path = req.uri().path().to_owned();
                        Ok::<_, std::convert::Infallible>(Response::new(full(path)))
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service);
                tokio::pin!(conn);
                loop {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        Some(()) = served.recv(), if one_each => conn.as_mut().graceful_shutdown(),
                    }
                }
            });
        }
    });
    (addr, conns)
}

async fn get(pool: &H2Pool, path: &str) -> String {
    let req = Request::get(path).body(full("")).expect("request");
    let rsp = pool.send(req).await.expect("response");
    let body = rsp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let (addr, conns) = server(false).await;
    let pool =
        H2Pool::new(addr, Duration::from_secs(5), Duration::from_secs(60)).expect("authority");
    let calls = (0..50).map(|i| {
        let pool = &pool;
        async move { get(pool, &format!("/{i}")).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    assert_eq!(answers.len(), 50);
    assert!(
        answers
            .iter()
            .enumerate()
            .all(|(i, a)| *a == format!("/{i}"))
    );
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_the_app_closed_is_replaced() {
    let (addr, conns) = server(true).await;
    let pool =
        H2Pool::new(addr, Duration::from_secs(5), Duration::from_secs(60)).expect("authority");
    for i in 0..3 {
        assert_eq!(get(&pool, &format!("/{i}")).await, format!("/{i}"));
        // The GOAWAY reaches the pool's connection before the next request, or the next
        // request finds it closing and goes out once on a new one.
        tokio::task::yield_now().await;
    }
    assert!(
        conns.load(Ordering::SeqCst) >= 2,
        "reconnected after GOAWAY"
    );
}

/// An h2c server whose `/hold` answers a head, then the body the test feeds through `feed`;
/// every other path answers at once. Counts connections opened and closed.
async fn holding_server(
    feed: tokio::sync::mpsc::Receiver<bytes::Bytes>,
) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (o, c) = (opened.clone(), closed.clone());
    let feed = Arc::new(tokio::sync::Mutex::new(Some(feed)));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            o.fetch_add(1, Ordering::SeqCst);
            let (c, feed) = (c.clone(), feed.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let feed = feed.clone();
                    async move {
                        let body = match (req.uri().path(), feed.lock().await.take()) {
                            ("/hold", Some(rx)) => {
                                let frames = futures_util::stream::unfold(rx, |mut rx| async {
                                    let data = rx.recv().await?;
                                    Some((Ok::<_, BoxError>(hyper::body::Frame::data(data)), rx))
                                });
                                http_body_util::StreamBody::new(frames).boxed()
                            }
                            _ => full("now"),
                        };
                        Ok::<_, std::convert::Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
                c.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, opened, closed)
}

/// Waits (bounded) until `count` reaches `n`.
async fn reaches(count: &AtomicUsize, n: usize) -> bool {
    for _ in 0..400 {
        if count.load(Ordering::SeqCst) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_the_next_request_opens_another() {
    let (_feed, rx) = tokio::sync::mpsc::channel(1);
    let (addr, opened, closed) = holding_server(rx).await;
    let pool =
        H2Pool::new(addr, Duration::from_secs(5), Duration::from_millis(200)).expect("authority");
    assert_eq!(get(&pool, "/a").await, "now");
    assert_eq!(get(&pool, "/b").await, "now");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    assert!(reaches(&closed, 1).await, "the idle connection was closed");
    assert_eq!(get(&pool, "/c").await, "now");
    assert_eq!(opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_stream_in_flight_keeps_its_connection_past_the_idle_time() {
    let (feed, rx) = tokio::sync::mpsc::channel(1);
    let (addr, opened, closed) = holding_server(rx).await;
    let idle = Duration::from_millis(100);
    let pool = H2Pool::new(addr, Duration::from_secs(5), idle).expect("authority");
    let req = Request::get("/hold").body(full("")).expect("request");
    let mut body = pool.send(req).await.expect("response").into_body();
    feed.send(bytes::Bytes::from_static(b"one"))
        .await
        .expect("feed");
    let first = body.frame().await.expect("frame").expect("ok");
    assert_eq!(first.into_data().ok().as_deref(), Some(&b"one"[..]));
    // Several idle periods pass while the response is still open: the connection stays.
    tokio::time::sleep(idle * 6).await;
    assert_eq!(closed.load(Ordering::SeqCst), 0);
    // Another request shares it meanwhile.
    assert_eq!(get(&pool, "/x").await, "now");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    feed.send(bytes::Bytes::from_static(b"two"))
        .await
        .expect("feed");
    drop(feed);
    let rest = body.collect().await.expect("body").to_bytes();
    assert_eq!(&rest[..], b"two");
    // Once the stream ended, the idle time runs and the connection goes.
    assert!(reaches(&closed, 1).await, "closed after the stream ended");
    assert_eq!(opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_app_that_is_down_is_an_error_not_a_hang() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    let pool =
        H2Pool::new(addr, Duration::from_secs(5), Duration::from_secs(60)).expect("authority");
    let req = Request::get("/").body(full("")).expect("request");
    assert!(pool.send(req).await.is_err());
}
