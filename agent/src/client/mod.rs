//! The relay connection: one persistent websocket, re-made with backoff whenever it ends. The
//! token is read from its source before every attempt; after the relay refused it, the agent
//! backs off and watches the source, so a replaced token file brings it back at once.

mod conn;
mod frames;
mod pacer;
mod policy;
pub mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sonde_protocol::ChannelName;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::Instrument;

pub use conn::{drive, Link, Transport, HANDSHAKE_TIMEOUT, PONG_TIMEOUT};
pub use frames::RelayFrame;
pub use pacer::Pacer;
pub use policy::{Backoff, Ended, Retry, CLOSE_TOKEN_EXPIRED, CLOSE_UNAUTHORIZED, SLOW_RETRY};

use crate::config::{Secret, TokenSource};
use crate::core::{LinkEvent, Outbound};
use crate::Shutdown;

/// Largest message accepted from the relay: directives are tiny, so this only bounds memory.
const MAX_MESSAGE: usize = 64 * 1024;
const READ_BUFFER: usize = 8 * 1024;
/// A connection that lasted this long was a success: the backoffs start again from their
/// first step, and a "reconnect now" close is obeyed at once. A shorter one (a relay that
/// closes every connection right away) keeps backing off.
pub const STABLE: Duration = Duration::from_secs(10);
/// How often a refused token's source is checked for a new one.
const TOKEN_POLL: Duration = Duration::from_secs(1);

/// Where to connect. The token is read from its source per attempt and never appears in
/// `Debug` output or logs.
pub struct Target {
    /// The relay's base URL.
    pub relay: String,
    pub key: String,
    pub token: TokenSource,
    pub channel: ChannelName,
    /// For a `wss://` relay: who to trust (see [`tls::client_config`]).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("relay", &self.relay).field("channel", &self.channel).field("token", &self.token).finish_non_exhaustive()
    }
}

/// Reads the token off the runtime thread: the source may be a file on a slow filesystem.
async fn read_token(src: &TokenSource) -> Result<Secret, Ended> {
    let src = src.clone();
    match tokio::task::spawn_blocking(move || src.read()).await {
        Ok(r) => r.map_err(|e| Ended::NoToken(e.to_string())),
        Err(e) => Err(Ended::NoToken(e.to_string())),
    }
}

/// `{relay}/app/{key}?protocol=7&client=sonde-agent&version=X&token=JWT`.
pub fn connect_url(relay: &str, key: &str, token: &str) -> String {
    format!(
        "{}/app/{}?protocol={}&client=sonde-agent&version={}&token={}",
        relay.trim_end_matches('/'),
        sonde_protocol::sign::url_escape(key),
        sonde_protocol::PROTOCOL_VERSION,
        env!("CARGO_PKG_VERSION"),
        sonde_protocol::sign::url_escape(token)
    )
}

struct Ws(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl Transport for Ws {
    type Error = tungstenite::Error;

    async fn send(&mut self, msg: Message) -> Result<(), tungstenite::Error> {
        self.0.send(msg).await
    }

    async fn recv(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        self.0.next().await
    }
}

async fn connect(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Ws, Ended> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE));
    let connector = tls.map(|c| Connector::Rustls(c.clone()));
    match timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector)).await {
        Err(_) => Err(Ended::Handshake("connecting timed out".into())),
        Ok(Err(tungstenite::Error::Http(resp))) if resp.status().is_client_error() => Err(Ended::Refused(resp.status().as_u16())),
        Ok(Err(tungstenite::Error::Io(e))) => Err(tls::describe(&e).map_or_else(|| Ended::Handshake(e.to_string()), Ended::Tls)),
        Ok(Err(e)) => Err(Ended::Handshake(e.to_string())),
        Ok(Ok((ws, _))) => Ok(Ws(ws)),
    }
}

