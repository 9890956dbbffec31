//! A real `redis-server`, relay nodes and agents as processes, and viewers that record what
//! they see, for cluster tests.

mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::{agent_bin, workspace_bin, TempDir};
use crate::relay::Api;
use crate::tokens::{agent, hs256};
use crate::Client;
pub use watch::{Seen, Watch, What};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `redis-server` on a free port, without persistence.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let mut r = Self { port: free_port(), child: None };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `GET key`, over the Redis protocol.
    pub async fn get(&self, key: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.expect("connect to redis");
        tcp.write_all(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes()).await.expect("send GET");
        let mut reply = Vec::new();
        // `$-1\r\n`, or `$N\r\n` and N bytes and `\r\n`.
        while !reply.ends_with(b"\r\n") || (reply.starts_with(b"$") && !reply.starts_with(b"$-") && reply.iter().filter(|b| **b == b'\n').count() < 2) {
            let mut buf = [0u8; 512];
            let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("redis answers").expect("read");
            assert!(n > 0, "redis closed the connection");
            reply.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(reply).expect("utf-8");
        text.split_once("\r\n").filter(|(head, _)| head.starts_with('$') && *head != "$-1").map(|(_, rest)| rest.trim_end_matches("\r\n").to_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A relay process that is one node of a cluster (app `1:key:secret`).
pub struct RelayNode {
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Its configuration without a node id.
    toml: String,
    config: PathBuf,
    _dir: TempDir,
}

/// The cluster timing of [`RelayNode`]s (`[redis]` settings).
pub const HEARTBEAT_MS: u64 = 300;
pub const NODE_TIMEOUT_MS: u64 = 1500;

pub const CLUSTER_TOML: &str = r#"
[sessions]
grace_ms = 1000
lease_ms = 4000
renew_ms = 1000
interval_ms = 1000

[[apps]]
id = "1"
key = "key"
secret = "secret"
client_events = true
subscription_count = true

[[apps]]
id = "2"
key = "key2"
secret = "secret2"
"#;

impl RelayNode {
    /// A node with a random id.
    pub async fn start(redis: &RedisServer, prefix: &str) -> Self {
        Self::start_as(redis, prefix, None).await
    }

    /// A node with the given id (random when `None`); returns once `/readyz` says 200.
    pub async fn start_as(redis: &RedisServer, prefix: &str, id: Option<&str>) -> Self {
        let dir = TempDir::new("node");
        let config = dir.0.join("relay.toml");
        let toml = format!(
            "{CLUSTER_TOML}\n[redis]\nurl = \"{}\"\nprefix = \"{prefix}\"\nheartbeat_ms = {HEARTBEAT_MS}\nnode_timeout_ms = {NODE_TIMEOUT_MS}\n",
            redis.url()
        );
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let mut node = Self { addr, child: None, toml, config, _dir: dir };
        node.spawn(id);
        node.wait_ready().await;
        node
    }

    fn spawn(&mut self, id: Option<&str>) {
        let toml = match id {
            Some(id) => format!("{}node_id = \"{id}\"\n", self.toml),
            None => self.toml.clone(),
        };
        std::fs::write(&self.config, toml).expect("write config");
        let child = Command::new(workspace_bin("sonde-relay"))
            .arg("--config")
            .arg(&self.config)
            .args(["--bind", &self.addr.to_string()])
            .env("SONDE_LOG", std::env::var("SONDE_TEST_RELAY_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sonde-relay");
        self.child = Some(child);
    }

    /// Starts the node again on its port (after `kill` or `stop`), with the id given (random
    /// when `None`), as a supervisor would; returns once it is ready.
    pub async fn restart(&mut self, id: Option<&str>) {
        assert!(self.child.is_none(), "stop or kill the node first");
        self.spawn(id);
        self.wait_ready().await;
    }

    /// SIGTERM: the node says goodbye and hands over, then exits.
    pub async fn stop(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let ok = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "node {} did not stop on SIGTERM", self.addr);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The sessions this node lists, as (host, id).
    pub async fn sessions(&self) -> Vec<(String, String)> {
        let (status, body) = self.api().request("GET", "/sessions", None, &[]).await;
        assert_eq!(status, 200, "{body}");
        let list = body["sessions"].as_array().expect("sessions").iter();
        list.map(|s| (s["host"].as_str().unwrap_or_default().to_owned(), s["id"].as_str().unwrap_or_default().to_owned())).collect()
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.api().try_get("/readyz").await == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "node {} never became ready", self.addr);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn api(&self) -> Api {
        Api { base: format!("http://{}", self.addr), id: "1".into(), key: "key".into(), secret: "secret".into(), http: reqwest::Client::new() }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/app/key?protocol=7&client=rust-test&version=1.0", self.addr)
    }

    /// The second app of the cluster (`2:key2:secret2`).
    pub fn api2(&self) -> Api {
        Api { base: format!("http://{}", self.addr), id: "2".into(), key: "key2".into(), secret: "secret2".into(), http: reqwest::Client::new() }
    }

    pub fn ws_url2(&self) -> String {
        format!("ws://{}/app/key2?protocol=7&client=rust-test&version=1.0", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url()).await
    }

    /// SIGKILL: the node vanishes without saying goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RelayNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The real `sonde-agent` streaming `host` (app 1) through one node.
pub struct NodeAgent {
    child: Child,
    _state: TempDir,
}

impl NodeAgent {
    pub fn spawn(node: &RelayNode, host: &str) -> Self {
        let state = TempDir::new("agent");
        let child = Command::new(agent_bin())
            .args(["--relay", &format!("ws://{}", node.addr), "--key", "key", "--host", host, "--statsd", "off"])
            .arg("--state-dir")
            .arg(&state.0)
            .env("SONDE_AGENT_TOKEN", hs256(&agent("1", host), "secret"))
            .env("RUST_LOG", std::env::var("SONDE_TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sonde-agent");
        Self { child, _state: state }
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
