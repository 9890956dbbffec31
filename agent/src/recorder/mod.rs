//! An embeddable metrics recorder for Rust applications, and the store the StatsD listener
//! writes to. Counters, gauges, histograms and sets are keyed by (name, tags, second).
//!
//! Series are spread over shards, each behind its own short-lived lock: recording touches one
//! shard, and draining visits them one at a time, so neither ever holds a global lock. Memory is
//! bounded by [`Limits`]: one cap on the series of the whole recorder, a smaller one on the
//! series of one name (its tag combinations), a length limit on names and tags; what is refused
//! is counted. Histograms keep a DDSketch per second (bounded bins), sets a bounded number of
//! members. Series idle for [`IDLE_EXPIRE_SECS`] are forgotten, or after
//! [`PRESSURE_EXPIRE_SECS`] once the cap has refused a new series.
//!
//! ```
//! let rec = sonde_agent::Recorder::new();
//! rec.counter("checkout", &["env:prod"], 1.0);
//! rec.histogram("checkout.latency_ms", &[], 12.5);
//! ```

mod dist;
mod series;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use dist::{Dist, Summary, RELATIVE_ACCURACY};
use series::Series;
pub use series::{Keys, Kind, SeriesId, Value};

const SHARDS: usize = 16;
/// Series not written for this long are forgotten (a gauge last set minutes ago is stale).
pub const IDLE_EXPIRE_SECS: u64 = 120;
/// Once the cap has refused a new series, series idle for this long make room at the next
/// drain: a burst of one-off names cannot lock out new metrics for minutes.
pub const PRESSURE_EXPIRE_SECS: u64 = 10;
/// Longest metric name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Longest tag set accepted (all tags of a record together), in bytes.
pub const MAX_TAGS_BYTES: usize = 400;

/// Bounds on the recorder's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct (name, tags, kind) series held at once, in the whole recorder.
    pub max_series: usize,
    /// Series of one name (its tag combinations and kinds), so one metric with unbounded tag
    /// values cannot take the whole table.
    pub max_series_per_name: usize,
    /// Distinct members counted per set per second.
    pub max_set_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_series: 1024, max_series_per_name: 128, max_set_members: 1024 }
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
}

struct Inner {
    shards: Vec<Mutex<Shard>>,
    limits: Limits,
    /// Series held, all shards together.
    held: AtomicUsize,
    next_order: AtomicU64,
    /// Records refused because their series would pass a cap, since start.
    dropped: AtomicU64,
    /// Records refused for a name or tags over the length limits (or a non-finite value).
    rejected: AtomicU64,
    /// The cap refused a new series since the last drain.
    full: AtomicBool,
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
        Self {
            inner: Arc::new(Inner {
                shards,
                limits,
                held: AtomicUsize::new(0),
                next_order: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                full: AtomicBool::new(false),
            }),
        }
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Adds `by` to a counter; reported as a rate per second.
    pub fn counter(&self, name: &str, tags: &[&str], by: f64) {
        if self.finite(by) {
            self.with_series(now_sec(), name, tags, Kind::Counter, |s, sec, _| s.add(sec, by));
        }
    }

    /// Sets a gauge; it keeps its value until set again.
    pub fn gauge(&self, name: &str, tags: &[&str], value: f64) {
        if self.finite(value) {
            self.with_series(now_sec(), name, tags, Kind::Gauge, |s, sec, _| s.set_gauge(sec, value));
        }
    }

    /// Moves a gauge by `delta` (from 0 if it was never set).
    pub fn gauge_add(&self, name: &str, tags: &[&str], delta: f64) {
        if self.finite(delta) {
            self.with_series(now_sec(), name, tags, Kind::Gauge, |s, sec, _| s.add(sec, delta));
        }
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

    /// Records refused because a cap was reached, since start.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Records refused for a name or tags over the length limits, or a value that is not a
    /// finite number, since start.
    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Series held now.
    pub fn series(&self) -> usize {
        self.inner.held.load(Ordering::Relaxed)
    }

    /// Moves everything recorded before `before_sec` into `out`, one entry per series (gauges
    /// report their current value). Idle series are forgotten here.
    pub fn drain(&self, before_sec: u64, out: &mut Vec<Drained>) {
        let limits = &self.inner.limits;
        let idle = if self.inner.full.swap(false, Ordering::Relaxed) { PRESSURE_EXPIRE_SECS } else { IDLE_EXPIRE_SECS };
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
                list.retain(|s| s.last_sec.saturating_add(idle) >= before_sec);
                evicted += before - list.len();
                !list.is_empty()
            });
            if evicted > 0 {
                self.inner.held.fetch_sub(evicted, Ordering::Relaxed);
                // A burst of names must not keep its table allocated once the names are gone.
                if shard.by_name.capacity() > 4 * shard.by_name.len() + 16 {
                    shard.by_name.shrink_to_fit();
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn counter_at(&self, sec: u64, name: &str, tags: &[&str], by: f64) {
        self.with_series(sec, name, tags, Kind::Counter, |s, sec, _| s.add(sec, by));
    }

    pub(crate) fn observe_at(&self, sec: u64, name: &str, tags: &[&str], value: f64, weight: f64) {
        if self.finite(value) && self.finite(weight) && weight > 0.0 {
            self.with_series(sec, name, tags, Kind::Histogram, |s, sec, _| s.observe(sec, value, weight));
        }
    }

    /// Whether `v` can be recorded; counts it as rejected if not.
    fn finite(&self, v: f64) -> bool {
        if !v.is_finite() {
            self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        }
        v.is_finite()
    }

    fn with_series(&self, sec: u64, name: &str, tags: &[&str], kind: Kind, f: impl FnOnce(&mut Series, u64, &Limits)) {
        let inner = &*self.inner;
        let tag_bytes = tags.iter().fold(0usize, |n, t| n.saturating_add(t.len()));
        if name.is_empty() || name.len() > MAX_NAME_BYTES || tag_bytes > MAX_TAGS_BYTES {
            inner.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let limits = &inner.limits;
        let mut shard = lock(&inner.shards[shard_of(name)]);
        if let Some(list) = shard.by_name.get_mut(name) {
            if let Some(s) = list.iter_mut().find(|s| s.id.kind == kind && s.id.has_tags(tags)) {
                f(s, sec, limits);
                return;
            }
            if list.len() >= limits.max_series_per_name {
                // Only this name is full: no reason to hurry the expiry of other series.
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let admitted = inner.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < limits.max_series).then_some(n + 1));
        if admitted.is_err() {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            inner.full.store(true, Ordering::Relaxed);
            return;
        }
        let order = inner.next_order.fetch_add(1, Ordering::Relaxed);
        let mut s = Series::new(Arc::new(SeriesId::new(name, tags, kind, order)), sec);
        f(&mut s, sec, limits);
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
