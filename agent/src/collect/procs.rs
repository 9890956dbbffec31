//! Top processes by CPU and by memory, from one pass over /proc/[pid]/stat per second.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, RawDir, SeekFrom};

use super::pidstat;
use super::read::ProcReader;
use super::CollectError;
use crate::tick::{keys, round, Key, Tick, TopEntry};

/// How many processes each ranking keeps (the union of both is reported).
pub const TOP_N: usize = 10;
/// getdents buffer: a few hundred /proc entries per system call.
const DENTS_BUFFER: usize = 16 * 1024;

struct Known {
    cpu_ticks: u64,
    name: Arc<str>,
    /// The scan that last saw this pid; older entries belong to processes that exited.
    seen: u64,
}

#[derive(Clone, Copy)]
struct Candidate {
    pid: u32,
    cpu_pct: f64,
    mem_bytes: u64,
}

pub struct Processes {
    ticks_per_second: f64,
    page_size: u64,
    /// /proc, kept open and rewound for each scan.
    dir: Option<OwnedFd>,
    /// Buffer for directory entries: listing /proc allocates nothing per entry.
    dents: Vec<u8>,
    known: HashMap<u32, Known>,
    scan: u64,
    path: String,
    candidates: Vec<Candidate>,
    total_key: Key,
}

impl Processes {
    pub fn new(ticks_per_second: u64, page_size: u64) -> Self {
        Self {
            ticks_per_second: ticks_per_second.max(1) as f64,
            page_size,
            dir: None,
            dents: Vec::with_capacity(DENTS_BUFFER),
            known: HashMap::new(),
            scan: 0,
            path: String::with_capacity(32),
            candidates: Vec::new(),
            total_key: keys("procs", ["total"])[0].clone(),
        }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, secs: f64, tick: &mut Tick) -> Result<(), CollectError> {
        self.scan += 1;
        self.candidates.clear();
        let dir = match self.dir.take() {
            Some(d) => d,
            None => open_proc()?,
        };
        rustix::fs::seek(&dir, SeekFrom::Start(0)).map_err(std::io::Error::from)?;
        let mut dents = std::mem::take(&mut self.dents);
        let mut entries = RawDir::new(&dir, dents.spare_capacity_mut());
        let mut count = 0u32;
        while let Some(entry) = entries.next() {
            let Some(pid) = entry.ok().and_then(|e| parse_pid(e.file_name().to_bytes())) else { continue };
            count += 1;
            self.visit(pid, reader, secs);
        }
        self.dents = dents;
        self.dir = Some(dir);
        let scan = self.scan;
        self.known.retain(|_, k| k.seen == scan);
        tick.push(&self.total_key, f64::from(count));
        self.rank(tick);
        Ok(())
    }

    fn visit(&mut self, pid: u32, reader: &mut ProcReader, secs: f64) {
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/stat");
        // The process may exit between listing and reading: that is not an error.
        let Ok(buf) = reader.read(&self.path) else { return };
        let Some(st) = pidstat::parse(buf) else { return };
        let mem_bytes = st.rss_pages * self.page_size;
        let cpu_pct = match self.known.get_mut(&pid) {
            Some(k) => {
                let d = st.cpu_ticks.saturating_sub(k.cpu_ticks) as f64;
                k.cpu_ticks = st.cpu_ticks;
                k.seen = self.scan;
                if k.name.as_bytes() != st.comm {
                    k.name = Arc::from(String::from_utf8_lossy(st.comm).as_ref());
                }
                if secs > 0.0 {
                    d / self.ticks_per_second / secs * 100.0
                } else {
                    0.0
                }
            }
            None => {
                let name = Arc::from(String::from_utf8_lossy(st.comm).as_ref());
                self.known.insert(pid, Known { cpu_ticks: st.cpu_ticks, name, seen: self.scan });
                0.0
            }
        };
        self.candidates.push(Candidate { pid, cpu_pct, mem_bytes });
    }

    /// Appends the top `TOP_N` by CPU, then the top `TOP_N` by memory among the others: every
    /// process of either ranking is listed once, at most `2 * TOP_N` in all.
    fn rank(&mut self, tick: &mut Tick) {
        let c = &mut self.candidates;
        let n = TOP_N.min(c.len());
        if n == 0 {
            return;
        }
        let by_cpu = |a: &Candidate, b: &Candidate| b.cpu_pct.total_cmp(&a.cpu_pct).then(b.mem_bytes.cmp(&a.mem_bytes));
        let by_mem = |a: &Candidate, b: &Candidate| b.mem_bytes.cmp(&a.mem_bytes).then(b.cpu_pct.total_cmp(&a.cpu_pct));
        if n < c.len() {
            c.select_nth_unstable_by(n - 1, by_cpu);
        }
        c[..n].sort_unstable_by(by_cpu);
        for cand in &c[..n] {
            push_top(tick, &self.known, cand);
        }
        let rest = &mut c[n..];
        let m = TOP_N.min(rest.len());
        if m == 0 {
            return;
        }
        if m < rest.len() {
            rest.select_nth_unstable_by(m - 1, by_mem);
        }
        rest[..m].sort_unstable_by(by_mem);
        for cand in &rest[..m] {
            push_top(tick, &self.known, cand);
        }
    }
}

fn push_top(tick: &mut Tick, known: &HashMap<u32, Known>, c: &Candidate) {
    let Some(k) = known.get(&c.pid) else { return };
    tick.top.push(TopEntry { pid: c.pid, name: k.name.clone(), cpu_pct: round(c.cpu_pct, 1), mem_bytes: c.mem_bytes });
}

fn open_proc() -> Result<OwnedFd, CollectError> {
    let fd = rustix::fs::open("/proc", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(std::io::Error::from)?;
    Ok(fd)
}

fn parse_pid(name: &[u8]) -> Option<u32> {
    if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_names() {
        assert_eq!(parse_pid(b"123"), Some(123));
        assert_eq!(parse_pid(b"self"), None);
        assert_eq!(parse_pid(b""), None);
    }
}
