//! `hostile`: a broadcast to N normal subscribers, measured twice in one run: alone, then while
//! thousands of hostile sockets attack the same server (slow request heads, trickled and
//! missing bodies, silent sockets, garbage and overflowing frames, disconnects mid-frame, a
//! flood from one address). Reports the normal clients' loss and latency in both, whether
//! `/healthz` answered throughout, and what the server holds once the attack is over.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::cli::{AttackArgs, HostileArgs, HostileAttackArgs};
use crate::fleet::{self, Readers};
use crate::monitor::Window;
use crate::publish::{Outcome, Publisher};
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::Ctx;

/// The ways a hostile socket misbehaves, in turn.
#[derive(Debug, Clone, Copy)]
enum Attack {
    /// An upgrade request head, one byte a second.
    SlowHead,
    /// An HTTP request promising a body, then a trickle that never completes it.
    TrickledBody,
    /// Connects and says nothing.
    Silent,
    /// A websocket handshake, then random bytes.
    Garbage,
    /// A fragment, then a continuation claiming nearly 2^64 bytes.
    Overflow,
    /// Half a frame, then gone.
    MidFrame,
}

const ATTACKS: [Attack; 6] = [Attack::SlowHead, Attack::TrickledBody, Attack::Silent, Attack::Garbage, Attack::Overflow, Attack::MidFrame];

/// Counts of what the attackers did and met.
#[derive(Default)]
struct AttackStats {
    opened: AtomicU64,
    refused: AtomicU64,
    flood_opened: AtomicU64,
    flood_refused: AtomicU64,
}

pub async fn run(ctx: &Ctx, a: &HostileArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "subscribers": a.load.subscribers, "rate": a.load.rate, "duration_s": a.load.duration,
        "attackers": a.attack.attackers, "flood": a.attack.flood, "retry_ms": a.attack.retry_ms, "attack_nice": a.attack_nice, "payload_bytes": a.load.payload,
    });
    let channel: Arc<str> = format!("private-bench-{:08x}", rand::random::<u32>()).into();
    let recorder = Arc::new(Recorder::default());
    eprintln!("hostile: opening {} normal subscribers on {channel}", a.load.subscribers);
    let ch = channel.clone();
    let opened = fleet::open(&ctx.target, 0, a.load.subscribers, ctx.connect_concurrency, Arc::new(move |_| Some(ch.to_string()))).await;
    let readers = Readers::spawn(opened.conns, &recorder);
    let publisher = Publisher::http(&ctx.target, 64)?;
    let event: Arc<str> = publisher.event("bench").into();
    publisher.warm_up(&channel, &event).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server_state(ctx, a).await;
    let rate = a.load.rate.first().copied().unwrap_or(10.0);

    let mut sections = Vec::new();
    let mut seq = 0u64;
    for attacked in [false, true] {
        let label = format!(
            "{rate} msg/s to {} subscribers, {}",
            readers.len(),
            if attacked { format!("under attack by {} hostile sockets", a.attack.attackers + a.attack.flood) } else { "no attack".into() }
        );
        eprintln!("hostile: {label} for {} s", a.load.duration);
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(AttackStats::default());
        let (attackers, child) = match (attacked, a.attack_nice) {
            (false, _) => (Vec::new(), None),
            (true, None) => (spawn_attack(ctx.target.server, &a.attack, &stop, &stats), None),
            (true, Some(nice)) => (Vec::new(), Some(AttackChild::start(ctx, a, nice, &stats)?)),
        };
        if attacked {
            // Let the attackers take their sockets before measuring.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let health = tokio::spawn(watch_health(health_addr(ctx, a), stop.clone()));
        recorder.reset(seq + 1);
        let outcome = Arc::new(Outcome::default());
        let window = Window::start(ctx.server_pid);
        let during = server_state(ctx, a).await;
        let publishing = publisher.paced((&channel, &event), rate, &a.load, &mut seq, &outcome).await;
        let expected = outcome.ok() * readers.len() as u64;
        let drained = super::drain(&recorder, expected, Duration::from_secs(a.load.drain)).await;
        stop.store(true, Ordering::Relaxed);
        let (health_ok, health_failed, health_worst) = health.await.unwrap_or_default();
        for t in attackers {
            t.abort();
        }
        if let Some(child) = child {
            child.stop().await;
        }

        let mut s = Section::new(label);
        s.row("publish failures", outcome.failed() as f64, "");
        super::deliveries(&mut s, &recorder, outcome.ok(), readers.len(), publishing);
        drained.rows(&mut s, expected);
        s.row("connections lost", readers.finished() as f64, "conns");
        s.row("healthz answered", health_ok as f64, "");
        s.row("healthz failed", health_failed as f64, "");
        s.row("healthz slowest", health_worst.as_secs_f64() * 1e3, "ms");
        if attacked {
            s.row("hostile sockets opened", stats.opened.load(Ordering::Relaxed) as f64, "");
            s.row("hostile sockets refused at once", stats.refused.load(Ordering::Relaxed) as f64, "");
            s.row("flood sockets opened", stats.flood_opened.load(Ordering::Relaxed) as f64, "");
            s.row("flood sockets refused", stats.flood_refused.load(Ordering::Relaxed) as f64, "");
            s.row("server sockets during attack", during.sockets, "");
            s.row("server descriptors during attack", during.fds, "");
        }
        window.finish(&mut s);
        sections.push(s);
    }
    // Once the attack is over, the server must be back to the normal clients' count: their
    // websockets and nothing else (the publisher's kept-alive HTTP connections are closed
    // first; the baseline is read the same way).
    drop(publisher);
    let normal = readers.len() as f64;
    let mut after = server_state(ctx, a).await;
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(a.settle) && (after.connections > before.connections || after.sockets > normal || after.fds > before.fds) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = server_state(ctx, a).await;
    }
    let mut s = Section::new("server state before and after the attack".to_string());
    s.row("connections before", before.connections, "");
    s.row("connections after", after.connections, "");
    s.row("sockets before (with the publisher's)", before.sockets, "");
    s.row("sockets after (publisher closed)", after.sockets, "");
    s.row("descriptors before", before.fds, "");
    s.row("descriptors after", after.fds, "");
    s.row("seconds to settle", settle.elapsed().as_secs_f64(), "s");
    s.row("normal connections lost", readers.finished() as f64, "conns");
    let p99 = |i: usize| sections.get(i).and_then(|x: &Section| x.get("latency p99")).unwrap_or(0.0);
    if p99(0) > 0.0 {
        s.row("p99 under attack / p99 alone", p99(1) / p99(0), "x");
    }
    sections.push(s);
    Ok(super::report("hostile", ctx, params, sections, Vec::new()))
}

