//! A StatsD / DogStatsD listener on UDP (loopback by default, as DogStatsD does). Each line is
//! parsed and recorded into the shared [`Recorder`]; bad lines are counted and skipped.
//!
//! Clients send in bursts (a flush of many metrics at once), faster than one thread parses
//! them, so the socket asks the kernel for a large receive buffer; datagrams the kernel still
//! drops because it was full are read from `/proc/net/udp` and counted.

mod kernel;
mod parse;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;

pub use parse::{lines, parse_line, Line, ParseError, Type, Value};

use crate::recorder::Recorder;
use crate::Shutdown;

/// Largest datagram read; StatsD clients keep theirs within the path MTU, Telegraf allows 64 KiB.
const MAX_DATAGRAM: usize = 64 * 1024;
/// Tags beyond this many on one line are ignored.
const MAX_TAGS: usize = 16;
/// Receive buffer asked for: room for bursts of a few thousand datagrams. The kernel grants
/// at most `net.core.rmem_max`.
pub const RECV_BUFFER: usize = 4 * 1024 * 1024;

/// Counters of the listener, readable while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    pub packets: AtomicU64,
    pub lines: AtomicU64,
    pub bad_lines: AtomicU64,
    /// Datagrams the kernel dropped because the receive buffer was full, as of the last
    /// [`Stats::refresh_kernel_drops`].
    pub kernel_drops: AtomicU64,
    /// The socket's inode, to find it in `/proc/net/udp` (0 until bound).
    inode: AtomicU64,
}

impl Stats {
    /// Reads the socket's drop count from `/proc/net/udp{,6}` (blocking: call it off the
    /// async runtime, as the sampler does).
    pub fn refresh_kernel_drops(&self) {
        let inode = self.inode.load(Ordering::Relaxed);
        if inode == 0 {
            return;
        }
        if let Some(drops) = kernel::drops(inode) {
            self.kernel_drops.store(drops, Ordering::Relaxed);
        }
    }
}

/// Records one parsed line.
pub fn apply(line: &Line<'_>, rec: &Recorder) {
    let mut tags = [""; MAX_TAGS];
    let mut n = 0;
    for t in line.tags().take(MAX_TAGS) {
        tags[n] = t;
        n += 1;
    }
    let tags = &tags[..n];
    let name = line.name.trim();
    for v in line.values() {
        match (line.kind, v) {
            (Type::Counter, Value::Number(x)) => rec.counter(name, tags, x / line.rate),
            (Type::Gauge, Value::Number(x)) => rec.gauge(name, tags, x),
            // As etsy statsd: a signed value moves the gauge (from 0 if it was never set).
            (Type::Gauge, Value::Delta(x)) => rec.gauge_add(name, tags, x),
            (Type::Timer | Type::Histogram | Type::Distribution, Value::Number(x)) => {
                rec.histogram_weighted(name, tags, x, 1.0 / line.rate);
            }
            (Type::Set, Value::Member(m)) => rec.set_insert(name, tags, m),
            // The parser yields deltas for gauges only and members for sets only.
            (Type::Counter | Type::Timer | Type::Histogram | Type::Distribution | Type::Set, Value::Delta(_))
            | (Type::Counter | Type::Gauge | Type::Timer | Type::Histogram | Type::Distribution, Value::Member(_))
            | (Type::Set, Value::Number(_)) => {}
        }
    }
}

/// Records every line of one datagram.
pub fn apply_packet(packet: &[u8], rec: &Recorder, stats: &Stats) {
    stats.packets.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(packet);
    for l in lines(&text) {
        stats.lines.fetch_add(1, Ordering::Relaxed);
        match parse_line(l) {
            Ok(line) => apply(&line, rec),
            Err(e) => {
                let seen = stats.bad_lines.fetch_add(1, Ordering::Relaxed);
                if seen == 0 {
                    tracing::warn!(error = %e, line = l, "bad StatsD line skipped (further ones are logged at debug)");
                } else {
                    tracing::debug!(error = %e, line = l, "bad StatsD line skipped");
                }
            }
        }
    }
}

