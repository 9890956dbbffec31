//! `sonde-bench fleet` stands in for thousands of agents only if one simulated agent writes
//! what the real `sonde-agent` writes. Both connect to a real relay through a recording proxy;
//! a viewer starts a session on each. Compared: the upgrade request (path, token header and
//! claims), the subscribe frame, the snapshot (fields, order, size), the backfill parts and
//! the live samples (metric families, top list, pace, size).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use sonde_tests::agent::AgentProcess;
use sonde_tests::tokens::{agent, hs256, viewer};
use sonde_tests::{Client, TestRelay};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Client→relay bytes kept per connection.
const KEEP: usize = 1 << 20;

type Recorded = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// Forwards connections to `to`, keeping what each client sent.
async fn recording_proxy(to: SocketAddr) -> (SocketAddr, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rec: Recorded = Arc::default();
    let all = rec.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let kept = Arc::new(Mutex::new(Vec::new()));
            all.lock().unwrap().push(kept.clone());
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(to).await else { return };
                let (mut ci, mut co) = inbound.into_split();
                let (mut si, mut so) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut si, &mut co).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = ci.read(&mut buf).await {
                    if n == 0 || so.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let mut k = kept.lock().unwrap();
                    let room = KEEP.saturating_sub(k.len()).min(n);
                    k.extend_from_slice(&buf[..room]);
                }
            });
        }
    });
    (addr, rec)
}

/// The request head and the text frames (unmasked) a client sent.
fn decode(bytes: &[u8]) -> (String, Vec<String>) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a request head") + 4;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let (mut frames, mut at) = (Vec::new(), end);
    while at + 2 <= bytes.len() {
        let (op, len7) = (bytes[at] & 0x0f, usize::from(bytes[at + 1] & 0x7f));
        let (len, hdr) = match len7 {
            126 if at + 4 <= bytes.len() => (usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]])), 4),
            127 if at + 10 <= bytes.len() => (u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize, 10),
            126 | 127 => break,
            n => (n, 2),
        };
        let (mask_at, body_at) = (at + hdr, at + hdr + 4);
        if body_at + len > bytes.len() {
            break;
        }
        let body: Vec<u8> = bytes[body_at..body_at + len].iter().enumerate().map(|(i, b)| b ^ bytes[mask_at + i % 4]).collect();
        if op == 1 {
            frames.push(String::from_utf8(body).expect("text frames are UTF-8"));
        }
        at = body_at + len;
    }
    (head, frames)
}

