//! The real `sonde-agent` binary, started the way users start it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Once;

use crate::tokens::{agent, hs256};
use crate::TestRelay;

static BUILD: Once = Once::new();

/// A workspace binary (`sonde-agent`, `sonde-relay`): `SONDE_AGENT_BIN` / `SONDE_RELAY_BIN`,
/// or `target/debug/NAME`, built once if missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let var = format!("SONDE_{}_BIN", name.trim_start_matches("sonde-").to_uppercase());
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    BUILD.call_once(|| {
        let missing = ["sonde-agent", "sonde-relay"].iter().any(|b| !root.join("target/debug").join(b).exists());
        if missing {
            let ok = Command::new(env!("CARGO")).args(["build", "-p", "sonde-agent", "-p", "sonde-relay"]).current_dir(&root).status().map(|s| s.success());
            assert!(matches!(ok, Ok(true)), "building the binaries failed");
        }
    });
    root.join("target/debug").join(name)
}

pub fn agent_bin() -> PathBuf {
    workspace_bin("sonde-agent")
}

pub struct AgentProcess {
    child: Child,
    pub host: String,
    pub statsd: std::net::SocketAddr,
    _state: TempDir,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sonde-test-{tag}-{}-{:x}", std::process::id(), rand_u64()));
        std::fs::create_dir_all(&p).expect("temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    h.finish()
}

fn free_udp_port() -> std::net::SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    s.local_addr().expect("addr")
}

impl AgentProcess {
    /// Starts an agent for `host` against app `1:key:secret` of `relay`.
    pub fn spawn(relay: &TestRelay, host: &str, extra: &[&str]) -> Self {
        let state = TempDir::new("agent");
        let statsd = free_udp_port();
        let token = hs256(&agent("1", host), "secret");
        let child = Command::new(agent_bin())
            .args(["--relay", &format!("ws://{}", relay.addr), "--key", "key", "--token", &token, "--host", host])
            .arg("--state-dir")
            .arg(&state.0)
            .args(["--statsd", &statsd.to_string()])
            .args(extra)
            .env("SONDE_AGENT_LOG", "warn")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sonde-agent");
        Self { child, host: host.to_owned(), statsd, _state: state }
    }

    pub fn channel(&self) -> String {
        format!("private-sonde-host.{}", self.host)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