/// The attack in a child process at a given niceness; its counts come back on its stdout.
struct AttackChild {
    child: tokio::process::Child,
    reader: tokio::task::JoinHandle<()>,
}

impl AttackChild {
    fn start(ctx: &Ctx, a: &HostileArgs, nice: i32, stats: &Arc<AttackStats>) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let t = &ctx.target;
        let mut cmd = tokio::process::Command::new("nice");
        cmd.arg("-n").arg(nice.to_string()).arg(exe);
        cmd.args(["--host", &t.server.ip().to_string(), "--port", &t.server.port().to_string(), "hostile-attack"]);
        cmd.args(["--attackers", &a.attack.attackers.to_string(), "--retry-ms", &a.attack.retry_ms.to_string()]);
        cmd.args(["--flood", &a.attack.flood.to_string(), "--key", &a.attack.key, "--seconds", "3600"]);
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).kill_on_drop(true).spawn()?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout from the attack process"))?;
        let stats = stats.clone();
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let n: Vec<u64> = line.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                if let [opened, refused, flood_opened, flood_refused] = n[..] {
                    stats.opened.store(opened, Ordering::Relaxed);
                    stats.refused.store(refused, Ordering::Relaxed);
                    stats.flood_opened.store(flood_opened, Ordering::Relaxed);
                    stats.flood_refused.store(flood_refused, Ordering::Relaxed);
                }
            }
        });
        Ok(Self { child, reader })
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.reader).await;
    }
}

/// `hostile-attack`: the attack alone, printing its counts every half second.
pub async fn attack_only(ctx: &Ctx, a: &HostileAttackArgs) -> anyhow::Result<Report> {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(AttackStats::default());
    let tasks = spawn_attack(ctx.target.server, &a.attack, &stop, &stats);
    let end = Instant::now() + Duration::from_secs(a.seconds);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!("{} {} {} {}", n(&stats.opened), n(&stats.refused), n(&stats.flood_opened), n(&stats.flood_refused));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    Ok(super::report("hostile-attack", ctx, serde_json::json!({ "seconds": a.seconds }), Vec::new(), Vec::new()))
}

/// What the server holds: its connection and socket gauges, and its open descriptors.
#[derive(Default, Clone, Copy)]
struct ServerState {
    connections: f64,
    sockets: f64,
    fds: f64,
}

/// Where `/healthz` and `/metrics` are read: the server's metrics listener when given.
fn health_addr(ctx: &Ctx, a: &HostileArgs) -> SocketAddr {
    a.health_port.map_or(ctx.target.server, |p| SocketAddr::new(ctx.target.server.ip(), p))
}

