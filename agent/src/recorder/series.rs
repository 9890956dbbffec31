//! One series of the recorder: its identity, the metric names it reports under, and its
//! per-second buckets.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use super::dist::Dist;
use super::Limits;
use crate::tick::Key;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Set,
}

/// Name, tags (sorted, deduplicated) and kind: what makes a series distinct.
#[derive(Debug)]
pub struct SeriesId {
    pub name: Box<str>,
    pub tags: Box<[Box<str>]>,
    pub kind: Kind,
    /// Creation order across the recorder: older series come first in samples and snapshots.
    pub order: u64,
    keys: OnceLock<Keys>,
}

/// The metric names a series reports under, in samples and in the minute totals.
#[derive(Debug)]
pub struct Keys {
    /// Per second: `[count_ps]`, `[value]`, `[p50, p90, p99, max, count_ps]` or `[unique]`.
    pub second: Box<[Key]>,
    /// Per minute: `[count]`, `[value]`, `[count, p50, p90, p99, max]` or `[unique]`.
    pub minute: Box<[Key]>,
}

impl SeriesId {
    pub fn new(name: &str, tags: &[&str], kind: Kind, order: u64) -> Self {
        let mut tags: Vec<Box<str>> = tags.iter().map(|t| Box::from(*t)).collect();
        tags.sort_unstable();
        tags.dedup();
        Self { name: name.into(), tags: tags.into(), kind, order, keys: OnceLock::new() }
    }

    /// Whether `tags`, in any order, are this series' tags.
    pub fn has_tags(&self, tags: &[&str]) -> bool {
        tags.iter().all(|t| self.tags.iter().any(|s| &**s == *t)) && self.tags.iter().all(|s| tags.contains(&&**s))
    }

    /// `app.<name>{tag,tag}` plus a suffix per reported statistic; built once per series.
    pub fn keys(&self) -> &Keys {
        self.keys.get_or_init(|| {
            let base = metric_base(&self.name, &self.tags);
            let k = |suffix: &str| Key::from(format!("{base}{suffix}"));
            let second: Box<[Key]> = match self.kind {
                Kind::Counter => [k(".count_ps")].into(),
                Kind::Gauge => [k("")].into(),
                Kind::Histogram => [k(".p50"), k(".p90"), k(".p99"), k(".max"), k(".count_ps")].into(),
                Kind::Set => [k(".unique")].into(),
            };
            let minute: Box<[Key]> = match self.kind {
                Kind::Counter => [k(".count")].into(),
                Kind::Histogram => [k(".count"), k(".p50"), k(".p90"), k(".p99"), k(".max")].into(),
                Kind::Gauge => [second[0].clone()].into(),
                Kind::Set => [second[0].clone()].into(),
            };
            Keys { second, minute }
        })
    }
}

/// Metric names keep to `[A-Za-z0-9_.-]` and tags to `[A-Za-z0-9_:/-]`, so a name splits
/// unambiguously: the statistic follows the last `.`, tags sit inside `{}`.
fn metric_base(name: &str, tags: &[Box<str>]) -> String {
    let clean = |s: &str, extra: &[char]| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c) { c } else { '_' }).collect()
    };
    let mut out = format!("app.{}", clean(name, &['.']));
    if !tags.is_empty() {
        let tags: Vec<String> = tags.iter().map(|t| clean(t, &[':', '/'])).collect();
        out.push('{');
        out.push_str(&tags.join(","));
        out.push('}');
    }
    out
}

/// Accumulated state per time bucket (unix second).
#[derive(Debug)]
pub enum State {
    Counter(Vec<(u64, f64)>),
    /// Gauges hold a value rather than buckets: it persists until changed.
    Gauge(f64),
    Histogram(Vec<(u64, Dist)>),
    Set(Vec<(u64, HashSet<u64>)>),
}

/// What one series produced for the seconds drained.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Sum of the increments.
    Count(f64),
    Gauge(f64),
    Histogram(Box<Dist>),
    /// Distinct members (capped at the recorder's limit).
    Unique(u64),
}

/// A series with its state. Records may land a little late, so a few buckets stay open.
#[derive(Debug)]
pub struct Series {
    pub id: Arc<SeriesId>,
    pub state: State,
    /// The last second anything was recorded, for evicting idle series.
    pub last_sec: u64,
}

/// Open buckets per series (this second, and one late or early neighbour); records beyond
/// them merge into the newest bucket.
const MAX_BUCKETS: usize = 3;

