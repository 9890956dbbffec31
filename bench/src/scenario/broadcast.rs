//! `broadcast`: one private channel, N subscribers (some optionally stalled), one publisher at
//! R msg/s. Steps over several rates reuse the subscribers and stop at the first loss.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::BroadcastArgs;
use crate::fleet::{self, Readers, Stalled};
use crate::monitor::{Sampler, Window};
use crate::publish::{bench_data, ClientPublisher, Outcome, Pacer, Publisher, Via};
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::Ctx;

pub async fn run(ctx: &Ctx, a: &BroadcastArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "subscribers": a.subscribers, "rate": a.rate, "duration_s": a.duration, "via": a.via,
        "payload_bytes": a.payload, "stalled_pct": a.stalled,
    });
    let channel: Arc<str> = format!("private-bench-{:08x}", rand::random::<u32>()).into();
    let stalled_n = ((a.subscribers as f64 * a.stalled / 100.0).round() as usize).min(a.subscribers);
    let recorder = Arc::new(Recorder::default());

    eprintln!("broadcast: opening {} subscribers on {channel} ({stalled_n} stalled)", a.subscribers);
    let ch = channel.clone();
    let opened = fleet::open(&ctx.target, 0, a.subscribers, ctx.connect_concurrency, Arc::new(move |_| Some(ch.to_string()))).await;
    let (stalled, active): (Vec<_>, Vec<_>) = opened.conns.into_iter().partition(|(n, _)| *n < stalled_n);
    let _stalled = Stalled::hold(stalled);
    let readers = Readers::spawn(active, &recorder);
    let publisher = match a.via {
        Via::Http => Publisher::http(&ctx.target, a.http_inflight)?,
        Via::Client => Publisher::Client(ClientPublisher::open(&ctx.target, a.subscribers, &channel).await?),
    };
    let event: Arc<str> = publisher.event("bench").into();
    publisher.warm_up(&channel, &event).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sections = Vec::new();
    let mut series = Vec::new();
    let mut seq = 0u64;
    for &rate in &a.rate {
        let label = format!("{rate} msg/s to {} subscribers ({stalled_n} stalled), via {}", readers.len(), a.via);
        eprintln!("broadcast: {label} for {} s", a.duration);
        recorder.reset(seq + 1);
        let outcome = Arc::new(Outcome::default());
        let window = Window::start(ctx.server_pid);
        let sampler = Sampler::start(ctx.server_pid, format!("{rate}/s"), Some(recorder.clone()));
        let started = Instant::now();
        let mut pacer = Pacer::new(rate);
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
        super::drain(&recorder, outcome.ok() * readers.len() as u64, Duration::from_secs(a.drain)).await;

        let mut s = Section::new(label);
        s.row("rate asked", rate, "msg/s");
        s.row("publish failures", outcome.failed() as f64, "");
        if let Some(e) = outcome.first_error() {
            eprintln!("  first publish error: {e}");
        }
        let delivered = super::deliveries(&mut s, &recorder, outcome.ok(), readers.len(), publishing);
        s.row("connections lost", readers.finished() as f64, "conns");
        let m = window.finish(&mut s);
        s.row("server cpu per million deliveries", m.server_cpu_per(delivered, 1e-6), "s");
        s.row("server cpu per publish", m.server_cpu_per(outcome.ok(), 1e-6), "µs");
        series.extend(sampler.stop());
        let lossy = s.get("lost").unwrap_or(0.0) > 0.0 || outcome.failed() > 0;
        sections.push(s);
        if lossy && a.rate.len() > 1 {
            eprintln!("broadcast: loss at {rate} msg/s, stopping");
            break;
        }
    }
    Ok(super::report("broadcast", ctx, params, sections, series))
}
