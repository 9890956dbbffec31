//! `metrics`: Sonde's own traffic shape. H hosts each publish a ~1 KB sample a second on
//! `private-sonde-host.{h}` to V viewers each, next to W connections that subscribe to nothing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::MetricsArgs;
use crate::fleet::{self, Readers};
use crate::monitor::{Sampler, Window};
use crate::publish::{ClientPublisher, Outcome, Publisher, Via};
use crate::recorder::{now_ns, Recorder};
use crate::report::{Report, Section};
use crate::scan::{SENT_AT, SEQUENCE};
use crate::Ctx;

const METRICS: &[&str] = &[
    "cpu.user_pct",
    "cpu.system_pct",
    "cpu.iowait_pct",
    "cpu.steal_pct",
    "cpu.idle_pct",
    "load.1m",
    "load.5m",
    "load.15m",
    "mem.used_bytes",
    "mem.available_bytes",
    "mem.cached_bytes",
    "swap.used_bytes",
    "disk.root.used_pct",
    "disk.vda.read_bytes_ps",
    "disk.vda.write_bytes_ps",
    "disk.vda.util_pct",
    "net.eth0.rx_bytes_ps",
    "net.eth0.tx_bytes_ps",
    "net.eth0.rx_packets_ps",
    "net.eth0.tx_packets_ps",
    "net.tcp.established",
    "net.tcp.time_wait",
    "procs.running",
    "procs.blocked",
    "fd.open",
];

fn channel(host: usize) -> String {
    format!("{}bench-{host}", sonde_protocol::sonde::HOST_CHANNEL_PREFIX)
}

/// One sample: bench markers, then the fields of a Sonde sample, padded with custom metrics
/// up to about `size` bytes.
pub fn sample(seq: u64, host: usize, size: usize) -> String {
    let mut s = String::with_capacity(size + 64);
    let now = now_ns();
    let _ = write!(s, "{{\"{SENT_AT}\":{now},\"{SEQUENCE}\":{seq},\"ts\":{},\"seq\":{seq},\"host\":\"bench-{host}\",\"metrics\":{{", now / 1_000_000);
    for (i, name) in METRICS.iter().enumerate() {
        let _ = write!(s, "\"{name}\":{}.{},", (seq + i as u64) % 100, (seq * 7 + i as u64) % 100);
    }
    let mut k = 0;
    while s.len() + 120 < size {
        let _ = write!(s, "\"app.custom.metric_{k}_ps\":{},", (seq * 13 + k) % 1000);
        k += 1;
    }
    s.pop();
    s.push_str("},\"top\":[{\"pid\":1234,\"name\":\"postgres\",\"cpu_pct\":12.5},{\"pid\":99,\"name\":\"nginx\",\"cpu_pct\":3.1}]}");
    s
}

