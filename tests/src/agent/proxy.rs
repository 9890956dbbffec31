//! A TCP proxy between an agent and the relay that records every connection the agent opens,
//! so a test can count attempts (a reconnect storm shows as hundreds).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};

/// One proxied connection: when it opened and, once over, when it closed.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub opened: Instant,
    pub closed: Option<Instant>,
}

pub struct Proxy {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port and forwards every connection to `to`.
    pub async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let i = {
                    let mut s = record.lock().expect("proxy log");
                    s.push(Seen { opened: Instant::now(), closed: None });
                    s.len() - 1
                };
                let record = record.clone();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    record.lock().expect("proxy log")[i].closed = Some(Instant::now());
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Every connection so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("proxy log").clone()
    }

    /// Connections opened at or after `since`.
    pub fn opened_since(&self, since: Instant) -> usize {
        self.seen().iter().filter(|s| s.opened >= since).count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
