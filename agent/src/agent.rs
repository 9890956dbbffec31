//! Wiring: starts the sampler, the StatsD listener, the core and the relay connection, and
//! stops them in order on shutdown.

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sonde_protocol::sonde::host_channel;
use tokio::sync::{mpsc, watch};

use crate::client::{self, Target};
use crate::clock::Clock;
use crate::collect::Collectors;
use crate::config::Config;
use crate::core::{Core, SharedRing};
use crate::custom::{Custom, MinuteTotals};
use crate::ring::{Ring, RING_CAPACITY};
use crate::sampler::Sampler;
use crate::snapshot::{host_facts, SnapshotSource};
use crate::{install, own, shutdown_channel, statsd, Recorder};

/// Room for a whole backfill (at most a few hundred parts) plus live samples.
const OUTBOUND_QUEUE: usize = 1024;

/// Runs the agent until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with_recorder(config, Recorder::new(), shutdown).await
}

/// Runs the agent with a recorder the embedding application also writes to.
pub async fn run_with_recorder(config: Config, recorder: Recorder, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    if config.token_in_args {
        tracing::warn!("the token is on the command line, where every user of this machine sees it in `ps`; use --token-file or SONDE_AGENT_TOKEN");
    }
    let (install_id, state_dir) = install::load_or_create(&config.state_dirs)?;
    let channel_host = if config.anonymous { install_id.to_string() } else { config.host.clone() };
    if config.anonymous {
        tracing::info!(channel_host = %channel_host, "anonymous: the host is known by its install id only; mint the agent token for that host");
    }
    let channel = host_channel(&channel_host).with_context(|| format!("host {channel_host:?}"))?;
    tracing::info!(
        host = %channel_host, install_id = %install_id, state_dir = %state_dir.display(),
        anonymous = config.anonymous, usage_statistics = config.usage_statistics, "sonde-agent starting"
    );
    let (trigger, stop) = shutdown_channel();

    let statsd_stats = Arc::new(statsd::Stats::default());
    let statsd_task = match config.statsd {
        Some(addr) => {
            statsd::bind(addr, &statsd_stats).await.map(|socket| tokio::spawn(statsd::serve(socket, recorder.clone(), statsd_stats.clone(), stop.clone())))
        }
        None => None,
    };
    let own = own::Sources { recorder: recorder.clone(), statsd: statsd_task.is_some().then(|| statsd_stats.clone()) };

    let ring: SharedRing = Arc::new(Mutex::new(Ring::new(RING_CAPACITY)));
    let (latest_tx, latest_rx) = watch::channel(0);
    let minute = MinuteTotals::default();
    let custom = Custom::new(recorder.clone(), minute.clone());
    let sampler = Sampler::new(Collectors::new(), custom, own::PerSecond::new(own.clone()), ring.clone(), latest_tx);
    let sampler = sampler.spawn(stop.clone()).context("starting the sampler thread")?;

    let snapshots = config.usage_statistics.then(|| {
        let host = (!config.anonymous).then(|| config.host.clone());
        SnapshotSource::new(install_id.clone(), host, host_facts(), minute, own::PerMinute::new(own))
    });
    let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (link_tx, link_rx) = mpsc::channel(64);
    let core = Core { ring, latest: latest_rx, out: out_tx, clock: Clock::System, snapshots };
    let core_task = tokio::spawn(core.run(link_rx, stop.clone()));

    // Built before anything starts, so a CA file that cannot be used stops the agent at once.
    let tls = if config.relay.starts_with("wss://") {
        Some(client::tls::client_config(config.ca_file.as_deref()).context("TLS for the wss:// relay")?)
    } else {
        if let Some(path) = &config.ca_file {
            tracing::warn!(ca_file = %path.display(), "--ca-file is not used: the relay URL is ws://, without TLS");
        }
        None
    };
    let target = Target { relay: config.relay.clone(), key: config.key.clone(), token: config.token.clone(), channel, tls };
    let client_task = tokio::spawn(client::run(target, link_tx, out_rx, stop.clone()));

    shutdown.await;
    tracing::info!("shutting down");
    trigger.fire();
    // The core stops its session first; the client then closes the socket with 1000.
    let _ = core_task.await;
    let _ = client_task.await;
    if let Some(t) = statsd_task {
        let _ = t.await;
    }
    let _ = tokio::task::spawn_blocking(move || sampler.join()).await;
    tracing::info!("stopped");
    Ok(())
}
