//! Results: a human table, or JSON with `--json`.

use std::fmt::Write as _;

use serde::Serialize;

use crate::monitor::Point;
use crate::recorder::Latency;

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub server: String,
    /// When the run started, seconds since the Unix epoch.
    pub unix_time: u64,
    pub params: serde_json::Value,
    pub sections: Vec<Section>,
    /// Server and bench usage once a second over the measured windows.
    pub series: Vec<Point>,
}

/// One measured window (a step of a multi-rate run, or the whole run).
#[derive(Debug, Serialize)]
pub struct Section {
    pub label: String,
    pub rows: Vec<Row>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

impl Section {
    pub fn new(label: impl Into<String>) -> Self {
        Self { label: label.into(), rows: Vec::new() }
    }

    pub fn row(&mut self, name: &'static str, value: f64, unit: &'static str) {
        self.rows.push(Row { name, value, unit });
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.name == name).map(|r| r.value)
    }

    /// Latency percentiles under a common prefix, e.g. `latency` → `latency p99`.
    pub fn latency(&mut self, l: &Latency) {
        self.row("latency samples", l.count as f64, "");
        self.row("latency mean", l.mean_ms, "ms");
        self.row("latency p50", l.p50_ms, "ms");
        self.row("latency p90", l.p90_ms, "ms");
        self.row("latency p99", l.p99_ms, "ms");
        self.row("latency p99.9", l.p999_ms, "ms");
        self.row("latency max", l.max_ms, "ms");
    }
}

pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "-".to_owned();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    match v.abs() {
        a if a >= 1000.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 0.01 => format!("{v:.3}"),
        _ => format!("{v:.6}"),
    }
}

impl Report {
    pub fn human(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "sonde-bench {} against {}  {}", self.scenario, self.server, self.params);
        for s in &self.sections {
            let _ = writeln!(out, "\n  {}", s.label);
            for r in &s.rows {
                let _ = writeln!(out, "    {:<34} {:>14} {}", r.name, number(r.value), r.unit);
            }
        }
        let rss: Vec<String> = self.series.iter().filter_map(|p| p.server_rss_kib).map(|k| format!("{:.1}", k as f64 / 1024.0)).collect();
        if !rss.is_empty() {
            let _ = writeln!(out, "\n  server RSS each second (MiB): {}", rss.join(" "));
        }
        let tcp: Vec<String> = self.series.iter().filter_map(|p| p.tcp_buffers_kib).map(|k| format!("{:.1}", k as f64 / 1024.0)).collect();
        if !tcp.is_empty() {
            let _ = writeln!(out, "  kernel TCP buffers each second (MiB): {}", tcp.join(" "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(20000.0), "20000");
        assert_eq!(number(1234.56), "1235");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(1.23456), "1.235");
        assert_eq!(number(0.000123), "0.000123");
        assert_eq!(number(f64::NAN), "-");
    }

    #[test]
    fn table_and_json() {
        let mut s = Section::new("rate 10/s");
        s.row("delivered", 10000.0, "msgs");
        s.latency(&Latency { count: 3, p99_ms: 1.5, ..Latency::default() });
        assert_eq!(s.get("latency p99"), Some(1.5));
        let r = Report {
            scenario: "broadcast",
            server: "127.0.0.1:6001".into(),
            unix_time: 0,
            params: serde_json::json!({"subscribers": 1}),
            sections: vec![s],
            series: Vec::new(),
        };
        let h = r.human();
        assert!(h.contains("delivered") && h.contains("10000 msgs"), "{h}");
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["sections"][0]["rows"][0]["name"], "delivered");
    }
}
