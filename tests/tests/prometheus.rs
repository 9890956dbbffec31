//! deploy/prometheus and deploy/grafana against the real thing: a real `prometheus` scrapes a
//! real relay under load, every query of the Grafana dashboard and every alert rule is
//! evaluated through Prometheus's HTTP API, and two alerts are driven to firing (Redis gone
//! under a cluster node, then the relay itself gone).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sonde_relay::cluster::RedisConfig;
use sonde_relay::config::{AppConfig, Config};
use sonde_tests::agent::TempDir;
use sonde_tests::cluster::RedisServer;
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
    async fn start(target: &str) -> Self {
        let dir = TempDir::new("prometheus");
        let rules = std::fs::read_to_string(repo("deploy/prometheus/sonde-rules.yml")).unwrap();
        let rules: String = rules.lines().map(|l| if l.trim_start().starts_with("for:") { "".to_owned() } else { format!("{l}\n") }).collect();
        std::fs::write(dir.0.join("rules.yml"), rules).unwrap();
        let config = format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: sonde-relay\n    static_configs:\n      - targets: ['{target}']\n");
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

async fn load(relay: &TestRelay, rounds: usize) {
    let api = relay.api();
    for i in 0..rounds {
        assert_eq!(api.trigger(&["room"], "tick", &i.to_string()).await.0, 200);
        let _ = api.request("GET", "/channels", None, &[]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_the_relay_runs_every_dashboard_query_and_fires_alerts() {
    let mut redis = RedisServer::start().await;
    let config = Config { apps: vec![AppConfig::from_flag("1:key:secret").unwrap()], redis: Some(RedisConfig::new(&redis.url())), ..Config::default() };
    let relay = TestRelay::with_config(config).await;
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        let mut c = relay.client().await;
        c.subscribe("room").await;
        subscribers.push(c);
    }
    let prom = Prometheus::start(&relay.addr.to_string()).await;
    prom.until("the relay scraped", 30, async |p| p.get("/api/v1/query", &[("query", "up")]).await.is_some_and(|v| v["data"]["result"][0]["value"][1] == "1"))
        .await;
    load(&relay, 60).await;
    prom.until("publishes in the histograms", 15, async |p| !p.query("sonde_publish_write_seconds_count > 0").await.is_empty()).await;

    // Every dashboard query is valid PromQL over metrics the relay really exposes; those
    // of the traffic generated here return data.
    let (_, metrics) = relay.api().raw("GET", "/metrics", vec![]).await;
    let exposed = metrics.as_str().unwrap().to_owned();
    for q in dashboard_queries() {
        for family in metric_families(&q) {
            assert!(exposed.contains(&format!("# TYPE {family} ")), "{family} (in {q}) is not in the relay's /metrics");
        }
        let result = prom.query(&q).await;
        let expect_data = ["sonde_connections", "sonde_messages_out", "sonde_publish_write_seconds", "sonde_http_request_duration", "sonde_cluster_adapter_up"];
        if expect_data.iter().any(|m| q.contains(m)) {
            assert!(!result.is_empty(), "no data for {q}");
        }
    }
    // Every alert rule evaluates without error.
    let rules = prom.get("/api/v1/rules", &[]).await.unwrap();
    let all: Vec<&Value> = rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(all.len(), 6, "{rules}");
    for r in &all {
        assert_eq!(r["health"], "ok", "{r}");
    }
    assert!(!prom.firing("SondeRedisLinkDown").await, "Redis is up");

    redis.kill();
    prom.until("SondeRedisLinkDown to fire", 30, async |p| p.firing("SondeRedisLinkDown").await).await;
    relay.stop().await;
    prom.until("SondeRelayDown to fire", 30, async |p| p.firing("SondeRelayDown").await).await;
    drop(subscribers);
}
