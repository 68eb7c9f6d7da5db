//! A real WebSocket peer on both ends (tokio-tungstenite): an echo app that keeps the
//! handshakes it accepted, and a client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A WebSocket app (tokio-tungstenite, a real peer): echoes every data message and keeps the
/// headers of each handshake it accepted.
pub async fn app() -> (SocketAddr, Arc<std::sync::Mutex<Vec<http::HeaderMap>>>) {
    use futures::{SinkExt, StreamExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = kept.clone();
            tokio::spawn(async move {
                // tungstenite's callback signature, whose error is its whole refusal response.
                #[allow(clippy::result_large_err)]
                let record = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                              rsp| {
                    seen.lock().expect("lock").push(req.headers().clone());
                    Ok(rsp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

pub type Client = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket handshake with the sidecar at `to` (the `Authorization` given, if any, and a
/// forged claims header), as any WebSocket client makes it.
pub async fn connect(
    to: SocketAddr,
    token: Option<&str>,
) -> Result<(Client, u16), tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{to}/chat")
        .into_client_request()
        .expect("request");
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("header");
        req.headers_mut().insert("authorization", value);
    }
    let forged = "eyJzdWIiOiJhZG1pbiJ9".parse().expect("header");
    req.headers_mut().insert("x-baton-claims", forged);
    let tcp = tokio::net::TcpStream::connect(to).await.expect("connect");
    let (ws, rsp) = tokio_tungstenite::client_async(req, tcp).await?;
    Ok((ws, rsp.status().as_u16()))
}

/// Sends `msg` and expects it back.
pub async fn echoed(ws: &mut Client, msg: tokio_tungstenite::tungstenite::Message) {
    use futures::{SinkExt, StreamExt};
    ws.send(msg.clone()).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an answer within 10 s")
        .expect("open")
        .expect("a message");
    assert_eq!(back, msg);
}

/// Whether the sidecar closes `ws` by itself within `bound`.
pub async fn closed_within(ws: &mut Client, bound: Duration) -> bool {
    use futures::StreamExt;
    match tokio::time::timeout(bound, ws.next()).await {
        Ok(None | Some(Err(_))) => true,
        Ok(Some(Ok(msg))) => panic!("unexpected message {msg:?}"),
        Err(_) => false,
    }
}
