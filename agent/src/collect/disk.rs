//! /proc/diskstats: throughput, operations and utilisation of whole block devices.

use std::collections::HashMap;
use std::path::Path;

use procfs_core::{DiskStat, DiskStats, FromBufRead};

use super::read::{rate, ProcReader};
use super::CollectError;
use crate::tick::{round, Family, Tick};

/// /proc/diskstats counts sectors of 512 bytes whatever the device's real sector size.
const SECTOR_BYTES: u64 = 512;
const MAX_DISKS: usize = 32;

#[derive(Clone, Copy)]
struct Prev {
    sectors_read: u64,
    sectors_written: u64,
    reads: u64,
    writes: u64,
    io_ms: u64,
}

impl Prev {
    fn of(d: &DiskStat) -> Self {
        Self { sectors_read: d.sectors_read, sectors_written: d.sectors_written, reads: d.reads, writes: d.writes, io_ms: d.time_in_progress }
    }
}

pub struct Disks {
    keys: Family<5>,
    prev: HashMap<String, Prev>,
    /// Whether a device name is a whole disk worth reporting, decided once per name.
    wanted: HashMap<String, bool>,
}

impl Disks {
    pub fn new() -> Self {
        Self {
            keys: Family::new("disk", ["read_bytes_ps", "write_bytes_ps", "reads_ps", "writes_ps", "util_pct"]),
            prev: HashMap::new(),
            wanted: HashMap::new(),
        }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, secs: f64, tick: &mut Tick) -> Result<(), CollectError> {
        let stats = DiskStats::from_buf_read(reader.read("/proc/diskstats")?)?;
        let mut reported = 0;
        for d in &stats.0 {
            if reported >= MAX_DISKS || !self.is_wanted(&d.name) {
                continue;
            }
            reported += 1;
            let now = Prev::of(d);
            let Some(slot) = self.prev.get_mut(&d.name) else {
                self.prev.insert(d.name.clone(), now);
                continue;
            };
            let prev = std::mem::replace(slot, now);
            let keys = self.keys.keys(&d.name);
            let util = rate(prev.io_ms, now.io_ms, secs) / 10.0; // ms busy per s → %
            let values = [
                rate(prev.sectors_read * SECTOR_BYTES, now.sectors_read * SECTOR_BYTES, secs).round(),
                rate(prev.sectors_written * SECTOR_BYTES, now.sectors_written * SECTOR_BYTES, secs).round(),
                round(rate(prev.reads, now.reads, secs), 1),
                round(rate(prev.writes, now.writes, secs), 1),
                round(util.min(100.0), 2),
            ];
            for (k, v) in keys.iter().zip(values) {
                tick.push(k, v);
            }
        }
        if self.prev.len() > stats.0.len() {
            self.prev.retain(|name, _| stats.0.iter().any(|d| &d.name == name));
        }
        Ok(())
    }

    fn is_wanted(&mut self, name: &str) -> bool {
        if let Some(&w) = self.wanted.get(name) {
            return w;
        }
        let w = is_whole_disk(name, Path::new("/sys/block").join(name).exists());
        self.wanted.insert(name.to_owned(), w);
        w
    }
}

/// Whole disks appear in /sys/block; partitions do not (they would count the same I/O twice).
/// Loop and RAM devices are noise.
fn is_whole_disk(name: &str, in_sys_block: bool) -> bool {
    in_sys_block && !["loop", "ram", "zram", "fd", "sr"].iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whole_disks_only() {
        assert!(is_whole_disk("sda", true));
        assert!(is_whole_disk("nvme0n1", true));
        assert!(is_whole_disk("dm-0", true));
        assert!(!is_whole_disk("sda1", false));
        assert!(!is_whole_disk("loop0", true));
        assert!(!is_whole_disk("zram0", true));
    }
}
