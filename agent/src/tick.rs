//! One second of host metrics as the agent keeps it: metric keys are shared strings, so a tick
//! reuses its buffers and allocates nothing once the keys are known.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sonde_protocol::sonde::{Sample, TopProcess};

/// A metric name, shared between ticks.
pub type Key = Arc<str>;

/// A process in a tick's top list.
#[derive(Debug, Clone, PartialEq)]
pub struct TopEntry {
    pub pid: u32,
    pub name: Arc<str>,
    pub cpu_pct: f64,
    pub mem_bytes: u64,
}

/// The metrics of one second.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    /// Unix ms of the second boundary that ends the second described.
    pub ts: u64,
    pub seq: u64,
    pub metrics: Vec<(Key, f64)>,
    pub top: Vec<TopEntry>,
}

impl Tick {
    /// Empties the tick, keeping its buffers.
    pub fn clear(&mut self) {
        self.metrics.clear();
        self.top.clear();
    }

    pub fn push(&mut self, key: &Key, value: f64) {
        self.metrics.push((key.clone(), value));
    }

    /// The value of one metric (a linear scan: used rarely, off the hot path).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| &**k == name).map(|&(_, v)| v)
    }

    /// The wire form. `with_top` is false for all but the newest sample of a backfill.
    pub fn to_sample(&self, with_top: bool) -> Sample {
        let metrics: BTreeMap<String, f64> = self.metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let top = if with_top { self.wire_top() } else { Vec::new() };
        Sample { ts: self.ts, seq: self.seq, metrics, top }
    }

    /// The top list in its wire form.
    pub fn wire_top(&self) -> Vec<TopProcess> {
        self.top.iter().map(|t| TopProcess { pid: t.pid, name: t.name.to_string(), cpu_pct: t.cpu_pct, mem_bytes: t.mem_bytes }).collect()
    }

    /// Gives back buffer memory a busier second needed (a burst of custom metrics), so ticks
    /// recycled through the ring do not each keep the largest size they ever had.
    pub fn shrink(&mut self) {
        if self.metrics.capacity() > 2 * self.metrics.len() + 64 {
            self.metrics.shrink_to_fit();
        }
    }
}

/// Keys of a metric family with one instance per device: `{group}.{instance}.{field}`.
/// Built once per instance; looking them up again allocates nothing.
pub struct Family<const N: usize> {
    group: &'static str,
    fields: [&'static str; N],
    keys: HashMap<String, [Key; N]>,
}

/// Instances come and go (containers' interfaces); past this many the cache starts afresh.
const MAX_INSTANCES: usize = 512;

impl<const N: usize> Family<N> {
    pub fn new(group: &'static str, fields: [&'static str; N]) -> Self {
        Self { group, fields, keys: HashMap::new() }
    }

    pub fn keys(&mut self, instance: &str) -> &[Key; N] {
        if !self.keys.contains_key(instance) {
            if self.keys.len() >= MAX_INSTANCES {
                self.keys.clear();
            }
            let (group, fields) = (self.group, self.fields);
            let made = fields.map(|f| Key::from(format!("{group}.{instance}.{f}")));
            self.keys.insert(instance.to_owned(), made);
        }
        &self.keys[instance]
    }
}

/// Fixed keys of a group: `{group}.{field}`.
pub fn keys<const N: usize>(group: &str, fields: [&str; N]) -> [Key; N] {
    fields.map(|f| Key::from(format!("{group}.{f}")))
}

/// Rounds to `places` decimals, to keep the encoded samples short. Values too large to have
/// decimals worth dropping are kept as they are (scaling them could overflow).
pub fn round(v: f64, places: i32) -> f64 {
    if v.abs() >= 1e15 {
        return v;
    }
    let m = 10f64.powi(places);
    (v * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_reuses_keys() {
        let mut fam = Family::new("net", ["rx_bytes_ps", "tx_bytes_ps"]);
        let a = fam.keys("eth0")[0].clone();
        assert_eq!(&*a, "net.eth0.rx_bytes_ps");
        assert!(Arc::ptr_eq(&a, &fam.keys("eth0")[0]));
        assert_eq!(&*fam.keys("eth0.100")[1], "net.eth0.100.tx_bytes_ps");
    }

    #[test]
    fn to_sample_drops_top_on_request() {
        let mut t = Tick { ts: 1000, seq: 1, ..Tick::default() };
        t.push(&Key::from("cpu.user_pct"), 1.5);
        t.top.push(TopEntry { pid: 1, name: "init".into(), cpu_pct: 0.0, mem_bytes: 4096 });
        assert_eq!(t.to_sample(true).top.len(), 1);
        let s = t.to_sample(false);
        assert!(s.top.is_empty());
        assert_eq!(s.metrics["cpu.user_pct"], 1.5);
        assert_eq!(t.get("cpu.user_pct"), Some(1.5));
        assert_eq!(round(1.23456, 2), 1.23);
    }
}
