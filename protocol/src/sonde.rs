//! Sonde's own events, carried as ordinary Pusher events on `private-sonde-host.{host}`.
//!
//! The relay sends `sonde:session` directives to the host's agent; the agent answers with
//! client events (`client-sonde-backfill`, `client-sonde-sample`, `client-sonde-snapshot`) that
//! the relay fans out to the viewers. Every event's `data` is one of the types below, encoded as
//! JSON. `docs/protocol.md` documents each field, metric name and unit.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::{ChannelError, ChannelName};

/// Prefix of a host's channel; the host name (or install id) follows.
pub const HOST_CHANNEL_PREFIX: &str = "private-sonde-host.";
/// Every host's channel, as a token's `subscribe` pattern names them.
pub const HOST_CHANNEL_PATTERN: &str = "private-sonde-host.*";
/// The channel dashboards follow the agent inventory on.
pub const INVENTORY_CHANNEL: &str = "private-sonde-inventory";
/// The channel the relay publishes its own state on while an operator watches.
pub const RELAY_CHANNEL: &str = "private-sonde-relay";
/// Relay → dashboards: a page of the inventory or the agents that changed.
pub const EVENT_INVENTORY: &str = "sonde:inventory";
/// Relay → operators: one node's state, once a second.
pub const EVENT_RELAY: &str = "sonde:relay";
/// Events only the relay sends (the HTTP API refuses them from publishers).
pub const RELAY_EVENT_PREFIX: &str = "sonde:";
/// The agent's client events (not reported as `client_event` webhooks).
pub const AGENT_EVENT_PREFIX: &str = "client-sonde-";
/// Relay → agent: a session directive ([`SessionDirective`]).
pub const EVENT_SESSION: &str = "sonde:session";
/// Agent → viewers: part of the 5-minute history ([`Backfill`]).
pub const EVENT_BACKFILL: &str = "client-sonde-backfill";
/// Agent → viewers: one live [`Sample`].
pub const EVENT_SAMPLE: &str = "client-sonde-sample";
/// Agent → relay: the once-a-minute [`Snapshot`] the host inventory is built from.
pub const EVENT_SNAPSHOT: &str = "client-sonde-snapshot";
/// Pusher's limit on an event's `data`. Every Sonde event stays below it.
pub const MAX_EVENT_DATA_BYTES: usize = 10 * 1024;
/// Sample interval a session uses when the directive names none.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;

/// The channel of one host: `private-sonde-host.{host}`.
pub fn host_channel(host: &str) -> Result<ChannelName, ChannelError> {
    ChannelName::parse(&format!("{HOST_CHANNEL_PREFIX}{host}"))
}

/// The host a channel belongs to, if it is a host channel.
pub fn host_of(channel: &str) -> Option<&str> {
    channel.strip_prefix(HOST_CHANNEL_PREFIX).filter(|h| !h.is_empty())
}

/// A session's id, chosen by the relay. Opaque to the agent.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// What a directive does to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Start streaming (backfill first). For a session already running: extend its lease.
    Started,
    /// Extend the lease of a running session.
    Renewed,
    /// Stop streaming now.
    Stopped,
    /// Send the history again, to one viewer that joined a running session.
    Backfill,
}

/// `sonde:session` data: the relay tells the agent to start, keep or stop streaming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDirective {
    pub state: SessionState,
    pub id: SessionId,
    /// Milliseconds between live samples; a multiple of 1000 (the agent samples each second).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Unix time (ms) after which the agent stops by itself unless the lease is renewed.
    #[serde(default)]
    pub lease_until: u64,
    /// `backfill` only: the socket id of the viewer that joined a running session and needs
    /// the history; the relay delivers that backfill to it alone.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_socket: Option<String>,
}

fn default_interval_ms() -> u64 {
    DEFAULT_INTERVAL_MS
}

/// One process in a sample's top list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopProcess {
    pub pid: u32,
    /// The kernel's short name for the process (`comm`, at most 15 bytes).
    pub name: String,
    /// Share of one core used over the last second (200 = two full cores).
    pub cpu_pct: f64,
    /// Resident set size.
    pub mem_bytes: u64,
}

