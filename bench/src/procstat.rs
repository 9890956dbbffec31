//! CPU time and resident memory of a process, from /proc.

use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture the bench runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Which process: the server (`--server-pid`) or the bench itself.
#[derive(Debug, Clone, Copy)]
pub enum Pid {
    Of(u32),
    Current,
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::Of(pid) => format!("/proc/{pid}"),
            Self::Current => "/proc/self".to_owned(),
        }
    }
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    #[serde(skip)]
    pub at: Instant,
}

impl Usage {
    pub fn read(pid: Pid) -> anyhow::Result<Self> {
        let dir = pid.dir();
        let stat = std::fs::read_to_string(format!("{dir}/stat")).with_context(|| format!("reading {dir}/stat"))?;
        let status = std::fs::read_to_string(format!("{dir}/status")).with_context(|| format!("reading {dir}/status"))?;
        Ok(Self { cpu_s: cpu_seconds(&stat)?, rss_kib: vm_rss_kib(&status)?, at: Instant::now() })
    }

    /// What happened between `self` (earlier) and `later`.
    pub fn delta(&self, later: &Usage) -> Delta {
        Delta {
            cpu_s: later.cpu_s - self.cpu_s,
            wall_s: later.at.duration_since(self.at).as_secs_f64(),
            rss_before_kib: self.rss_kib,
            rss_after_kib: later.rss_kib,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Delta {
    pub cpu_s: f64,
    pub wall_s: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl Delta {
    /// Average cores busy over the window.
    pub fn cores(&self) -> f64 {
        if self.wall_s > 0.0 {
            self.cpu_s / self.wall_s
        } else {
            0.0
        }
    }
}

/// utime + stime from a `/proc/PID/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let Some(close) = stat.rfind(')') else { bail!("malformed stat line") };
    // After ")": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let tick = |i: usize| -> anyhow::Result<f64> {
        let v: u64 = fields.get(i).context("short stat line")?.parse().context("stat field is not a number")?;
        Ok(v as f64)
    };
    Ok((tick(11)? + tick(12)?) / CLOCK_TICKS_PER_SECOND)
}

/// `VmRSS` in KiB from `/proc/PID/status`.
pub fn vm_rss_kib(status: &str) -> anyhow::Result<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS line")?;
    let kib = line.split_whitespace().nth(1).context("empty VmRSS line")?;
    Ok(kib.parse()?)
}

/// Memory held in TCP socket buffers by the whole machine, KiB (`/proc/net/sockstat`,
/// "TCP: … mem PAGES"): where a backlog lives that no process's RSS shows.
pub fn tcp_buffers_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    tcp_mem_pages(&text).map(|pages| pages * 4)
}

fn tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "mem")?;
    words.next()?.parse().ok()
}

/// CPU time the whole machine spent busy (all but idle and iowait), seconds since boot,
/// from the first line of `/proc/stat`.
pub fn machine_busy_s() -> Option<f64> {
    busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?).map(|t| t as f64 / CLOCK_TICKS_PER_SECOND)
}

fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
    // already counted in user, so only the first eight fields are added.
    let total: u64 = ticks.iter().take(8).sum();
    Some(total - ticks.get(3)? - ticks.get(4).unwrap_or(&0))
}

/// A `TcpExt` counter of the whole machine from `/proc/net/netstat`, e.g. `ListenOverflows`
/// (connection attempts dropped because a listener's accept queue was full).
pub fn tcp_ext_counter(name: &str) -> Option<u64> {
    netstat_counter(&std::fs::read_to_string("/proc/net/netstat").ok()?, name)
}

fn netstat_counter(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let stat = "4242 (sonde relay) x) S 1 4242 4242 0 -1 4194560 1538 0 0 0 250 75 0 0 20 0 9 0 123 456 789";
        assert_eq!(cpu_seconds(stat).unwrap(), 3.25);
        assert!(cpu_seconds("4242 (x) S 1").is_err());
    }

    #[test]
    fn parses_status() {
        let status = "Name:\tsonde-relay\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status).unwrap(), 12345);
        assert!(vm_rss_kib("Name:\tx\n").is_err());
    }

    #[test]
    fn parses_sockstat() {
        let text = "sockets: used 35\nTCP: inuse 11 orphan 0 tw 830 alloc 11 mem 450\nUDP: inuse 1 mem 0\n";
        assert_eq!(tcp_mem_pages(text), Some(450));
        assert_eq!(tcp_mem_pages("UDP: inuse 1 mem 0\n"), None);
    }

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  100 5 50 1000 20 3 7 0 40 0\ncpu0 50 2 25 500 10 1 3 0 20 0\n";
        assert_eq!(busy_ticks(text), Some(165));
        assert_eq!(busy_ticks("intr 1 2 3\n"), None);
        assert!(machine_busy_s().unwrap() > 0.0);
    }

    #[test]
    fn parses_netstat() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 209 1010 1011\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(netstat_counter(text, "ListenOverflows"), Some(1010));
        assert_eq!(netstat_counter(text, "ListenDrops"), Some(1011));
        assert_eq!(netstat_counter(text, "Nope"), None);
    }

    #[test]
    fn reads_itself() {
        let a = Usage::read(Pid::Current).unwrap();
        assert!(a.rss_kib > 0);
        let spin = (0..2_000_000u64).fold(0u64, |acc, x| acc.wrapping_mul(31).wrapping_add(x));
        assert_ne!(spin, 1);
        let b = Usage::read(Pid::Current).unwrap();
        assert!(a.delta(&b).cpu_s >= 0.0);
    }
}
