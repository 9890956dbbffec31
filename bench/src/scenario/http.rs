//! `http`: signed `POST /apps/{id}/events` with C requests in flight, to a channel with a
//! few websocket subscribers. Reports publishes per second, request latency and server CPU
//! per publish.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::HttpArgs;
use crate::fleet::{self, Readers};
use crate::monitor::{Sampler, Window};
use crate::publish::{bench_data, HttpPublisher, Pacer};
use crate::recorder::{new_histogram, Latency, Recorder};
use crate::report::{Report, Section};
use crate::Ctx;

pub async fn run(ctx: &Ctx, a: &HttpArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "concurrency": a.concurrency, "duration_s": a.duration, "rate": a.rate, "subscribers": a.subscribers, "payload_bytes": a.payload,
    });
    let channel: Arc<str> = format!("private-bench-http-{:08x}", rand::random::<u32>()).into();
    let recorder = Arc::new(Recorder::default());
    let ch = channel.clone();
    let opened = fleet::open(&ctx.target, 0, a.subscribers, ctx.connect_concurrency, Arc::new(move |_| Some(ch.to_string()))).await;
    let readers = Readers::spawn(opened.conns, &recorder);
    let http = HttpPublisher::new(&ctx.target, a.concurrency)?;
    let workers = a.concurrency.max(1);
    eprintln!("http: {workers} requests in flight for {} s to {channel} ({} subscribers)", a.duration, readers.len());

    recorder.reset(1);
    let request_hist = Arc::new(Mutex::new(new_histogram()));
    let window = Window::start(ctx.server_pid);
    let sampler = Sampler::start(ctx.server_pid, "http".into(), Some(recorder.clone()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.duration);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (http, channel, hist, payload) = (http.clone(), channel.clone(), request_hist.clone(), a.payload);
            let mut pacer = (a.rate > 0.0).then(|| Pacer::new(a.rate / workers as f64));
            tokio::spawn(async move {
                let (mut ok, mut failed, mut first_error) = (0u64, 0u64, None);
                let mut data = String::new();
                let mut seq = w as u64 * 1_000_000_000 + 1;
                while Instant::now() < deadline {
                    let due = match pacer.as_mut() {
                        Some(p) => p.due().await,
                        None => 1,
                    };
                    for _ in 0..due {
                        bench_data(seq, payload, &mut data);
                        seq += 1;
                        let t0 = Instant::now();
                        match http.publish(&channel, "bench", &data).await {
                            Ok(()) => {
                                ok += 1;
                                hist.lock().expect("hist lock").saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                            }
                            Err(e) => {
                                failed += 1;
                                first_error.get_or_insert_with(|| format!("{e:#}"));
                            }
                        }
                    }
                }
                (ok, failed, first_error)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f, e) = t.await?;
        ok += o;
        failed += f;
        if let Some(e) = e.filter(|_| failed == f) {
            eprintln!("  first publish error: {e}");
        }
    }
    let publishing = started.elapsed();
    let expected = ok * readers.len() as u64;
    let drained = super::drain(&recorder, expected, Duration::from_secs(a.drain)).await;

    let mut s = Section::new(format!("signed HTTP publishes, {workers} in flight"));
    s.row("publishes", ok as f64, "reqs");
    s.row("publish failures", failed as f64, "reqs");
    s.row("publishes per second", ok as f64 / publishing.as_secs_f64(), "reqs/s");
    let req = Latency::of(&request_hist.lock().expect("hist lock"));
    s.row("request p50", req.p50_ms, "ms");
    s.row("request p99", req.p99_ms, "ms");
    s.row("request max", req.max_ms, "ms");
    super::deliveries(&mut s, &recorder, ok, readers.len(), publishing);
    drained.rows(&mut s, expected);
    let m = window.finish(&mut s);
    s.row("server cpu per publish", m.server_cpu_per(ok, 1e-6), "µs");
    Ok(super::report("http", ctx, params, vec![s], sampler.stop()))
}
