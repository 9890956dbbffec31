use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use sonde_protocol::sign;
use sonde_relay::config::{AppConfig, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Client;

/// A relay serving on 127.0.0.1:<free port> inside the test process.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestRelay {
    /// One app `1:key:secret` with client events on, as `--app` gives it.
    pub async fn spawn() -> Self {
        Self::with_apps(vec![AppConfig::from_flag("1:key:secret").expect("valid")]).await
    }

    pub async fn with_apps(apps: Vec<AppConfig>) -> Self {
        Self::with_config(Config { apps, ..Config::default() }).await
    }

    /// Shortened session timing, for tests of grace periods and leases.
    pub async fn with_session_timing(apps: Vec<AppConfig>, sessions: sonde_relay::config::SessionsConfig) -> Self {
        Self::with_config(Config { apps, sessions, ..Config::default() }).await
    }

    pub async fn with_config(config: Config) -> Self {
        Self::on(config, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// A relay bound to `addr` (to come back on the same port after a stop).
    pub async fn on(mut config: Config, addr: SocketAddr) -> Self {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("addr");
        config.bind = addr;
        config.validate().expect("valid config");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sonde_relay::server::run(listener, config.clone(), async move {
            let _ = stopped.await;
        }));
        Self { addr, config, stop: Some(stop), task: Some(task) }
    }

    pub fn app(&self, id: &str) -> &AppConfig {
        self.config.apps.iter().find(|a| a.id == id).expect("app in config")
    }

    pub fn ws_url(&self, key: &str) -> String {
        format!("ws://{}/app/{key}?protocol=7&client=rust-test&version=1.0", self.addr)
    }

    /// A connected client of app 1 that has received `connection_established`.
    pub async fn client(&self) -> Client {
        Client::connect(&self.ws_url(&self.config.apps[0].key)).await
    }

    pub fn api(&self) -> Api {
        let a = &self.config.apps[0];
        Api { base: format!("http://{}", self.addr), id: a.id.clone(), key: a.key.clone(), secret: a.secret.clone(), http: reqwest::Client::new() }
    }

    pub fn api_for(&self, id: &str) -> Api {
        let a = self.app(id);
        Api { base: format!("http://{}", self.addr), id: a.id.clone(), key: a.key.clone(), secret: a.secret.clone(), http: reqwest::Client::new() }
    }

    /// Stops the relay the way SIGTERM does and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("relay task").expect("relay ran");
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A signed HTTP API client for one app.
pub struct Api {
    pub base: String,
    pub id: String,
    pub key: String,
    pub secret: String,
    pub http: reqwest::Client,
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

impl Api {
    /// Sends a signed request; returns the status and the JSON body.
    pub async fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>, extra: &[(&str, &str)]) -> (u16, serde_json::Value) {
        self.request_at(method, path, body, extra, now()).await
    }

    pub async fn request_at(&self, method: &str, path: &str, body: Option<&serde_json::Value>, extra: &[(&str, &str)], ts: u64) -> (u16, serde_json::Value) {
        let full = format!("/apps/{}{path}", self.id);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let q = sign::sign_request(method, &full, &self.key, &self.secret, ts, &bytes, extra);
        self.raw(method, &format!("{full}?{q}"), bytes).await
    }

    /// Like `raw`, but a refused connection gives `None` instead of failing the test.
    pub async fn try_get(&self, path: &str) -> Option<u16> {
        let resp = self.http.get(format!("{}{path}", self.base)).timeout(std::time::Duration::from_secs(2)).send().await.ok()?;
        Some(resp.status().as_u16())
    }

    /// Sends exactly this path and query, unsigned by the helper.
    pub async fn raw(&self, method: &str, path_and_query: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let url = format!("{}{path_and_query}", self.base);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, url);
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.expect("http request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    pub async fn trigger(&self, channels: &[&str], name: &str, data: &str) -> (u16, serde_json::Value) {
        self.request("POST", "/events", Some(&serde_json::json!({"name": name, "channels": channels, "data": data})), &[]).await
    }

    /// Channel auth as an auth endpoint would compute it.
    pub fn auth(&self, socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
        sign::auth_token(&self.key, &self.secret, &sign::channel_string(socket_id, channel, channel_data))
    }

    pub fn user_auth(&self, socket_id: &str, user_data: &str) -> String {
        sign::auth_token(&self.key, &self.secret, &sign::user_string(socket_id, user_data))
    }
}
