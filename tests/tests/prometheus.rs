//! deploy/prometheus and deploy/grafana against the real thing: a real `prometheus` scrapes a
//! two-node cluster (a real `redis-server`) under `sonde-bench fleet` load (agents on both
//! nodes, a dashboard, viewers starting sessions), with a webhook target that is down, a
//! reader too slow for its channel and a socket that never sends its request. Every query of
//! the Grafana dashboard and every alert expression (its measured side, without the
//! threshold) is run through Prometheus's HTTP API and must return a number; then three alerts
//! are driven to firing (webhook drops, Redis gone under the nodes, a relay gone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sonde_relay::config::Config;
use sonde_tests::agent::{workspace_bin, TempDir};
use sonde_tests::cluster::RedisServer;
use sonde_tests::raw::{Frame, RawWs};
use sonde_tests::TestRelay;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `prometheus` process scraping `target` every second and evaluating the project's rules
/// every second, with each rule's `for` cut to 0 so an alert fires on its first evaluation.
struct Prometheus {
    child: Child,
    base: String,
    http: reqwest::Client,
    _dir: TempDir,
}

impl Prometheus {
    async fn start(targets: &[String]) -> Self {
        let dir = TempDir::new("prometheus");
        let rules = std::fs::read_to_string(repo("deploy/prometheus/sonde-rules.yml")).unwrap();
        let rules: String = rules.lines().map(|l| if l.trim_start().starts_with("for:") { "".to_owned() } else { format!("{l}\n") }).collect();
        std::fs::write(dir.0.join("rules.yml"), rules).unwrap();
        let config = format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: sonde-relay\n    static_configs:\n      - targets: [{}]\n", targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", "));
        std::fs::write(dir.0.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (scripts/lib.sh installs Debian's prometheus)");
        Self { child, base: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new(), _dir: dir }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let resp = self.http.get(format!("{}{path}", self.base)).query(query).timeout(Duration::from_secs(5)).send().await.ok()?;
        resp.json().await.ok()
    }

    /// An instant query; panics unless Prometheus accepts it.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let v = self.get("/api/v1/query", &[("query", expr)]).await.unwrap_or(Value::Null);
        assert_eq!(v["status"], "success", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    async fn until(&self, what: &str, secs: u64, mut check: impl AsyncFnMut(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !check(self).await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn firing(&self, alert: &str) -> bool {
        let v = self.get("/api/v1/alerts", &[]).await.unwrap_or(Value::Null);
        v["data"]["alerts"].as_array().is_some_and(|a| a.iter().any(|x| x["labels"]["alertname"] == alert && x["state"] == "firing"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `expr` of the Grafana dashboard, with its variables set as Grafana would.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/grafana/sonde-relay.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().replace("$instance", ".*").replace("$__rate_interval", "1m"));
        }
    }
    assert!(out.len() >= 14, "{out:?}");
    out
}

/// Metric names a query reads, as the relay exposes them (`# TYPE` names, without the
/// `_bucket`, `_total`… suffixes).
fn metric_families(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in expr.match_indices("sonde_") {
        let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_count", "_sum", "_total"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_owned();
        out.push(base);
    }
    out
}

/// The alert rules' expressions, each cut to what it measures: `A > 0.9` → `A`, and both
/// sides of an `and on (…)`.
fn alert_measures() -> Vec<String> {
    let text = std::fs::read_to_string(repo("deploy/prometheus/sonde-rules.yml")).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(expr) = line.trim_start().strip_prefix("expr:") else { continue };
        for part in expr.split(" and on (instance, job) ") {
            let cut = [" == ", " > ", " < "].iter().filter_map(|op| part.rfind(op)).max().map_or(part, |i| &part[..i]);
            out.push(cut.trim().to_owned());
        }
    }
    assert_eq!(out.len(), 7, "{out:?}");
    out
}

/// Whether an instant query's result holds a finite number.
fn has_number(result: &[Value]) -> bool {
    result.iter().any(|r| r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).is_some_and(f64::is_finite))
}

/// Two nodes' configuration: a fleet's limits, an app whose webhook target is down (its
/// events dropped after a one-second retry window), and room for big events.
fn cluster_config(dir: &TempDir, redis: &RedisServer) -> Config {
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let text = format!(
        r#"
[edge]
max_sockets_per_ip = 0
max_handshakes_per_ip = 0

[sessions]
grace_ms = 1000

[redis]
url = "{redis}"
prefix = "prom"
heartbeat_ms = 300
node_timeout_ms = 1500

[webhooks]
timeout_ms = 300
initial_backoff_ms = 100
max_backoff_ms = 200
retry_window_s = 1

[[apps]]
id = "1"
key = "key"
secret = "secret"
client_events = true
max_connections = 0
max_payload_bytes = 204800
max_message_bytes = 262144
max_outbox_bytes = 262144

[[apps.webhooks]]
url = "http://{down}/hooks"
event_types = ["channel_occupied"]
"#,
        redis = redis.url()
    );
    let path = dir.0.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    Config::from_toml_file(&path).unwrap()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sonde-bench fleet`: 40 agents over both nodes, a dashboard and two held sessions on the
/// first, then viewers starting a short session a second until killed.
fn fleet(main: &TestRelay, other: &TestRelay) -> Killed {
    let child = Command::new(workspace_bin("sonde-bench"))
        .args(["--host", "127.0.0.1", "--port", &main.addr.port().to_string(), "--source-addrs", "0"])
        .args(["fleet", "--agents", "40", "--also", &other.addr.to_string(), "--dashboards", "1", "--uptime", "5", "--steady", "2"])
        .args(["--sessions", "2", "--session-rate", "1", "--session-window", "120", "--watch", "1", "--connect-rate", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sonde-bench");
    Killed(child)
}

/// A subscriber of `firehose` that never reads, and big events until the relay closes it.
async fn slow_reader(relay: &TestRelay) {
    let api = relay.api();
    let mut ws = RawWs::open(relay.addr, "key").await;
    ws.send(&Frame::text(json!({"event": "pusher:subscribe", "data": {"channel": "firehose"}}).to_string())).await;
    let payload = "x".repeat(190 * 1024);
    let resets =
        || async { relay.api().raw("GET", "/metrics", vec![]).await.1.as_str().unwrap_or_default().contains("sonde_slow_consumer_resets_total{app=\"1\"} 1") };
    let mut sent = 0;
    while !resets().await {
        assert!(sent < 2_000, "the reader was never closed after {sent} events");
        let (status, body) = api.trigger(&["firehose"], "big", &payload).await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
    }
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_loaded_cluster_every_query_returns_data_and_alerts_fire() {
    let mut redis = RedisServer::start().await;
    let dir = TempDir::new("prom-relay");
    let config = cluster_config(&dir, &redis);
    let one = TestRelay::with_config(config.clone()).await;
    let two = TestRelay::with_config(config).await;
    let prom = Prometheus::start(&[one.addr.to_string(), two.addr.to_string()]).await;
    let up = async |p: &Prometheus| p.get("/api/v1/query", &[("query", "up == 1")]).await.and_then(|v| v["data"]["result"].as_array().map(Vec::len));
    prom.until("both relays scraped", 30, async |p| up(p).await == Some(2)).await;
    let bench = fleet(&one, &two);
    // A socket that never sends its request: cut at the head deadline, a refusal by reason.
    let silent = tokio::net::TcpStream::connect(one.addr).await.unwrap();
    slow_reader(&one).await;

    // Every dashboard query and every alert's measure gives a number at some point under the
    // load (a quantile is NaN while its histogram is idle: each waits for its moment).
    let (_, metrics) = one.api().raw("GET", "/metrics", vec![]).await;
    let exposed = metrics.as_str().unwrap().to_owned();
    let mut pending: Vec<String> = dashboard_queries().into_iter().chain(alert_measures()).collect();
    for q in &pending {
        for family in metric_families(q) {
            assert!(exposed.contains(&format!("# TYPE {family} ")), "{family} (in {q}) is not in the relay's /metrics");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "no data from Prometheus for {pending:#?}");
        let mut still = Vec::new();
        for q in pending {
            if !has_number(&prom.query(&q).await) {
                still.push(q);
            }
        }
        pending = still;
        let _ = one.api().request("GET", "/channels", None, &[]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every alert rule evaluates without error; the down webhook target's drops fire one.
    let rules = prom.get("/api/v1/rules", &[]).await.unwrap();
    let all: Vec<&Value> = rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(all.len(), 6, "{rules}");
    for r in &all {
        assert_eq!(r["health"], "ok", "{r}");
    }
    prom.until("SondeWebhookDrops to fire", 30, async |p| p.firing("SondeWebhookDrops").await).await;
    assert!(!prom.firing("SondeRedisLinkDown").await, "Redis is up");
    drop((bench, silent));

    redis.kill();
    prom.until("SondeRedisLinkDown to fire", 30, async |p| p.firing("SondeRedisLinkDown").await).await;
    one.stop().await;
    prom.until("SondeRelayDown to fire", 30, async |p| p.firing("SondeRelayDown").await).await;
    two.stop().await;
}
