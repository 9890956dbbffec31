//! Many subscribed connections: opened with bounded concurrency, then either read by a task
//! each (recording every bench payload) or left unread (stalled consumers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::pusher::{PusherConn, Target};
use crate::recorder::Recorder;
use crate::scan::{self, Kind};
use crate::ws::Message;

/// What each new connection subscribes to.
pub type ChannelFor = Arc<dyn Fn(usize) -> Option<String> + Send + Sync>;

pub struct Opened {
    pub conns: Vec<(usize, PusherConn)>,
    pub failed: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

/// Opens `count` connections numbered from `first`, each subscribed (and confirmed) to
/// `channel_for(n)`, at most `concurrency` handshakes in flight.
pub async fn open(target: &Target, first: usize, count: usize, concurrency: usize, channel_for: ChannelFor) -> Opened {
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for n in first..first + count {
        let (gate, target, channel_for) = (gate.clone(), target.clone(), channel_for.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore never closes");
            let mut conn = PusherConn::connect(&target, n).await?;
            if let Some(channel) = channel_for(n) {
                conn.subscribe_and_wait(&target, &channel).await?;
            }
            Ok::<_, anyhow::Error>((n, conn))
        }));
    }
    let mut opened = Opened { conns: Vec::with_capacity(count), failed: 0, first_error: None, elapsed: Duration::ZERO };
    let mut last_report = Instant::now();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("connect task panicked") {
            Ok(c) => opened.conns.push(c),
            Err(e) => {
                opened.failed += 1;
                opened.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
        if last_report.elapsed() > Duration::from_secs(2) {
            eprintln!("  … {} of {count} connections", i + 1);
            last_report = Instant::now();
        }
    }
    opened.elapsed = started.elapsed();
    if let Some(e) = &opened.first_error {
        eprintln!("  {} of {count} connections failed; first error: {e}", opened.failed);
    }
    opened
}

/// Reading tasks; they stop when dropped.
pub struct Readers(Vec<JoinHandle<()>>);

impl Readers {
    pub fn spawn(conns: Vec<(usize, PusherConn)>, recorder: &Arc<Recorder>) -> Self {
        Self(conns.into_iter().map(|(n, conn)| tokio::spawn(read_loop(n, conn, recorder.clone()))).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Readers whose connection ended before the run did.
    pub fn finished(&self) -> usize {
        self.0.iter().filter(|h| h.is_finished()).count()
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

async fn read_loop(n: usize, mut conn: PusherConn, recorder: Arc<Recorder>) {
    loop {
        let pong = match conn.ws.read().await {
            Err(_) | Ok(Message::Close) => {
                recorder.error();
                return;
            }
            Ok(Message::Text(text)) => match scan::classify(text) {
                Kind::Payload { sent_at_ns, seq } => {
                    recorder.record(n, sent_at_ns, seq);
                    false
                }
                Kind::Ping => true,
                Kind::Error => {
                    recorder.error();
                    false
                }
                Kind::SubscriptionSucceeded | Kind::Other => false,
            },
        };
        if pong && conn.ws.send_text(br#"{"event":"pusher:pong","data":{}}"#).await.is_err() {
            recorder.error();
            return;
        }
    }
}

/// Connections that subscribed and then stopped reading: the server's queues for them fill.
pub struct Stalled(Vec<TcpStream>);

/// What the server did with stalled connections, seen by reading them at last.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StalledFate {
    /// Closed or reset by the server.
    pub closed: usize,
    /// Bytes that were waiting for the stalled readers (kernel buffers and server queues).
    pub backlog_bytes: u64,
}

impl Stalled {
    pub fn hold(conns: Vec<(usize, PusherConn)>) -> Self {
        Self(conns.into_iter().map(|(_, c)| c.ws.into_stream()).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Reads every stalled connection until it has been quiet for `quiet`: how much was
    /// queued for it, and whether the server had closed it.
    pub async fn probe(self, quiet: Duration) -> StalledFate {
        let mut fate = StalledFate::default();
        let mut open = self.0;
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_data = Instant::now();
        while !open.is_empty() && last_data.elapsed() < quiet {
            let before = fate.backlog_bytes;
            open.retain(|s| {
                let (n, still_open) = read_available(s, &mut buf);
                fate.backlog_bytes += n;
                fate.closed += usize::from(!still_open);
                still_open
            });
            if fate.backlog_bytes > before {
                last_data = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fate
    }
}

/// Reads what is there without waiting: (bytes, still open).
fn read_available(s: &TcpStream, buf: &mut [u8]) -> (u64, bool) {
    let mut total = 0u64;
    loop {
        match s.try_read(buf) {
            Ok(0) => return (total, false),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (total, true),
            Err(_) => return (total, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn probe_tells_closed_from_open() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let a = TcpStream::connect(addr).await.unwrap();
        let (mut sa, _) = listener.accept().await.unwrap();
        let b = TcpStream::connect(addr).await.unwrap();
        let (mut sb, _) = listener.accept().await.unwrap();
        sa.write_all(&[7; 1000]).await.unwrap();
        drop(sa);
        sb.write_all(&[7; 24]).await.unwrap();
        let fate = Stalled(vec![a, b]).probe(Duration::from_millis(100)).await;
        assert_eq!(fate, StalledFate { closed: 1, backlog_bytes: 1024 });
        drop(sb);
    }
}
