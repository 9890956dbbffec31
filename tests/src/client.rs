use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sonde_protocol::frame::Incoming;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::WAIT;

/// A decoded server frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub channel: Option<String>,
    /// `data`, decoded from its JSON string.
    pub data: Value,
    pub user_id: Option<String>,
    /// Whether `data` arrived as a JSON string, as the protocol requires server→client.
    pub data_was_string: bool,
}

/// A raw Pusher-protocol websocket client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
    pub activity_timeout: u64,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Closed(u16, String),
    Dropped,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        let mut c = Self { ws, socket_id: String::new(), activity_timeout: 0 };
        let f = c.expect("pusher:connection_established").await;
        assert!(f.data_was_string, "handshake data must be a JSON string");
        c.socket_id = f.data["socket_id"].as_str().expect("socket_id").to_owned();
        c.activity_timeout = f.data["activity_timeout"].as_u64().expect("activity_timeout");
        c
    }

    /// Connects over TLS with `config` (trusting a test CA) and waits for
    /// `connection_established`.
    pub async fn connect_tls(url: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        let connector = tokio_tungstenite::Connector::Rustls(config);
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector)).await.expect("websocket connect over TLS");
        Self::established(ws).await
    }

    async fn established(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        let mut c = Self { ws, socket_id: String::new(), activity_timeout: 0 };
        let f = c.expect("pusher:connection_established").await;
        assert!(f.data_was_string, "handshake data must be a JSON string");
        c.socket_id = f.data["socket_id"].as_str().expect("socket_id").to_owned();
        c.activity_timeout = f.data["activity_timeout"].as_u64().expect("activity_timeout");
        c
    }

    /// Connects and returns the first frame and how the connection ended (for refusals).
    pub async fn connect_refused(url: &str) -> (Option<Frame>, Ended) {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        let mut c = Self { ws, socket_id: String::new(), activity_timeout: 0 };
        let first = c.next_frame().await;
        (first, c.ended().await)
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.expect("send");
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s.to_owned())).await.expect("send");
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.expect("send");
    }

    /// The next Pusher frame, or None when the connection ends.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for a frame")?;
            match msg.ok()? {
                Message::Text(t) => {
                    let inc = Incoming::parse(&t).unwrap_or_else(|e| panic!("server sent invalid JSON {t}: {e}"));
                    let data_was_string = matches!(inc.data, Some(Value::String(_)) | None);
                    return Some(Frame { data: inc.data_value(), event: inc.event, channel: inc.channel, user_id: inc.user_id, data_was_string });
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Waits for `event`, skipping others; panics on timeout or close.
    pub async fn expect(&mut self, event: &str) -> Frame {
        loop {
            match self.next_frame().await {
                Some(f) if f.event == event => return f,
                Some(_) => continue,
                None => panic!("connection ended while waiting for {event}"),
            }
        }
    }

    /// The very next frame, which must be `event`.
    pub async fn expect_next(&mut self, event: &str) -> Frame {
        let f = self.next_frame().await.unwrap_or_else(|| panic!("connection ended while waiting for {event}"));
        assert_eq!(f.event, event, "unexpected frame {f:?}");
        f
    }

    /// Asserts that nothing but `marker` arrives before `marker` (which the test sends after
    /// the action that must not deliver anything).
    pub async fn expect_only(&mut self, marker: &str) {
        let f = self.next_frame().await.expect("connection ended");
        assert_eq!(f.event, marker, "expected nothing before {marker}, got {f:?}");
    }

    pub async fn subscribe(&mut self, channel: &str) -> Frame {
        self.send(json!({"event":"pusher:subscribe","data":{"channel":channel}})).await;
        self.expect("pusher_internal:subscription_succeeded").await
    }

    pub async fn subscribe_auth(&mut self, channel: &str, auth: &str, channel_data: Option<&str>) {
        let mut data = json!({"channel": channel, "auth": auth});
        if let Some(d) = channel_data {
            data["channel_data"] = json!(d);
        }
        self.send(json!({"event":"pusher:subscribe","data":data})).await;
    }

    pub async fn trigger(&mut self, channel: &str, event: &str, data: Value) {
        self.send(json!({"event": event, "channel": channel, "data": data})).await;
    }

    /// Reads until the connection ends and returns how.
    pub async fn ended(&mut self) -> Ended {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("timed out waiting for the close");
            match msg {
                Some(Ok(Message::Close(Some(f)))) => return Ended::Closed(u16::from(f.code), f.reason.to_string()),
                Some(Ok(Message::Close(None))) => return Ended::Closed(1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ended::Dropped,
            }
        }
    }

    pub async fn expect_close(&mut self, code: u16) {
        match self.ended().await {
            Ended::Closed(c, reason) => assert_eq!(c, code, "closed with {c} ({reason}), expected {code}"),
            Ended::Dropped => panic!("connection dropped without a close frame, expected {code}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame { code: WsCloseCode::Normal, reason: "".into() })).await;
    }
}
