//! `sonde-bench summary DIR`: the JSON reports of a run folder as Markdown tables, one per
//! report, one column per measured window, the rows that BENCHMARKS.md quotes.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// Rows worth quoting, in this order; a report shows those it has.
const KEY_ROWS: &[&str] = &[
    "connections",
    "opened per second",
    "server rss per connection",
    "bench rss per connection",
    "rate asked",
    "published per second",
    "receivers per message",
    "delivered per second",
    "loss",
    "latency p50",
    "latency p90",
    "latency p99",
    "latency p99.9",
    "latency max",
    "delivered by end of publishing",
    "drain time after publishing",
    "sustained",
    "succeeded per second",
    "publishes per second",
    "request p99",
    "publish call p99",
    "server cores busy",
    "other processes cores busy",
    "bench cores busy",
    "server cpu per million deliveries",
    "server cpu per publish",
    "server cpu per connect",
    "listen queue overflows",
    "server rss before",
    "server rss after",
    "closed by the server",
    "backlog per stalled connection",
];

pub fn run(dir: &Path) -> anyhow::Result<String> {
    let mut reports = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let v: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            reports.push((v["unix_time"].as_u64().unwrap_or(0), name, v));
        }
    }
    reports.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Ok(reports.iter().map(|(_, name, v)| table(name, v)).collect::<Vec<_>>().join("\n"))
}

fn table(name: &str, report: &Value) -> String {
    let sections = report["sections"].as_array().cloned().unwrap_or_default();
    let mut out = format!("#### {name}\n\n`{}`\n\n| |", report["params"]);
    for s in &sections {
        out.push_str(&format!(" {} |", s["label"].as_str().unwrap_or("")));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(sections.len()));
    out.push('\n');
    for key in KEY_ROWS {
        let cells: Vec<Option<(f64, String)>> = sections.iter().map(|s| find(s, key)).collect();
        let Some(unit) = cells.iter().flatten().map(|(_, u)| u.clone()).next() else { continue };
        let label = if unit.is_empty() { (*key).to_owned() } else { format!("{key} ({unit})") };
        out.push_str(&format!("| {label} |"));
        for c in &cells {
            out.push_str(&format!(" {} |", c.as_ref().map_or(String::new(), |(v, _)| crate::report::number(*v))));
        }
        out.push('\n');
    }
    out
}

fn find(section: &Value, key: &str) -> Option<(f64, String)> {
    let row = section["rows"].as_array()?.iter().find(|r| r["name"] == key)?;
    Some((row["value"].as_f64().unwrap_or(f64::NAN), row["unit"].as_str().unwrap_or("").to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_column_per_section() {
        let v = serde_json::json!({
            "params": {"subscribers": 5},
            "sections": [
                {"label": "10 msg/s", "rows": [{"name": "latency p99", "value": 1.5, "unit": "ms"}, {"name": "other", "value": 1.0, "unit": ""}]},
                {"label": "20 msg/s", "rows": [{"name": "latency p99", "value": 2.25, "unit": "ms"}, {"name": "sustained", "value": 0.0, "unit": "yes=1"}]},
            ],
        });
        let t = table("broadcast", &v);
        assert!(t.contains("| | 10 msg/s | 20 msg/s |"), "{t}");
        assert!(t.contains("| latency p99 (ms) | 1.500 | 2.250 |"), "{t}");
        assert!(t.contains("| sustained (yes=1) |  | 0 |"), "{t}");
        assert!(!t.contains("other"));
    }
}
