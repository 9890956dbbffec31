//! `handshakes`: new connections as fast as C in flight allow, each through the websocket
//! upgrade to `pusher:connection_established` and a close. Against a TLS server (`--tls`)
//! two windows: full handshakes (no session cache) and resumed ones (each of the C loops is
//! one client with its own session cache, reconnecting: after its first connection every
//! handshake resumes); plain connects otherwise. The figure that matters is the
//! server's CPU per connection, and its inverse: connections a second per server core.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::monitor::{Sampler, Window};
use crate::pusher::{PusherConn, Target};
use crate::recorder::{new_histogram, Latency};
use crate::report::{Report, Section};
use crate::tls::TlsClient;
use crate::Ctx;

#[derive(Debug, clap::Args)]
pub struct HandshakesArgs {
    /// Seconds of each window.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Connections in flight at once.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub concurrency: usize,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub async fn run(ctx: &Ctx, a: &HandshakesArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({ "duration_s": a.duration, "concurrency": a.concurrency, "tls": ctx.target.tls.is_some() });
    let mut sections = Vec::new();
    let mut series = Vec::new();
    match &ctx.target.tls {
        None => sections.push(window(ctx, &ctx.target, "plain connects", a, &mut series, TlsClient::clone).await),
        Some(_) => {
            sections.push(window(ctx, &ctx.target, "TLS, full handshakes", a, &mut series, TlsClient::without_resumption).await);
            sections.push(window(ctx, &ctx.target, "TLS, resumed handshakes", a, &mut series, TlsClient::with_own_cache).await);
        }
    }
    Ok(super::report("handshakes", ctx, params, sections, series))
}

/// One measured window of `concurrency` loops that connect, wait for the handshake and close;
/// each loop's TLS client is `client_for(the target's)`.
async fn window(
    ctx: &Ctx,
    target: &Target,
    label: &str,
    a: &HandshakesArgs,
    series: &mut Vec<crate::monitor::Point>,
    client_for: fn(&TlsClient) -> TlsClient,
) -> Section {
    eprintln!("handshakes: {label} for {} s, {} in flight", a.duration, a.concurrency);
    let tally = Arc::new(Tally::default());
    let hist = Arc::new(Mutex::new(new_histogram()));
    let stop = Arc::new(AtomicBool::new(false));
    let measure = Window::start(ctx.server_pid);
    let sampler = Sampler::start(ctx.server_pid, label.into(), None);
    let started = Instant::now();
    let loops: Vec<_> = (0..a.concurrency.max(1))
        .map(|i| {
            let target = Target { tls: target.tls.as_ref().map(client_for), ..target.clone() };
            tokio::spawn(connect_loop(i, Arc::new(target), tally.clone(), hist.clone(), stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(a.duration)).await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        let _ = l.await;
    }
    let elapsed = started.elapsed();

    let ok = tally.ok.load(Ordering::Relaxed);
    let mut s = Section::new(label.to_owned());
    s.row("connections", ok as f64, "conns");
    s.row("failed", tally.failed.load(Ordering::Relaxed) as f64, "conns");
    s.row("resumed", tally.resumed.load(Ordering::Relaxed) as f64, "conns");
    s.row("connections per second", ok as f64 / elapsed.as_secs_f64(), "conns/s");
    s.latency(&Latency::of(&hist.lock().expect("hist lock")));
    let m = measure.finish(&mut s);
    s.row("server cpu per connection", m.server_cpu_per(ok, 1e-6), "µs");
    s.row("connections per server core-second", 1e6 / m.server_cpu_per(ok, 1e-6), "conns");
    if let Some(e) = tally.first_error.lock().expect("tally lock").as_ref() {
        eprintln!("  first error: {e}");
    }
    series.extend(sampler.stop());
    s
}

async fn connect_loop(i: usize, target: Arc<Target>, tally: Arc<Tally>, hist: Arc<Mutex<hdrhistogram::Histogram<u64>>>, stop: Arc<AtomicBool>) {
    let mut n = i;
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        match PusherConn::connect(&target, n).await {
            Ok(conn) => {
                let took = t0.elapsed();
                tally.ok.fetch_add(1, Ordering::Relaxed);
                tally.resumed.fetch_add(u64::from(conn.ws.resumed()), Ordering::Relaxed);
                hist.lock().expect("hist lock").saturating_record(took.as_nanos().max(1) as u64);
                // A close handshake, so the server holds the TIME_WAIT, as in `churn`.
                let _ = conn.ws.close().await;
            }
            Err(e) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally.first_error.lock().expect("tally lock").get_or_insert_with(|| format!("{e:#}"));
                // A refused connection comes back at once: do not spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        n = n.wrapping_add(1 << 16);
    }
}
