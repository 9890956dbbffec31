//! What a simulated host reports: the metric names a real agent's sampler produces for a host
//! of that shape (cores, disks, filesystems, interfaces, its own `agent.*` metrics), a top list
//! of 20 processes, and the minute snapshot. Values are a cheap hash of (host, second), so a
//! host holds no history: a backfill is generated again when a session asks for it, and
//! 10,000 hosts cost the bench little memory.

use std::collections::BTreeMap;
use std::fmt::Write;

use sonde_protocol::sonde::{Backfill, Facts, Sample, SessionId, Snapshot, Summary, TopProcess, MAX_EVENT_DATA_BYTES};

/// The agent's budget for one encoded sample (its `SAMPLE_BUDGET`): room for a backfill
/// envelope is kept under the relay's 10 KB limit.
pub const SAMPLE_BUDGET: usize = MAX_EVENT_DATA_BYTES - 512;
/// Seconds of history the agent's ring keeps.
pub const RING_SECONDS: u64 = 300;

/// How a metric's value is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pct,
    Load,
    Count,
    Rate,
    Bytes,
    Zero,
}

/// Metric names of one host shape, sorted as the agent's map sorts them.
pub struct Shape {
    pub cores: u32,
    keys: Vec<(String, Kind)>,
}

impl Shape {
    /// A host of `cores` cores with `disks` disks, `filesystems` mounts and `nics` interfaces.
    pub fn new(cores: u32, disks: usize, filesystems: usize, nics: usize) -> Self {
        let mut keys = Vec::new();
        let fields = ["user", "system", "iowait", "steal", "idle"];
        for f in fields {
            keys.push((format!("cpu.{f}_pct"), Kind::Pct));
            keys.extend((0..cores).map(|c| (format!("cpu.{c}.{f}_pct"), Kind::Pct)));
        }
        keys.extend(["load1", "load5", "load15"].map(|f| (format!("system.{f}"), Kind::Load)));
        keys.extend(
            [("running", Kind::Count), ("blocked", Kind::Zero), ("total", Kind::Count), ("forks_ps", Kind::Rate), ("ctxt_switches_ps", Kind::Rate)]
                .map(|(f, k)| (format!("procs.{f}"), k)),
        );
        keys.extend(
            ["total_bytes", "available_bytes", "used_bytes", "cached_bytes", "buffers_bytes", "swap_total_bytes", "swap_used_bytes"]
                .map(|f| (format!("mem.{f}"), Kind::Bytes)),
        );
        keys.push(("mem.used_pct".into(), Kind::Pct));
        for d in ["sda", "nvme0n1", "sdb", "nvme1n1"].iter().take(disks) {
            keys.extend(["read_bytes_ps", "write_bytes_ps"].map(|f| (format!("disk.{d}.{f}"), Kind::Bytes)));
            keys.extend(["reads_ps", "writes_ps"].map(|f| (format!("disk.{d}.{f}"), Kind::Rate)));
            keys.push((format!("disk.{d}.util_pct"), Kind::Pct));
        }
        for m in ["/", "/var", "/home", "/srv"].iter().take(filesystems) {
            keys.extend(["size_bytes", "used_bytes", "avail_bytes"].map(|f| (format!("fs.{m}.{f}"), Kind::Bytes)));
            keys.push((format!("fs.{m}.used_pct"), Kind::Pct));
        }
        for n in ["eth0", "eth1", "docker0", "wg0"].iter().take(nics) {
            keys.extend(["rx_bytes_ps", "tx_bytes_ps"].map(|f| (format!("net.{n}.{f}"), Kind::Bytes)));
            keys.extend(["rx_packets_ps", "tx_packets_ps"].map(|f| (format!("net.{n}.{f}"), Kind::Rate)));
            keys.extend(["rx_errors_ps", "tx_errors_ps", "rx_drops_ps", "tx_drops_ps"].map(|f| (format!("net.{n}.{f}"), Kind::Zero)));
        }
        let own = ["custom_series", "custom_omitted", "custom_dropped_ps", "custom_rejected_ps", "statsd_bad_lines_ps", "statsd_kernel_drops_ps"];
        keys.extend(own.map(|f| (format!("agent.{f}"), Kind::Zero)));
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Self { cores, keys }
    }

    /// The shape of fleet host `n`: mostly small VMs, some larger machines.
    pub fn for_host(n: usize) -> Self {
        match n % 8 {
            0 => Self::new(8, 2, 2, 3),
            1 | 2 => Self::new(4, 1, 2, 2),
            _ => Self::new(2, 1, 1, 2),
        }
    }
}

