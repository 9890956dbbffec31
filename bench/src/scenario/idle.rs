//! `idle`: N connections, each subscribed to a channel, doing nothing. Server RSS before and
//! after, and per connection.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::IdleArgs;
use crate::fleet::{self, Readers};
use crate::monitor::{Sampler, Window};
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::Ctx;

pub async fn run(ctx: &Ctx, a: &IdleArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({ "connections": a.connections, "channels": a.channels, "private": a.private, "hold_s": a.hold });
    let recorder = Arc::new(Recorder::default());
    let window = Window::start(ctx.server_pid);
    let sampler = Sampler::start(ctx.server_pid, "idle".into(), None);
    let (channels, private) = (a.channels.max(1), a.private);
    let channel_for = Arc::new(move |n: usize| Some(format!("{}idle-{}", if private { "private-" } else { "" }, n % channels)));
    eprintln!("idle: opening {} connections", a.connections);
    let opened = fleet::open(&ctx.target, 0, a.connections, ctx.connect_concurrency, channel_for).await;
    let (ok, failed, elapsed) = (opened.conns.len(), opened.failed, opened.elapsed);
    let readers = Readers::spawn(opened.conns, &recorder);
    eprintln!("idle: {ok} connected in {:.1} s, holding {} s", elapsed.as_secs_f64(), a.hold);
    tokio::time::sleep(Duration::from_secs(a.hold)).await;

    let mut s = Section::new(format!("{ok} idle subscribed connections"));
    s.row("connections", ok as f64, "conns");
    s.row("failed", failed as f64, "conns");
    s.row("dropped while held", readers.finished() as f64, "conns");
    s.row("open time", elapsed.as_secs_f64(), "s");
    s.row("opened per second", ok as f64 / elapsed.as_secs_f64().max(1e-9), "conns/s");
    let m = window.finish(&mut s);
    if let Some(server) = &m.server {
        let grown = server.rss_after_kib.saturating_sub(server.rss_before_kib) as f64;
        s.row("server rss per connection", grown / ok.max(1) as f64, "KiB");
        s.row("server cpu per connection", server.cpu_s / ok.max(1) as f64 * 1e6, "µs");
    }
    let bench_grown = m.bench.rss_after_kib.saturating_sub(m.bench.rss_before_kib) as f64;
    s.row("bench rss per connection", bench_grown / ok.max(1) as f64, "KiB");
    let series = sampler.stop();
    drop(readers);
    Ok(super::report("idle", ctx, params, vec![s], series))
}