async fn server_state(ctx: &Ctx, a: &HostileArgs) -> ServerState {
    let text = http_get(health_addr(ctx, a), "/metrics").await.unwrap_or_default();
    let sum = |name: &str| text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum::<f64>();
    let fds = ctx.server_pid.and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok()).map_or(0.0, |d| d.count() as f64);
    ServerState { connections: sum("sonde_connections{"), sockets: sum("sonde_edge_sockets "), fds }
}

/// Polls `/healthz` every 100 ms until stopped: answered, failed, slowest answer.
async fn watch_health(server: SocketAddr, stop: Arc<AtomicBool>) -> (u64, u64, Duration) {
    let (mut ok, mut failed, mut worst) = (0, 0, Duration::ZERO);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        match tokio::time::timeout(Duration::from_secs(2), http_get(server, "/healthz")).await {
            Ok(Some(body)) if body.starts_with("ok") => ok += 1,
            _ => failed += 1,
        }
        worst = worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ok, failed, worst)
}

/// A one-shot HTTP/1.1 GET: the body, or `None`.
async fn http_get(server: SocketAddr, path: &str) -> Option<String> {
    let mut tcp = TcpStream::connect(server).await.ok()?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

fn spawn_attack(server: SocketAddr, a: &AttackArgs, stop: &Arc<AtomicBool>, stats: &Arc<AttackStats>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for i in 0..a.attackers {
        let attack = ATTACKS[i % ATTACKS.len()];
        // Spread over 127.0.1.x so per-address limits do not hide the socket cap.
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + (i % 200) as u8));
        let (stop, stats, key, retry) = (stop.clone(), stats.clone(), a.key.clone(), Duration::from_millis(a.retry_ms));
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match connect_from(source, server).await {
                    Some(tcp) => {
                        stats.opened.fetch_add(1, Ordering::Relaxed);
                        if !misbehave(tcp, attack, &key, &stop).await {
                            // Turned away at once: try again a little later, as a botnet would.
                            stats.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(retry).await;
                        }
                    }
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    // A flood from one address: as many sockets as it can get, held open.
    let flood_source = IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1));
    let (n, stop, stats) = (a.flood, stop.clone(), stats.clone());
    tasks.push(tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..n {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(mut tcp) = connect_from(flood_source, server).await {
                let mut b = [0u8; 1];
                // A refused socket is answered and closed at once.
                match tokio::time::timeout(Duration::from_millis(20), tcp.read(&mut b)).await {
                    Ok(_) => stats.flood_refused.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.flood_opened.fetch_add(1, Ordering::Relaxed),
                };
                held.push(tcp);
            }
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }));
    tasks
}

async fn connect_from(source: IpAddr, server: SocketAddr) -> Option<TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    if server.ip().is_loopback() {
        socket.bind(SocketAddr::new(source, 0)).ok()?;
    }
    tokio::time::timeout(Duration::from_secs(5), socket.connect(server)).await.ok()?.ok()
}

const UPGRADE_HEAD: &str = "GET /app/{key}?protocol=7&client=hostile HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Plays one attack on one socket until the server closes it (or the run stops). Returns
/// false when the server closed it before the attack got going.
async fn misbehave(mut tcp: TcpStream, attack: Attack, key: &str, stop: &AtomicBool) -> bool {
    let head = UPGRADE_HEAD.replace("{key}", key);
    let started = Instant::now();
    let result: std::io::Result<()> = async {
        match attack {
            Attack::SlowHead => {
                for b in head.as_bytes() {
                    tcp.write_all(&[*b]).await?;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Attack::TrickledBody => {
                tcp.write_all(b"POST /apps/1/events?auth_key=x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
                    .await?;
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    tcp.write_all(b" ").await?;
                }
            }
            Attack::Silent => {
                let mut b = [0u8; 64];
                while tcp.read(&mut b).await? > 0 {}
            }
            Attack::Garbage | Attack::Overflow | Attack::MidFrame => {
                tcp.write_all(head.as_bytes()).await?;
                let frame: Vec<u8> = match attack {
                    Attack::Garbage => (0..512).map(|_| rand::random::<u8>()).collect(),
                    Attack::Overflow => {
                        let mut f = vec![0x01, 0x83, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2, b'c' ^ 3];
                        f.extend_from_slice(&[0x80, 0xff]);
                        f.extend_from_slice(&(u64::MAX - 2).to_be_bytes());
                        f.extend_from_slice(&[1, 2, 3, 4]);
                        f
                    }
                    _ => vec![0x81, 0xfe, 0x10],
                };
                tcp.write_all(&frame).await?;
                if matches!(attack, Attack::MidFrame) {
                    return Ok(());
                }
                let mut b = [0u8; 4096];
                while tcp.read(&mut b).await? > 0 {}
            }
        }
        Ok(())
    }
    .await;
    let _ = result;
    if stop.load(Ordering::Relaxed) {
        return true;
    }
    started.elapsed() > Duration::from_millis(100)
}
