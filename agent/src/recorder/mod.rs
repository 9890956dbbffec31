//! An embeddable metrics recorder for Rust applications, and the store the StatsD listener
//! writes to. Counters, gauges, histograms and sets are keyed by (name, tags, second).
//!
//! Series are spread over shards, each behind its own short-lived lock: recording touches one
//! shard, and draining visits them one at a time, so neither ever holds a global lock. Memory is
//! bounded by [`Limits`]: past `max_series` new series are dropped (and counted), histograms
//! keep a bounded sample per second, sets a bounded number of members.
//!
//! ```
//! let rec = sonde_agent::Recorder::new();
//! rec.counter("checkout", &["env:prod"], 1.0);
//! rec.histogram("checkout.latency_ms", &[], 12.5);
//! ```

mod reservoir;
mod series;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use reservoir::Summary;
pub use series::{Keys, Kind, SeriesId, Value};
use series::Series;

const SHARDS: usize = 16;
/// Series not written for this long are forgotten (a gauge last set an hour ago is stale).
const IDLE_EVICT_SECS: u64 = 600;

/// Bounds on the recorder's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct (name, tags, kind) series held at once.
    pub max_series: usize,
    /// Values sampled per histogram per second (count, sum, min and max stay exact).
    pub max_values_per_bucket: usize,
    /// Distinct members counted per set per second.
    pub max_set_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_series: 1024, max_values_per_bucket: 128, max_set_members: 1024 }
    }
}

/// One series' value for the seconds drained.
#[derive(Debug, Clone)]
pub struct Drained {
    pub id: Arc<SeriesId>,
    pub value: Value,
}

#[derive(Default)]
struct Shard {
    by_name: HashMap<Box<str>, Vec<Series>>,
    count: usize,
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    limits: Limits,
    dropped: AtomicU64,
}

/// A cheap-to-clone handle; every clone records into the same store.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("limits", &self.inner.limits).finish_non_exhaustive()
    }
}

fn now_sec() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Recorder {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        Self { inner: Arc::new(Inner { shards, limits, dropped: AtomicU64::new(0) }) }
    }

    /// Adds `by` to a counter; reported as a rate per second.
    pub fn counter(&self, name: &str, tags: &[&str], by: f64) {
        self.with_series(now_sec(), name, tags, Kind::Counter, |s, sec, _| s.add(sec, by));
    }

    /// Sets a gauge; it keeps its value until set again.
    pub fn gauge(&self, name: &str, tags: &[&str], value: f64) {
        self.with_series(now_sec(), name, tags, Kind::Gauge, |s, sec, _| s.set_gauge(sec, value));
    }

    /// Moves a gauge by `delta` (from 0 if it was never set).
    pub fn gauge_add(&self, name: &str, tags: &[&str], delta: f64) {
        self.with_series(now_sec(), name, tags, Kind::Gauge, |s, sec, _| s.add(sec, delta));
    }

    /// Records one observation (a latency, a size); reported as p50/p90/p99/max per second.
    pub fn histogram(&self, name: &str, tags: &[&str], value: f64) {
        self.histogram_weighted(name, tags, value, 1.0);
    }

    /// Records an observation that stands for `weight` observations (StatsD sample rates).
    pub fn histogram_weighted(&self, name: &str, tags: &[&str], value: f64, weight: f64) {
        self.observe_at(now_sec(), name, tags, value, weight);
    }

    /// Adds a member to a set; reported as the count of distinct members per second.
    pub fn set_insert(&self, name: &str, tags: &[&str], member: &str) {
        let mut h = DefaultHasher::new();
        member.hash(&mut h);
        let m = h.finish();
        self.with_series(now_sec(), name, tags, Kind::Set, |s, sec, l| s.insert(sec, m, l));
    }

    /// Series refused because `max_series` was reached, since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Moves everything recorded before `before_sec` into `out`, one entry per series (gauges
    /// report their current value). Idle series are forgotten here.
    pub fn drain(&self, before_sec: u64, out: &mut Vec<Drained>) {
        let limits = &self.inner.limits;
        for shard in &self.inner.shards {
            let mut shard = lock(shard);
            let mut evicted = 0;
            shard.by_name.retain(|_, list| {
                for s in list.iter_mut() {
                    if let Some(value) = s.drain(before_sec, limits) {
                        out.push(Drained { id: s.id.clone(), value });
                    }
                }
                let before = list.len();
                list.retain(|s| s.last_sec + IDLE_EVICT_SECS >= before_sec);
                evicted += before - list.len();
                !list.is_empty()
            });
            shard.count -= evicted;
        }
    }

    #[cfg(test)]
    pub(crate) fn counter_at(&self, sec: u64, name: &str, tags: &[&str], by: f64) {
        self.with_series(sec, name, tags, Kind::Counter, |s, sec, _| s.add(sec, by));
    }

    pub(crate) fn observe_at(&self, sec: u64, name: &str, tags: &[&str], value: f64, weight: f64) {
        self.with_series(sec, name, tags, Kind::Histogram, |s, sec, l| s.observe(sec, value, weight, l));
    }

    fn with_series(&self, sec: u64, name: &str, tags: &[&str], kind: Kind, f: impl FnOnce(&mut Series, u64, &Limits)) {
        let limits = &self.inner.limits;
        let mut shard = lock(&self.inner.shards[shard_of(name)]);
        let shard = &mut *shard;
        if let Some(list) = shard.by_name.get_mut(name) {
            if let Some(s) = list.iter_mut().find(|s| s.id.kind == kind && s.id.has_tags(tags)) {
                f(s, sec, limits);
                return;
            }
        }
        if shard.count >= limits.max_series.div_ceil(SHARDS) {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut s = Series::new(Arc::new(SeriesId::new(name, tags, kind)), sec);
        f(&mut s, sec, limits);
        shard.count += 1;
        shard.by_name.entry(name.into()).or_default().push(s);
    }
}

/// A panic while a shard was locked cannot leave it half-updated in a way that matters for
/// metrics, so a poisoned lock is used as is.
fn lock(m: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// FNV-1a: spreads names over shards without SipHash's cost on every record.
fn shard_of(name: &str) -> usize {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (h % SHARDS as u64) as usize
}

#[cfg(test)]
mod tests;
