//! Exact sizes of metric entries as they travel, so a sample or snapshot can be filled up to
//! its budget without encoding it again and again.
//!
//! An event's `data` travels as a JSON string inside the Pusher frame: the JSON text of the
//! sample, with its quotes and backslashes escaped once more. [`crate::encode::wire_len`]
//! measures a whole encoded text that way; [`entry_len`] gives what one `"name":value,`
//! entry adds to it.

use std::collections::BTreeMap;

use sonde_protocol::sonde::Sample;

use crate::encode::wire_len;
use crate::tick::Tick;

/// Bytes the tick's sample takes on the wire as it stands (all metrics and the top list).
pub fn tick_len(t: &Tick) -> usize {
    let shell = Sample { ts: t.ts, seq: t.seq, metrics: BTreeMap::new(), top: t.wire_top() };
    let base = wire_len(&serde_json::to_string(&shell).expect("samples always serialise"));
    base + t.metrics.iter().map(|(k, v)| entry_len(k, *v)).sum::<usize>()
}

/// Bytes a `"name":value,` entry of a metric map adds to an event's `data` on the wire;
/// 0 for values that are never written (NaN, infinities).
pub fn entry_len(name: &str, value: f64) -> usize {
    if !value.is_finite() {
        return 0;
    }
    // Two quotes (each `\"` on the wire), the colon and the comma.
    name_len(name) + value_len(value) + 6
}

/// The name as JSON escapes it, then escaped once more for the wire.
fn name_len(name: &str) -> usize {
    name.bytes()
        .map(|b| match b {
            // `\"` and `\\` in JSON, each of their two characters escaped again.
            b'"' | b'\\' => 4,
            // `\n` and friends: the backslash is escaped again.
            0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 3,
            // `\u00XX`.
            0x00..=0x1f => 7,
            _ => 1,
        })
        .sum()
}

/// Characters of the value as `sonde_protocol::sonde` writes metric values (whole numbers
/// below 2^53 as integers), counted by letting serde_json write it without storing it.
fn value_len(v: f64) -> usize {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let mut n = Counter(0);
    let written = if v.fract() == 0.0 && v.abs() < EXACT { serde_json::to_writer(&mut n, &(v as i64)) } else { serde_json::to_writer(&mut n, &v) };
    debug_assert!(written.is_ok(), "writing to a counter cannot fail");
    n.0
}

/// An `io::Write` that only counts.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Key, TopEntry};

    #[test]
    fn entries_add_up_to_the_encoded_size() {
        let names = ["cpu.user_pct", "fs./mnt/a \"quoted\\ dir.size_bytes", "app.x{env:prod}.p99", "net.tab\there", "bell\u{7}", "app.ünï.count_ps"];
        let values = [0.0, 1.0, -1.0, 12.5, 1e-7, 123_456_789_012.0, 9.1e15, 1e300, -0.004, 3.0e-300, f64::NAN, f64::INFINITY];
        let empty = Sample { ts: 1_700_000_000_000, seq: 42, metrics: BTreeMap::new(), top: Vec::new() };
        let base = wire_len(&serde_json::to_string(&empty).unwrap());
        for (i, name) in names.iter().enumerate() {
            for (j, v) in values.iter().enumerate() {
                let mut s = empty.clone();
                s.metrics.insert(format!("{name}{i}{j}"), *v);
                s.metrics.insert("z".into(), 1.0);
                let want = wire_len(&serde_json::to_string(&s).unwrap()) - base;
                let got = entry_len(&format!("{name}{i}{j}"), *v) + entry_len("z", 1.0) - 1;
                assert_eq!(got, want, "{name:?} = {v}");
            }
        }
    }

    #[test]
    fn tick_len_is_the_sample_size_give_or_take_a_comma() {
        let mut t = Tick { ts: 1_700_000_000_000, seq: 9, ..Tick::default() };
        for i in 0..40 {
            t.push(&Key::from(format!("net.eth{i}.rx_bytes_ps")), f64::from(i) * 1234.5);
        }
        t.top.push(TopEntry { pid: 1, name: "init \"x\"".into(), cpu_pct: 0.5, mem_bytes: 4096 });
        let real = wire_len(&serde_json::to_string(&t.to_sample(true)).unwrap());
        assert_eq!(tick_len(&t), real + 1);
    }
}
