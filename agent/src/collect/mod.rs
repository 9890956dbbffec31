//! Host metrics from /proc, one collector per source file. Each collector turns counters into
//! per-second rates against its previous reading, so the first tick after start carries only
//! the instantaneous values.

mod cpu;
mod disk;
mod fs;
mod mem;
mod net;
mod pidstat;
mod procs;
mod read;

use std::time::Instant;

use procfs_core::ExplicitSystemInfo;

use crate::tick::Tick;

pub use procs::TOP_N;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("reading /proc: {0}")]
    Io(#[from] std::io::Error),
    #[error("parsing /proc: {0}")]
    Parse(#[from] procfs_core::ProcError),
}

/// Which collectors failed on their last run, so each failure is logged once, not every second.
#[derive(Default)]
struct Failing([bool; 6]);

/// All collectors, with the buffers they share.
pub struct Collectors {
    reader: read::ProcReader,
    cpu: cpu::Cpu,
    mem: mem::Memory,
    disks: disk::Disks,
    fs: fs::Filesystems,
    net: net::Network,
    procs: procs::Processes,
    last: Option<Instant>,
    failing: Failing,
}

impl Collectors {
    pub fn new() -> Self {
        let ticks_per_second = rustix::param::clock_ticks_per_second();
        let page_size = rustix::param::page_size() as u64;
        let sys = ExplicitSystemInfo { boot_time_secs: 0, ticks_per_second, page_size, is_little_endian: cfg!(target_endian = "little") };
        Self {
            reader: read::ProcReader::default(),
            cpu: cpu::Cpu::new(sys),
            mem: mem::Memory::new(),
            disks: disk::Disks::new(),
            fs: fs::Filesystems::new(),
            net: net::Network::new(),
            procs: procs::Processes::new(ticks_per_second, page_size),
            last: None,
            failing: Failing::default(),
        }
    }

    /// Appends this second's host metrics and top processes to `tick`.
    pub fn collect(&mut self, tick: &mut Tick) {
        let now = Instant::now();
        let secs = self.last.map_or(0.0, |l| now.duration_since(l).as_secs_f64());
        self.last = Some(now);
        let r = &mut self.reader;
        let results = [
            ("cpu", self.cpu.collect(r, secs, tick)),
            ("memory", self.mem.collect(r, tick)),
            ("disk", self.disks.collect(r, secs, tick)),
            ("filesystem", self.fs.collect(r, tick)),
            ("network", self.net.collect(r, secs, tick)),
            ("processes", self.procs.collect(r, secs, tick)),
        ];
        for (i, (name, result)) in results.into_iter().enumerate() {
            match result {
                Ok(()) => self.failing.0[i] = false,
                Err(e) if !self.failing.0[i] => {
                    self.failing.0[i] = true;
                    tracing::warn!(collector = name, error = %e, "collector failed; its metrics are missing until it recovers");
                }
                Err(e) => tracing::debug!(collector = name, error = %e, "collector still failing"),
            }
        }
    }
}

impl Default for Collectors {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the collectors twice on this machine's real /proc, a short while apart.
    fn two_ticks() -> Tick {
        let mut c = Collectors::new();
        let mut t = Tick::default();
        c.collect(&mut t);
        std::thread::sleep(std::time::Duration::from_millis(300));
        t.clear();
        c.collect(&mut t);
        t
    }

    #[test]
    fn real_proc_values_are_present_and_sane() {
        let t = two_ticks();
        let get = |k: &str| t.get(k).unwrap_or_else(|| panic!("{k} missing from {:?}", t.metrics));
        let split: f64 = ["user", "system", "iowait", "steal", "idle"].iter().map(|f| get(&format!("cpu.{f}_pct"))).sum();
        assert!((99.0..=101.0).contains(&split) || split == 0.0, "cpu split sums to {split}");
        assert!(t.get("cpu.0.idle_pct").is_some());
        let total = get("mem.total_bytes");
        assert!(total > 64.0 * 1024.0 * 1024.0, "mem.total_bytes {total}");
        assert!(get("mem.used_bytes") <= total && get("mem.available_bytes") <= total);
        assert!((0.0..=100.0).contains(&get("mem.used_pct")));
        assert!(get("system.load1") >= 0.0 && get("system.load15") >= 0.0);
        assert!(get("procs.total") >= 1.0);
        assert!(get("procs.running") >= 1.0, "this test itself runs");
        assert!(get("procs.ctxt_switches_ps") > 0.0);
        let fs_root = t.get("fs./.size_bytes").or_else(|| t.metrics.iter().find(|(k, _)| k.starts_with("fs.")).map(|m| m.1));
        assert!(fs_root.unwrap_or(1.0) > 0.0);
        for (k, v) in &t.metrics {
            assert!(v.is_finite() && *v >= 0.0, "{k} = {v}");
            if k.ends_with("_pct") && !k.starts_with("app.") {
                assert!(*v <= 100.0, "{k} = {v}");
            }
        }
    }

    #[test]
    fn real_top_processes_include_this_one() {
        let t = two_ticks();
        assert!(!t.top.is_empty() && t.top.len() <= 2 * TOP_N);
        let me = std::process::id();
        let mut pids: Vec<u32> = t.top.iter().map(|p| p.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), t.top.len(), "each process listed once");
        assert!(t.top.iter().all(|p| !p.name.is_empty()));
        // This test process is busy and holds memory: it ranks in at least one list on a quiet
        // machine, but a busy build machine may crowd it out, so only check when it is there.
        if let Some(p) = t.top.iter().find(|p| p.pid == me) {
            assert!(p.mem_bytes > 0);
        }
    }
}
