//! /proc/stat: CPU time split (total and per core), forks, context switches, runnable and
//! blocked processes.

use std::fmt::Write;

use procfs_core::{CpuTime, ExplicitSystemInfo, FromBufReadSI, KernelStats};

use super::read::{pct, rate, ProcReader};
use super::CollectError;
use crate::tick::{keys, round, Family, Key, Tick};

const FIELDS: [&str; 5] = ["user_pct", "system_pct", "iowait_pct", "steal_pct", "idle_pct"];

/// Busy and idle ticks of one CPU, folded into the five reported states. `user` includes
/// `nice`; `system` includes `irq` and `softirq`; guest time is already inside `user`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Split {
    user: u64,
    system: u64,
    iowait: u64,
    steal: u64,
    idle: u64,
}

impl Split {
    fn from_cpu(c: &CpuTime) -> Self {
        Self {
            user: c.user + c.nice,
            system: c.system + c.irq.unwrap_or(0) + c.softirq.unwrap_or(0),
            iowait: c.iowait.unwrap_or(0),
            steal: c.steal.unwrap_or(0),
            idle: c.idle,
        }
    }

    fn total(&self) -> u64 {
        self.user + self.system + self.iowait + self.steal + self.idle
    }

    /// Percentages over the interval since `prev`, in `FIELDS` order.
    fn pcts_since(&self, prev: &Split) -> [f64; 5] {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64;
        let total = d(self.total(), prev.total());
        [
            pct(d(self.user, prev.user), total),
            pct(d(self.system, prev.system), total),
            pct(d(self.iowait, prev.iowait), total),
            pct(d(self.steal, prev.steal), total),
            pct(d(self.idle, prev.idle), total),
        ]
    }
}

struct Prev {
    total: Split,
    cores: Vec<Split>,
    forks: u64,
    ctxt: u64,
}

pub struct Cpu {
    sys: ExplicitSystemInfo,
    total_keys: [Key; 5],
    cores: Family<5>,
    /// Scratch for a core's index as text.
    name: String,
    procs_keys: [Key; 4],
    prev: Option<Prev>,
}

impl Cpu {
    pub fn new(sys: ExplicitSystemInfo) -> Self {
        Self {
            sys,
            total_keys: keys("cpu", FIELDS),
            cores: Family::new("cpu", FIELDS),
            name: String::new(),
            procs_keys: keys("procs", ["running", "blocked", "forks_ps", "ctxt_switches_ps"]),
            prev: None,
        }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, secs: f64, tick: &mut Tick) -> Result<(), CollectError> {
        let buf = reader.read("/proc/stat")?;
        let stats = KernelStats::from_buf_read(buf, &self.sys)?;
        let now = Prev {
            total: Split::from_cpu(&stats.total),
            cores: stats.cpu_time.iter().map(Split::from_cpu).collect(),
            forks: stats.processes,
            ctxt: stats.ctxt,
        };
        tick.push(&self.procs_keys[0], f64::from(stats.procs_running.unwrap_or(0)));
        tick.push(&self.procs_keys[1], f64::from(stats.procs_blocked.unwrap_or(0)));
        if let Some(prev) = &self.prev {
            push_pcts(tick, &self.total_keys, now.total.pcts_since(&prev.total));
            for (i, (cur, old)) in now.cores.iter().zip(&prev.cores).enumerate() {
                self.name.clear();
                let _ = write!(self.name, "{i}");
                push_pcts(tick, self.cores.keys(&self.name), cur.pcts_since(old));
            }
            tick.push(&self.procs_keys[2], round(rate(prev.forks, now.forks, secs), 1));
            tick.push(&self.procs_keys[3], round(rate(prev.ctxt, now.ctxt, secs), 0));
        }
        self.prev = Some(now);
        Ok(())
    }
}

fn push_pcts(tick: &mut Tick, keys: &[Key; 5], pcts: [f64; 5]) {
    for (k, v) in keys.iter().zip(pcts) {
        tick.push(k, round(v, 2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_percentages_sum_to_100() {
        let a = Split { user: 100, system: 50, iowait: 0, steal: 0, idle: 850 };
        let b = Split { user: 150, system: 60, iowait: 10, steal: 0, idle: 880 };
        let p = b.pcts_since(&a);
        assert_eq!(p, [50.0, 10.0, 10.0, 0.0, 30.0]);
        assert_eq!(a.pcts_since(&a), [0.0; 5]);
    }
}
