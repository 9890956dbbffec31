//! /proc/meminfo and /proc/loadavg.

use procfs_core::{FromRead, LoadAverage};

use super::read::{pct, ProcReader};
use super::CollectError;
use crate::tick::{keys, round, Key, Tick};

const MEM_FIELDS: [&str; 8] =
    ["total_bytes", "used_bytes", "available_bytes", "cached_bytes", "buffers_bytes", "used_pct", "swap_total_bytes", "swap_used_bytes"];

pub struct Memory {
    mem: [Key; 8],
    load: [Key; 3],
}

impl Memory {
    pub fn new() -> Self {
        Self { mem: keys("mem", MEM_FIELDS), load: keys("system", ["load1", "load5", "load15"]) }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, tick: &mut Tick) -> Result<(), CollectError> {
        let m = Meminfo::parse(reader.read("/proc/meminfo")?);
        // Kernels before 3.14 have no MemAvailable; free + page cache is the old estimate.
        let available = m.mem_available.unwrap_or(m.mem_free + m.cached + m.buffers);
        let used = m.mem_total.saturating_sub(available);
        let cached = m.cached + m.s_reclaimable;
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

/// The /proc/meminfo fields used, in bytes. Parsed in place: the file has some 50 lines and
/// the general-purpose parser would allocate for each of them every second.
#[derive(Debug, Default, PartialEq)]
struct Meminfo {
    mem_total: u64,
    mem_free: u64,
    mem_available: Option<u64>,
    buffers: u64,
    cached: u64,
    s_reclaimable: u64,
    swap_total: u64,
    swap_free: u64,
}

impl Meminfo {
    fn parse(buf: &[u8]) -> Self {
        let mut m = Self::default();
        for line in buf.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (key, rest) = (&line[..colon], &line[colon + 1..]);
            let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
            let Some(n) = words.next().and_then(|w| std::str::from_utf8(w).ok()?.parse::<u64>().ok()) else { continue };
            let bytes = if words.next() == Some(&b"kB"[..]) { n * 1024 } else { n };
            match key {
                b"MemTotal" => m.mem_total = bytes,
                b"MemFree" => m.mem_free = bytes,
                b"MemAvailable" => m.mem_available = Some(bytes),
                b"Buffers" => m.buffers = bytes,
                b"Cached" => m.cached = bytes,
                b"SReclaimable" => m.s_reclaimable = bytes,
                b"SwapTotal" => m.swap_total = bytes,
                b"SwapFree" => m.swap_free = bytes,
                _ => {}
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo_in_bytes() {
        let text = b"MemTotal:       16384000 kB\nMemFree:         1000 kB\nMemAvailable:    8192000 kB\nBuffers:  10 kB\nCached: 20 kB\nSwapCached: 5 kB\nSReclaimable: 30 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\nHugePages_Total: 0\n";
        let m = Meminfo::parse(text);
        assert_eq!(m.mem_total, 16_384_000 * 1024);
        assert_eq!(m.mem_available, Some(8_192_000 * 1024));
        assert_eq!((m.buffers, m.cached, m.s_reclaimable), (10 * 1024, 20 * 1024, 30 * 1024));
        assert_eq!(Meminfo::parse(b"MemTotal: 1 kB\n").mem_available, None);
    }
}