/// A deterministic pseudo-random number in [0, 1) for (host, second, slot).
fn unit(host: u64, second: u64, slot: u64) -> f64 {
    let mut x = host.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ second.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ slot.wrapping_mul(0x1656_67B1_9E37_79F9);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// One simulated host.
pub struct Host {
    pub name: String,
    pub n: u64,
    pub shape: Shape,
    pub install_id: String,
}

const PROCS: [&str; 20] = [
    "postgres",
    "java",
    "nginx",
    "node",
    "python3",
    "redis-server",
    "dockerd",
    "containerd",
    "systemd",
    "sshd",
    "kworker/0:1",
    "rsyslogd",
    "cron",
    "sonde-agent",
    "haproxy",
    "php-fpm8.2",
    "ruby",
    "envoy",
    "memcached",
    "journald",
];

impl Host {
    pub fn new(name: String, n: usize) -> Self {
        let install_id = format!("{:016x}{:016x}", (unit(n as u64, 0, 1) * 2f64.powi(53)) as u64, (unit(n as u64, 0, 2) * 2f64.powi(53)) as u64);
        Self { name, n: n as u64, shape: Shape::for_host(n), install_id }
    }

    fn mem_total(&self) -> f64 {
        f64::from(self.shape.cores) * 2.0 * 1024.0 * 1024.0 * 1024.0
    }

    fn value(&self, kind: Kind, second: u64, slot: u64) -> f64 {
        let r = unit(self.n, second, slot);
        match kind {
            Kind::Pct => round2(r * 100.0),
            Kind::Load => round2(r * f64::from(self.shape.cores)),
            Kind::Count => (r * 400.0).floor(),
            Kind::Rate => (r * 20_000.0).floor(),
            Kind::Bytes => (r * self.mem_total()).floor(),
            Kind::Zero => 0.0,
        }
    }

    fn top(&self, second: u64) -> Vec<TopProcess> {
        let mut top: Vec<TopProcess> = PROCS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let r = unit(self.n, second, 1000 + i as u64);
                TopProcess {
                    pid: 300 + (self.n as u32 % 1000) * 37 + i as u32 * 101,
                    name: (*name).to_owned(),
                    cpu_pct: round2(r * 40.0),
                    mem_bytes: (r * 1.5e9) as u64,
                }
            })
            .collect();
        top.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct));
        top
    }

    /// The sample of second `seq` (its `ts` is `epoch_ms` plus `seq` seconds).
    pub fn sample(&self, epoch_ms: u64, seq: u64, with_top: bool) -> Sample {
        let metrics: BTreeMap<String, f64> = self.shape.keys.iter().enumerate().map(|(i, (k, kind))| (k.clone(), self.value(*kind, seq, i as u64))).collect();
        Sample { ts: epoch_ms + seq * 1000, seq, metrics, top: if with_top { self.top(seq) } else { Vec::new() } }
    }

    /// The JSON of a live sample.
    pub fn sample_json(&self, epoch_ms: u64, seq: u64) -> String {
        serde_json::to_string(&self.sample(epoch_ms, seq, true)).expect("samples serialise")
    }

    /// The backfill parts for the ring that ends just before `newest`: up to `history`
    /// samples, packed as the agent packs them (whole samples, each part under the budget;
    /// only the newest keeps its top list).
    pub fn backfill(&self, session: &str, epoch_ms: u64, newest: u64, history: u64, for_socket: Option<String>) -> Vec<String> {
        let first = newest.saturating_sub(history.min(RING_SECONDS - 1)).max(1);
        let mut groups: Vec<Vec<Sample>> = Vec::new();
        let mut used = usize::MAX;
        for seq in first..newest {
            let sample = self.sample(epoch_ms, seq, seq + 1 == newest);
            let size = wire_len(&serde_json::to_string(&sample).expect("samples serialise")) + 1;
            if used.saturating_add(size) > SAMPLE_BUDGET {
                groups.push(Vec::new());
                used = 0;
            }
            used += size;
            groups.last_mut().expect("a group was just pushed").push(sample);
        }
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        let parts = groups.len() as u32;
        let session = SessionId(session.to_owned());
        groups
            .into_iter()
            .enumerate()
            .map(|(part, samples)| {
                serde_json::to_string(&Backfill { session: session.clone(), part: part as u32, parts, samples, for_socket: for_socket.clone() })
                    .expect("backfills serialise")
            })
            .collect()
    }

    /// The minute snapshot: facts, the minute's summary, the agent's own counters and a few
    /// custom totals on one host in four.
    pub fn snapshot_json(&self, minute: u64) -> String {
        let facts = Facts {
            os: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel: "6.1.0-18-amd64".into(),
            cores: self.shape.cores,
            mem_total_bytes: self.mem_total() as u64,
            agent_version: env!("CARGO_PKG_VERSION").into(),
        };
        let summary = Summary {
            cpu_pct: round2(unit(self.n, minute, 7) * 100.0),
            load1: round2(unit(self.n, minute, 8) * f64::from(self.shape.cores)),
            mem_used_pct: round2(unit(self.n, minute, 9) * 100.0),
        };
        let mut custom = BTreeMap::new();
        for k in ["custom_series", "custom_dropped", "custom_rejected", "statsd_bad_lines", "statsd_kernel_drops"] {
            custom.insert(format!("agent.{k}"), 0.0);
        }
        if self.n.is_multiple_of(4) {
            custom.insert("agent.custom_series".into(), 3.0);
            custom.insert("app.checkout.count".into(), (unit(self.n, minute, 10) * 500.0).floor());
            custom.insert("app.queue.depth".into(), (unit(self.n, minute, 11) * 50.0).floor());
            custom.insert("app.request.p99".into(), round2(unit(self.n, minute, 12) * 300.0));
        }
        let snap = Snapshot { install_id: self.install_id.clone(), host: Some(self.name.clone()), facts, summary, custom };
        serde_json::to_string(&snap).expect("snapshots serialise")
    }
}