/// `client-sonde-sample` data, and each element of a backfill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Unix time (ms) of the second this sample describes; a multiple of 1000.
    pub ts: u64,
    /// Increases by one per second sampled since the agent started; a gap means lost samples.
    pub seq: u64,
    /// Metric name → value. Whole numbers are written without a fraction; non-finite values
    /// are never written.
    #[serde(serialize_with = "compact_metrics")]
    pub metrics: BTreeMap<String, f64>,
    /// Up to 10 processes by CPU and 10 by memory, deduplicated, busiest first. Empty in
    /// backfill samples except the newest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<TopProcess>,
}

/// Writes whole values as integers (`12` rather than `12.0`) and leaves out NaN and infinities,
/// which JSON cannot carry. Keeps samples small; readers parse both forms as `f64`.
fn compact_metrics<S: Serializer>(metrics: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: integers beyond it are not exact in f64
    let mut map = s.serialize_map(None)?;
    for (name, &v) in metrics {
        if !v.is_finite() {
            continue;
        }
        if v.fract() == 0.0 && v.abs() < EXACT {
            map.serialize_entry(name, &(v as i64))?;
        } else {
            map.serialize_entry(name, &v)?;
        }
    }
    map.end()
}

/// `client-sonde-backfill` data: the ring's samples, oldest first, split into parts that each
/// stay under [`MAX_EVENT_DATA_BYTES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub session: SessionId,
    /// 0-based index of this part.
    pub part: u32,
    /// Number of parts in this backfill.
    pub parts: u32,
    pub samples: Vec<Sample>,
    /// Set when the backfill answers a `backfill` directive: the one viewer it is for.
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_socket: Option<String>,
}

/// Facts about the host that change rarely.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Distribution name, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    /// Kernel release, e.g. `6.1.0-18-amd64`.
    pub kernel: String,
    pub cores: u32,
    pub mem_total_bytes: u64,
    pub agent_version: String,
}

/// A one-line view of the host, averaged over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub cpu_pct: f64,
    pub load1: f64,
    pub mem_used_pct: f64,
}

