//! What the relay does on its own clock, over every app: session leases and grace periods,
//! inventory flushes, agent counts, usage minutes, the relay's live state, and sweeps of what
//! expires. Above the apps and the cluster, which it reads; nothing here is reached from a
//! socket.

pub mod live;
pub mod usage;

use std::sync::Arc;
use std::time::Duration;

use crate::apps::Apps;
use crate::cluster::Cluster;
use crate::edge::Gate;
use crate::metrics::Metrics;
use crate::sessions::Clock;

/// Resolution of session timers (renewals, grace periods).
const SESSION_TICK: Duration = Duration::from_millis(250);
/// How often expired cache entries are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Drives session leases and grace periods, flushes inventory changes, counts agents, and
/// once a second feeds the usage counts and the relay's live state.
pub async fn run(apps: Arc<Apps>, metrics: Arc<Metrics>, cluster: Option<Arc<Cluster>>) {
    let mut tick = tokio::time::interval(SESSION_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let clock = Clock::now();
        for app in apps.iter() {
            app.apply(app.sessions.tick(clock));
            if n.is_multiple_of(4) {
                app.count_agents();
            }
            // Once a second; sooner while a backlog drains (`App::flush_inventory` sizes it).
            if n.is_multiple_of(4) || app.inventory.has_changes() {
                app.flush_inventory();
            }
            if n.is_multiple_of(240) {
                app.inventory.prune(clock.now_ms);
            }
        }
        if n.is_multiple_of(4) {
            usage::tick(&apps);
            live::tick(&live::Sources { apps: &apps, metrics: &metrics, cluster: cluster.as_deref() });
        }
    }
}

/// Drops expired cache entries, idle limiter buckets and forgiven addresses.
pub async fn sweep(apps: Arc<Apps>, gate: Arc<Gate>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        for app in apps.iter() {
            app.hub.sweep();
            app.limiters.sweep(std::time::Instant::now());
        }
        gate.sweep(std::time::Instant::now());
    }
}