fn bench_bin() -> PathBuf {
    sonde_tests::agent::workspace_bin("sonde-bench")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn claims(head: &str) -> (Value, Value, String) {
    let path = head.split(' ').nth(1).expect("request line");
    let (before, token) = path.split_once("&token=").expect("token in the query");
    let parts: Vec<&str> = token.split('.').collect();
    let json = |s: &str| serde_json::from_slice::<Value>(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    let raw_claims = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    (json(parts[0]), json(parts[1]), format!("{before}|{}", key_order(&raw_claims)))
}

/// The object keys of a JSON text in the order written (one level).
fn key_order(json: &str) -> String {
    let v: serde_json::Map<String, Value> = serde_json::from_str(json).unwrap();
    let mut keys: Vec<(usize, &String)> = v.keys().map(|k| (json.find(&format!("\"{k}\":")).unwrap(), k)).collect();
    keys.sort();
    keys.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join(",")
}

/// Frames of one connection: event → data texts, in order.
fn events(frames: &[String], event: &str) -> Vec<Value> {
    frames.iter().filter_map(|f| serde_json::from_str::<Value>(f).ok()).filter(|v| v["event"] == event).map(|v| v["data"].clone()).collect()
}

fn families(sample: &Value) -> std::collections::BTreeSet<String> {
    sample["metrics"].as_object().unwrap().keys().map(|k| k.split('.').next().unwrap().to_owned()).collect()
}

fn ratio(sim: usize, real: usize) -> f64 {
    sim as f64 / real.max(1) as f64
}

/// Reads inventory frames until every host is listed online with a snapshot.
async fn wait_listed(watcher: &mut Client, hosts: &[&str]) {
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < hosts.len() {
        assert!(tokio::time::Instant::now() < deadline, "listed so far: {seen:?}");
        let Some(f) = watcher.next_frame().await else { panic!("the viewer was closed") };
        for a in f.data["agents"].as_array().into_iter().flatten() {
            if a["online"] == true && a["snapshot"].is_object() {
                seen.insert(a["host"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
}

/// Reads the viewer's frames until both hosts sent `n` live samples.
async fn watch_both(viewer: &mut Client, hosts: [&str; 2], n: usize) {
    let mut samples = [0usize; 2];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while samples.iter().any(|s| *s < n) {
        assert!(tokio::time::Instant::now() < deadline, "live samples so far: {samples:?}");
        let Some(f) = viewer.next_frame().await else { panic!("the viewer was closed") };
        if f.event == "client-sonde-sample" {
            let ch = f.channel.unwrap_or_default();
            if let Some(i) = hosts.iter().position(|h| ch.ends_with(h)) {
                samples[i] += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_agent_writes_what_the_real_agent_writes() {
    let relay = TestRelay::spawn().await;
    let (proxy, recorded) = recording_proxy(relay.addr).await;
    let real = AgentProcess::spawn_at(&format!("ws://{proxy}"), "real-1", &hs256(&agent("1", "real-1"), "secret"), &[]);
    let sim = Killed(
        Command::new(bench_bin())
            .args(["--host", "127.0.0.1", "--port", &proxy.port().to_string(), "--source-addrs", "0"])
            .args(["fleet", "--agents", "1", "--prefix", "sim-", "--first", "1", "--dashboards", "0", "--steady", "0", "--uptime", "3", "--linger", "120"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sonde-bench"),
    );
    // Both listed with a snapshot, then a session on each.
    let token = hs256(&viewer("1"), "secret");
    let mut watcher = Client::connect(&relay.ws_url("key")).await;
    watcher.subscribe_auth("private-sonde-inventory", &token, None).await;
    wait_listed(&mut watcher, &["real-1", "sim-1"]).await;
    // A few seconds of history in the real agent's ring, so both backfills carry samples.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for h in ["real-1", "sim-1"] {
        watcher.subscribe_auth(&format!("private-sonde-host.{h}"), &token, None).await;
    }
    watch_both(&mut watcher, ["real-1", "sim-1"], 3).await;
    let conns: Vec<Vec<u8>> = recorded.lock().unwrap().iter().map(|c| c.lock().unwrap().clone()).collect();
    let decoded: Vec<(String, Vec<String>)> = conns.iter().map(|c| decode(c)).collect();
    let of = |host: &str| {
        decoded.iter().find(|(head, _)| claims(head).1["sub"] == format!("agent:{host}")).unwrap_or_else(|| panic!("no connection of {host}")).clone()
    };
    let (real_head, real_frames) = of("real-1");
    let (sim_head, sim_frames) = of("sim-1");
    compare_handshake(&real_head, &sim_head, &real_frames, &sim_frames);
    compare_snapshots(&events(&real_frames, "client-sonde-snapshot")[0], &events(&sim_frames, "client-sonde-snapshot")[0]);
    compare_sessions(&real_frames, &sim_frames);
    drop((sim, real));
}

fn compare_handshake(real_head: &str, sim_head: &str, real: &[String], sim: &[String]) {
    let (rh, rc, rorder) = claims(real_head);
    let (sh, sc, sorder) = claims(sim_head);
    assert_eq!(rh, sh, "token header");
    assert_eq!(rorder, sorder, "URL before the token, claim order");
    assert_eq!(rc["subscribe"][0], "private-sonde-host.real-1");
    assert_eq!(sc["subscribe"][0], "private-sonde-host.sim-1");
    for k in ["app", "role"] {
        assert_eq!(rc[k], sc[k], "claim {k}");
    }
    assert_eq!(rc["exp"].as_u64().unwrap() - rc["iat"].as_u64().unwrap(), 3600, "the test mints the real agent's token for an hour");
    assert_eq!(real[0].replace("real-1", "sim-1"), sim[0], "the subscribe frame");
}

fn compare_snapshots(real: &Value, sim: &Value) {
    let keys = |v: &Value, at: &str| v[at].as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(real.as_object().unwrap().keys().collect::<Vec<_>>(), sim.as_object().unwrap().keys().collect::<Vec<_>>());
    assert_eq!(keys(real, "facts"), keys(sim, "facts"));
    assert_eq!(keys(real, "summary"), keys(sim, "summary"));
    let own = |v: &Value| keys(v, "custom").into_iter().filter(|k| k.starts_with("agent.")).collect::<Vec<_>>();
    assert_eq!(own(real), own(sim), "the agent's own counters");
    let (r, s) = (real.to_string().len(), sim.to_string().len());
    eprintln!("snapshot bytes: real {r}, simulated {s}");
    assert!((0.7..1.6).contains(&ratio(s, r)), "snapshot sizes {s} vs {r}");
}

fn compare_sessions(real: &[String], sim: &[String]) {
    for frames in [real, sim] {
        let kinds: Vec<String> =
            frames.iter().skip(1).map(|f| serde_json::from_str::<Value>(f).unwrap()["event"].as_str().unwrap_or_default().to_owned()).collect();
        let first_backfill = kinds.iter().position(|k| k == "client-sonde-backfill").expect("a backfill");
        let first_sample = kinds.iter().position(|k| k == "client-sonde-sample").expect("a live sample");
        assert!(first_backfill < first_sample, "history before live samples: {kinds:?}");
    }
    let (rs, ss) = (events(real, "client-sonde-sample"), events(sim, "client-sonde-sample"));
    let fam_real = families(&rs[0]);
    let fam_sim = families(&ss[0]);
    assert!(fam_real.is_subset(&fam_sim), "metric families: real {fam_real:?}, simulated {fam_sim:?}");
    for (a, b) in [(&rs[1], &rs[2]), (&ss[1], &ss[2])] {
        assert_eq!(b["ts"].as_u64().unwrap() - a["ts"].as_u64().unwrap(), 1000, "a sample a second");
        assert_eq!(b["seq"].as_u64().unwrap(), a["seq"].as_u64().unwrap() + 1);
    }
    assert!(!rs[1]["top"].as_array().unwrap().is_empty() && !ss[1]["top"].as_array().unwrap().is_empty(), "live samples carry the top list");
    let (r, s) = (rs[2].to_string().len(), ss[2].to_string().len());
    eprintln!(
        "live sample bytes: real {r} ({} metrics), simulated {s} ({} metrics)",
        rs[2]["metrics"].as_object().unwrap().len(),
        ss[2]["metrics"].as_object().unwrap().len()
    );
    assert!((0.5..2.0).contains(&ratio(s, r)), "live sample sizes {s} vs {r}");
    let per_sample = |frames: &[String]| {
        let parts = events(frames, "client-sonde-backfill");
        let samples: Vec<&Value> = parts.iter().flat_map(|p| p["samples"].as_array().unwrap().iter()).collect();
        let bare: Vec<usize> = samples.iter().filter(|s| s.get("top").is_none()).map(|s| s.to_string().len()).collect();
        (parts.len(), samples.len(), bare.iter().sum::<usize>() / bare.len().max(1))
    };
    let (rp, rn, rb) = per_sample(real);
    let (sp, sn, sb) = per_sample(sim);
    eprintln!("backfill: real {rp} parts, {rn} samples, {rb} B each; simulated {sp} parts, {sn} samples, {sb} B each");
    assert!(rn >= 1 && sn >= 1);
    if rb > 0 && sb > 0 {
        assert!((0.5..2.0).contains(&ratio(sb, rb)), "backfilled sample sizes {sb} vs {rb}");
    }
}
