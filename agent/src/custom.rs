//! Custom metrics in samples and snapshots: each second the recorder's finished buckets become
//! `app.*` metrics of the tick, and add up into per-minute totals for the snapshot.
//!
//! A sample has a size limit, so custom metrics get what the host metrics leave: series in the
//! order the agent first saw them (oldest first), each series whole (a timer's five statistics
//! together) and only if it still fits. A burst of new names therefore never pushes out metrics
//! that were already flowing; what is left out is counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::encode::SAMPLE_BUDGET;
use crate::recorder::{Dist, Drained, Recorder, SeriesId, Value};
use crate::size::entry_len;
use crate::tick::{round, Tick};

/// A series' total over the minute so far.
#[derive(Debug, Clone)]
enum Total {
    /// Counters: the sum.
    Sum(f64),
    /// Gauges: the last value.
    Last(f64),
    /// Sets: the largest per-second distinct count.
    Max(f64),
    /// Histograms: every second's sketch merged, so the minute's percentiles are those of all
    /// its values, not an average of per-second percentiles.
    Dist(Box<Dist>),
}

/// One series' minute values, in the order of its `keys().minute`.
#[derive(Debug, Clone)]
pub struct MinuteSeries {
    pub id: Arc<SeriesId>,
    pub values: Vec<f64>,
}

/// Room for a value when estimating what a snapshot can carry.
const VALUE_ROOM: usize = 5;

#[derive(Debug)]
struct Minute {
    totals: HashMap<u64, (Arc<SeriesId>, Total)>,
    /// Snapshot bytes not yet claimed by a series this minute.
    room: usize,
}

impl Default for Minute {
    fn default() -> Self {
        Self { totals: HashMap::new(), room: SAMPLE_BUDGET }
    }
}

/// Per-minute totals, kept only for as many series as a snapshot can carry (the oldest that
/// wrote this minute): the rest could never be sent, so they cost no memory.
#[derive(Debug, Clone, Default)]
pub struct MinuteTotals {
    inner: Arc<Mutex<Minute>>,
}

impl MinuteTotals {
    /// Takes the totals gathered since the last call, oldest series first.
    pub fn take(&self) -> Vec<MinuteSeries> {
        // Taken whole, so the memory of a busy minute goes with it.
        let totals = std::mem::take(&mut *self.lock()).totals;
        let mut out: Vec<MinuteSeries> = totals.into_values().map(|(id, total)| MinuteSeries { values: minute_values(&total), id }).collect();
        out.sort_unstable_by_key(|m| m.id.order);
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Minute> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fold(&self, drained: &[Drained]) {
        if drained.is_empty() {
            return;
        }
        let mut m = self.lock();
        for d in drained {
            match m.totals.get_mut(&d.id.order) {
                Some((_, total)) => add(total, &d.value),
                None => {
                    let cost: usize = d.id.keys().minute.iter().map(|k| entry_len(k, 0.0) + VALUE_ROOM).sum();
                    if cost > m.room {
                        continue;
                    }
                    m.room -= cost;
                    let total = match &d.value {
                        Value::Count(c) => Total::Sum(*c),
                        Value::Gauge(g) => Total::Last(*g),
                        Value::Unique(u) => Total::Max(*u as f64),
                        Value::Histogram(h) => Total::Dist(h.clone()),
                    };
                    m.totals.insert(d.id.order, (d.id.clone(), total));
                }
            }
        }
    }
}

fn add(total: &mut Total, v: &Value) {
    match (total, v) {
        (Total::Sum(t), Value::Count(c)) => *t += c,
        (Total::Last(t), Value::Gauge(g)) => *t = *g,
        (Total::Max(t), Value::Unique(u)) => *t = t.max(*u as f64),
        (Total::Dist(t), Value::Histogram(h)) => t.merge(h),
        // A series keeps its kind, so its values always match its total.
        (Total::Sum(_) | Total::Last(_) | Total::Max(_) | Total::Dist(_), _) => {}
    }
}

fn minute_values(t: &Total) -> Vec<f64> {
    match t {
        Total::Sum(v) => vec![round(*v, 3)],
        Total::Last(v) | Total::Max(v) => vec![*v],
        Total::Dist(d) => {
            let s = d.summary();
            [s.count, s.p50, s.p90, s.p99, s.max].map(|v| round(v, 3)).to_vec()
        }
    }
}

/// The per-second values of a drained series, in the order of its `keys().second`.
fn second_values(v: &Value) -> ([f64; 5], usize) {
    match v {
        Value::Count(c) => ([round(*c, 3), 0.0, 0.0, 0.0, 0.0], 1),
        Value::Gauge(g) => ([*g, 0.0, 0.0, 0.0, 0.0], 1),
        Value::Unique(u) => ([*u as f64, 0.0, 0.0, 0.0, 0.0], 1),
        Value::Histogram(h) => {
            let s = h.summary();
            ([s.p50, s.p90, s.p99, s.max, s.count].map(|v| round(v, 3)), 5)
        }
    }
}

/// Moves the recorder's data into ticks.
pub struct Custom {
    recorder: Recorder,
    minute: MinuteTotals,
    scratch: Vec<Drained>,
}

impl Custom {
    pub fn new(recorder: Recorder, minute: MinuteTotals) -> Self {
        Self { recorder, minute, scratch: Vec::new() }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Appends everything recorded before the tick's second boundary that fits in `room`
    /// bytes of the sample (see [`crate::size`]); returns how many series were left out.
    pub fn fold_into(&mut self, tick: &mut Tick, mut room: usize) -> usize {
        self.scratch.clear();
        self.recorder.drain(tick.ts / 1000, &mut self.scratch);
        self.scratch.sort_unstable_by_key(|d| d.id.order);
        let mut omitted = 0;
        for d in &self.scratch {
            let keys = &d.id.keys().second;
            let (values, n) = second_values(&d.value);
            let cost: usize = keys.iter().zip(&values[..n]).map(|(k, v)| entry_len(k, *v)).sum();
            if cost > room {
                omitted += 1;
                continue;
            }
            room -= cost;
            for (k, v) in keys.iter().zip(&values[..n]) {
                tick.push(k, *v);
            }
        }
        self.minute.fold(&self.scratch);
        // The drained sketches are done with; do not keep a burst's worth of them around.
        if self.scratch.capacity() > 4 * self.scratch.len() + 64 {
            self.scratch = Vec::new();
        } else {
            self.scratch.clear();
        }
        omitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|g| (g - want).abs() <= want * crate::recorder::RELATIVE_ACCURACY)
    }

