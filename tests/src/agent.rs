//! The real `sonde-agent` binary, started the way users start it (the token in a file, where
//! `ps` does not show it), and what tests of it need around it: a relay as a process of its
//! own (to stall it with SIGSTOP), a recording TCP proxy, a StatsD sender.

mod proxy;
mod relay_process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Once;

pub use proxy::Proxy;
pub use relay_process::RelayProcess;

use crate::tokens::{agent, hs256};
use crate::TestRelay;

static BUILD: Once = Once::new();

/// A workspace binary (`sonde-agent`, `sonde-relay`): `SONDE_AGENT_BIN` / `SONDE_RELAY_BIN`,
/// or `target/debug/NAME`, built once if missing. One older than the code it is built from
/// fails the test with what to run: a test never runs a stale binary, and never rebuilds one
/// itself (a build from inside a test sees the test's environment, so cargo would rebuild
/// dependencies there and again after).
pub fn workspace_bin(name: &str) -> PathBuf {
    let var = format!("SONDE_{}_BIN", name.trim_start_matches("sonde-").to_uppercase());
    if let Some(p) = std::env::var_os(var) {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    BUILD.call_once(|| {
        let missing = ["sonde-agent", "sonde-relay", "sonde-bench"].iter().any(|b| !root.join("target/debug").join(b).exists());
        if missing {
            let packages = ["build", "-p", "sonde-agent", "-p", "sonde-relay", "-p", "sonde-bench"];
            let ok = Command::new(env!("CARGO")).args(packages).current_dir(&root).status().map(|s| s.success());
            assert!(matches!(ok, Ok(true)), "building the binaries failed");
        }
    });
    let bin = root.join("target/debug").join(name);
    let package = name.trim_start_matches("sonde-");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let sources = [package, "protocol", "ca"].iter().filter_map(|dir| newest(&root.join(dir).join("src"))).max();
    if let (Some(built), Some((changed, file))) = (built, sources) {
        assert!(
            built >= changed,
            "{} is older than {} (and maybe more): run `cargo build --workspace` first (the test command does)",
            bin.display(),
            file.display()
        );
    }
    bin
}

/// The most recently modified file under `dir`, and when.
fn newest(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut latest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let found = if path.is_dir() { newest(&path) } else { entry.metadata().and_then(|m| m.modified()).ok().map(|t| (t, path)) };
        if let Some(f) = found {
            if latest.as_ref().is_none_or(|l| f.0 > l.0) {
                latest = Some(f);
            }
        }
    }
    latest
}

pub fn agent_bin() -> PathBuf {
    workspace_bin("sonde-agent")
}

pub struct AgentProcess {
    child: Child,
    pub host: String,
    pub statsd: std::net::SocketAddr,
    token_file: PathBuf,
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
        let token = hs256(&agent("1", host), "secret");
        Self::spawn_at(&format!("ws://{}", relay.addr), host, &token, extra)
    }

    /// Starts an agent for `host` against app key `key` at `relay_url`, its token in a file.
    pub fn spawn_at(relay_url: &str, host: &str, token: &str, extra: &[&str]) -> Self {
        let state = TempDir::new("agent");
        let statsd = free_udp_port();
        let token_file = state.0.join("token");
        write_secret(&token_file, token);
        let child = Command::new(agent_bin())
            .args(["--relay", relay_url, "--key", "key", "--host", host])
            .arg("--token-file")
            .arg(&token_file)
            .arg("--state-dir")
            .arg(state.0.join("state"))
            .args(["--statsd", &statsd.to_string()])
            .args(extra)
            .env("RUST_LOG", std::env::var("SONDE_TEST_AGENT_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sonde-agent");
        Self { child, host: host.to_owned(), statsd, token_file, _state: state }
    }

    pub fn channel(&self) -> String {
        format!("private-sonde-host.{}", self.host)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still the one started (it has not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Replaces the token file the way an operator would: a new file renamed over the old one.
    pub fn replace_token(&self, token: &str) {
        let tmp = self.token_file.with_extension("new");
        write_secret(&tmp, token);
        std::fs::rename(&tmp, &self.token_file).expect("replace the token file");
    }

    /// `kill -STOP` / `kill -CONT`.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Resident memory, KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("agent status");
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).expect("VmRSS")
    }

    /// Sends StatsD lines to the agent, packed into datagrams of at most 1,400 bytes.
    pub async fn statsd_lines(&self, udp: &tokio::net::UdpSocket, lines: impl IntoIterator<Item = String>) {
        let mut packet = String::new();
        for line in lines {
            if !packet.is_empty() && packet.len() + line.len() + 1 > 1400 {
                udp.send_to(packet.as_bytes(), self.statsd).await.expect("send statsd");
                packet.clear();
            }
            packet.push_str(&line);
            packet.push('\n');
        }
        if !packet.is_empty() {
            udp.send_to(packet.as_bytes(), self.statsd).await.expect("send statsd");
        }
    }
}

/// Writes a file only its owner can read.
fn write_secret(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).expect("token file");
    f.write_all(text.as_bytes()).expect("write token");
}

/// Sends a signal by name (`STOP`, `CONT`, `TERM`) with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
