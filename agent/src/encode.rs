//! Event payloads from ticks, each kept under Pusher's 10 KB limit on `data`.
//!
//! The sampler already keeps each tick within [`SAMPLE_BUDGET`] (custom metrics get only the
//! room the host leaves). A sample that still would not fit (a host with very many cores, disks
//! or interfaces) is trimmed here in a fixed order: per-core CPU metrics first, then the top
//! list, then metrics from the end of the sorted map. A backfill packs whole samples, oldest
//! first, greedily into parts.

use sonde_protocol::sonde::{Backfill, Sample, SessionId, MAX_EVENT_DATA_BYTES};

use crate::tick::Tick;

/// Room kept for the backfill envelope around samples (session id, part numbers).
const ENVELOPE_ROOM: usize = 512;
/// Largest encoded sample: fits inside a backfill part with its envelope.
pub const SAMPLE_BUDGET: usize = MAX_EVENT_DATA_BYTES - ENVELOPE_ROOM;

/// Bytes `json` takes as the `data` string of a Pusher frame: quotes and backslashes are
/// escaped once more, and the string gets its own quotes.
pub fn wire_len(json: &str) -> usize {
    json.len() + 2 + json.bytes().filter(|&b| b == b'"' || b == b'\\').count()
}

fn encode(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("Sonde events always serialise")
}

/// Shrinks `sample` until it fits `budget`; returns its JSON.
pub fn fit(sample: &mut Sample, budget: usize) -> String {
    let mut json = encode(sample);
    if wire_len(&json) <= budget {
        return json;
    }
    tracing::debug!(bytes = wire_len(&json), "sample over the size limit; trimming");
    sample.metrics.retain(|k, _| !is_per_core(k));
    json = encode(sample);
    while wire_len(&json) > budget && !sample.top.is_empty() {
        let keep = sample.top.len() / 2;
        sample.top.truncate(keep);
        json = encode(sample);
    }
    while wire_len(&json) > budget && !sample.metrics.is_empty() {
        let drop = sample.metrics.len().div_ceil(8);
        for _ in 0..drop {
            sample.metrics.pop_last();
        }
        json = encode(sample);
    }
    json
}

/// `cpu.<core>.<field>`: the per-core split.
fn is_per_core(key: &str) -> bool {
    key.strip_prefix("cpu.").and_then(|r| r.split_once('.')).is_some_and(|(core, _)| core.bytes().all(|b| b.is_ascii_digit()))
}

/// The data of a `client-sonde-sample` event.
pub fn sample_data(tick: &Tick) -> String {
    fit(&mut tick.to_sample(true), SAMPLE_BUDGET)
}

/// The data of each `client-sonde-backfill` part, in order. `ticks` run oldest first; only the
/// newest keeps its top list.
pub fn backfill_parts<'a>(session: &SessionId, ticks: impl Iterator<Item = &'a Tick>, for_socket: Option<String>) -> Vec<String> {
    let mut groups: Vec<Vec<Sample>> = Vec::new();
    let mut used = usize::MAX;
    let mut ticks = ticks.peekable();
    while let Some(t) = ticks.next() {
        let newest = ticks.peek().is_none();
        let mut sample = t.to_sample(newest);
        let size = wire_len(&fit(&mut sample, SAMPLE_BUDGET)) + 1;
        if used.saturating_add(size) > SAMPLE_BUDGET {
            groups.push(Vec::new());
            used = 0;
        }
        used += size;
        groups.last_mut().expect("a group was just pushed").push(sample);
    }
    if groups.is_empty() {
        // Just started: an empty backfill still tells viewers that history is complete.
        groups.push(Vec::new());
    }
    let parts = groups.len() as u32;
    groups
        .into_iter()
        .enumerate()
        .map(|(part, samples)| encode(&Backfill { session: session.clone(), part: part as u32, parts, samples, for_socket: for_socket.clone() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tick::{Key, TopEntry};

    fn big_tick(seq: u64, cores: usize, nics: usize) -> Tick {
        let mut t = Tick { ts: seq * 1000, seq, ..Tick::default() };
        for f in ["user", "system", "iowait", "steal", "idle"] {
            t.push(&Key::from(format!("cpu.{f}_pct")), 12.34);
            for c in 0..cores {
                t.push(&Key::from(format!("cpu.{c}.{f}_pct")), 45.67);
            }
        }
        for n in 0..nics {
            for f in ["rx_bytes_ps", "tx_bytes_ps", "rx_packets_ps", "tx_packets_ps"] {
                t.push(&Key::from(format!("net.eth{n}.{f}")), 123_456_789.0);
            }
        }
        for i in 0..20 {
            t.top.push(TopEntry { pid: 100_000 + i, name: Arc::from("postgres: writer"), cpu_pct: 99.9, mem_bytes: 1 << 33 });
        }
        t
    }

    #[test]
    fn ordinary_samples_are_untouched() {
        let t = big_tick(1, 4, 4);
        let json = sample_data(&t);
        let s: Sample = serde_json::from_str(&json).unwrap();
        assert_eq!(s.metrics.len(), t.metrics.len());
        assert_eq!(s.top.len(), 20);
    }

    #[test]
    fn oversized_samples_are_trimmed_per_core_first() {
        let t = big_tick(1, 128, 8);
        let json = sample_data(&t);
        assert!(wire_len(&json) <= SAMPLE_BUDGET);
        let s: Sample = serde_json::from_str(&json).unwrap();
        assert!(s.metrics.contains_key("cpu.user_pct"));
        assert!(!s.metrics.keys().any(|k| is_per_core(k)));
        assert_eq!(s.top.len(), 20);

        let huge = big_tick(1, 0, 400);
        assert!(wire_len(&sample_data(&huge)) <= SAMPLE_BUDGET);
    }

    #[test]
    fn backfill_parts_fit_and_carry_every_sample_once_in_order() {
        let ticks: Vec<Tick> = (1..=300).map(|s| big_tick(s, 8, 6)).collect();
        let parts = backfill_parts(&SessionId("s1".into()), ticks.iter(), None);
        assert!(parts.len() > 1);
        let mut seqs = Vec::new();
        for (i, data) in parts.iter().enumerate() {
            assert!(wire_len(data) < MAX_EVENT_DATA_BYTES, "part {i}: {} bytes", wire_len(data));
            let b: Backfill = serde_json::from_str(data).unwrap();
            assert_eq!((b.part as usize, b.parts as usize), (i, parts.len()));
            assert_eq!(b.session.0, "s1");
            seqs.extend(b.samples.iter().map(|s| s.seq));
            let last = b.samples.last().unwrap();
            assert_eq!(last.top.is_empty(), last.seq != 300, "only the newest sample has a top list");
        }
        assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    }

    #[test]
    fn empty_ring_gives_one_empty_part() {
        let parts = backfill_parts(&SessionId("s".into()), std::iter::empty::<&Tick>(), None);
        assert_eq!(parts, [r#"{"session":"s","part":0,"parts":1,"samples":[]}"#]);
        assert!(is_per_core("cpu.12.user_pct"));
        assert!(!is_per_core("cpu.user_pct"));
    }
}
