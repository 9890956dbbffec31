//! Token rotation against a stand-in relay on a real local socket: after the relay closes with
//! 4102 (token expired) the agent backs off instead of reconnecting at once, and comes back as
//! soon as its token file holds a new token, which it sends on the new connection.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sonde_agent::config::{Config, TokenSource};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const CHANNEL: &str = "private-sonde-host.web1";

/// Accepts one agent connection; returns the socket and the token it connected with.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature, not ours
async fn accept(listener: &TcpListener) -> (WebSocketStream<TcpStream>, String) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut uri = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        uri = req.uri().to_string();
        Ok(resp)
    })
    .await
    .unwrap();
    let token = uri.rsplit_once("token=").map(|(_, t)| t.to_owned()).unwrap_or_default();
    (ws, token)
}

/// The Pusher handshake and the subscription, as the relay answers them.
async fn welcome(ws: &mut WebSocketStream<TcpStream>) {
    ws.send(Message::text(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}"#)).await.unwrap();
    let sub = timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert!(sub.to_text().unwrap().contains("pusher:subscribe"), "{sub:?}");
    ws.send(Message::text(format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":"{CHANNEL}","data":"{{}}"}}"#))).await.unwrap();
}

async fn close(mut ws: WebSocketStream<TcpStream>, code: u16, reason: &str) {
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_owned().into() }))).await.unwrap();
    // Let the agent read it and answer before the socket goes.
    let _ = timeout(Duration::from_secs(2), ws.next()).await;
}

#[tokio::test]
async fn an_expired_token_backs_off_and_a_replaced_token_file_reconnects_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = std::env::temp_dir().join(format!("sonde-agent-token-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "first.token.sig\n").unwrap();
    let config = Config {
        relay: format!("ws://{}", listener.local_addr().unwrap()),
        ca_file: None,
        key: "app-key".into(),
        token: TokenSource::File(token_file.clone()),
        token_in_args: false,
        host: "web1".into(),
        state_dirs: vec![dir.join("state")],
        statsd: None,
        anonymous: false,
        usage_statistics: false,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(sonde_agent::run(config, async {
        let _ = stopped.await;
    }));

    let (mut ws, token) = accept(&listener).await;
    assert_eq!(token, "first.token.sig");
    welcome(&mut ws).await;
    close(ws, 4102, "token expired: reconnect with a fresh token").await;

    // The same token would be refused again: no attempt for a while (the first wait is 5-10 s).
    assert!(timeout(Duration::from_secs(3), listener.accept()).await.is_err(), "reconnected at once with the expired token");

    let replaced = Instant::now();
    std::fs::write(&token_file, "second.token.sig\n").unwrap();
    let (mut ws, token) = timeout(Duration::from_secs(3), accept(&listener)).await.expect("the new token was not picked up");
    assert_eq!(token, "second.token.sig");
    assert!(replaced.elapsed() < Duration::from_millis(2500), "took {:?}", replaced.elapsed());
    welcome(&mut ws).await;

    // Refused at the handshake (4009): the same backoff, the same watch.
    close(ws, 4009, "invalid token").await;
    assert!(timeout(Duration::from_secs(2), listener.accept()).await.is_err());
    std::fs::write(&token_file, "third.token.sig").unwrap();
    let (ws, token) = timeout(Duration::from_secs(3), accept(&listener)).await.expect("the third token was not picked up");
    assert_eq!(token, "third.token.sig");

    stop.send(()).unwrap();
    drop(ws);
    timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}
