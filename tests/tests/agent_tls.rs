//! The real agent over wss:// to a real TLS relay: with the relay's CA given by --ca-file it
//! streams a session; when the certificate is not trusted, expired or issued for another
//! name, every handshake fails and the agent backs off (a few attempts in five seconds, not
//! hundreds), still running, for the next attempt to succeed once the certificate is fixed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use sonde_relay::config::{AppConfig, Config, SessionsConfig};
use sonde_relay::tls::TlsConfig;
use sonde_tests::agent::{AgentProcess, Proxy, TempDir};
use sonde_tests::tls::TlsRelay;
use sonde_tests::tokens::{agent, hs256, viewer};
use sonde_tests::{Api, Frame, TestRelay};

fn quick_sessions() -> SessionsConfig {
    SessionsConfig { grace_ms: 1000, lease_ms: 4000, renew_ms: 1000, interval_ms: 1000 }
}

fn agent_token(host: &str) -> String {
    hs256(&agent("1", host), "secret")
}

/// Whether the inventory (read over the relay's own API) shows `host` online.
async fn online(api: &Api, host: &str) -> bool {
    let (_, body) = api.request("GET", "/agents", None, &[]).await;
    body["agents"].as_array().is_some_and(|a| a.iter().any(|e| e["host"] == host && e["online"] == true))
}

#[tokio::test]
async fn the_agent_streams_a_session_over_wss() {
    let relay = TlsRelay::spawn(|c| c.sessions = quick_sessions()).await;
    let ca_file = relay.dir.0.join("ca.pem");
    std::fs::write(&ca_file, relay.ca.pem()).expect("CA file");
    let url = format!("wss://127.0.0.1:{}", relay.relay.addr.port());
    let agent = AgentProcess::spawn_at(&url, "tls1", &agent_token("tls1"), &["--ca-file", ca_file.to_str().expect("path")]);
    let api = relay.api();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !online(&api, "tls1").await {
        assert!(Instant::now() < deadline, "the agent never came online over wss://");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut v = relay.client().await;
    v.subscribe_auth(&agent.channel(), &hs256(&viewer("1"), "secret"), None).await;
    v.expect_next("pusher_internal:subscription_succeeded").await;
    let mut events = Vec::new();
    while events.iter().filter(|f: &&Frame| f.event == "client-sonde-sample").count() < 2 {
        let f = tokio::time::timeout(Duration::from_secs(10), v.next_frame()).await.expect("a frame in time").expect("stream open");
        if f.event.starts_with("client-sonde-") && f.event != "client-sonde-snapshot" {
            events.push(f);
        }
    }
    assert_eq!(events[0].event, "client-sonde-backfill", "the backfill first, then samples");
    let sample = events.iter().rev().find(|f| f.event == "client-sonde-sample").expect("a sample");
    assert!(sample.data["metrics"]["cpu.user_pct"].is_number(), "{}", sample.data);
}

/// A CA of this test (not the relay helper's), for certificates a relay should never have.
struct OwnCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl OwnCa {
    fn new() -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self { cert: params.self_signed(&key).expect("CA"), key }
    }

    /// A relay certificate for `names`, expired a day ago when `expired`.
    fn leaf(&self, names: &[&str], expired: bool, dir: &TempDir) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        if expired {
            let now = std::time::SystemTime::now();
            params.not_before = (now - Duration::from_secs(30 * 86_400)).into();
            params.not_after = (now - Duration::from_secs(86_400)).into();
        }
        let leaf = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        let (cert, key_file) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
        std::fs::write(&cert, format!("{}{}", leaf.pem(), self.cert.pem())).expect("cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("key");
        (cert, key_file)
    }

    fn write(&self, dir: &TempDir) -> PathBuf {
        let path = dir.0.join("ca.pem");
        std::fs::write(&path, self.cert.pem()).expect("CA file");
        path
    }
}

async fn relay_with(cert: PathBuf, key: PathBuf) -> TestRelay {
    let config = Config { apps: vec![AppConfig::from_flag("1:key:secret").expect("app")], tls: Some(TlsConfig::new(cert, key)), ..Config::default() };
    TestRelay::with_config(config).await
}

