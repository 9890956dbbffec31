//! The state behind the relay's live page (`ticks::live` measures and publishes it): the
//! counters at the last tick, for rates, and how many states were published.

use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

/// Counters as they were at the last tick, for rates.
#[derive(Default, Clone, Copy)]
pub struct Totals {
    pub messages_in: u64,
    pub deliveries: u64,
    pub bytes_out: u64,
    pub at: Option<Instant>,
}

#[derive(Default)]
pub struct Live {
    pub last: Mutex<Totals>,
    /// States published (once per watching app): none while nobody watches.
    pub published: Counter,
}
