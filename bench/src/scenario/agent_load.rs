//! `agent-load`: StatsD load on a real `sonde-agent` (timers, counters, tag values, or bursts
//! of datagrams), optionally while a viewer watches its host (a session: every second a sample
//! is built, encoded and sent). Measured: the agent's CPU and RSS during the load and after it
//! (memory must come back once the series expire), datagrams the kernel dropped on the agent's
//! socket, and with a viewer what the samples carried.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use rand::Rng;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::procstat::{Pid, Usage};
use crate::pusher::PusherConn;
use crate::report::{Report, Section};
use crate::ws::Message;
use crate::Ctx;

#[derive(Debug, Args)]
pub struct AgentLoadArgs {
    /// The agent's process id (its CPU and RSS are read from /proc).
    #[arg(long)]
    pub agent_pid: u32,
    /// The agent's StatsD address.
    #[arg(long, default_value = "127.0.0.1:8125")]
    pub statsd: SocketAddr,
    #[arg(long, value_enum, default_value_t = Load::Timers)]
    pub load: Load,
    /// Distinct names a second (timers, counters), tag values a second (tags), or datagrams
    /// per burst (burst).
    #[arg(long, default_value_t = 1100)]
    pub names: usize,
    /// Values per timer name per second.
    #[arg(long, default_value_t = 1)]
    pub values: usize,
    /// New names every second (a flood of one-off names) instead of the same names again.
    #[arg(long)]
    pub fresh: bool,
    /// Seconds of load.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Seconds to keep watching the agent after the load, for its memory to come back.
    #[arg(long, default_value_t = 0)]
    pub cooldown: u64,
    /// Subscribe to this host's channel during the load (starts a session).
    #[arg(long)]
    pub watch_host: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Load {
    /// `bench.t{i}:{1..1000}|ms`, spread over each second.
    Timers,
    /// `bench.c{i}:1|c`, spread over each second.
    Counters,
    /// `bench.requests:1|c|#user:{n}`: one name, a new tag value on every line.
    Tags,
    /// Once a second, `--names` datagrams of one line each, back to back.
    Burst,
}

/// Largest datagram sent, as StatsD clients keep within the path MTU.
const MAX_DATAGRAM: usize = 1400;
/// Each second's lines go out in this many batches, 100 ms apart.
const SLICES: usize = 10;

pub async fn run(ctx: &Ctx, a: &AgentLoadArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "load": format!("{:?}", a.load), "names": a.names, "values": a.values, "fresh": a.fresh,
        "duration_s": a.duration, "cooldown_s": a.cooldown, "watch_host": a.watch_host,
    });
    let pid = Pid::Of(a.agent_pid);
    let watcher = match &a.watch_host {
        Some(host) => Some(Watcher::start(ctx, host).await?),
        None => None,
    };
    // Let a session's backfill pass before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let drops_before = kernel_drops(a.statsd.port());
    let start = Usage::read(pid)?;
    let (mut rss_max, mut sent) = (start.rss_kib, Sent::default());
    let mut burst_ms: f64 = 0.0;
    let began = Instant::now();
    eprintln!("agent-load: {:?}, {} a second for {} s", a.load, a.names, a.duration);
    for sec in 0..a.duration {
        let lines = lines_of(a, sec);
        if a.load == Load::Burst {
            let n = lines.len() as u64;
            burst_ms = burst_ms.max(burst(lines, a.statsd).await?.as_secs_f64() * 1000.0);
            sent.lines += n;
            sent.datagrams += n;
        } else {
            let per_slice = lines.len().div_ceil(SLICES).max(1);
            for (i, chunk) in lines.chunks(per_slice).enumerate() {
                send_packed(&udp, a.statsd, chunk, &mut sent).await?;
                tokio::time::sleep_until(began + Duration::from_millis(sec * 1000 + (i as u64 + 1) * 100)).await;
            }
        }
        tokio::time::sleep_until(began + Duration::from_secs(sec + 1)).await;
        rss_max = rss_max.max(Usage::read(pid)?.rss_kib);
    }
    let end = Usage::read(pid)?;
    let drops = kernel_drops(a.statsd.port()).zip(drops_before).map(|(a, b)| a.saturating_sub(b));
    let seen = match watcher {
        Some(w) => Some(w.finish().await),
        None => None,
    };
    let mut rss_after_cooldown = None;
    if a.cooldown > 0 {
        eprintln!("agent-load: load over, watching the agent for {} s", a.cooldown);
        tokio::time::sleep(Duration::from_secs(a.cooldown)).await;
        rss_after_cooldown = Some(Usage::read(pid)?.rss_kib);
    }

    let d = start.delta(&end);
    let mut s = Section::new(format!("agent under {:?} load, {} a second", a.load, a.names));
    s.row("load time", d.wall_s, "s");
    s.row("lines sent", sent.lines as f64, "");
    s.row("datagrams sent", sent.datagrams as f64, "");
    if a.load == Load::Burst {
        s.row("longest burst", burst_ms, "ms");
    }
    if let Some(drops) = drops {
        s.row("datagrams dropped by the kernel", drops as f64, "");
        s.row("datagrams dropped", drops as f64 / (sent.datagrams.max(1)) as f64 * 100.0, "%");
    }
    s.row("agent share of one core", d.cores() * 100.0, "%");
    s.row("agent rss before", start.rss_kib as f64 / 1024.0, "MiB");
    s.row("agent rss max", rss_max as f64 / 1024.0, "MiB");
    s.row("agent rss at the end", end.rss_kib as f64 / 1024.0, "MiB");
    if let Some(r) = rss_after_cooldown {
        s.row("agent rss after the cooldown", r as f64 / 1024.0, "MiB");
    }
    if let Some(seen) = seen {
        seen.rows(&mut s);
    }
    Ok(super::report("agent-load", ctx, params, vec![s], Vec::new()))
}