/// Bytes `json` takes as the `data` string of a delivered Pusher frame (escaped once more).
pub fn wire_len(json: &str) -> usize {
    json.len() + 2 + json.bytes().filter(|&b| b == b'"' || b == b'\\').count()
}

/// `{"event":…,"channel":…,"data":<json>}`: a client event with its data as an object, as the
/// agent writes it.
pub fn client_event(event: &str, channel: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + event.len() + channel.len() + 40);
    let _ = write!(out, "{{\"event\":{},\"channel\":{},\"data\":{data}}}", json_str(event), json_str(channel));
    out
}

pub fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_agents_metric_families() {
        let s = Shape::new(2, 1, 1, 3);
        // 5 × (1 + 2) cpu, 3 load, 5 procs, 8 mem, 5 disk, 4 fs, 3 × 8 net, 6 agent
        assert_eq!(s.keys.len(), 15 + 3 + 5 + 8 + 5 + 4 + 24 + 6);
        let h = Host::new("web-1".into(), 3);
        let sample: Sample = serde_json::from_str(&h.sample_json(1_700_000_000_000, 5)).unwrap();
        assert_eq!(sample.ts, 1_700_000_005_000);
        assert_eq!(sample.top.len(), 20);
        assert!(sample.metrics.keys().all(|k| !k.is_empty()));
        let cpu = sample.metrics["cpu.user_pct"];
        assert!((0.0..=100.0).contains(&cpu));
    }

    #[test]
    fn backfill_parts_hold_the_ring_in_order_under_the_limit() {
        let h = Host::new("db-1".into(), 0);
        let parts = h.backfill("s1", 0, 400, RING_SECONDS, None);
        let mut seqs = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            assert!(wire_len(p) <= MAX_EVENT_DATA_BYTES, "part {i} is {} bytes", wire_len(p));
            let b: Backfill = serde_json::from_str(p).unwrap();
            assert_eq!((b.part as usize, b.parts as usize), (i, parts.len()));
            seqs.extend(b.samples.iter().map(|s| s.seq));
        }
        assert_eq!(seqs, (101..400).collect::<Vec<_>>(), "299 samples before the newest");
        let empty = h.backfill("s2", 0, 1, RING_SECONDS, Some("1.2".into()));
        let b: Backfill = serde_json::from_str(&empty[0]).unwrap();
        assert!(b.samples.is_empty() && b.for_socket.as_deref() == Some("1.2"));
    }

    #[test]
    fn snapshots_parse_as_the_protocol_type() {
        let h = Host::new("web-2".into(), 8);
        let s: Snapshot = serde_json::from_str(&h.snapshot_json(1)).unwrap();
        assert_eq!(s.install_id.len(), 32);
        assert!(s.install_id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(s.host.as_deref(), Some("web-2"));
        assert!(s.custom.contains_key("app.checkout.count"));
        let e = client_event("client-sonde-snapshot", "private-sonde-host.web-2", &h.snapshot_json(1));
        let v: serde_json::Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["data"]["facts"]["cores"], 8);
    }
}
