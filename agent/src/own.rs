//! The agent's own metrics (`agent.*`): how many custom series it holds, and what the custom
//! metric path refused or lost. They go in every sample (per second) and in the minute
//! snapshot (totals), and a loss is logged at `warn`, at most once a minute.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::recorder::Recorder;
use crate::statsd;
use crate::tick::{keys, Key, Tick};

/// Least time between two warnings about lost custom metrics.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Where the counters live.
#[derive(Clone)]
pub struct Sources {
    pub recorder: Recorder,
    /// `None` when the StatsD listener is off.
    pub statsd: Option<Arc<statsd::Stats>>,
}

/// Counters since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    dropped: u64,
    rejected: u64,
    bad_lines: u64,
    kernel_drops: u64,
}

impl Counts {
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            dropped: self.dropped.saturating_sub(earlier.dropped),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            bad_lines: self.bad_lines.saturating_sub(earlier.bad_lines),
            kernel_drops: self.kernel_drops.saturating_sub(earlier.kernel_drops),
        }
    }

    fn any(self) -> bool {
        self != Counts::default()
    }
}

impl Sources {
    fn read(&self) -> Counts {
        use std::sync::atomic::Ordering::Relaxed;
        let (bad_lines, kernel_drops) = self.statsd.as_ref().map_or((0, 0), |s| (s.bad_lines.load(Relaxed), s.kernel_drops.load(Relaxed)));
        Counts { dropped: self.recorder.dropped(), rejected: self.recorder.rejected(), bad_lines, kernel_drops }
    }
}

/// Per-second `agent.*` metrics; lives in the sampler.
pub struct PerSecond {
    src: Sources,
    last: Counts,
    /// `agent.custom_series`, `custom_dropped_ps`, `custom_rejected_ps`, `statsd_bad_lines_ps`,
    /// `statsd_kernel_drops_ps`.
    keys: [Key; 5],
    omitted: Key,
    warned_at: Option<Instant>,
    warned: Counts,
}

impl PerSecond {
    pub fn new(src: Sources) -> Self {
        let [omitted] = keys("agent", ["custom_omitted"]);
        let keys = keys("agent", ["custom_series", "custom_dropped_ps", "custom_rejected_ps", "statsd_bad_lines_ps", "statsd_kernel_drops_ps"]);
        let now = src.read();
        Self { src, last: now, keys, omitted, warned_at: None, warned: now }
    }

    /// Appends this second's counts (all but the omitted series, known only once the custom
    /// metrics are in: see [`PerSecond::push_omitted`]). Reads the kernel's drop count, a
    /// blocking `/proc` read.
    pub fn push(&mut self, tick: &mut Tick) {
        if let Some(s) = &self.src.statsd {
            s.refresh_kernel_drops();
        }
        let now = self.src.read();
        let d = now.since(self.last);
        self.last = now;
        tick.push(&self.keys[0], self.src.recorder.series() as f64);
        tick.push(&self.keys[1], d.dropped as f64);
        tick.push(&self.keys[2], d.rejected as f64);
        if self.src.statsd.is_some() {
            tick.push(&self.keys[3], d.bad_lines as f64);
            tick.push(&self.keys[4], d.kernel_drops as f64);
        }
        self.warn_if_lost(now);
    }

    /// Room to keep in a sample for [`PerSecond::push_omitted`].
    pub fn omitted_room(&self) -> usize {
        crate::size::entry_len(&self.omitted, 1e9)
    }

    pub fn push_omitted(&self, tick: &mut Tick, omitted: usize) {
        tick.push(&self.omitted, omitted as f64);
    }

    fn warn_if_lost(&mut self, now: Counts) {
        let lost = now.since(self.warned);
        if !lost.any() || self.warned_at.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            return;
        }
        let limits = self.src.recorder.limits();
        tracing::warn!(
            over_series_cap = lost.dropped,
            max_series = limits.max_series,
            max_series_per_name = limits.max_series_per_name,
            too_long_or_not_finite = lost.rejected,
            statsd_bad_lines = lost.bad_lines,
            statsd_kernel_drops = lost.kernel_drops,
            "custom metric values lost (counts since the last warning; kernel drops: raise net.core.rmem_max)"
        );
        self.warned_at = Some(Instant::now());
        self.warned = now;
    }
}

/// Totals over a minute for the snapshot.
pub struct PerMinute {
    src: Sources,
    last: Mutex<Counts>,
}

impl PerMinute {
    pub fn new(src: Sources) -> Self {
        let now = src.read();
        Self { src, last: Mutex::new(now) }
    }

    /// The totals since the last call, and the series held now.
    pub fn take(&self) -> [(&'static str, f64); 5] {
        let now = self.src.read();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let d = now.since(*last);
        *last = now;
        [
            ("agent.custom_series", self.src.recorder.series() as f64),
            ("agent.custom_dropped", d.dropped as f64),
            ("agent.custom_rejected", d.rejected as f64),
            ("agent.statsd_bad_lines", d.bad_lines as f64),
            ("agent.statsd_kernel_drops", d.kernel_drops as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Limits;

    #[test]
    fn per_second_and_per_minute_counts() {
        let rec = Recorder::with_limits(Limits { max_series: 2, ..Limits::default() });
        let stats = Arc::new(statsd::Stats::default());
        let src = Sources { recorder: rec.clone(), statsd: Some(stats.clone()) };
        let mut second = PerSecond::new(src.clone());
        let minute = PerMinute::new(src);
        for name in ["a", "b", "c", "d"] {
            rec.counter(name, &[], 1.0);
        }
        rec.counter(&"x".repeat(1000), &[], 1.0);
        stats.bad_lines.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        let mut t = Tick::default();
        second.push(&mut t);
        second.push_omitted(&mut t, 7);
        assert_eq!(t.get("agent.custom_series"), Some(2.0));
        assert_eq!(t.get("agent.custom_dropped_ps"), Some(2.0));
        assert_eq!(t.get("agent.custom_rejected_ps"), Some(1.0));
        assert_eq!(t.get("agent.statsd_bad_lines_ps"), Some(3.0));
        assert_eq!(t.get("agent.statsd_kernel_drops_ps"), Some(0.0));
        assert_eq!(t.get("agent.custom_omitted"), Some(7.0));
        let mut t = Tick::default();
        second.push(&mut t);
        assert_eq!(t.get("agent.custom_dropped_ps"), Some(0.0), "per second, not since start");
        let totals = minute.take();
        assert_eq!(totals[1], ("agent.custom_dropped", 2.0));
        assert_eq!(totals[3], ("agent.statsd_bad_lines", 3.0));
        assert_eq!(minute.take()[1].1, 0.0);
    }
}
