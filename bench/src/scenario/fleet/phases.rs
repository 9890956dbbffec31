//! The fleet scenario's phases, each adding a section to the report.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::dashboard::{self, View};
use super::viewers::Viewers;
use super::{Fleet, FleetArgs};
use crate::monitor::Window;
use crate::procstat::{Pid, Usage};
use crate::recorder::Latency;
use crate::report::Section;
use crate::Ctx;

/// How long the fleet may take to connect before the run goes on without the stragglers.
const CONNECT_LIMIT: Duration = Duration::from_secs(300);

pub struct Phases<'a> {
    ctx: &'a Ctx,
    a: &'a FleetArgs,
    fleet: Option<Fleet>,
    views: Vec<Arc<Mutex<View>>>,
    sections: Vec<Section>,
}

impl<'a> Phases<'a> {
    pub fn new(ctx: &'a Ctx, a: &'a FleetArgs) -> Self {
        Self { ctx, a, fleet: None, views: Vec::new(), sections: Vec::new() }
    }

    fn fleet(&self) -> &Fleet {
        self.fleet.as_ref().expect("connect runs first")
    }

    async fn redis(&self) -> Option<super::cluster::RedisCounters> {
        let addr = self.a.redis.as_ref()?;
        match super::cluster::RedisCounters::read(addr).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("  redis INFO from {addr}: {e:#}");
                None
            }
        }
    }

    fn server_usage(&self) -> Option<Usage> {
        self.ctx.server_pid.and_then(|p| Usage::read(Pid::Of(p)).ok())
    }

    /// Until every agent is subscribed: how long, and the relay's RSS per agent.
    pub async fn connect(&mut self, fleet: Fleet) {
        let before = self.server_usage();
        let t0 = Instant::now();
        eprintln!("fleet: {} agents connecting at {}/s", self.a.agents, self.a.connect_rate);
        let stats = fleet.stats.clone();
        while (stats.connected.load(Relaxed) as usize) < self.a.agents && t0.elapsed() < CONNECT_LIMIT {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = t0.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = self.server_usage();
        let mut s = Section::new(format!("{} agents connect", self.a.agents));
        s.row("agents subscribed", stats.connected.load(Relaxed) as f64, "");
        s.row("time to all subscribed", took.as_secs_f64(), "s");
        s.row("failed attempts", stats.failures.load(Relaxed) as f64, "");
        if let Some(e) = stats.first_error.get() {
            eprintln!("  first failure: {e}");
        }
        if let (Some(b), Some(a)) = (before, after) {
            s.row("server rss before", b.rss_kib as f64 / 1024.0, "MiB");
            s.row("server rss after", a.rss_kib as f64 / 1024.0, "MiB");
            s.row("server rss per agent", a.rss_kib.saturating_sub(b.rss_kib) as f64 / self.a.agents.max(1) as f64, "KiB");
        }
        self.sections.push(s);
        self.fleet = Some(fleet);
    }

    /// Dashboards subscribe: the full list, page by page.
    pub async fn dashboards(&mut self) {
        let expected = self.a.total();
        let targets = self.fleet().targets.clone();
        for i in 0..self.a.dashboards {
            let view = Arc::new(Mutex::new(View::default()));
            let target = targets[i % targets.len()].clone();
            tokio::spawn(dashboard::follow(target, 1_000_000 + i, expected, view.clone(), self.fleet().stop.subscribe()));
            self.views.push(view);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) && !self.views.iter().all(|v| dashboard::lock(v).counts.full_after.is_some()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (i, v) in self.views.iter().enumerate().take(3) {
            let c = dashboard::lock(v).counts.clone();
            let mut s = Section::new(format!("dashboard {i} subscribes to the inventory ({} node)", targets[i % targets.len()].server));
            s.row("full list frames", c.full_frames as f64, "frames");
            s.row("full list bytes", c.full_bytes as f64 / 1024.0, "KiB");
            s.row("full list entries", c.full_entries as f64, "agents");
            s.row("bytes per host listed", c.full_bytes as f64 / c.full_entries.max(1) as f64, "B");
            s.row("subscribe → full list", c.full_after.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0), "ms");
            s.row("hosts listed online", c.online as f64, "");
            self.sections.push(s);
        }
        let s = self.listed_everywhere(format!("GET /apps/{}/agents on every node", self.ctx.target.app_id)).await;
        self.sections.push(s);
    }

    /// `GET /apps/{id}/agents` asked of every node, in the order of the targets.
    async fn listed_everywhere(&self, title: String) -> Section {
        let mut s = Section::new(title);
        for t in &self.fleet().targets {
            match super::cluster::agents_listed(t).await {
                Ok((listed, online)) => {
                    s.row("hosts listed", listed as f64, "");
                    s.row("hosts online", online as f64, "");
                }
                Err(e) => eprintln!("  GET agents from {}: {e:#}", t.server),
            }
        }
        s
    }

    /// After a restart: every node's listing and what each dashboard shows (a dashboard whose
    /// node went away has reconnected and been listed everything again).
    async fn after_restart(&mut self) {
        let mut s = self.listed_everywhere(format!("after the restart: GET /apps/{}/agents on every node", self.ctx.target.app_id)).await;
        for v in &self.views {
            let c = dashboard::lock(v).counts.clone();
            s.row("dashboard: hosts listed", c.listed as f64, "");
            s.row("dashboard: hosts online", c.online as f64, "");
            s.row("dashboard: subscriptions", c.subscribes as f64, "");
            s.row("dashboard: its latest subscribe → all listed online", c.all_online_after.map_or(f64::NAN, |d| d.as_secs_f64()), "s");
        }
        self.sections.push(s);
    }

    /// No sessions: the relay's CPU for the minute snapshots, the inventory updates.
    pub async fn steady(&mut self) {
        if self.a.steady == 0 {
            return;
        }
        let stats = self.fleet().stats.clone();
        let updates0: Vec<_> = self.views.iter().map(|v| dashboard::lock(v).counts.clone()).collect();
        let snaps0 = stats.snapshots.get();
        eprintln!("fleet: steady window, {} s", self.a.steady);
        let redis0 = self.redis().await;
        let w = Window::start(self.ctx.server_pid);
        tokio::time::sleep(Duration::from_secs(self.a.steady)).await;
        let mut s = Section::new(format!("steady, {} agents, no sessions", self.a.agents));
        let m = w.finish(&mut s);
        if let (Some(r0), Some(r1)) = (redis0, self.redis().await) {
            let per = |d: u64| d as f64 / self.a.total().max(1) as f64 * 60.0 / self.a.steady as f64;
            s.row("redis publishes per agent per minute", per(r1.publishes - r0.publishes), "msgs");
            s.row("redis bytes in per agent per minute", per(r1.net_in - r0.net_in), "B");
            s.row("redis bytes out per agent per minute", per(r1.net_out - r0.net_out), "B");
        }
        let snaps = stats.snapshots.get();
        let per_min = 60.0 / self.a.steady as f64;
        s.row("snapshots sent", (snaps.0 - snaps0.0) as f64, "");
        s.row("snapshot bytes, mean", (snaps.1 - snaps0.1) as f64 / (snaps.0 - snaps0.0).max(1) as f64, "B");
        if let Some(server) = m.server {
            s.row("server share of one core", server.cores() * 100.0, "%");
        }
        if let (Some(v), Some(c0)) = (self.views.first(), updates0.first()) {
            let c = dashboard::lock(v).counts.clone();
            s.row("dashboard update frames per minute", (c.update_frames - c0.update_frames) as f64 * per_min, "frames");
            s.row("dashboard update bytes per minute", (c.update_bytes - c0.update_bytes) as f64 * per_min / 1024.0, "KiB");
            s.row("dashboard agents updated per minute", (c.update_entries - c0.update_entries) as f64 * per_min, "");
            s.row("dashboard full-list frames since subscribe", (c.full_frames - c0.full_frames) as f64, "frames");
        }
        s.row("agents subscribed", stats.connected.load(Relaxed) as f64, "");
        self.sections.push(s);
    }

    /// S sessions held open through one window per rate of short sessions.
    pub async fn sessions(&mut self) {
        if self.a.session_window == 0 {
            return;
        }
        let viewers = || Arc::new(Viewers::new(self.ctx.target.clone(), self.a.prefix.clone(), self.a.first, self.a.agents));
        let held = viewers();
        let all = Duration::from_secs((self.a.session_window + 30) * self.a.session_rate.len() as u64);
        for h in 0..self.a.sessions.min(self.a.agents) {
            tokio::spawn(held.clone().watch(2_000_000 + h, Some(h), all));
        }
        for (i, &rate) in self.a.session_rate.iter().enumerate() {
            let mut short = viewers();
            Arc::get_mut(&mut short).expect("not shared yet").avoid = self.a.sessions;
            self.session_window(short, rate, 3_000_000 + i * 1_000_000).await;
        }
        let mut l = Section::new(format!("the {} held sessions: subscribe → first live sample", self.a.sessions));
        l.latency(&Latency::of(&held.sample.lock().unwrap_or_else(|p| p.into_inner())));
        self.sections.push(l);
    }

    async fn session_window(&mut self, viewers: Arc<Viewers>, rate: f64, first_n: usize) {
        let stats = self.fleet().stats.clone();
        let window = Duration::from_secs(self.a.session_window);
        eprintln!("fleet: {} sessions held, {rate}/s started, {} s", self.a.sessions, self.a.session_window);
        let (sessions0, backfill0, samples0) = (stats.sessions.load(Relaxed), stats.backfill.get(), stats.samples.get());
        let w = Window::start(self.ctx.server_pid);
        let t0 = Instant::now();
        let mut n = 0usize;
        while t0.elapsed() < window {
            if rate > 0.0 {
                tokio::spawn(viewers.clone().watch(first_n + n, None, Duration::from_secs_f64(self.a.watch)));
                n += 1;
                tokio::time::sleep_until(t0 + Duration::from_secs_f64(n as f64 / rate)).await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let mut s = Section::new(format!("sessions: {} held, {rate}/s started, {} agents", self.a.sessions, self.a.agents));
        w.finish(&mut s);
        // The last viewers finish watching (or time out) before their counts are read.
        tokio::time::sleep(Duration::from_secs(self.a.watch.ceil() as u64 + 16)).await;
        s.row("viewers started", viewers.started.load(Relaxed) as f64, "");
        s.row("viewers without a live sample", viewers.failed.load(Relaxed) as f64, "");
        if let Some(e) = viewers.first_error.get() {
            eprintln!("  first viewer failure: {e}");
        }
        s.row("sessions the agents started", (stats.sessions.load(Relaxed) - sessions0) as f64, "");
        let (b, sm) = (stats.backfill.get(), stats.samples.get());
        s.row("backfill parts sent", (b.0 - backfill0.0) as f64, "");
        s.row("backfill MiB sent", (b.1 - backfill0.1) as f64 / 1048576.0, "MiB");
        s.row("live samples sent", (sm.0 - samples0.0) as f64, "");
        self.sections.push(s);
        for (label, h) in [
            ("subscribe → first live sample", &viewers.sample),
            ("subscribe → session directive", &viewers.directive),
            ("subscribe → first backfill part", &viewers.backfill),
        ] {
            let mut l = Section::new(format!("{label}, {rate}/s started"));
            l.latency(&Latency::of(&h.lock().unwrap_or_else(|p| p.into_inner())));
            self.sections.push(l);
        }
    }

    /// Runs the restart command, then records the reconnect curve.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let Some(cmd) = &self.a.restart_cmd else { return Ok(()) };
        let stats = self.fleet().stats.clone();
        let from = stats.started.elapsed();
        eprintln!("fleet: restarting the relay: {cmd}");
        let status = tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await?;
        anyhow::ensure!(status.success(), "the restart command failed: {status}");
        let t0 = Instant::now();
        let (mut all_back, mut all_listed) = (None, None);
        let mut s = Section::new("relay restart: the reconnect curve, second by second".to_string());
        for sec in 0..self.a.after {
            tokio::time::sleep_until(t0 + Duration::from_secs(sec + 1)).await;
            let connected = stats.connected.load(Relaxed) as usize;
            let online = self.views.first().map_or(0, |v| dashboard::lock(v).counts.online);
            if connected >= self.a.agents && all_back.is_none() {
                all_back = Some(t0.elapsed());
            }
            if online >= self.a.total() && all_listed.is_none() && all_back.is_some() {
                all_listed = Some(t0.elapsed());
            }
            let (at, sub, fail) = stats.curve(from + Duration::from_secs(sec), 1).first().copied().unwrap_or_default();
            eprintln!("  t+{:>3}s attempts {at:>6} subscribed {sub:>6} failed {fail:>6} connected {connected:>6} listed online {online:>6}", sec + 1);
            // One row of each per second, in order: the curve.
            s.row("attempts in the second", f64::from(at), "");
            s.row("subscribed in the second", f64::from(sub), "");
            s.row("connected at its end", connected as f64, "");
            s.row("listed online at its end", online as f64, "");
        }
        s.row("all agents back after", all_back.map_or(f64::NAN, |d| d.as_secs_f64()), "s");
        s.row("all listed online after", all_listed.map_or(f64::NAN, |d| d.as_secs_f64()), "s");
        self.sections.push(s);
        self.after_restart().await;
        Ok(())
    }

    pub fn finish(self) -> Vec<Section> {
        if let Some(f) = &self.fleet {
            let _ = f.stop.send(true);
        }
        self.sections
    }
}