fn bucket<T>(buckets: &mut Vec<(u64, T)>, sec: u64, new: impl FnOnce() -> T) -> &mut T {
    let i = match buckets.iter().position(|(s, _)| *s == sec) {
        Some(i) => i,
        None if buckets.len() < MAX_BUCKETS => {
            buckets.push((sec, new()));
            buckets.len() - 1
        }
        None => buckets.len() - 1,
    };
    &mut buckets[i].1
}

impl Series {
    pub fn new(id: Arc<SeriesId>, sec: u64) -> Self {
        let state = match id.kind {
            Kind::Counter => State::Counter(Vec::new()),
            Kind::Gauge => State::Gauge(0.0),
            Kind::Histogram => State::Histogram(Vec::new()),
            Kind::Set => State::Set(Vec::new()),
        };
        Self { id, state, last_sec: sec }
    }

    pub fn add(&mut self, sec: u64, v: f64) {
        self.last_sec = self.last_sec.max(sec);
        match &mut self.state {
            State::Counter(b) => *bucket(b, sec, || 0.0) += v,
            State::Gauge(g) => *g += v,
            State::Histogram(_) | State::Set(_) => {}
        }
    }

    pub fn set_gauge(&mut self, sec: u64, v: f64) {
        self.last_sec = self.last_sec.max(sec);
        if let State::Gauge(g) = &mut self.state {
            *g = v;
        }
    }

    pub fn observe(&mut self, sec: u64, v: f64, weight: f64) {
        self.last_sec = self.last_sec.max(sec);
        if let State::Histogram(b) = &mut self.state {
            bucket(b, sec, Dist::new).record(v, weight);
        }
    }

    pub fn insert(&mut self, sec: u64, member: u64, limits: &Limits) {
        self.last_sec = self.last_sec.max(sec);
        if let State::Set(b) = &mut self.state {
            let set = bucket(b, sec, HashSet::new);
            if set.len() < limits.max_set_members {
                set.insert(member);
            }
        }
    }

    /// Takes the buckets before `before_sec`, merged into one value; `None` if there were none.
    pub fn drain(&mut self, before_sec: u64, limits: &Limits) -> Option<Value> {
        match &mut self.state {
            State::Counter(b) => take_before(b, before_sec).map(|all| Value::Count(all.into_iter().sum())),
            State::Gauge(g) => Some(Value::Gauge(*g)),
            State::Histogram(b) => take_before(b, before_sec).map(|all| {
                let mut it = all.into_iter();
                let mut first = it.next().unwrap_or_default();
                it.for_each(|d| first.merge(&d));
                Value::Histogram(Box::new(first))
            }),
            State::Set(b) => take_before(b, before_sec).map(|all| {
                let mut it = all.into_iter();
                let mut first = it.next().unwrap_or_default();
                it.for_each(|s| first.extend(s));
                Value::Unique(first.len().min(limits.max_set_members) as u64)
            }),
        }
    }
}

fn take_before<T>(buckets: &mut Vec<(u64, T)>, before_sec: u64) -> Option<Vec<T>> {
    if !buckets.iter().any(|(s, _)| *s < before_sec) {
        return None;
    }
    let mut taken = Vec::new();
    let mut i = 0;
    while i < buckets.len() {
        if buckets[i].0 < before_sec {
            taken.push(buckets.remove(i).1);
        } else {
            i += 1;
        }
    }
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        let id = SeriesId::new("checkout.latency", &["env:prod", "region:eu.west", "env:prod"], Kind::Histogram, 0);
        assert_eq!(id.tags.len(), 2);
        let keys = id.keys();
        assert_eq!(&*keys.second[0], "app.checkout.latency{env:prod,region:eu_west}.p50");
        assert_eq!(&*keys.minute[0], "app.checkout.latency{env:prod,region:eu_west}.count");
        assert_eq!(&*keys.minute[4], "app.checkout.latency{env:prod,region:eu_west}.max");
        assert!(id.has_tags(&["region:eu.west", "env:prod"]));
        assert!(!id.has_tags(&["env:prod"]));
        let g = SeriesId::new("queue depth!", &[], Kind::Gauge, 1);
        assert_eq!(&*g.keys().second[0], "app.queue_depth_");
    }

    #[test]
    fn counter_buckets_drain_by_second() {
        let limits = Limits::default();
        let mut s = Series::new(Arc::new(SeriesId::new("c", &[], Kind::Counter, 0)), 10);
        s.add(10, 1.0);
        s.add(10, 2.0);
        s.add(11, 5.0);
        assert_eq!(s.drain(11, &limits), Some(Value::Count(3.0)));
        assert_eq!(s.drain(11, &limits), None);
        assert_eq!(s.drain(12, &limits), Some(Value::Count(5.0)));
    }
}
