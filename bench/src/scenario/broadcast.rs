//! `broadcast`: one private channel, N subscribers (some optionally stalled), one publisher at
//! R msg/s. Steps over several rates reuse the subscribers and stop at the first loss.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::BroadcastArgs;
use crate::fleet::{self, Readers, Stalled};
use crate::monitor::{Sampler, Window};
use crate::publish::{ClientPublisher, Outcome, Publisher, Via};
use crate::pusher::Target;
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::Ctx;

pub async fn run(ctx: &Ctx, a: &BroadcastArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "subscribers": a.load.subscribers, "rate": a.load.rate, "duration_s": a.load.duration, "via": a.via,
        "payload_bytes": a.load.payload, "stalled_pct": a.stalled, "publish_to": a.publish_to.map(|p| p.to_string()),
    });
    let channel: Arc<str> = format!("private-bench-{:08x}", rand::random::<u32>()).into();
    let stalled_n = ((a.load.subscribers as f64 * a.stalled / 100.0).round() as usize).min(a.load.subscribers);
    let recorder = Arc::new(Recorder::default());

    eprintln!("broadcast: opening {} subscribers on {channel} ({stalled_n} stalled)", a.load.subscribers);
    let ch = channel.clone();
    let channel_for: fleet::ChannelFor = Arc::new(move |_| Some(ch.to_string()));
    // A small receive buffer makes a stalled socket back up into the server within seconds
    // instead of first filling megabytes of kernel buffer.
    let stalled_target = Target { recv_buffer: Some(a.stalled_rcvbuf), ..ctx.target.clone() };
    let publish_target = Target { server: a.publish_to.unwrap_or(ctx.target.server), ..ctx.target.clone() };
    let stalled = fleet::open(&stalled_target, 0, stalled_n, ctx.connect_concurrency, channel_for.clone()).await;
    let stalled = Stalled::hold(stalled.conns);
    let active = fleet::open(&ctx.target, stalled_n, a.load.subscribers - stalled_n, ctx.connect_concurrency, channel_for).await;
    let readers = Readers::spawn(active.conns, &recorder);
    let publisher = match a.via {
        Via::Http => Publisher::http(&publish_target, a.http_inflight)?,
        Via::Client => Publisher::Client(ClientPublisher::open(&publish_target, a.load.subscribers, &channel).await?),
    };
    let event: Arc<str> = publisher.event("bench").into();
    publisher.warm_up(&channel, &event).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sections = Vec::new();
    let mut series = Vec::new();
    let mut seq = 0u64;
    for &rate in &a.load.rate {
        let label = format!("{rate} msg/s to {} subscribers ({stalled_n} stalled), via {}", readers.len(), a.via);
        eprintln!("broadcast: {label} for {} s", a.load.duration);
        recorder.reset(seq + 1);
        let outcome = Arc::new(Outcome::default());
        let window = Window::start(ctx.server_pid);
        let sampler = Sampler::start(ctx.server_pid, format!("{rate}/s"), Some(recorder.clone()));
        let publishing = publisher.paced((&channel, &event), rate, &a.load, &mut seq, &outcome).await;
        let expected = outcome.ok() * readers.len() as u64;
        let drained = super::drain(&recorder, expected, Duration::from_secs(a.load.drain)).await;

        let mut s = Section::new(label);
        s.row("rate asked", rate, "msg/s");
        s.row("publish failures", outcome.failed() as f64, "");
        outcome.rows(&mut s);
        if let Some(e) = outcome.first_error() {
            eprintln!("  first publish error: {e}");
        }
        let delivered = super::deliveries(&mut s, &recorder, outcome.ok(), readers.len(), publishing);
        drained.rows(&mut s, expected);
        s.row("connections lost", readers.finished() as f64, "conns");
        let m = window.finish(&mut s);
        s.row("server cpu per million deliveries", m.server_cpu_per(delivered, 1e-6), "s");
        s.row("server cpu per publish", m.server_cpu_per(outcome.ok(), 1e-6), "µs");
        series.extend(sampler.stop());
        // Sustained: nothing lost, and the backlog left when publishing stopped cleared quickly.
        let lag_ms = a.max_drain_ms as f64;
        // And the publisher kept the asked rate: HTTP publishes in flight are bounded, so a
        // slow API lowers the rate instead of losing messages.
        let achieved = outcome.ok() as f64 / publishing.as_secs_f64();
        s.row("published per second", achieved, "msg/s");
        let kept_rate = achieved >= 0.95 * rate;
        let sustained = kept_rate && s.get("lost") == Some(0.0) && outcome.failed() == 0 && drained.took.as_secs_f64() * 1e3 <= lag_ms;
        s.row("sustained", f64::from(u8::from(sustained)), "yes=1");
        sections.push(s);
        if !sustained && a.load.rate.len() > 1 {
            eprintln!("broadcast: not sustained at {rate} msg/s (rate not kept, loss, failures or drain over {lag_ms} ms), stopping");
            break;
        }
    }
    if stalled.len() > 0 {
        let fate = stalled.probe(Duration::from_millis(500)).await;
        let mut s = Section::new(format!("{} stalled subscribers, read at the end", stalled_n));
        s.row("stalled connections", stalled_n as f64, "conns");
        s.row("closed by the server", fate.closed as f64, "conns");
        s.row("backlog per stalled connection", fate.backlog_bytes as f64 / stalled_n as f64 / 1024.0, "KiB");
        sections.push(s);
    }
    Ok(super::report("broadcast", ctx, params, sections, series))
}
