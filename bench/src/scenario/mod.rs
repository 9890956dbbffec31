//! The scenarios, one module each, and what they share.

pub mod broadcast;
pub mod churn;
pub mod http;
pub mod idle;
pub mod metrics;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::monitor::Point;
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::Ctx;

pub fn report(scenario: &'static str, ctx: &Ctx, params: serde_json::Value, sections: Vec<Section>, series: Vec<Point>) -> Report {
    Report {
        scenario,
        server: ctx.target.server.to_string(),
        unix_time: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        params,
        sections,
        series,
    }
}

/// Waits until `expected` deliveries arrived or `timeout` passed.
pub async fn drain(recorder: &Recorder, expected: u64, timeout: Duration) {
    let until = Instant::now() + timeout;
    while recorder.delivered() < expected && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Delivery rows: counts, rate over the publishing time, loss, latency.
pub fn deliveries(section: &mut Section, recorder: &Recorder, published: u64, receivers: usize, publishing: Duration) -> u64 {
    let delivered = recorder.delivered();
    let expected = published * receivers as u64;
    section.row("published", published as f64, "msgs");
    section.row("receivers per message", receivers as f64, "conns");
    section.row("deliveries expected", expected as f64, "msgs");
    section.row("delivered", delivered as f64, "msgs");
    section.row("delivered per second", delivered as f64 / publishing.as_secs_f64().max(1e-9), "msgs/s");
    let lost = expected.saturating_sub(delivered);
    section.row("lost", lost as f64, "msgs");
    section.row("loss", if expected > 0 { lost as f64 / expected as f64 * 100.0 } else { 0.0 }, "%");
    section.latency(&recorder.latency());
    section.row("receiver errors", recorder.errors() as f64, "");
    delivered
}
