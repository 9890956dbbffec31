//! The Pusher side of a bench connection: handshake, authorised subscribe, client events.
//! Control frames are rare, so they are decoded with the protocol crate; deliveries are not
//! decoded at all (see `scan`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use sonde_protocol::frame::Incoming;
use sonde_protocol::sign;

use crate::scan::{self, Kind};
use crate::tls::TlsClient;
use crate::ws::{Endpoint, Message, WsConn};

/// A Pusher-compatible server and the app the bench uses on it.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: SocketAddr,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Local addresses that connections are spread over (empty: let the kernel choose).
    pub sources: Vec<IpAddr>,
    /// SO_RCVBUF for new sockets (None: the kernel's default, autotuned).
    pub recv_buffer: Option<u32>,
    /// Websockets over TLS and the API over https (`--tls`).
    pub tls: Option<TlsClient>,
}

/// How long the bench waits for each step of a handshake.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

impl Target {
    /// `127.0.0.2`, `127.0.0.3`, … when the server is on loopback: each source address has
    /// its own ephemeral port range, so 20,000+ connections fit.
    pub fn loopback_sources(server: SocketAddr, count: u8) -> Vec<IpAddr> {
        if !server.ip().is_loopback() || !server.is_ipv4() {
            return Vec::new();
        }
        (0..count).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))).collect()
    }

    pub fn endpoint(&self, n: usize) -> Endpoint {
        let source = (!self.sources.is_empty()).then(|| self.sources[n % self.sources.len()]);
        Endpoint { server: self.server, source, recv_buffer: self.recv_buffer, tls: self.tls.clone() }
    }

    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The server as its certificate names it: the host given with `--host` under TLS (an
    /// IP address or a DNS name), its address otherwise.
    pub fn host(&self) -> String {
        match &self.tls {
            Some(tls) => format!("{}:{}", tls.host(), self.server.port()),
            None => self.server.to_string(),
        }
    }
}

/// One open Pusher connection.
pub struct PusherConn {
    pub ws: WsConn,
    pub socket_id: String,
}

impl PusherConn {
    /// Connects and waits for `pusher:connection_established`.
    pub async fn connect(target: &Target, n: usize) -> anyhow::Result<Self> {
        let path = format!("/app/{}?protocol=7&client=sonde-bench&version={}&flash=false", target.key, env!("CARGO_PKG_VERSION"));
        let mut ws = tokio::time::timeout(STEP_TIMEOUT, WsConn::connect(target.endpoint(n), &target.host(), &path)).await.context("connect timed out")??;
        let socket_id = tokio::time::timeout(STEP_TIMEOUT, async {
            let Message::Text(text) = ws.read().await? else { bail!("closed before connection_established") };
            established_socket_id(text)
        })
        .await
        .context("connection_established timed out")??;
        Ok(Self { ws, socket_id })
    }

    /// Sends `pusher:subscribe`, signing private and presence channels with the app secret.
    pub async fn subscribe(&mut self, target: &Target, channel: &str) -> anyhow::Result<()> {
        let frame = subscribe_frame(target, &self.socket_id, channel);
        self.ws.send_text(frame.as_bytes()).await?;
        Ok(())
    }

    /// Waits for `subscription_succeeded`, skipping anything else that arrives first.
    pub async fn wait_subscribed(&mut self) -> anyhow::Result<()> {
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                match self.ws.read().await? {
                    Message::Close => bail!("closed while subscribing"),
                    Message::Text(text) => match scan::classify(text) {
                        Kind::SubscriptionSucceeded => return Ok(()),
                        Kind::Error => bail!("subscription refused: {}", String::from_utf8_lossy(text)),
                        _ => {}
                    },
                }
            }
        })
        .await
        .context("subscription_succeeded timed out")?
    }

    pub async fn subscribe_and_wait(&mut self, target: &Target, channel: &str) -> anyhow::Result<()> {
        self.subscribe(target, channel).await?;
        self.wait_subscribed().await
    }
}

fn established_socket_id(text: &[u8]) -> anyhow::Result<String> {
    let text = std::str::from_utf8(text)?;
    let frame = Incoming::parse(text).with_context(|| format!("not a Pusher frame: {text}"))?;
    if frame.event != "pusher:connection_established" {
        bail!("expected connection_established, got {text}");
    }
    match frame.data_value().get("socket_id").and_then(|v| v.as_str()) {
        Some(id) => Ok(id.to_owned()),
        None => bail!("connection_established without socket_id: {text}"),
    }
}

pub fn needs_auth(channel: &str) -> bool {
    channel.starts_with("private-") || channel.starts_with("presence-")
}

pub fn subscribe_frame(target: &Target, socket_id: &str, channel: &str) -> String {
    let data = if channel.starts_with("presence-") {
        let channel_data = format!("{{\"user_id\":\"{socket_id}\"}}");
        let auth = sign::auth_token(&target.key, &target.secret, &sign::channel_string(socket_id, channel, Some(&channel_data)));
        serde_json::json!({ "channel": channel, "auth": auth, "channel_data": channel_data })
    } else if needs_auth(channel) {
        let auth = sign::auth_token(&target.key, &target.secret, &sign::channel_string(socket_id, channel, None));
        serde_json::json!({ "channel": channel, "auth": auth })
    } else {
        serde_json::json!({ "channel": channel })
    };
    serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            server: "127.0.0.1:6001".parse().unwrap(),
            app_id: "1".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            sources: Vec::new(),
            recv_buffer: None,
            tls: None,
        }
    }

    #[test]
    fn private_subscribe_carries_the_reference_signature() {
        let f = subscribe_frame(&target(), "1234.1234", "private-foobar");
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["event"], "pusher:subscribe");
        assert_eq!(v["data"]["auth"], "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        let public: serde_json::Value = serde_json::from_str(&subscribe_frame(&target(), "1.2", "metrics")).unwrap();
        assert!(public["data"].get("auth").is_none());
    }

    #[test]
    fn socket_id_from_handshake() {
        let f = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        assert_eq!(established_socket_id(f).unwrap(), "123.456");
        assert!(established_socket_id(br#"{"event":"pusher:error","data":{"code":4001}}"#).is_err());
    }

    #[test]
    fn sources_only_on_loopback() {
        let s = Target::loopback_sources("127.0.0.1:6001".parse().unwrap(), 3);
        assert_eq!(s, ["127.0.0.2", "127.0.0.3", "127.0.0.4"].map(|a| a.parse::<IpAddr>().unwrap()));
        assert!(Target::loopback_sources("10.0.0.1:6001".parse().unwrap(), 3).is_empty());
        let t = Target { sources: s, ..target() };
        assert_eq!(t.endpoint(4).source, Some("127.0.0.3".parse().unwrap()));
    }
}
