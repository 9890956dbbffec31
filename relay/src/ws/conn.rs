//! The life of one websocket connection: one task that reads frames, drains the outbox in
//! batched writes, and enforces the activity timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sonde_protocol::{CloseCode, ServerFrame, SocketId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::codec::{close_frame, control_frame, Inbound, Source, WsError, WsStream};
use super::handler::{Flow, Handler};
use super::wire::{Reader, Wire, Writer};
use crate::apps::App;
use crate::edge::Slot;
use crate::hub::{CloseRequest, Conn, Outgoing};
use crate::tokens::Grant;

/// RFC 6455 status code of a normal closure.
const NORMAL_CLOSURE: u16 = sonde_protocol::close::rfc6455::NORMAL;

/// Timing of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Silence after which the server pings.
    pub activity: Duration,
    /// Wait for any frame after the server's ping before closing with 4201.
    pub pong: Duration,
    /// A write that takes longer than this means the peer is gone.
    pub write: Duration,
}

/// Why a connection is refused right after the upgrade.
pub struct Refusal {
    pub code: CloseCode,
    pub message: String,
}

/// Sends the error and the close code of a refused connection, then drops it.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(io: S, refusal: Refusal) {
    let mut ws = WsStream::new(io, 1024);
    let frame = ServerFrame::Error { code: Some(refusal.code), message: &refusal.message }.encode();
    if ws.send_texts(&[frame]).await.is_ok() {
        close(&mut ws, refusal.code.code(), &refusal.message).await;
    }
}

async fn close<S: Source + AsyncWrite>(ws: &mut WsStream<S>, code: u16, reason: &str) {
    if ws.send_close(code, reason).await.is_ok() {
        await_client_close(ws).await;
        ws.shutdown().await;
    }
}

