//! The Sonde agent: samples the host every second into a five-minute ring, and streams to the
//! relay only while a session is open.
//!
//! [`run`] is the whole agent. The pieces, from the bottom up:
//! - [`collect`] reads /proc into a [`tick::Tick`]; [`sampler`] does so on every second
//!   boundary and keeps the last five minutes in a [`ring::Ring`].
//! - [`Recorder`] holds custom metrics, from the [`statsd`] listener or from Rust code that
//!   embeds the agent; [`custom`] folds them into each tick, in the room the host metrics leave
//!   under the size limit ([`size`]), and into minute totals; [`own`] adds the agent's own
//!   counters (`agent.*`).
//! - [`core`] follows the relay's session directives ([`session`]) and sends backfill, samples
//!   and snapshots, encoded by [`encode`] and [`snapshot`].
//! - [`client`] holds the websocket to the relay and reconnects it.

pub mod client;
pub mod clock;
pub mod collect;
pub mod config;
pub mod core;
pub mod custom;
pub mod encode;
pub mod install;
pub mod own;
pub mod recorder;
pub mod ring;
pub mod sampler;
pub mod session;
pub mod size;
pub mod snapshot;
pub mod statsd;
pub mod tick;

mod agent;

pub use agent::{run, run_with_recorder};
pub use config::Config;
pub use recorder::Recorder;

use tokio::sync::watch;

/// Fires [`Shutdown`] for every task that holds one.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// A shutdown signal that many tasks can wait on.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown fires (or its trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }
}

pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}