/// An agent dialling `relay` through a proxy that counts its connections.
async fn through_proxy(relay: &TestRelay, host: &str, extra: &[&str]) -> (Proxy, AgentProcess) {
    let proxy = Proxy::start(relay.addr).await;
    // The proxy listens on 127.0.0.1 too: the agent checks the relay's certificate for it.
    let agent = AgentProcess::spawn_at(&format!("wss://{}", proxy.addr), host, &agent_token(host), extra);
    (proxy, agent)
}

/// Runs an agent against `relay` through a counting proxy for five seconds; returns how many
/// connections it opened. The agent must still be running, and every connection but one just
/// opened must have ended within two seconds (a connection the agent accepted stays open).
async fn attempts_in_five_seconds(relay: &TestRelay, host: &str, extra: &[&str]) -> usize {
    let (proxy, mut agent) = through_proxy(relay, host, extra).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(agent.is_running(), "a certificate problem does not stop the agent");
    let (seen, now) = (proxy.seen(), Instant::now());
    for s in seen.iter().filter(|s| now - s.opened > Duration::from_secs(2)) {
        let lasted = s.closed.map(|c| c - s.opened);
        assert!(lasted.is_some_and(|d| d < Duration::from_secs(2)), "a connection the handshake should have ended lasted {lasted:?}");
    }
    seen.len()
}

/// At least a retry, and at most what a backoff of 0.5-1 s, 1-2 s, 2-4 s allows (with room
/// for a slow start); a reconnect storm would be hundreds.
fn backs_off(attempts: usize, what: &str) {
    assert!((2..=5).contains(&attempts), "{what}: {attempts} connection attempts in 5 s");
}

#[tokio::test]
async fn a_certificate_of_an_unknown_ca_fails_and_backs_off() {
    let relay = TlsRelay::spawn(|_| {}).await;
    // The agent trusts the system's store and another CA, neither of which issued the relay's
    // certificate (a CA file of its own, so the test does not depend on the machine's store).
    let dir = TempDir::new("agent-tls-stranger");
    let stranger = OwnCa::new().write(&dir);
    let attempts = attempts_in_five_seconds(&relay.relay, "untrusted", &["--ca-file", stranger.to_str().expect("path")]).await;
    backs_off(attempts, "unknown issuer");
    assert!(!online(&relay.api(), "untrusted").await, "never online through a refused certificate");
}

/// A relay with a certificate of a new CA for `names` (expired when told), and that CA's file.
async fn relay_of_own_ca(names: &[&str], expired: bool) -> (TestRelay, PathBuf, TempDir) {
    let (ca, dir) = (OwnCa::new(), TempDir::new("agent-tls"));
    let (cert, key) = ca.leaf(names, expired, &dir);
    let relay = relay_with(cert, key).await;
    (relay, ca.write(&dir), dir)
}

/// The agent trusts the CA (`--ca-file`), yet the relay's certificate is for `names` and
/// expired when told: it must fail every handshake and back off.
async fn refused_although_the_ca_is_trusted(names: &[&str], expired: bool, host: &str) -> usize {
    let (relay, ca_file, _dir) = relay_of_own_ca(names, expired).await;
    attempts_in_five_seconds(&relay, host, &["--ca-file", ca_file.to_str().expect("path")]).await
}

/// The control of the two tests below: the same CA, a certificate valid now for 127.0.0.1.
/// One connection, still open.
#[tokio::test]
async fn a_valid_certificate_of_the_same_kind_is_accepted() {
    let (relay, ca_file, _dir) = relay_of_own_ca(&["127.0.0.1"], false).await;
    let (proxy, mut agent) = through_proxy(&relay, "valid", &["--ca-file", ca_file.to_str().expect("path")]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(agent.is_running());
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].closed.is_none(), "the accepted connection stays open");
}

#[tokio::test]
async fn an_expired_certificate_fails_and_backs_off() {
    backs_off(refused_although_the_ca_is_trusted(&["127.0.0.1"], true, "expired").await, "expired certificate");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_and_backs_off() {
    backs_off(refused_although_the_ca_is_trusted(&["relay.example.com"], false, "wrongname").await, "certificate for another name");
}