/// `client-sonde-snapshot` data, sent once a minute outside sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// 32 hex digits, random, stable across restarts of the agent.
    pub install_id: String,
    /// The host name; `null` when the agent runs with `--anonymous`.
    pub host: Option<String>,
    pub facts: Facts,
    pub summary: Summary,
    /// Custom metric → its total over the last minute.
    #[serde(default, serialize_with = "compact_metrics")]
    pub custom: BTreeMap<String, f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realistic_sample() -> Sample {
        let mut metrics = BTreeMap::new();
        let mut put = |k: String, v: f64| {
            metrics.insert(k, v);
        };
        for f in ["user", "system", "iowait", "steal", "idle"] {
            put(format!("cpu.{f}_pct"), 12.34);
            for core in 0..8 {
                put(format!("cpu.{core}.{f}_pct"), 56.78);
            }
        }
        for f in ["load1", "load5", "load15"] {
            put(format!("system.{f}"), 1.23);
        }
        for f in ["used_bytes", "available_bytes", "cached_bytes", "total_bytes", "swap_used_bytes", "swap_total_bytes"] {
            put(format!("mem.{f}"), 16_123_456_789.0);
        }
        put("mem.used_pct".into(), 43.21);
        for f in ["running", "blocked", "forks_ps", "ctxt_ps"] {
            put(format!("procs.{f}"), 12_345.0);
        }
        for dev in ["nvme0n1", "nvme1n1"] {
            for f in ["read_bytes_ps", "write_bytes_ps", "reads_ps", "writes_ps", "util_pct"] {
                put(format!("disk.{dev}.{f}"), 1_234_567.0);
            }
        }
        for fs in ["/", "/var/lib/docker"] {
            for f in ["size_bytes", "used_bytes", "avail_bytes", "used_pct"] {
                put(format!("fs.{fs}.{f}"), 512_345_678_901.0);
            }
        }
        for nic in ["eth0", "eth1", "bond0", "docker0", "wg0", "enp3s0f1"] {
            for f in ["rx_bytes_ps", "tx_bytes_ps", "rx_packets_ps", "tx_packets_ps", "rx_errors_ps", "tx_errors_ps", "rx_drops_ps", "tx_drops_ps"] {
                put(format!("net.{nic}.{f}"), 123_456_789.0);
            }
        }
        let top = (0..20).map(|i| TopProcess { pid: 4_000_000 + i, name: "postgres: walwri".into(), cpu_pct: 123.45, mem_bytes: 12_345_678_901 }).collect();
        Sample { ts: 1_700_000_000_000, seq: 123_456, metrics, top }
    }

    #[test]
    fn directive_round_trip_and_defaults() {
        let d =
            SessionDirective { state: SessionState::Started, id: SessionId("s1".into()), interval_ms: 1000, lease_until: 1_700_000_030_000, for_socket: None };
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, r#"{"state":"started","id":"s1","interval_ms":1000,"lease_until":1700000030000}"#);
        assert_eq!(serde_json::from_str::<SessionDirective>(&text).unwrap(), d);
        let stopped: SessionDirective = serde_json::from_str(r#"{"state":"stopped","id":"s1"}"#).unwrap();
        assert_eq!(stopped.state, SessionState::Stopped);
        assert_eq!(stopped.interval_ms, DEFAULT_INTERVAL_MS);
        assert!(serde_json::from_str::<SessionDirective>(r#"{"state":"paused","id":"s1"}"#).is_err());
    }

    #[test]
    fn sample_round_trip_writes_whole_numbers_compactly() {
        let s = realistic_sample();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains(r#""mem.used_bytes":16123456789,"#), "{text}");
        assert!(text.contains(r#""cpu.user_pct":12.34,"#));
        assert_eq!(serde_json::from_str::<Sample>(&text).unwrap(), s);

        let mut odd = Sample { ts: 0, seq: 0, metrics: BTreeMap::new(), top: Vec::new() };
        odd.metrics.insert("a".into(), f64::NAN);
        odd.metrics.insert("b".into(), -2.0);
        assert_eq!(serde_json::to_string(&odd).unwrap(), r#"{"ts":0,"seq":0,"metrics":{"b":-2}}"#);
    }

    #[test]
    fn realistic_sample_stays_under_the_event_limit() {
        let text = serde_json::to_string(&realistic_sample()).unwrap();
        // Measured as it travels: a JSON string inside the Pusher frame, escapes included.
        let escaped = crate::frame::json_string(&text);
        assert!(escaped.len() < MAX_EVENT_DATA_BYTES, "{} bytes", escaped.len());
    }

    #[test]
    fn backfill_and_snapshot_round_trip() {
        let b = Backfill { session: SessionId("s".into()), part: 0, parts: 2, samples: vec![realistic_sample()], for_socket: Some("1.2".into()) };
        let text = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<Backfill>(&text).unwrap(), b);

        let snap = Snapshot {
            install_id: "0123456789abcdef0123456789abcdef".into(),
            host: None,
            facts: Facts { os: "Debian".into(), kernel: "6.1".into(), cores: 4, mem_total_bytes: 1 << 34, agent_version: "0.1.0".into() },
            summary: Summary { cpu_pct: 3.5, load1: 0.25, mem_used_pct: 40.0 },
            custom: BTreeMap::from([("app.checkout.count".to_owned(), 42.0)]),
        };
        let text = serde_json::to_string(&snap).unwrap();
        assert!(text.contains(r#""host":null"#));
        assert_eq!(serde_json::from_str::<Snapshot>(&text).unwrap(), snap);
    }

    #[test]
    fn host_channels() {
        assert_eq!(host_channel("web1").unwrap().as_str(), "private-sonde-host.web1");
        assert!(host_channel("bad host").is_err());
        assert_eq!(host_of("private-sonde-host.web1"), Some("web1"));
        assert_eq!(host_of("private-sonde-host."), None);
        assert_eq!(host_of("private-other"), None);
    }
}
