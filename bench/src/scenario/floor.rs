//! `floor`: what fan-out costs on this machine with nothing but the writes.
//!
//! A child process (`sonde-bench floor-server`) plays the cheapest possible server: it accepts
//! the websocket connections, answers the handshake and the subscribe, and then, at R msg/s,
//! writes the same Pusher event frame a relay would send to every connection, one `write`
//! per connection per message from W plain threads, with no queue, no protocol work and no
//! task scheduling. The bench's usual subscribers read it exactly as they read a relay, so a
//! `broadcast` run and a `floor` run with the same subscribers and rate compare directly: the
//! floor's CPU per delivery and latency are what the kernel and the readers cost here, which
//! no server can go below with one write per subscriber per message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use sha1::{Digest, Sha1};
use sonde_protocol::frame::json_string;
use sonde_protocol::ServerFrame;

use crate::cli::{FloorArgs, FloorServerArgs};
use crate::fleet::{self, Readers};
use crate::monitor::{Sampler, Window};
use crate::publish::bench_data;
use crate::pusher::Target;
use crate::recorder::Recorder;
use crate::report::{Report, Section};
use crate::Ctx;

const CHANNEL: &str = "floor";
const EVENT: &str = "bench";

pub async fn run(ctx: &Ctx, a: &FloorArgs) -> anyhow::Result<Report> {
    let params = serde_json::json!({
        "subscribers": a.load.subscribers, "rate": a.load.rate, "duration_s": a.load.duration, "payload_bytes": a.load.payload, "writers": a.writers,
    });
    let mut server = FloorServer::spawn(a.writers)?;
    let ctx =
        Ctx { target: Target { server: server.addr, ..ctx.target.clone() }, server_pid: Some(server.child.id()), connect_concurrency: ctx.connect_concurrency };
    let recorder = Arc::new(Recorder::default());
    eprintln!("floor: opening {} subscribers on {} (floor server pid {})", a.load.subscribers, server.addr, server.child.id());
    let channel_for: fleet::ChannelFor = Arc::new(|_| Some(CHANNEL.to_string()));
    let opened = fleet::open(&ctx.target, 0, a.load.subscribers, ctx.connect_concurrency, channel_for).await;
    let readers = Readers::spawn(opened.conns, &recorder);
    if readers.len() < a.load.subscribers {
        bail!("only {} of {} subscribers connected to the floor server", readers.len(), a.load.subscribers);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut sections = Vec::new();
    let mut series = Vec::new();
    let mut seq = 0u64;
    for &rate in &a.load.rate {
        let label = format!("{rate} msg/s to {} subscribers, {} writer threads", readers.len(), a.writers);
        eprintln!("floor: {label} for {} s", a.load.duration);
        recorder.reset(seq + 1);
        let window = Window::start(ctx.server_pid);
        let sampler = Sampler::start(ctx.server_pid, format!("{rate}/s"), Some(recorder.clone()));
        let started = Instant::now();
        let (published, would_block) = server.go(rate, a.load.duration, a.load.payload, seq + 1).await?;
        let publishing = started.elapsed();
        seq += published;
        let expected = published * readers.len() as u64;
        let drained = super::drain(&recorder, expected, Duration::from_secs(a.load.drain)).await;

        let mut s = Section::new(label);
        s.row("rate asked", rate, "msg/s");
        s.row("writes that would block", would_block as f64, "");
        let delivered = super::deliveries(&mut s, &recorder, published, readers.len(), publishing);
        drained.rows(&mut s, expected);
        s.row("connections lost", readers.finished() as f64, "conns");
        let m = window.finish(&mut s);
        s.row("server cpu per million deliveries", m.server_cpu_per(delivered, 1e-6), "s");
        series.extend(sampler.stop());
        sections.push(s);
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    Ok(super::report("floor", &ctx, params, sections, series))
}

/// The child process, driven by lines on its stdin.
struct FloorServer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl FloorServer {
    fn spawn(writers: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating sonde-bench")?;
        let mut child = Command::new(exe)
            .args(["floor-server", "--writers", &writers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the floor server")?;
        let stdin = child.stdin.take().context("floor server stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("floor server stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr = line.trim().parse().with_context(|| format!("floor server said {line:?}"))?;
        Ok(Self { child, stdin, stdout, addr })
    }

    /// Publishes for `secs` seconds; returns how many messages and how many writes would block.
    async fn go(&mut self, rate: f64, secs: u64, payload: usize, first_seq: u64) -> anyhow::Result<(u64, u64)> {
        writeln!(self.stdin, "go {rate} {secs} {payload} {first_seq}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        // The reply comes after `secs` seconds: read it off the runtime's threads.
        let stdout = &mut self.stdout;
        tokio::task::block_in_place(|| stdout.read_line(&mut line))?;
        let mut it = line.split_whitespace();
        match (it.next(), it.next().and_then(|v| v.parse().ok()), it.next().and_then(|v| v.parse().ok())) {
            (Some("done"), Some(n), Some(wb)) => Ok((n, wb)),
            _ => bail!("floor server said {line:?}"),
        }
    }
}

/// A message for the writer threads, and where each says how many writes would have blocked.
type Job = (Arc<[u8]>, mpsc::Sender<u64>);

/// `sonde-bench floor-server`: the child's side.
pub fn serve(a: &FloorServerArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shares: Vec<Arc<Share>> = (0..a.writers.max(1)).map(|_| Arc::default()).collect();
    let writers: Vec<mpsc::Sender<Job>> = shares.iter().map(|share| start_writer(share.clone())).collect();
    std::thread::spawn(move || {
        let mut id = 0u64;
        for stream in listener.incoming().flatten() {
            if let Ok(s) = handshake(stream, id + 1) {
                shares[id as usize % shares.len()].0.lock().expect("share lock").push(s);
                id += 1;
            }
        }
    });
    let mut line = String::new();
    let stdin = std::io::stdin();
    while stdin.lock().read_line(&mut line)? > 0 {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let ["go", rate, secs, payload, first_seq] = parts[..] else { bail!("unknown command {line:?}") };
        let (published, would_block) = publish(&writers, rate.parse()?, secs.parse()?, payload.parse()?, first_seq.parse()?);
        println!("done {published} {would_block}");
        std::io::stdout().flush()?;
        line.clear();
    }
    Ok(())
}

/// A thread that writes each message it gets to every connection of its share.
fn start_writer(share: Arc<Share>) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::spawn(move || {
        for (frame, done) in rx {
            let mut would_block = 0;
            for s in share.0.lock().expect("share lock").iter_mut() {
                if !matches!(s.write(&frame), Ok(n) if n == frame.len()) {
                    would_block += 1;
                }
            }
            let _ = done.send(would_block);
        }
    });
    tx
}

/// Publishes at `rate` for `secs` seconds, each message written by every writer thread
/// before the next; returns how many messages and how many writes would have blocked.
fn publish(writers: &[mpsc::Sender<Job>], rate: f64, secs: u64, payload: usize, mut seq: u64) -> (u64, u64) {
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (mut published, mut would_block) = (0u64, 0u64);
    let mut data = String::new();
    while started.elapsed() < Duration::from_secs(secs) {
        if let Some(wait) = (started + interval.mul_f64(published as f64)).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        bench_data(seq, payload, &mut data);
        let event = ServerFrame::Event { event: EVENT, channel: Some(CHANNEL), data_json: &json_string(&data), user_id: None }.encode();
        let frame: Arc<[u8]> = text_frame(&event).into();
        let (tx, rx) = mpsc::channel();
        for w in writers {
            let _ = w.send((frame.clone(), tx.clone()));
        }
        drop(tx);
        would_block += rx.iter().sum::<u64>();
        published += 1;
        seq += 1;
    }
    (published, would_block)
}

/// One writer thread's connections.
#[derive(Default)]
struct Share(Mutex<Vec<TcpStream>>);

/// An unmasked server text frame.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Upgrade, `connection_established`, and `subscription_succeeded` for the first subscribe.
fn handshake(mut s: TcpStream, id: u64) -> anyhow::Result<TcpStream> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 || buf.len() > 16 * 1024 {
            bail!("no upgrade request");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let key = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("sec-websocket-key")).map(|(_, v)| v.trim().to_owned()))
        .context("no Sec-WebSocket-Key")?;
    let accept = base64::engine::general_purpose::STANDARD.encode(Sha1::digest(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes()));
    write!(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")?;
    let socket_id = format!("{id}.{id}");
    s.write_all(&text_frame(&ServerFrame::ConnectionEstablished { socket_id: socket_id.parse()?, activity_timeout_s: 120 }.encode()))?;
    // The subscribe: one masked client frame, whatever it says.
    buf.drain(..end);
    loop {
        if buf.len() >= 2 {
            let len = usize::from(buf[1] & 0x7f);
            let (hl, len) = match len {
                126 if buf.len() >= 4 => (8, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
                126 => (usize::MAX, 0),
                127 => bail!("subscribe frame too large"),
                n => (6, n),
            };
            if hl != usize::MAX && buf.len() >= hl + len {
                break;
            }
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("closed before subscribing");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    s.write_all(&text_frame(&ServerFrame::SubscriptionSucceeded { channel: CHANNEL }.encode()))?;
    s.set_nonblocking(true)?;
    Ok(s)
}
