//! `session`: a viewer subscribes to a real agent's host channel with a viewer token, the
//! relay starts a session, the agent sends its backfill and live samples. Measured each
//! time: subscribe → first backfill part and subscribe → first live sample. With the agent's
//! pid, also the agent's CPU and RSS over the time it streams.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sonde_protocol::sonde::{EVENT_BACKFILL, EVENT_SAMPLE};
use tokio::time::Instant;

use crate::cli::SessionArgs;
use crate::procstat::{Pid, Usage};
use crate::pusher::PusherConn;
use crate::recorder::{new_histogram, Latency};
use crate::report::{Report, Section};
use crate::ws::Message;
use crate::Ctx;

/// A viewer token (HS256, signed with the app secret), as `sonde-relay token --role viewer`.
fn viewer_token(app_id: &str, secret: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims =
        serde_json::json!({"app": app_id, "sub": "sonde-bench", "exp": now + 3600, "subscribe": [sonde_protocol::sonde::HOST_CHANNEL_PATTERN], "publish": []});
    let body = format!("{header}.{}", b64(claims.to_string().as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body.as_bytes());
    format!("{body}.{}", b64(&mac.finalize().into_bytes()))
}

fn event_of(text: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    v.get("event")?.as_str().map(str::to_owned)
}

pub async fn run(ctx: &Ctx, a: &SessionArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({ "agent_host": a.agent_host, "iterations": a.iterations, "watch_s": a.watch, "gap_ms": a.gap_ms });
    let token = viewer_token(&ctx.target.app_id, &ctx.target.secret);
    let channel = format!("{}{}", sonde_protocol::sonde::HOST_CHANNEL_PREFIX, a.agent_host);
    let subscribe = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": token}}).to_string();
    let (mut first_sample, mut first_backfill) = (new_histogram(), new_histogram());
    let (mut streamed, mut agent_cpu, mut agent_rss_max, mut samples) = (Duration::ZERO, 0.0, 0u64, 0u64);
    eprintln!("session: {} viewers in turn on {channel}, {} s each", a.iterations, a.watch);
    for i in 0..a.iterations {
        let mut conn = PusherConn::connect(&ctx.target, i).await?;
        let before = a.agent_pid.map(|p| Usage::read(Pid::Of(p))).transpose()?;
        let t0 = Instant::now();
        conn.ws.send_text(subscribe.as_bytes()).await?;
        let deadline = t0 + Duration::from_secs_f64(a.watch);
        let mut got_sample = false;
        let mut got_backfill = false;
        while Instant::now() < deadline {
            let msg = match tokio::time::timeout_at(deadline, conn.ws.read()).await {
                Ok(m) => m?,
                Err(_) => break,
            };
            let Message::Text(text) = msg else { bail!("the relay closed the viewer") };
            match event_of(text).as_deref() {
                Some(EVENT_BACKFILL) if !got_backfill => {
                    got_backfill = true;
                    first_backfill.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                }
                Some(EVENT_SAMPLE) => {
                    samples += 1;
                    if !got_sample {
                        got_sample = true;
                        first_sample.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                    }
                }
                Some("pusher:subscription_error") => bail!("subscription refused: {}", String::from_utf8_lossy(text)),
                _ => {}
            }
        }
        if let (Some(pid), Some(before)) = (a.agent_pid, before) {
            let after = Usage::read(Pid::Of(pid))?;
            let d = before.delta(&after);
            agent_cpu += d.cpu_s;
            streamed += t0.elapsed();
            agent_rss_max = agent_rss_max.max(after.rss_kib);
        }
        if !got_sample {
            bail!("iteration {i}: no live sample within {} s (is the agent for {} running?)", a.watch, a.agent_host);
        }
        conn.ws.close().await?;
        tokio::time::sleep(Duration::from_millis(a.gap_ms)).await;
    }
    let mut s = Section::new(format!("subscribe → first live sample, {} sessions", a.iterations));
    s.row("sessions", a.iterations as f64, "");
    s.row("live samples received", samples as f64, "msgs");
    s.latency(&Latency::of(&first_sample));
    let mut b = Section::new("subscribe → first backfill part".to_string());
    b.latency(&Latency::of(&first_backfill));
    let mut sections = vec![s, b];
    if a.agent_pid.is_some() {
        let mut c = Section::new("the agent while it streams".to_string());
        c.row("streaming time", streamed.as_secs_f64(), "s");
        c.row("agent cpu", agent_cpu, "s");
        c.row("agent share of one core", agent_cpu / streamed.as_secs_f64().max(1e-9) * 100.0, "%");
        c.row("agent rss max", agent_rss_max as f64 / 1024.0, "MiB");
        sections.push(c);
    }
    Ok(super::report("session", ctx, params, sections, Vec::new()))
}
