//! What the fan-out core reports about its own timing, for whoever measures it.
//!
//! The core knows no metrics library: it calls a `Meter` at the few points where a figure is
//! known (a publish's pass over its subscribers ended, a writer took a queue, a queue
//! overflowed). Each call is per pass or per write, never per delivery, and reads the clock
//! once at most.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sonde_protocol::{ChannelName, SocketId};

/// How a publish reached its subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The publisher wrote to (or queued for) every subscriber itself.
    Direct,
    /// One fan-out lane went round its share of a large channel.
    Lanes,
}

impl Pass {
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Lanes => "lanes",
        }
    }
}

/// One pass of a publish over subscribers, as it ended.
#[derive(Debug, Clone, Copy)]
pub struct PassReport<'a> {
    pub pass: Pass,
    pub channel: &'a ChannelName,
    /// Connections this pass went over (a lane: its share).
    pub subscribers: usize,
    /// Bytes of the frame.
    pub bytes: usize,
    /// Frames going round together in this pass (lanes coalesce when behind).
    pub frames: usize,
    /// Deliveries still waiting for any lane when the pass ended.
    pub backlog: usize,
    /// The relay's fan-out lanes.
    pub lanes: usize,
    /// When the publish was accepted, and how long the pass took from there.
    pub accepted: Instant,
    pub elapsed: Duration,
}

/// A connection whose outbox overflowed: it is closed (or reset when its socket is full).
#[derive(Debug, Clone, Copy)]
pub struct Overflow {
    pub socket: SocketId,
    pub queued_bytes: usize,
    /// Since its writer last took its queue (how long it has not been reading).
    pub unread: Duration,
}

/// Told of the core's timings. Must not block or call the hub.
pub trait Meter: Send + Sync {
    /// A publish's pass ended (once per publish directly, once per lane per publish).
    fn pass(&self, report: &PassReport<'_>);
    /// Samples replaced by newer ones in slow subscribers' queues.
    fn conflated(&self, n: usize);
    /// A connection's writer took `bytes` from its queue to write them.
    fn depth(&self, bytes: usize);
    fn overflow(&self, overflow: &Overflow);
}

/// A coarse clock for marks kept per connection: milliseconds since the first call, in 32
/// bits (wrapping after 49 days; differences use wrapping arithmetic).
pub fn mark_ms() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    // Truncation is the point: only differences of recent marks are used.
    epoch.elapsed().as_millis() as u32
}

/// Time since a mark taken with `mark_ms`.
pub fn since_mark(mark: u32) -> Duration {
    Duration::from_millis(u64::from(mark_ms().wrapping_sub(mark)))
}
