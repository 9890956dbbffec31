//! The once-a-minute snapshot: host facts, a one-line summary of the last minute from the
//! ring, the agent's own counters and the minute's custom metric totals.

use std::collections::BTreeMap;

use procfs_core::{FromBufRead, Meminfo};
use sonde_protocol::sonde::{Facts, Snapshot, Summary};

use crate::custom::MinuteTotals;
use crate::encode::{wire_len, SAMPLE_BUDGET};
use crate::install::InstallId;
use crate::own::PerMinute;
use crate::ring::Ring;
use crate::size::entry_len;
use crate::tick::round;

/// Seconds of history the summary averages.
const SUMMARY_WINDOW: usize = 60;

/// Builds snapshots; one per agent.
pub struct SnapshotSource {
    install_id: InstallId,
    host: Option<String>,
    facts: Facts,
    minute: MinuteTotals,
    own: PerMinute,
}

impl SnapshotSource {
    /// `host` is `None` for an anonymous agent.
    pub fn new(install_id: InstallId, host: Option<String>, facts: Facts, minute: MinuteTotals, own: PerMinute) -> Self {
        Self { install_id, host, facts, minute, own }
    }

    /// The data of a `client-sonde-snapshot` event. The agent's own counters go in first; then
    /// custom totals, oldest series first, each series whole and only if it still fits under
    /// the size limit.
    pub fn build(&self, ring: &Ring) -> String {
        let mut snap = Snapshot {
            install_id: self.install_id.to_string(),
            host: self.host.clone(),
            facts: self.facts.clone(),
            summary: summary(ring),
            custom: BTreeMap::new(),
        };
        let encode = |s: &Snapshot| serde_json::to_string(s).expect("snapshots always serialise");
        let mut room = SAMPLE_BUDGET.saturating_sub(wire_len(&encode(&snap)));
        let mut put = |custom: &mut BTreeMap<String, f64>, entries: &[(&str, f64)]| {
            let cost: usize = entries.iter().map(|(k, v)| entry_len(k, *v)).sum();
            if cost <= room {
                room -= cost;
                custom.extend(entries.iter().map(|(k, v)| (k.to_string(), *v)));
            }
        };
        for (k, v) in self.own.take() {
            put(&mut snap.custom, &[(k, v)]);
        }
        for m in self.minute.take() {
            let entries: Vec<(&str, f64)> = m.id.keys().minute.iter().map(|k| &**k).zip(m.values.iter().copied()).collect();
            put(&mut snap.custom, &entries);
        }
        encode(&snap)
    }

    /// Starts a new minute of totals without sending (during a session, or offline).
    pub fn skip_minute(&self) {
        self.minute.take();
        self.own.take();
    }
}

/// Averages over the last minute of ticks (the load average is already one).
pub fn summary(ring: &Ring) -> Summary {
    let (mut cpu, mut mem, mut n) = (0.0, 0.0, 0.0);
    for t in ring.iter().rev().take(SUMMARY_WINDOW) {
        if let (Some(idle), Some(used)) = (t.get("cpu.idle_pct"), t.get("mem.used_pct")) {
            cpu += 100.0 - idle;
            mem += used;
            n += 1.0;
        }
    }
    let load1 = ring.latest().and_then(|t| t.get("system.load1")).unwrap_or(0.0);
    let avg = |sum: f64| if n > 0.0 { round(sum / n, 2) } else { 0.0 };
    Summary { cpu_pct: avg(cpu), load1, mem_used_pct: avg(mem) }
}

/// Facts read once at start.
pub fn host_facts() -> Facts {
    let uname = rustix::system::uname();
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cores = stat.lines().filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit)).count();
    let mem_total_bytes = std::fs::read("/proc/meminfo").ok().and_then(|b| Meminfo::from_buf_read(&b[..]).ok()).map_or(0, |m| m.mem_total);
    Facts {
        os: os_name(&std::fs::read_to_string("/etc/os-release").unwrap_or_default()),
        kernel: uname.release().to_string_lossy().into_owned(),
        cores: cores.max(1) as u32,
        mem_total_bytes,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// `PRETTY_NAME` from os-release, else `NAME`, else "Linux".
fn os_name(os_release: &str) -> String {
    let field = |key: &str| os_release.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().trim_matches('"').to_owned());
    field("PRETTY_NAME").or_else(|| field("NAME")).unwrap_or_else(|| "Linux".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Key, Tick};

    #[test]
    fn os_release_names() {
        assert_eq!(os_name("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_name("NAME=Alpine\n"), "Alpine");
        assert_eq!(os_name(""), "Linux");
    }

    #[test]
    fn facts_of_this_machine() {
        let f = host_facts();
        assert!(f.cores >= 1 && f.mem_total_bytes > 0 && !f.kernel.is_empty());
        assert_eq!(f.agent_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn summary_averages_the_last_minute() {
        let mut ring = Ring::new(300);
        let (idle, used, load) = (Key::from("cpu.idle_pct"), Key::from("mem.used_pct"), Key::from("system.load1"));
        for seq in 0..120 {
            let mut t = Tick { seq, ..Tick::default() };
            let busy = if seq < 60 { 90.0 } else { 10.0 };
            t.push(&idle, 100.0 - busy);
            t.push(&used, 40.0);
            t.push(&load, seq as f64);
            ring.record(t);
        }
        let s = summary(&ring);
        assert_eq!((s.cpu_pct, s.mem_used_pct, s.load1), (10.0, 40.0, 119.0));
    }

    #[test]
    fn snapshot_with_many_custom_totals_stays_under_the_limit() {
        let minute = MinuteTotals::default();
        let rec = crate::Recorder::new();
        let own = PerMinute::new(crate::own::Sources { recorder: rec.clone(), statsd: None });
        let mut custom = crate::custom::Custom::new(rec.clone(), minute.clone());
        for i in 0..1000 {
            rec.counter(&format!("a.rather.long.custom.metric.name.{i}"), &[], 1.0);
            rec.histogram(&format!("timer.{i}"), &[], 1.0);
        }
        let mut t = Tick { ts: u64::MAX / 2, ..Tick::default() };
        custom.fold_into(&mut t, usize::MAX);
        let src = SnapshotSource::new(InstallId::random(), None, host_facts(), minute, own);
        let json = src.build(&Ring::new(1));
        assert!(wire_len(&json) <= SAMPLE_BUDGET && wire_len(&json) > SAMPLE_BUDGET - 2000, "{}", wire_len(&json));
        let snap: Snapshot = serde_json::from_str(&json).unwrap();
        assert!(snap.host.is_none());
        assert_eq!(snap.custom["agent.custom_dropped"], 976.0, "the own counters always go in");
        assert_eq!(snap.custom["app.a.rather.long.custom.metric.name.0.count"], 1.0, "the oldest series first");
        assert!(snap.custom.contains_key("app.timer.0.p99") && snap.custom.contains_key("app.timer.0.count"), "a timer whole");
    }
}
