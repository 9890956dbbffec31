//! The scenarios, one module each, and what they share.

pub mod agent_load;
pub mod broadcast;
pub mod churn;
pub mod fleet;
pub mod floor;
pub mod handshakes;
pub mod hostile;
pub mod http;
pub mod idle;
pub mod metrics;
pub mod session;
pub mod webhooks;

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

/// Waits until `expected` deliveries arrived or `timeout` passed; returns how long it took
/// and how many had arrived when it started.
pub async fn drain(recorder: &Recorder, expected: u64, timeout: Duration) -> Drained {
    let started = Instant::now();
    let at_start = recorder.delivered();
    while recorder.delivered() < expected && started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Drained { at_start, took: started.elapsed() }
}

/// What was still in flight when publishing stopped.
pub struct Drained {
    pub at_start: u64,
    pub took: Duration,
}

impl Drained {
    /// Rows telling whether receivers kept up during the window or caught up afterwards.
    pub fn rows(&self, section: &mut Section, expected: u64) {
        let share = if expected > 0 { self.at_start as f64 / expected as f64 * 100.0 } else { 100.0 };
        section.row("delivered by end of publishing", share, "%");
        section.row("drain time after publishing", self.took.as_secs_f64(), "s");
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
