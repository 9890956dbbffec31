//! `churn`: R times a second, a new connection does the handshake, subscribes to a private
//! channel with HMAC auth, waits for `subscription_succeeded` and closes. The latency is the
//! time from the TCP connect to `subscription_succeeded`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::ChurnArgs;
use crate::monitor::{Sampler, Window};
use crate::publish::Pacer;
use crate::pusher::PusherConn;
use crate::recorder::{new_histogram, Latency};
use crate::report::{Report, Section};
use crate::Ctx;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

pub async fn run(ctx: &Ctx, a: &ChurnArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({ "rate": a.rate, "duration_s": a.duration, "concurrency": a.concurrency });
    let concurrency = a.concurrency.max(1);
    let gate = Arc::new(Semaphore::new(concurrency));
    let tally = Arc::new(Tally::default());
    let hist = Arc::new(Mutex::new(new_histogram()));
    let target = Arc::new(ctx.target.clone());
    eprintln!("churn: {} connects/s for {} s, {concurrency} in flight at most", a.rate, a.duration);

    let window = Window::start(ctx.server_pid);
    let sampler = Sampler::start(ctx.server_pid, "churn".into(), None);
    let started = Instant::now();
    let mut pacer = Pacer::new(if a.rate > 0.0 { a.rate } else { f64::MAX / 4.0 });
    let mut n = 0usize;
    let mut attempted = 0u64;
    'outer: while started.elapsed() < Duration::from_secs(a.duration) {
        let due = if a.rate > 0.0 { pacer.due().await } else { concurrency as u64 };
        for _ in 0..due {
            let permit = tokio::select! {
                p = gate.clone().acquire_owned() => p.expect("semaphore never closes"),
                () = tokio::time::sleep_until(started + Duration::from_secs(a.duration)) => break 'outer,
            };
            n += 1;
            attempted += 1;
            let (target, tally, hist) = (target.clone(), tally.clone(), hist.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                let result = async {
                    let mut conn = PusherConn::connect(&target, n).await?;
                    conn.subscribe_and_wait(&target, &format!("private-churn-{n}")).await?;
                    let elapsed = t0.elapsed();
                    conn.ws.close().await?;
                    Ok::<_, anyhow::Error>(elapsed)
                }
                .await;
                match result {
                    Ok(elapsed) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        hist.lock().expect("hist lock").saturating_record(elapsed.as_nanos().max(1) as u64);
                    }
                    Err(e) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        tally.first_error.lock().expect("tally lock").get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                drop(permit);
            });
        }
    }
    let issuing = started.elapsed();
    let _all = gate.acquire_many(concurrency as u32).await?;
    let elapsed = started.elapsed();

    let ok = tally.ok.load(Ordering::Relaxed);
    let mut s = Section::new(format!("connect + private subscribe + close, {} asked per second", a.rate));
    s.row("rate asked", a.rate, "conns/s");
    s.row("attempted", attempted as f64, "conns");
    s.row("succeeded", ok as f64, "conns");
    s.row("failed", tally.failed.load(Ordering::Relaxed) as f64, "conns");
    if let Some(e) = tally.first_error.lock().expect("tally lock").as_ref() {
        eprintln!("  first churn error: {e}");
    }
    s.row("issued per second", attempted as f64 / issuing.as_secs_f64(), "conns/s");
    s.row("succeeded per second", ok as f64 / elapsed.as_secs_f64(), "conns/s");
    s.latency(&Latency::of(&hist.lock().expect("hist lock")));
    let m = window.finish(&mut s);
    s.row("server cpu per connect", m.server_cpu_per(ok, 1e-6), "µs");
    Ok(super::report("churn", ctx, params, vec![s], sampler.stop()))
}
