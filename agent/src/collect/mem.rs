//! /proc/meminfo and /proc/loadavg.

use procfs_core::{FromBufRead, FromRead, LoadAverage, Meminfo};

use super::read::{pct, ProcReader};
use super::CollectError;
use crate::tick::{keys, round, Key, Tick};

const MEM_FIELDS: [&str; 8] = [
    "total_bytes",
    "used_bytes",
    "available_bytes",
    "cached_bytes",
    "buffers_bytes",
    "used_pct",
    "swap_total_bytes",
    "swap_used_bytes",
];

pub struct Memory {
    mem: [Key; 8],
    load: [Key; 3],
}

impl Memory {
    pub fn new() -> Self {
        Self { mem: keys("mem", MEM_FIELDS), load: keys("system", ["load1", "load5", "load15"]) }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, tick: &mut Tick) -> Result<(), CollectError> {
        let m = Meminfo::from_buf_read(reader.read("/proc/meminfo")?)?;
        // Kernels before 3.14 have no MemAvailable; free + page cache is the old estimate.
        let available = m.mem_available.unwrap_or(m.mem_free + m.cached + m.buffers);
        let used = m.mem_total.saturating_sub(available);
        let cached = m.cached + m.s_reclaimable.unwrap_or(0);
        let values = [
            m.mem_total as f64,
            used as f64,
            available as f64,
            cached as f64,
            m.buffers as f64,
            round(pct(used as f64, m.mem_total as f64), 2),
            m.swap_total as f64,
            m.swap_total.saturating_sub(m.swap_free) as f64,
        ];
        for (k, v) in self.mem.iter().zip(values) {
            tick.push(k, v);
        }
        let l = LoadAverage::from_read(reader.read("/proc/loadavg")?)?;
        for (k, v) in self.load.iter().zip([l.one, l.five, l.fifteen]) {
            tick.push(k, round(f64::from(v), 2));
        }
        Ok(())
    }
}