    #[test]
    fn folds_rates_percentiles_and_minute_totals() {
        let rec = Recorder::new();
        let minute = MinuteTotals::default();
        let mut custom = Custom::new(rec.clone(), minute.clone());
        for sec in [99, 100] {
            rec.counter_at(sec, "orders", &[], 3.0);
            for ms in 1..=100 {
                rec.observe_at(sec, "latency", &[], f64::from(ms + (sec as u32 - 99) * 100), 1.0);
            }
        }
        let mut tick = Tick { ts: 100_000, ..Tick::default() };
        assert_eq!(custom.fold_into(&mut tick, usize::MAX), 0);
        assert_eq!(tick.get("app.orders.count_ps"), Some(3.0));
        assert!(near(tick.get("app.latency.p50"), 50.0) && near(tick.get("app.latency.p90"), 90.0), "{:?}", tick.metrics);
        assert!(near(tick.get("app.latency.p99"), 99.0));
        assert_eq!(tick.get("app.latency.max"), Some(100.0));
        assert_eq!(tick.get("app.latency.count_ps"), Some(100.0));

        let mut next = Tick { ts: 101_000, ..Tick::default() };
        custom.fold_into(&mut next, usize::MAX);
        assert_eq!(next.get("app.orders.count_ps"), Some(3.0));

        let totals = minute.take();
        let orders = totals.iter().find(|m| &*m.id.name == "orders").unwrap();
        assert_eq!(orders.values, [6.0]);
        // The minute's percentiles come from the merged sketches: values 1..=200.
        let lat = totals.iter().find(|m| &*m.id.name == "latency").unwrap();
        assert_eq!(lat.values[0], 200.0);
        assert!(near(Some(lat.values[1]), 100.0) && near(Some(lat.values[3]), 198.0), "{:?}", lat.values);
        assert_eq!(lat.values[4], 200.0);
        assert!(minute.take().is_empty());
    }

    #[test]
    fn oldest_series_first_each_whole_and_only_if_it_fits() {
        let rec = Recorder::new();
        let mut custom = Custom::new(rec.clone(), MinuteTotals::default());
        rec.observe_at(100, "first", &[], 5.0, 1.0);
        rec.counter_at(100, &"long".repeat(50), &[], 1.0);
        for i in 0..50 {
            rec.counter_at(100, &format!("c{i:02}"), &[], 1.0);
        }
        let room = 300;
        let mut tick = Tick { ts: 101_000, ..Tick::default() };
        let omitted = custom.fold_into(&mut tick, room);
        let names: Vec<&str> = tick.metrics.iter().map(|(k, _)| &**k).collect();
        let used: usize = tick.metrics.iter().map(|(k, v)| entry_len(k, *v)).sum();
        assert!(used <= room, "{used} > {room}");
        assert!(names[..5].iter().all(|n| n.starts_with("app.first.")), "the timer first, whole: {names:?}");
        assert!(!names.iter().any(|n| n.starts_with("app.long")), "the long name does not fit: {names:?}");
        assert!(names.contains(&"app.c00.count_ps"), "smaller ones after it still do: {names:?}");
        let kept = names.len() - 5;
        assert_eq!(omitted, 51 - kept);
        let rest: Vec<String> = names[5..].iter().map(|n| n.to_string()).collect();
        assert_eq!(rest, (0..kept).map(|i| format!("app.c{i:02}.count_ps")).collect::<Vec<_>>());
    }

    #[test]
    fn minute_totals_keep_only_what_a_snapshot_can_carry() {
        let rec = Recorder::new();
        let minute = MinuteTotals::default();
        let mut custom = Custom::new(rec.clone(), minute.clone());
        for i in 0..1000 {
            rec.observe_at(100, &format!("timer.{i:04}"), &[], 1.0, 1.0);
        }
        custom.fold_into(&mut Tick { ts: 101_000, ..Tick::default() }, 0);
        let kept = minute.take();
        assert!(kept.len() > 20 && kept.len() < 100, "{} timers kept", kept.len());
        assert_eq!(&*kept[0].id.name, "timer.0000", "the oldest first");
        assert!(kept.windows(2).all(|w| w[0].id.order < w[1].id.order));
    }
}