/// Keeps a connection to the relay until shutdown, reporting to the core through `events` and
/// sending what it queues on `outbound`.
pub async fn run(target: Target, events: mpsc::Sender<LinkEvent>, mut outbound: mpsc::Receiver<Outbound>, mut shutdown: Shutdown) {
    let (mut backoff, mut token_backoff) = (Backoff::default(), Backoff::token());
    let mut pacer = Pacer::default();
    for attempt in 1u64.. {
        let span = tracing::info_span!("relay", relay = %target.relay, attempt);
        // Whatever was queued for a connection that is gone is stale by now.
        while outbound.try_recv().is_ok() {}
        let started = tokio::time::Instant::now();
        let token = read_token(&target.token).await;
        let mut link =
            Link { channel: &target.channel, events: &events, outbound: &mut outbound, shutdown: &mut shutdown, pacer: &mut pacer, subscribed: false };
        let ended = match &token {
            Ok(t) => attempt_once(&connect_url(&target.relay, &target.key, t.expose()), target.tls.as_ref(), &mut link).instrument(span.clone()).await,
            Err(e) => e.clone(),
        };
        let subscribed = link.subscribed;
        let stable = subscribed && started.elapsed() >= STABLE;
        if subscribed {
            let _ = events.send(LinkEvent::Down).await;
        }
        if stable {
            backoff.reset();
            token_backoff.reset();
        }
        let Some(retry) = ended.retry() else {
            span.in_scope(|| tracing::info!("disconnected from the relay"));
            return;
        };
        let delay = match retry {
            Retry::Now if stable => policy::reconnect_spread(),
            Retry::Now | Retry::Backoff => backoff.next_delay(),
            Retry::Token => token_backoff.next_delay(),
            Retry::Slow => SLOW_RETRY,
        };
        span.in_scope(|| log_end(&ended, retry, delay, &target.token));
        // A refused token or a configuration problem: a new token may be all it takes.
        let watch = matches!(retry, Retry::Token | Retry::Slow).then(|| (&target.token, token.ok()));
        if !wait(delay, watch, &mut shutdown).await {
            return;
        }
    }
}

/// Connects and drives one connection to its end.
async fn attempt_once(url: &str, tls: Option<&Arc<rustls::ClientConfig>>, link: &mut Link<'_>) -> Ended {
    let conn = tokio::select! {
        c = connect(url, tls) => c,
        () = link.shutdown.wait() => Err(Ended::Shutdown),
    };
    match conn {
        Ok(mut ws) => drive(&mut ws, link).await,
        Err(e) => e,
    }
}

/// Waits `delay`, or less when `watch` is given and its source holds a token other than the
/// one last used. Returns false on shutdown.
async fn wait(delay: Duration, watch: Option<(&TokenSource, Option<Secret>)>, shutdown: &mut Shutdown) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        if let Some((src, used)) = &watch {
            if let Ok(now) = read_token(src).await {
                if used.as_ref() != Some(&now) {
                    tracing::info!(source = %src.describe(), "the token changed; reconnecting");
                    return true;
                }
            }
        }
        let step = if watch.is_some() { (tokio::time::Instant::now() + TOKEN_POLL).min(deadline) } else { deadline };
        tokio::select! {
            () = tokio::time::sleep_until(step) => {}
            () = shutdown.wait() => return false,
        }
        if tokio::time::Instant::now() >= deadline {
            return true;
        }
    }
}

fn log_end(ended: &Ended, retry: Retry, delay: Duration, token: &TokenSource) {
    let delay_ms = delay.as_millis() as u64;
    match retry {
        Retry::Slow => {
            tracing::error!(?ended, delay_ms, "the relay refused this agent; check --key, --token and --host (retrying slowly)");
        }
        Retry::Token => tracing::warn!(
            ?ended,
            delay_ms,
            source = %token.describe(),
            "the agent token expired or was refused; put a fresh one in its source (it is picked up at once)"
        ),
        // A certificate problem needs someone to act, unlike a relay restarting.
        Retry::Backoff if matches!(ended, Ended::Tls(_)) => tracing::error!(?ended, delay_ms, "TLS to the relay failed; retrying with backoff"),
        Retry::Now | Retry::Backoff => tracing::info!(?ended, delay_ms, "connection to the relay ended; reconnecting"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_url_shape() {
        assert_eq!(
            connect_url("ws://127.0.0.1:6001/", "app-key", "a.b-c_d"),
            format!("ws://127.0.0.1:6001/app/app-key?protocol=7&client=sonde-agent&version={}&token=a.b-c_d", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(sonde_protocol::sign::url_escape("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn target_debug_hides_the_token() {
        let t = Target {
            relay: "ws://r".into(),
            key: "k".into(),
            token: TokenSource::Value(Secret::new("SECRET")),
            channel: ChannelName::parse("private-sonde-host.a").unwrap(),
            tls: None,
        };
        assert!(!format!("{t:?}").contains("SECRET"));
    }
}