/// Gives the client a moment to answer with its own close frame, so it sees a clean close.
async fn await_client_close<S: Source>(ws: &mut WsStream<S>) {
    let _ = timeout(Duration::from_secs(2), async {
        loop {
            match ws.recv().await {
                Ok(Inbound::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// What a connection starts with.
pub struct Start {
    pub app: Arc<App>,
    pub socket_id: SocketId,
    /// The token given on the websocket URL.
    pub grant: Option<Arc<Grant>>,
    /// The socket's place at the edge, given back when the connection ends.
    pub slot: Slot,
}

/// Runs one accepted, upgraded connection. `prefix` is what was read past the HTTP request.
pub async fn serve(wire: Wire, prefix: BytesMut, start: Start, timing: Timing, shutdown: CancellationToken) {
    // Everything the connection keeps is in one struct built without awaiting, so the
    // connection's future holds it once, next to the loop's own state.
    let Some(mut c) = Connection::open(wire, &prefix, start, timing) else { return };
    drop(prefix);
    let Some(handler) = c.handler.as_mut() else { return };
    let reason = c.link.run(handler, timing, &shutdown).await;
    // No span per connection: entering one on every poll costs more than the fields are worth.
    debug!(app = %c.app.id(), socket_id = %c.link.conn.socket_id, %reason, "connection ended");
    c.ended = true;
    // Dropping `c` unregisters the connection, here as on every other way out of this task.
}

/// One connection's lifelong state. Dropping it unregisters the connection, however its task
/// ends: returned, cancelled by the runtime, or unwound by a panic.
struct Connection {
    app: Arc<App>,
    link: Link,
    handler: Option<Handler>,
    /// Whether its loop returned (otherwise the task panicked or was cancelled).
    ended: bool,
    /// Dropped last, after the connection is unregistered.
    _slot: Slot,
}

impl Connection {
    fn open(wire: Wire, prefix: &[u8], start: Start, timing: Timing) -> Option<Self> {
        let Start { app, socket_id, grant, slot } = start;
        let (reader, writer) = match wire.split() {
            Ok(split) => split,
            Err(e) => {
                debug!(%socket_id, "cannot register the socket: {e}");
                return None;
            }
        };
        let writer = Arc::new(writer);
        let conn = Conn::new(socket_id, app.config.limits.max_outbox_bytes, app.hub.lanes().assign());
        conn.outbox.set_direct(writer.clone());
        app.hub.register(conn.clone());
        app.metrics.connections.inc();
        app.metrics.connections_total.inc();
        let handler = Some(Handler::new(app.clone(), conn.clone(), grant));
        conn.outbox.push(ServerFrame::ConnectionEstablished { socket_id, activity_timeout_s: timing.activity.as_secs() }.encode());
        let ws = WsStream::with_prefix(reader, app.config.limits.max_message_bytes, prefix);
        Some(Self { app, link: Link { ws, writer, conn }, handler, ended: false, _slot: slot })
    }
}

/// What the connection's loop works on: the websocket it reads, the writer, and the hub's side
/// of the connection (its outbox). Apart from the `Handler`, which the loop lends each frame.
struct Link {
    ws: WsStream<Reader>,
    writer: Arc<Writer>,
    conn: Arc<Conn>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if !self.ended {
            debug!(app = %self.app.id(), socket_id = %self.link.conn.socket_id, "connection ended: its task panicked or was cancelled");
        }
        // Publishers must not write to a socket nobody owns any more.
        self.link.conn.outbox.close(CloseCode::Reconnect, "closing");
        if let Some(handler) = self.handler.take() {
            handler.finish();
        }
        self.app.metrics.connections.dec();
        self.link.writer.shutdown();
    }
}

/// Farthest a connection timer is set; a later expiry is checked again when it fires.
const MAX_TIMER: Duration = Duration::from_secs(365 * 86_400);

/// Turns a wall-clock expiry into a timer deadline (at most a year ahead).
fn deadline_of(at: std::time::SystemTime) -> Instant {
    let now = Instant::now();
    let wait = at.duration_since(std::time::SystemTime::now()).unwrap_or_default().min(MAX_TIMER);
    now.checked_add(wait).unwrap_or(now)
}

impl Link {
    /// Stops publishers from writing (what is still queued is dropped) and writes a close frame.
    async fn write_close(&self, code: u16, reason: &str) -> std::io::Result<()> {
        self.conn.outbox.close(CloseCode::Reconnect, "closing");
        self.conn.outbox.take(&mut Vec::new());
        self.writer.write(&[Outgoing::Raw(close_frame(code, reason))]).await
    }

    /// Closes with `code` and waits briefly for the client's close frame.
    async fn close(&mut self, code: u16, reason: &str) {
        if self.write_close(code, reason).await.is_ok() {
            await_client_close(&mut self.ws).await;
        }
    }

    /// Writes everything queued, taking again while publishers keep adding.
    async fn flush(&self, timing: Timing) -> Result<Option<CloseRequest>, String> {
        let (writer, conn) = (&self.writer, &self.conn);
        let mut batch: Vec<Outgoing> = Vec::new();
        loop {
            let close_req = conn.outbox.take(&mut batch);
            if !batch.is_empty() {
                let written = tokio::select! {
                    w = timeout(timing.write, writer.write(&batch)) => w,
                    // A reader that stopped reading while its outbox overflowed: the socket is
                    // full, so not even a close frame would get through. Reset it, freeing its
                    // buffers.
                    () = overflowed(conn) => {
                        writer.reset();
                        return Err("closed: too slow to read its messages (its socket and outbox are full)".into());
                    }
                };
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("write failed: {e}")),
                    Err(_) => return Err("write timed out".into()),
                }
                batch.clear();
            }
            if close_req.is_some() {
                return Ok(close_req);
            }
            if !conn.outbox.finish_writing() {
                return Ok(None);
            }
        }
    }

    /// What one message from the client does; `Err` ends the connection, with the reason.
    async fn on_inbound(&mut self, msg: Result<Inbound, WsError>, handler: &mut Handler) -> Result<(), String> {
        match msg {
            Ok(Inbound::Text(bytes)) => {
                // The codec has checked UTF-8 already.
                let text = std::str::from_utf8(&bytes).unwrap_or_default();
                if let Flow::Close(code, reason) = handler.on_text(text) {
                    self.conn.outbox.close(code, reason);
                }
                Ok(())
            }
            Ok(Inbound::Binary) => {
                Box::pin(self.close(sonde_protocol::close::rfc6455::UNSUPPORTED_DATA, "binary frames are not supported")).await;
                Err("binary frame".into())
            }
            Ok(Inbound::Ping(p)) => {
                self.conn.outbox.push_raw(control_frame(0xA, &p));
                Ok(())
            }
            Ok(Inbound::Pong) => Ok(()),
            Ok(Inbound::Close(code)) => {
                // RFC 6455 §5.5.1: answer with a close frame, echoing the client's code.
                let _ = Box::pin(self.write_close(code.unwrap_or(NORMAL_CLOSURE), "")).await;
                Err(format!("closed by client ({code:?})"))
            }
            Err(e @ (WsError::Eof | WsError::Io(_))) => Err(e.to_string()),
            Err(e) => {
                Box::pin(self.close(e.close_code(), &e.to_string())).await;
                Err(e.to_string())
            }
        }
    }

    /// Reads, writes and keeps time until the connection ends; returns why it ended.
    async fn run(&mut self, handler: &mut Handler, timing: Timing, shutdown: &CancellationToken) -> String {
        let mut pinged = false;
        let mut shutting_down = false;
        // Futures that live across iterations are created once: re-creating a cancellation
        // future or a timer on every wake-up would cost a shared lock or a timer-wheel insert
        // per delivered message.
        let stop = shutdown.cancelled();
        tokio::pin!(stop);
        let activity = tokio::time::sleep(timing.activity);
        tokio::pin!(activity);
        let mut expiry_at = handler.expiry();
        let expiry = sleep_until(expiry_at.map_or_else(|| Instant::now() + timing.activity, deadline_of));
        tokio::pin!(expiry);
        loop {
            tokio::select! {
                biased;
                () = &mut stop, if !shutting_down => {
                    shutting_down = true;
                    self.conn.outbox.close(CloseCode::Reconnect, "server is shutting down, reconnect");
                }
                () = self.conn.outbox.ready() => {
                    // Boxed, like every rare await here: the connection's future is as large as
                    // its largest state for its whole life.
                    match Box::pin(self.flush(timing)).await {
                        Err(e) => return e,
                        Ok(Some(c)) => {
                            Box::pin(self.close(c.code.code(), &c.reason)).await;
                            return format!("closed by server with {}: {}", c.code.code(), c.reason);
                        }
                        Ok(None) => {}
                    }
                }
                msg = self.ws.recv() => {
                    activity.as_mut().reset(Instant::now() + timing.activity);
                    pinged = false;
                    if let Err(reason) = self.on_inbound(msg, handler).await {
                        return reason;
                    }
                    if handler.expiry() != expiry_at {
                        expiry_at = handler.expiry();
                        if let Some(at) = expiry_at {
                            expiry.as_mut().reset(deadline_of(at));
                        }
                    }
                }
                () = &mut expiry, if expiry_at.is_some() => {
                    if expiry_at.is_some_and(|at| at > std::time::SystemTime::now()) {
                        // A timer capped short of a far expiry: wait again.
                        expiry.as_mut().reset(expiry_at.map_or_else(Instant::now, deadline_of));
                    } else {
                        // 41xx: pusher-js reconnects after a backoff and asks its authorizer for
                        // fresh tokens; the expired token is refused from now on.
                        expiry_at = None;
                        self.conn.outbox.close(CloseCode::TokenExpired, "token expired: reconnect with a fresh token");
                    }
                }
                () = &mut activity => {
                    if pinged {
                        self.conn.outbox.close(CloseCode::PongNotReceived, "Pong reply not received");
                        activity.as_mut().reset(Instant::now() + timing.pong);
                    } else {
                        pinged = true;
                        activity.as_mut().reset(Instant::now() + timing.pong);
                        self.conn.outbox.push(ServerFrame::Ping.encode());
                    }
                }
            }
        }
    }
}

/// Resolves once the connection's outbox has overflowed.
async fn overflowed(conn: &Conn) {
    while !conn.outbox.overflowed() {
        conn.outbox.ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AppConfig, EdgeConfig};
    use crate::edge::{Admission, Gate};
    use crate::metrics::Metrics;
    use sonde_protocol::ChannelName;
    use tokio::net::TcpStream;

    /// An accepted socket with its place at the edge, ready to become a connection of app 1.
    struct Accepted {
        metrics: Arc<Metrics>,
        app: Arc<App>,
        gate: Arc<Gate>,
        _client: TcpStream,
        server: TcpStream,
        slot: crate::edge::Slot,
        timing: Timing,
    }

    async fn accepted() -> Accepted {
        let metrics = Arc::new(Metrics::default());
        let app = Arc::new(App::new(AppConfig::from_flag("1:key:secret").unwrap(), &metrics));
        let gate = Arc::new(Gate::new(&EdgeConfig::default(), &[], 10, metrics.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        let Admission::Client(slot) = gate.admit(peer.ip()) else { panic!("admitted") };
        let timing = Timing { activity: Duration::from_secs(60), pong: Duration::from_secs(30), write: Duration::from_secs(5) };
        Accepted { metrics, app, gate, _client, server, slot, timing }
    }

    /// Every idle connection is one task of this size for its whole life (BENCHMARKS.md's idle
    /// figure): a change that grows it shows here before it shows in memory per connection.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let Accepted { metrics, app, server, slot, timing, .. } = accepted().await;
        let start = Start { app, socket_id: SocketId::new(1, 2), grant: None, slot };
        let task = crate::edge::guarded(serve(Wire::Tcp(server), BytesMut::new(), start, timing, CancellationToken::new()), metrics);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1536, "a connection's task is {size} bytes");
    }

    #[tokio::test]
    async fn a_connection_task_that_panics_leaves_nothing_registered() {
        let Accepted { metrics, app, gate, _client: client, server, slot, timing } = accepted().await;
        let app2 = app.clone();
        let task = async move {
            let start = Start { app: app2.clone(), socket_id: SocketId::new(1, 2), grant: None, slot };
            let mut c = Connection::open(Wire::Tcp(server), &[], start, timing).expect("opened");
            let handler = c.handler.as_mut().expect("handler");
            handler.on_text(r#"{"event":"pusher:subscribe","data":{"channel":"public-room"}}"#);
            assert_eq!(app2.hub.connection_count(), 1);
            assert_eq!(app2.hub.channel_info(&ChannelName::parse("public-room").unwrap()).subscription_count, 1);
            panic!("a bug in the connection's code");
        };
        tokio::spawn(crate::edge::guarded(task, metrics.clone())).await.expect("the guard catches the panic");
        assert_eq!(app.hub.connection_count(), 0, "unregistered");
        assert_eq!(app.hub.channel_info(&ChannelName::parse("public-room").unwrap()).subscription_count, 0, "left its channels");
        assert_eq!(gate.open(), 0, "its socket slot is back");
        assert_eq!(metrics.connection_panics.get(), 1, "counted");
        assert!(metrics.encode().contains("sonde_connections{app=\"1\"} 0"), "{}", metrics.encode());
        drop(client);
    }
}
