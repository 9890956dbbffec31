//! A real `redis-server` and relay nodes as processes, for cluster tests.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent::{workspace_bin, TempDir};
use crate::relay::Api;
use crate::Client;

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
    _dir: TempDir,
}

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
    pub async fn start(redis: &RedisServer, prefix: &str) -> Self {
        let dir = TempDir::new("node");
        let config = dir.0.join("relay.toml");
        let toml = format!("{CLUSTER_TOML}\n[redis]\nurl = \"{}\"\nprefix = \"{prefix}\"\nheartbeat_ms = 300\nnode_timeout_ms = 1500\n", redis.url());
        std::fs::write(&config, toml).expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new(workspace_bin("sonde-relay"))
            .arg("--config")
            .arg(&config)
            .args(["--bind", &addr.to_string()])
            .env("SONDE_LOG", std::env::var("SONDE_TEST_RELAY_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sonde-relay");
        let node = Self { addr, child: Some(child), _dir: dir };
        node.wait_ready().await;
        node
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
