//! Custom metrics in samples and snapshots: each second the recorder's finished buckets become
//! `app.*` metrics of the tick, and add up into per-minute totals for the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::recorder::{Drained, Recorder, Value};
use crate::tick::{round, Key, Tick};

/// Per-minute totals: counters and histograms add their counts, gauges keep their last value,
/// sets keep their largest per-second distinct count.
#[derive(Debug, Default, Clone)]
pub struct MinuteTotals {
    totals: Arc<Mutex<HashMap<Key, f64>>>,
}

impl MinuteTotals {
    /// Takes the totals gathered since the last call.
    pub fn take(&self) -> BTreeMap<String, f64> {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        t.drain().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn fold(&self, drained: &[Drained]) {
        if drained.is_empty() {
            return;
        }
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        for d in drained {
            let key = &d.id.keys().minute;
            match &d.value {
                Value::Count(c) => *t.entry(key.clone()).or_default() += c,
                Value::Histogram(s) => *t.entry(key.clone()).or_default() += s.count,
                Value::Gauge(g) => {
                    t.insert(key.clone(), *g);
                }
                Value::Unique(u) => {
                    let e = t.entry(key.clone()).or_default();
                    *e = e.max(*u as f64);
                }
            }
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

    /// Appends everything recorded before the tick's second boundary.
    pub fn fold_into(&mut self, tick: &mut Tick) {
        self.scratch.clear();
        self.recorder.drain(tick.ts / 1000, &mut self.scratch);
        for d in &self.scratch {
            let keys = &d.id.keys().second;
            match &d.value {
                Value::Count(c) => tick.push(&keys[0], round(*c, 3)),
                Value::Gauge(g) => tick.push(&keys[0], *g),
                Value::Unique(u) => tick.push(&keys[0], *u as f64),
                Value::Histogram(s) => {
                    for (k, v) in keys.iter().zip([s.p50, s.p90, s.p99, s.max, s.count]) {
                        tick.push(k, round(v, 3));
                    }
                }
            }
        }
        self.minute.fold(&self.scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_rates_percentiles_and_minute_totals() {
        let rec = Recorder::new();
        let minute = MinuteTotals::default();
        let mut custom = Custom::new(rec.clone(), minute.clone());
        for sec in [99, 100] {
            rec.counter_at(sec, "orders", &[], 3.0);
            for ms in 1..=100 {
                rec.observe_at(sec, "latency", &[], f64::from(ms), 1.0);
            }
        }
        let mut tick = Tick { ts: 100_000, ..Tick::default() };
        custom.fold_into(&mut tick);
        assert_eq!(tick.get("app.orders.count_ps"), Some(3.0));
        assert_eq!(tick.get("app.latency.p50"), Some(50.0));
        assert_eq!(tick.get("app.latency.p90"), Some(90.0));
        assert_eq!(tick.get("app.latency.p99"), Some(99.0));
        assert_eq!(tick.get("app.latency.max"), Some(100.0));
        assert_eq!(tick.get("app.latency.count_ps"), Some(100.0));

        let mut next = Tick { ts: 101_000, ..Tick::default() };
        custom.fold_into(&mut next);
        assert_eq!(next.get("app.orders.count_ps"), Some(3.0));

        let totals = minute.take();
        assert_eq!(totals["app.orders.count"], 6.0);
        assert_eq!(totals["app.latency.count"], 200.0);
        assert!(minute.take().is_empty());
    }
}
