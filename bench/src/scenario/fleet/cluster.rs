//! What a cluster run adds: `GET /apps/{id}/agents` asked of every node (complete and the
//! same everywhere?), and Redis's own counters around a window (messages and bytes through
//! the bus, per agent per minute).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sonde_protocol::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pusher::Target;

/// Largest INFO reply read (Redis's is a few KiB).
const MAX_INFO: usize = 256 * 1024;

/// (hosts listed, hosts online) as one node answers `GET /apps/{id}/agents`.
pub async fn agents_listed(target: &Target) -> anyhow::Result<(usize, usize)> {
    let path = format!("/apps/{}/agents", target.app_id);
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let query = sign::sign_request("GET", &path, &target.key, &target.secret, ts, b"", &[]);
    let url = format!("{}{path}?{query}", target.base_url());
    let body: serde_json::Value = reqwest::Client::new().get(&url).timeout(Duration::from_secs(30)).send().await?.error_for_status()?.json().await?;
    let agents = body["agents"].as_array().context("no agents array")?;
    Ok((agents.len(), agents.iter().filter(|a| a["online"] == true).count()))
}

/// The counters of Redis's `INFO` that a window compares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RedisCounters {
    pub publishes: u64,
    pub net_in: u64,
    pub net_out: u64,
}

impl RedisCounters {
    pub fn parse(info: &str) -> Self {
        let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok()).unwrap_or(0);
        // cmdstat_publish:calls=123,usec=…
        let publishes = info.lines().find_map(|l| l.strip_prefix("cmdstat_publish:calls=")?.split(',').next()?.parse::<u64>().ok()).unwrap_or(0);
        Self { publishes, net_in: field("total_net_input_bytes"), net_out: field("total_net_output_bytes") }
    }

    pub async fn read(addr: &str) -> anyhow::Result<Self> {
        let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await.context("redis connect timed out")??;
        s.write_all(b"INFO all\r\n").await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        // A bulk reply: `$<len>\r\n<payload>\r\n`; read until the payload is whole.
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk)).await.context("redis read timed out")??;
            anyhow::ensure!(n > 0, "redis closed");
            buf.extend_from_slice(&chunk[..n]);
            anyhow::ensure!(buf.len() <= MAX_INFO, "INFO reply too large");
            if let Some(head_end) = buf.windows(2).position(|w| w == b"\r\n") {
                let len: usize = std::str::from_utf8(&buf[1..head_end])?.parse().context("not a bulk reply")?;
                if buf.len() >= head_end + 2 + len {
                    return Ok(Self::parse(&String::from_utf8_lossy(&buf[head_end + 2..head_end + 2 + len])));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_counters() {
        let info =
            "# Stats\r\ntotal_net_input_bytes:1234\r\ntotal_net_output_bytes:99\r\n# Commandstats\r\ncmdstat_publish:calls=42,usec=10,usec_per_call=0.2\r\n";
        assert_eq!(RedisCounters::parse(info), RedisCounters { publishes: 42, net_in: 1234, net_out: 99 });
        assert_eq!(RedisCounters::parse("garbage"), RedisCounters::default());
    }
}
