//! `webhooks`: a broadcast measured while thousands of channels a second are occupied and
//! vacated (each a fresh public channel, subscribed and left by a few connections), with the
//! bench's own webhook receiver listening. Run it against a relay whose app sends
//! `channel_occupied` / `channel_vacated` to the receiver and against one that sends none:
//! the fan-out latency and the server CPU per delivery of the two runs are what webhooks cost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::fleet::{self, Readers};
use crate::monitor::{Sampler, Window};
use crate::publish::{bench_data, Outcome, Pacer, Publisher};
use crate::pusher::PusherConn;
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::ws::Message;
use crate::Ctx;

#[derive(Debug, Args)]
pub struct WebhooksArgs {
    /// Channels occupied and vacated per second (each pair is two webhook events).
    #[arg(long, default_value_t = 10_000.0)]
    pub churn: f64,
    /// Connections that subscribe and unsubscribe the churned channels.
    #[arg(long, default_value_t = 50)]
    pub churners: usize,
    /// Subscribers of the broadcast channel whose fan-out is measured.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Broadcast publishes a second (HTTP API).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Approximate size of each broadcast message's data, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Where the bench's webhook receiver listens (the relay's webhook target).
    #[arg(long, default_value = "127.0.0.1:7799")]
    pub receiver: SocketAddr,
    /// Seconds to wait after publishing for late deliveries and webhooks.
    #[arg(long, default_value_t = 3)]
    pub drain: u64,
}

/// What the receiver got.
#[derive(Default)]
struct Hooks {
    requests: AtomicU64,
    events: AtomicU64,
}

impl Hooks {
    fn snapshot(&self) -> (u64, u64) {
        (self.requests.load(Ordering::Relaxed), self.events.load(Ordering::Relaxed))
    }
}

pub async fn run(ctx: &Ctx, a: &WebhooksArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "churn_per_s": a.churn, "churners": a.churners, "subscribers": a.subscribers, "rate": a.rate,
        "duration_s": a.duration, "payload_bytes": a.payload, "receiver": a.receiver.to_string(),
    });
    let hooks = Arc::new(Hooks::default());
    let listener = TcpListener::bind(a.receiver).await?;
    let receiver = tokio::spawn(receive(listener, hooks.clone()));

    let channel: Arc<str> = format!("bench-fanout-{:08x}", rand::random::<u32>()).into();
    let recorder = Arc::new(Recorder::default());
    eprintln!("webhooks: opening {} subscribers on {channel}", a.subscribers);
    let ch = channel.clone();
    let opened = fleet::open(&ctx.target, 0, a.subscribers, ctx.connect_concurrency, Arc::new(move |_| Some(ch.to_string()))).await;
    let readers = Readers::spawn(opened.conns, &recorder);
    let publisher = Publisher::http(&ctx.target, 64)?;
    let event: Arc<str> = publisher.event("bench").into();
    publisher.warm_up(&channel, &event).await;

    eprintln!("webhooks: {} channels/s occupied and vacated by {} connections", a.churn, a.churners);
    let churned = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + Duration::from_secs(a.duration + 1);
    let mut churners = Vec::new();
    for i in 0..a.churners.max(1) {
        let conn = PusherConn::connect(&ctx.target, a.subscribers + i).await?;
        churners.push(tokio::spawn(churn(conn, i, a.churn / a.churners.max(1) as f64, stop_at, churned.clone())));
    }
    // Let the churn settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;

    recorder.reset(1);
    let outcome = Arc::new(Outcome::default());
    let (churned0, (req0, ev0)) = (churned.load(Ordering::Relaxed), hooks.snapshot());
    let window = Window::start(ctx.server_pid);
    let sampler = Sampler::start(ctx.server_pid, "webhooks".into(), Some(recorder.clone()));
    let started = Instant::now();
    let mut pacer = Pacer::new(a.rate);
    let mut seq = 0u64;
    while started.elapsed() < Duration::from_secs(a.duration) {
        for _ in 0..pacer.due().await {
            seq += 1;
            let mut data = String::with_capacity(a.payload + 64);
            bench_data(seq, a.payload, &mut data);
            publisher.send(&channel, &event, data, &outcome).await;
        }
    }
    publisher.settle().await;
    let publishing = started.elapsed();
    let churn_done = churned.load(Ordering::Relaxed) - churned0;
    let expected = outcome.ok() * readers.len() as u64;
    let drained = super::drain(&recorder, expected, Duration::from_secs(a.drain)).await;

    let mut s = Section::new(format!("{} msg/s to {} subscribers while {} channels/s are occupied and vacated", a.rate, readers.len(), a.churn));
    outcome.rows(&mut s);
    let delivered = super::deliveries(&mut s, &recorder, outcome.ok(), readers.len(), publishing);
    drained.rows(&mut s, expected);
    s.row("channels occupied and vacated per second", churn_done as f64 / publishing.as_secs_f64(), "channels/s");
    let m = window.finish(&mut s);
    s.row("server cpu per million deliveries", m.server_cpu_per(delivered, 1e-6), "s");
    s.row("server cpu per churned channel", m.server_cpu_per(churn_done, 1e-6), "µs");
    for t in churners {
        let _ = t.await;
    }
    // Webhooks of the measured window, given the drain time to arrive.
    let (req1, ev1) = hooks.snapshot();
    s.row("webhook events received", (ev1 - ev0) as f64, "events");
    s.row("webhook events per churned channel", (ev1 - ev0) as f64 / churn_done.max(1) as f64, "events");
    s.row("webhook requests received", (req1 - req0) as f64, "requests");
    receiver.abort();
    Ok(super::report("webhooks", ctx, params, vec![s], sampler.stop()))
}