/// Binds the listener. A taken port is reported and the agent runs on without StatsD.
pub async fn bind(addr: SocketAddr, stats: &Stats) -> Option<UdpSocket> {
    let socket = match UdpSocket::bind(addr).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind the StatsD listener; custom metrics are off");
            return None;
        }
    };
    if let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(&socket, RECV_BUFFER) {
        tracing::warn!(error = %e, "cannot enlarge the StatsD receive buffer");
    }
    // Linux reports twice the size asked for (half is its own bookkeeping).
    let granted = rustix::net::sockopt::socket_recv_buffer_size(&socket).map_or(0, |b| b / 2);
    if let Ok(st) = rustix::fs::fstat(&socket) {
        stats.inode.store(st.st_ino, Ordering::Relaxed);
    }
    if granted < RECV_BUFFER {
        tracing::info!(%addr, recv_buffer = granted, wanted = RECV_BUFFER, "StatsD listener ready; raise net.core.rmem_max for a larger buffer");
    } else {
        tracing::info!(%addr, recv_buffer = granted, "StatsD listener ready");
    }
    Some(socket)
}

/// Receives datagrams until shutdown.
pub async fn serve(socket: UdpSocket, rec: Recorder, stats: Arc<Stats>, mut shutdown: Shutdown) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, _)) => apply_packet(&buf[..n], &rec, &stats),
                Err(e) => tracing::debug!(error = %e, "StatsD receive failed"),
            },
            () = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Drained, Value as Out};

    fn drained(rec: &Recorder) -> Vec<(String, Out)> {
        let mut out: Vec<Drained> = Vec::new();
        rec.drain(u64::MAX, &mut out);
        let mut v: Vec<(String, Out)> = out.into_iter().map(|d| (d.id.keys().second[0].to_string(), d.value)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    #[test]
    fn applies_each_type_and_counts_bad_lines() {
        let rec = Recorder::new();
        let stats = Stats::default();
        let packet = b"hits:1|c|@0.1\nhits:2|c\nq:10|g\nq:-3|g\nlat:1:2:3:4|ms|#env:prod\nu:a|s\nu:b|s\nu:a|s\nbroken\nx:1|zz\n";
        apply_packet(packet, &rec, &stats);
        assert_eq!(stats.lines.load(Ordering::Relaxed), 10);
        assert_eq!(stats.bad_lines.load(Ordering::Relaxed), 2);
        let got = drained(&rec);
        assert_eq!(got[0], ("app.hits.count_ps".into(), Out::Count(12.0)));
        let Out::Histogram(lat) = &got[1].1 else { panic!("{got:?}") };
        assert_eq!(got[1].0, "app.lat{env:prod}.p50");
        let lat = lat.summary();
        assert_eq!((lat.count, lat.max), (4.0, 4.0));
        assert!((lat.p50 - 2.0).abs() <= 0.02, "{lat:?}");
        assert_eq!(got[2], ("app.q".into(), Out::Gauge(7.0)));
        assert_eq!(got[3], ("app.u.unique".into(), Out::Unique(2)));
    }

    #[test]
    fn sampled_timers_weigh_their_count() {
        let rec = Recorder::new();
        apply_packet(b"t:5|ms|@0.25", &rec, &Stats::default());
        let Out::Histogram(s) = &drained(&rec)[0].1 else { panic!() };
        assert_eq!(s.summary().count, 4.0);
    }

    #[tokio::test]
    async fn listens_on_udp() {
        let stats = Arc::new(Stats::default());
        let socket = bind("127.0.0.1:0".parse().unwrap(), &stats).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let rec = Recorder::new();
        let (trigger, shutdown) = crate::shutdown_channel();
        let task = tokio::spawn(serve(socket, rec.clone(), stats.clone(), shutdown));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"hits:3|c", addr).await.unwrap();
        while stats.packets.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        trigger.fire();
        task.await.unwrap();
        assert_eq!(drained(&rec)[0].1, Out::Count(3.0));
    }

    #[tokio::test]
    async fn asks_for_a_large_buffer_and_counts_what_the_kernel_drops() {
        let stats = Stats::default();
        let socket = bind("127.0.0.1:0".parse().unwrap(), &stats).await.unwrap();
        let granted = rustix::net::sockopt::socket_recv_buffer_size(&socket).unwrap() / 2;
        let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap().trim().parse().unwrap();
        assert_eq!(granted, RECV_BUFFER.min(rmem_max));
        stats.refresh_kernel_drops();
        assert_eq!(stats.kernel_drops.load(Ordering::Relaxed), 0);
        // Nobody reads: far more than the buffer holds is sent, the rest is dropped.
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = vec![b'x'; 1000];
        let to = socket.local_addr().unwrap();
        let sent = (2 * granted / 1000 + 5000) as u64;
        for _ in 0..sent {
            client.send_to(&datagram, to).unwrap();
        }
        stats.refresh_kernel_drops();
        let drops = stats.kernel_drops.load(Ordering::Relaxed);
        assert!(drops > 0 && drops < sent, "{drops} of {sent} dropped");
    }
}
