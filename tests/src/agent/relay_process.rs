//! `sonde-relay` as a process of its own, so a test can stall it (SIGSTOP) as a real outage
//! would, with session timing short enough for tests and app `1:key:secret`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{signal, workspace_bin, TempDir};
use crate::relay::Api;
use crate::tokens::{hs256, viewer};
use crate::Client;

/// Sessions: a 1 s grace, leases of 4 s renewed every second.
const SESSIONS_TOML: &str = "[sessions]\ngrace_ms = 1000\nlease_ms = 4000\nrenew_ms = 1000\ninterval_ms = 1000\n";

pub struct RelayProcess {
    pub addr: SocketAddr,
    child: Child,
    _dir: TempDir,
}

impl RelayProcess {
    /// Starts a relay whose app 1 has `app_toml` added to its table (e.g. `token_leeway_s = 0`);
    /// returns once `/readyz` answers 200.
    pub async fn start(app_toml: &str) -> Self {
        let dir = TempDir::new("relay");
        let config = dir.0.join("relay.toml");
        let toml = format!("{SESSIONS_TOML}\n[[apps]]\nid = \"1\"\nkey = \"key\"\nsecret = \"secret\"\nclient_events = true\n{app_toml}\n");
        std::fs::write(&config, toml).expect("write relay config");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let child = Command::new(workspace_bin("sonde-relay"))
            .arg("--config")
            .arg(&config)
            .args(["--bind", &addr.to_string()])
            .env("SONDE_LOG", std::env::var("SONDE_TEST_RELAY_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sonde-relay");
        let relay = Self { addr, child, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while relay.api().try_get("/readyz").await != Some(200) {
            assert!(Instant::now() < deadline, "the relay at {addr} never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        relay
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn api(&self) -> Api {
        Api { base: format!("http://{}", self.addr), id: "1".into(), key: "key".into(), secret: "secret".into(), http: reqwest::Client::new() }
    }

    /// A token minted the way an operator does it: `sonde-relay token … --ttl TTL`.
    pub fn mint_agent_token(&self, host: &str, ttl: &str) -> String {
        let out = Command::new(workspace_bin("sonde-relay"))
            .args(["token", "--app", "1", "--role", "agent", "--host", host, "--ttl", ttl])
            .env("SONDE_APP_SECRET", "secret")
            .output()
            .expect("run sonde-relay token");
        assert!(out.status.success(), "sonde-relay token failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 token").trim().to_owned()
    }

    /// A viewer subscribed to `channel` (which starts a session).
    pub async fn viewer(&self, channel: &str) -> Client {
        let mut c = Client::connect(&format!("{}/app/key?protocol=7&client=rust-test&version=1.0", self.ws_url())).await;
        c.subscribe_auth(channel, &hs256(&viewer("1"), "secret"), None).await;
        c.expect_next("pusher_internal:subscription_succeeded").await;
        c
    }

    /// Waits until the agent of `host` is subscribed (online in the inventory).
    pub async fn wait_online(&self, host: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (_, body) = self.api().request("GET", "/agents", None, &[]).await;
            let online = body["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == host && e["online"] == true));
            if online {
                return;
            }
            assert!(Instant::now() < deadline, "agent {host} not online within {within:?}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -STOP`: the relay freezes with every socket open, as in a long GC pause or a VM
    /// migration.
    pub fn pause(&self) {
        signal(self.child.id(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.child.id(), "CONT");
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