pub async fn run(ctx: &Ctx, a: &MetricsArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "hosts": a.hosts, "viewers": a.viewers, "idle": a.idle, "duration_s": a.duration, "via": a.via, "sample_bytes": a.sample_bytes,
    });
    let recorder = Arc::new(Recorder::default());
    let (hosts, viewers_per_host) = (a.hosts, a.viewers.max(1));
    let viewer_count = hosts * a.viewers;
    eprintln!("metrics: opening {viewer_count} viewers and {} idle connections", a.idle);
    let viewers = fleet::open(&ctx.target, 0, viewer_count, ctx.connect_concurrency, Arc::new(move |n| Some(channel(n / viewers_per_host)))).await;
    let readers = Readers::spawn(viewers.conns, &recorder);
    let idle = fleet::open(&ctx.target, viewer_count, a.idle, ctx.connect_concurrency, Arc::new(|_| None)).await;
    let _idle = Readers::spawn(idle.conns, &Arc::new(Recorder::default()));
    let publishers: Vec<Publisher> = match a.via {
        Via::Http => vec![Publisher::http(&ctx.target, 256)?; hosts],
        Via::Client => {
            let first = viewer_count + a.idle;
            let opened = fleet::open(&ctx.target, first, hosts, ctx.connect_concurrency, Arc::new(move |n| Some(channel(n - first)))).await;
            anyhow::ensure!(opened.failed == 0, "{} publisher connections failed", opened.failed);
            let mut conns = opened.conns;
            conns.sort_by_key(|(n, _)| *n);
            conns.into_iter().map(|(_, c)| Publisher::Client(ClientPublisher::from_conn(c))).collect()
        }
    };

    // Like a real agent joining a watched host, each publisher first sends its (here empty)
    // history: the relay stops asking it for one.
    let history = Arc::new(Outcome::default());
    for (h, p) in publishers.iter().enumerate().filter(|(_, p)| matches!(p, Publisher::Client(_))) {
        p.send(&channel(h).into(), &p.event("sonde-backfill").into(), r#"{"samples":[]}"#.to_owned(), &history).await;
    }
    eprintln!("metrics: {hosts} hosts × {} viewers, via {}, for {} s", a.viewers, a.via, a.duration);
    if let Some(p @ Publisher::Http { .. }) = publishers.first() {
        p.warm_up(&channel(0).into(), &p.event("sonde-sample").into()).await;
    }
    let outcome = Arc::new(Outcome::default());
    let seq = Arc::new(AtomicU64::new(1));
    let window = Window::start(ctx.server_pid);
    let sampler = Sampler::start(ctx.server_pid, "metrics".into(), Some(recorder.clone()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.duration);
    let mut tasks = Vec::with_capacity(hosts);
    for (h, publisher) in publishers.into_iter().enumerate() {
        let (outcome, seq, size) = (outcome.clone(), seq.clone(), a.sample_bytes);
        let (channel, event): (Arc<str>, Arc<str>) = (channel(h).into(), publisher.event("sonde-sample").into());
        // Hosts tick at evenly spread offsets within the second, as independent agents do.
        let offset = Duration::from_secs(1) * h as u32 / hosts.max(1) as u32;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(started + offset, Duration::from_secs(1));
            loop {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                let data = sample(seq.fetch_add(1, Ordering::Relaxed), h, size);
                publisher.send(&channel, &event, data, &outcome).await;
            }
            publisher.settle().await;
        }));
    }
    for t in tasks {
        t.await?;
    }
    let publishing = started.elapsed();
    let expected = outcome.ok() * a.viewers as u64;
    let drained = super::drain(&recorder, expected, Duration::from_secs(a.drain)).await;

    let mut s = Section::new(format!("{hosts} hosts × {} viewers + {} idle, via {}", a.viewers, a.idle, a.via));
    s.row("publish failures", outcome.failed() as f64, "");
    outcome.rows(&mut s);
    if let Some(e) = outcome.first_error() {
        eprintln!("  first publish error: {e}");
    }
    // Each publish reaches its own host's viewers only.
    let delivered = super::deliveries(&mut s, &recorder, outcome.ok(), a.viewers, publishing);
    drained.rows(&mut s, expected);
    s.row("idle connections", (a.idle - idle.failed) as f64, "conns");
    s.row("connections lost", readers.finished() as f64, "conns");
    let m = window.finish(&mut s);
    s.row("server cpu per publish", m.server_cpu_per(outcome.ok(), 1e-6), "µs");
    s.row("server cpu per million deliveries", m.server_cpu_per(delivered, 1e-6), "s");
    Ok(super::report("metrics", ctx, params, vec![s], sampler.stop()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::{classify, Kind};

    #[test]
    fn sample_is_about_a_kilobyte_of_json() {
        let s = sample(42, 7, 1000);
        assert!((900..=1100).contains(&s.len()), "{}", s.len());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["host"], "bench-7");
        assert!(v["metrics"]["cpu.user_pct"].is_number());
        let frame = format!(r#"{{"event":"sonde-sample","channel":"c","data":{}}}"#, serde_json::to_string(&s).unwrap());
        assert!(matches!(classify(frame.as_bytes()), Kind::Payload { seq: 42, .. }));
    }
}
