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
pub struct Stalled(#[allow(dead_code)] Vec<TcpStream>);

impl Stalled {
    pub fn hold(conns: Vec<(usize, PusherConn)>) -> Self {
        Self(conns.into_iter().map(|(_, c)| c.ws.into_stream()).collect())
    }
}
