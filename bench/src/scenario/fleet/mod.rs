//! `fleet`: N simulated agents (see `sim`) connected to one relay or spread over the nodes of
//! a cluster, V dashboards following the inventory, and viewers starting sessions. Phases:
//! connect the fleet (relay RSS per agent); dashboards subscribe (the full list: pages, bytes,
//! time); a steady window (relay CPU for the minute snapshots, inventory updates per minute);
//! sessions (S held open plus R started a second: subscribe → first live sample); optionally a
//! relay restart by a command, with the reconnect curve second by second.

mod cluster;
mod dashboard;
mod phases;
mod viewers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::watch;

use crate::pusher::Target;
use crate::report::Report;
use crate::sim::agent::SimAgent;
use crate::sim::host::Host;
use crate::sim::stats::Stats;
use crate::Ctx;

#[derive(Debug, Args, Clone)]
pub struct FleetArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Host names are this prefix and the agent's number.
    #[arg(long, default_value = "fleet-")]
    pub prefix: String,
    /// Number of the first agent (to split a fleet over several bench processes).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    /// More relays of the same cluster: agent i connects to the (i mod k)-th of the main
    /// server and these, moving on to another one when a connection fails (the agents of a
    /// relay that died spread evenly over the others).
    #[arg(long, value_delimiter = ',')]
    pub also: Vec<SocketAddr>,
    /// Agents in the whole fleet when other bench processes run part of it (what the
    /// dashboards should list; Redis figures are divided by it). Default: `--agents`.
    #[arg(long)]
    pub total: Option<usize>,
    /// A cluster's Redis (host:port): its message and byte counters over the steady window.
    #[arg(long)]
    pub redis: Option<String>,
    /// Dashboards following the inventory.
    #[arg(long, default_value_t = 1)]
    pub dashboards: usize,
    /// New agent connections a second while the fleet comes up.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Seconds each agent has been sampling already (how full its ring is).
    #[arg(long, default_value_t = 600)]
    pub uptime: u64,
    /// Seconds of the steady window (no sessions): relay CPU, inventory updates.
    #[arg(long, default_value_t = 60)]
    pub steady: u64,
    /// Sessions held open during the session window (hosts 0..S).
    #[arg(long, default_value_t = 0)]
    pub sessions: usize,
    /// Short sessions started a second during the session window; a comma list runs one
    /// window per rate (the held sessions stay open through all of them).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub session_rate: Vec<f64>,
    /// Seconds each short-session viewer watches after its first live sample.
    #[arg(long, default_value_t = 2.0)]
    pub watch: f64,
    /// Seconds of each session window (0: none).
    #[arg(long, default_value_t = 0)]
    pub session_window: u64,
    /// A shell command that restarts the relay, run after the other phases; the reconnect
    /// curve is then recorded for `--after` seconds.
    #[arg(long)]
    pub restart_cmd: Option<String>,
    #[arg(long, default_value_t = 60)]
    pub after: u64,
    /// Stay connected this many seconds at the end (e.g. while another tool measures).
    #[arg(long, default_value_t = 0)]
    pub linger: u64,
}

/// The fleet, once started.
pub struct Fleet {
    pub stats: Arc<Stats>,
    pub stop: watch::Sender<bool>,
    pub targets: Vec<Target>,
}

impl FleetArgs {
    pub fn total(&self) -> usize {
        self.total.unwrap_or(self.agents)
    }

    pub fn targets(&self, main: &Target) -> Vec<Target> {
        let mut ts = vec![main.clone()];
        ts.extend(self.also.iter().map(|s| Target { server: *s, sources: Target::loopback_sources(*s, main.sources.len() as u8), ..main.clone() }));
        ts
    }
}

/// Starts the agents at `connect_rate` a second (they connect and stay connected).
pub fn start(ctx: &Ctx, a: &FleetArgs, timeline_s: usize) -> Fleet {
    let stats = Arc::new(Stats::new(timeline_s));
    let (stop, rx) = watch::channel(false);
    let targets = a.targets(&ctx.target);
    let (agents, rate, uptime, prefix, first) = (a.agents, a.connect_rate.max(1.0), Duration::from_secs(a.uptime), a.prefix.clone(), a.first);
    let (stats2, targets2) = (stats.clone(), targets.clone());
    tokio::spawn(async move {
        let t0 = tokio::time::Instant::now();
        for i in 0..agents {
            tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / rate)).await;
            let n = first + i;
            let agent = SimAgent::new(&targets2[0], Host::new(format!("{prefix}{n}"), n), n, uptime, stats2.clone());
            tokio::spawn(agent.run(targets2.clone(), rx.clone()));
        }
    });
    Fleet { stats, stop, targets }
}

pub async fn run(ctx: &Ctx, a: &FleetArgs) -> anyhow::Result<Report> {
    let params = serde_json::to_value(format!("{a:?}"))?;
    let timeline = 600 + a.steady + (a.session_window + 30) * a.session_rate.len() as u64 + a.after + a.linger;
    let mut p = phases::Phases::new(ctx, a);
    p.connect(start(ctx, a, timeline as usize)).await;
    p.dashboards().await;
    p.steady().await;
    p.sessions().await;
    p.restart().await?;
    if a.linger > 0 {
        tokio::time::sleep(Duration::from_secs(a.linger)).await;
    }
    Ok(super::report("fleet", ctx, params, p.finish(), Vec::new()))
}
