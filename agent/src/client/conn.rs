//! One connection's life, over any [`Transport`]: the Pusher handshake, the subscription, then
//! directives in and paced client events out, with pings both ways, until it ends.

use std::future::Future;
use std::time::Duration;

use sonde_protocol::ChannelName;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::frames::{self, RelayFrame};
use super::pacer::Pacer;
use super::policy::Ended;
use crate::core::{LinkEvent, Outbound};
use crate::Shutdown;

/// How long the relay has to greet us, and then to confirm the subscription.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds on the relay's activity timeout, whatever it announces.
const ACTIVITY_MIN_S: u64 = 5;
const ACTIVITY_MAX_S: u64 = 120;

/// A message-level websocket: the real socket in production, channels in tests.
pub trait Transport: Send {
    type Error: std::fmt::Display;
    fn send(&mut self, msg: Message) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// `None` when the stream has ended.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Self::Error>>> + Send;
}

/// What one connection works with; it outlives the connection.
pub struct Link<'a> {
    pub channel: &'a ChannelName,
    pub events: &'a mpsc::Sender<LinkEvent>,
    pub outbound: &'a mut mpsc::Receiver<Outbound>,
    pub shutdown: &'a mut Shutdown,
    pub pacer: &'a mut Pacer,
    /// Set once the subscription succeeded (the caller resets its backoff on that).
    pub subscribed: bool,
}

/// A received message, reduced to what the loop acts on.
enum Got {
    Frame(RelayFrame),
    /// Pings and pongs of the websocket layer itself, and non-text frames.
    Nothing,
    Ended(Ended),
}

async fn receive<T: Transport>(t: &mut T) -> Got {
    match t.recv().await {
        None => Got::Ended(Ended::Lost("connection closed without a close frame".into())),
        Some(Err(e)) => Got::Ended(Ended::Lost(e.to_string())),
        Some(Ok(Message::Text(text))) => match RelayFrame::parse(&text) {
            Ok(f) => Got::Frame(f),
            Err(e) => {
                tracing::debug!(error = %e, "ignoring a frame the agent cannot read");
                Got::Nothing
            }
        },
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame.map_or((sonde_protocol::close::rfc6455::NO_STATUS, String::new()), |f| (u16::from(f.code), f.reason.to_string()));
            Got::Ended(Ended::Closed { code, reason })
        }
        Some(Ok(_)) => Got::Nothing,
    }
}

async fn send_text<T: Transport>(t: &mut T, text: String) -> Result<(), Ended> {
    t.send(Message::text(text)).await.map_err(|e| Ended::Lost(e.to_string()))
}

/// Runs one connection to its end.
pub async fn drive<T: Transport>(t: &mut T, link: &mut Link<'_>) -> Ended {
    match run(t, link).await {
        Ok(never) => match never {},
        Err(Ended::Shutdown) => {
            close(t).await;
            Ended::Shutdown
        }
        Err(e) => e,
    }
}

async fn run<T: Transport>(t: &mut T, link: &mut Link<'_>) -> Result<std::convert::Infallible, Ended> {
    let activity = handshake(t, &mut *link.shutdown).await?;
    send_text(t, frames::subscribe(link.channel.as_str())).await?;
    await_subscription(t, link.channel, &mut *link.shutdown).await?;
    tracing::info!(channel = %link.channel, "subscribed to the host channel");
    link.subscribed = true;
    let _ = link.events.send(LinkEvent::Subscribed).await;
    stream(t, link, activity).await
}

/// Waits for `pusher:connection_established`; returns the activity timeout to use.
async fn handshake<T: Transport>(t: &mut T, shutdown: &mut Shutdown) -> Result<Duration, Ended> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let got = tokio::select! {
            g = receive(t) => g,
            () = sleep_until(deadline) => return Err(Ended::Handshake("no connection_established in time".into())),
            () = shutdown.wait() => return Err(Ended::Shutdown),
        };
        match got {
            Got::Frame(RelayFrame::Established { activity_timeout_s }) => {
                tracing::info!(activity_timeout_s, "connected to the relay");
                return Ok(Duration::from_secs(activity_timeout_s.clamp(ACTIVITY_MIN_S, ACTIVITY_MAX_S)));
            }
            Got::Frame(RelayFrame::Error { code, message }) => tracing::warn!(?code, message, "relay error during the handshake"),
            Got::Frame(_) | Got::Nothing => {}
            Got::Ended(e) => return Err(e),
        }
    }
}