/// Subscribes and leaves fresh public channels at `rate` a second until `until`, reading
/// (and dropping) what the server answers so its outbox never fills.
async fn churn(mut conn: PusherConn, n: usize, rate: f64, until: Instant, done: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut pacer = Pacer::new(rate);
    let mut i = 0u64;
    while Instant::now() < until {
        tokio::select! {
            due = pacer.due() => {
                for _ in 0..due {
                    i += 1;
                    let name = format!("wh-{n}-{i}");
                    let sub = format!("{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"{name}\"}}}}");
                    let unsub = format!("{{\"event\":\"pusher:unsubscribe\",\"data\":{{\"channel\":\"{name}\"}}}}");
                    conn.ws.send_text(sub.as_bytes()).await?;
                    conn.ws.send_text(unsub.as_bytes()).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            msg = conn.ws.read() => {
                if let Message::Close = msg? {
                    anyhow::bail!("churner {n} closed by the server");
                }
            }
        }
    }
    Ok(())
}

/// A webhook backend that answers 200 at once and counts requests and events.
async fn receive(listener: TcpListener, hooks: Arc<Hooks>) {
    while let Ok((sock, _)) = listener.accept().await {
        tokio::spawn(serve(sock, hooks.clone()));
    }
}

/// Longest request head or body the receiver reads.
const MAX_REQUEST: usize = 16 * 1024 * 1024;

async fn serve(mut sock: TcpStream, hooks: Arc<Hooks>) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let head = loop {
            if let Some(p) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break p + 4;
            }
            if buf.len() > MAX_REQUEST || sock.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let len = content_length(&buf[..head]).min(MAX_REQUEST);
        while buf.len() < head + len {
            if sock.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        }
        let events = memchr::memmem::find_iter(&buf[head..head + len], b"\"name\":").count();
        hooks.events.fetch_add(events as u64, Ordering::Relaxed);
        hooks.requests.fetch_add(1, Ordering::Relaxed);
        buf.advance(head + len);
        sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await?;
    }
}

fn content_length(head: &[u8]) -> usize {
    let text = String::from_utf8_lossy(head);
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_length_of_a_head() {
        assert_eq!(super::content_length(b"POST / HTTP/1.1\r\nhost: x\r\nContent-Length: 42\r\n\r\n"), 42);
        assert_eq!(super::content_length(b"POST / HTTP/1.1\r\n\r\n"), 0);
    }
}