#[derive(Default)]
struct Sent {
    lines: u64,
    datagrams: u64,
}

/// The lines of second `sec`.
fn lines_of(a: &AgentLoadArgs, sec: u64) -> Vec<String> {
    let base = if a.fresh { sec as usize * a.names } else { 0 };
    let mut rng = rand::thread_rng();
    match a.load {
        Load::Timers => {
            (0..a.names).flat_map(|i| (0..a.values).map(move |_| i)).map(|i| format!("bench.t{}:{}|ms", base + i, rng.gen_range(1..=1000))).collect()
        }
        Load::Counters => (0..a.names).map(|i| format!("bench.c{}:1|c", base + i)).collect(),
        // Tag values are new on every line, whatever --fresh says.
        Load::Tags => (0..a.names).map(|i| format!("bench.requests:1|c|#user:{}", sec as usize * a.names + i)).collect(),
        Load::Burst => (0..a.names).map(|i| format!("bench.burst{}:1|c", i % 50)).collect(),
    }
}

/// One datagram per line, back to back from a blocking socket (as fast as a client flushing
/// its buffer); returns how long the burst took.
async fn burst(lines: Vec<String>, to: SocketAddr) -> anyhow::Result<Duration> {
    tokio::task::spawn_blocking(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let t = std::time::Instant::now();
        for l in &lines {
            socket.send_to(l.as_bytes(), to)?;
        }
        Ok(t.elapsed())
    })
    .await?
}

async fn send_packed(udp: &UdpSocket, to: SocketAddr, lines: &[String], sent: &mut Sent) -> anyhow::Result<()> {
    let mut packet = String::with_capacity(MAX_DATAGRAM);
    for l in lines {
        if !packet.is_empty() && packet.len() + l.len() + 1 > MAX_DATAGRAM {
            udp.send_to(packet.as_bytes(), to).await?;
            sent.datagrams += 1;
            packet.clear();
        }
        packet.push_str(l);
        packet.push('\n');
        sent.lines += 1;
    }
    if !packet.is_empty() {
        udp.send_to(packet.as_bytes(), to).await?;
        sent.datagrams += 1;
    }
    Ok(())
}

/// The `drops` column of the UDP socket bound to 127.0.0.1:`port` (`/proc/net/udp`).
fn kernel_drops(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str())).then(|| f.get(12)?.parse().ok()).flatten()
    })
}

/// A viewer of the agent's host during the load, looking at every live sample.
struct Watcher {
    task: tokio::task::JoinHandle<Seen>,
    stop: tokio::sync::oneshot::Sender<()>,
}

#[derive(Default)]
struct Seen {
    samples: u64,
    /// Samples carrying CPU, memory, load and the top list.
    with_host: u64,
    custom_max: u64,
    omitted_max: f64,
    largest_bytes: usize,
}

impl Seen {
    fn rows(&self, s: &mut Section) {
        s.row("live samples seen", self.samples as f64, "");
        s.row("samples with every host metric and the top list", self.with_host as f64, "");
        s.row("most custom metrics in a sample", self.custom_max as f64, "");
        s.row("most series left out of a sample", self.omitted_max, "");
        s.row("largest sample", self.largest_bytes as f64, "bytes");
    }

    /// Looks at one frame; returns whether it is a `pusher:ping`.
    fn add(&mut self, frame: &[u8]) -> bool {
        let Ok(f) = serde_json::from_slice::<serde_json::Value>(frame) else { return false };
        if f["event"] == "pusher:ping" {
            return true;
        }
        if f["event"] != sonde_protocol::sonde::EVENT_SAMPLE {
            return false;
        }
        let Some(data) = f["data"].as_str() else { return false };
        let Ok(sample) = serde_json::from_str::<serde_json::Value>(data) else { return false };
        self.samples += 1;
        self.largest_bytes = self.largest_bytes.max(data.len());
        let m = &sample["metrics"];
        let host = ["cpu.user_pct", "mem.used_bytes", "system.load1", "procs.total"].iter().all(|k| m[k].is_number());
        if host && sample["top"].as_array().is_some_and(|t| !t.is_empty()) {
            self.with_host += 1;
        }
        let custom = m.as_object().map_or(0, |o| o.keys().filter(|k| k.starts_with("app.")).count());
        self.custom_max = self.custom_max.max(custom as u64);
        self.omitted_max = self.omitted_max.max(m["agent.custom_omitted"].as_f64().unwrap_or(0.0));
        false
    }
}

impl Watcher {
    async fn start(ctx: &Ctx, host: &str) -> anyhow::Result<Self> {
        let mut conn = PusherConn::connect(&ctx.target, 0).await?;
        conn.subscribe_and_wait(&ctx.target, &format!("{}{host}", sonde_protocol::sonde::HOST_CHANNEL_PREFIX)).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut seen = Seen::default();
            loop {
                let ping = tokio::select! {
                    m = conn.ws.read() => match m {
                        Ok(Message::Text(t)) => seen.add(t),
                        Ok(Message::Close) | Err(_) => break,
                    },
                    _ = &mut stopped => break,
                };
                // Answered, or the relay closes the viewer after its activity timeout.
                if ping && conn.ws.send_text(br#"{"event":"pusher:pong","data":{}}"#).await.is_err() {
                    break;
                }
            }
            seen
        });
        Ok(Self { task, stop })
    }

    async fn finish(self) -> Seen {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}