async fn await_subscription<T: Transport>(t: &mut T, channel: &ChannelName, shutdown: &mut Shutdown) -> Result<(), Ended> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        let got = tokio::select! {
            g = receive(t) => g,
            () = sleep_until(deadline) => return Err(Ended::Handshake("no subscription_succeeded in time".into())),
            () = shutdown.wait() => return Err(Ended::Shutdown),
        };
        match got {
            Got::Frame(RelayFrame::Subscribed { channel: c }) if c == channel.as_str() => return Ok(()),
            Got::Frame(RelayFrame::SubscriptionError { channel: c, message }) if c == channel.as_str() => {
                return Err(Ended::Rejected(message));
            }
            Got::Frame(RelayFrame::Ping) => send_text(t, frames::PONG.to_owned()).await?,
            Got::Frame(RelayFrame::Error { code, message }) => tracing::warn!(?code, message, "relay error while subscribing"),
            Got::Frame(_) | Got::Nothing => {}
            Got::Ended(e) => return Err(e),
        }
    }
}

/// The steady state. Any message from the relay counts as activity; after `activity` of
/// silence we ping, and a ping unanswered for `PONG_TIMEOUT` ends the connection.
async fn stream<T: Transport>(t: &mut T, link: &mut Link<'_>, activity: Duration) -> Result<std::convert::Infallible, Ended> {
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    loop {
        let timer = match ping_sent {
            Some(at) => at + PONG_TIMEOUT,
            None => last_heard + activity,
        };
        tokio::select! {
            got = receive(t) => {
                last_heard = Instant::now();
                ping_sent = None;
                match got {
                    Got::Frame(f) => on_frame(t, link, f).await?,
                    Got::Nothing => {}
                    Got::Ended(e) => return Err(e),
                }
            }
            item = link.outbound.recv() => {
                let Some(item) = item else { return Err(Ended::Shutdown) };
                link.pacer.acquire().await;
                send_text(t, frames::client_event(item.event, link.channel.as_str(), &item.data)).await?;
            }
            () = sleep_until(timer) => {
                if ping_sent.is_some() {
                    return Err(Ended::PongTimeout);
                }
                send_text(t, frames::PING.to_owned()).await?;
                ping_sent = Some(Instant::now());
            }
            () = link.shutdown.wait() => return Err(Ended::Shutdown),
        }
    }
}

async fn on_frame<T: Transport>(t: &mut T, link: &Link<'_>, f: RelayFrame) -> Result<(), Ended> {
    match f {
        RelayFrame::Ping => send_text(t, frames::PONG.to_owned()).await?,
        RelayFrame::Directive { channel, directive } if channel == link.channel.as_str() => {
            let _ = link.events.send(LinkEvent::Directive(directive)).await;
        }
        RelayFrame::Error { code, message } => tracing::warn!(?code, message, "relay reported an error"),
        RelayFrame::SubscriptionError { channel, message } if channel == link.channel.as_str() => {
            return Err(Ended::Rejected(message));
        }
        RelayFrame::Directive { .. }
        | RelayFrame::SubscriptionError { .. }
        | RelayFrame::Established { .. }
        | RelayFrame::Pong
        | RelayFrame::Subscribed { .. }
        | RelayFrame::Other { .. } => {}
    }
    Ok(())
}

/// Closes with 1000 and waits briefly for the relay's close reply.
async fn close<T: Transport>(t: &mut T) {
    let frame = CloseFrame { code: CloseCode::Normal, reason: "agent stopping".into() };
    if t.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = timeout(Duration::from_secs(1), async {
        while let Some(Ok(m)) = t.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests;
