//! A token bucket for client events: the relay rate-limits them per connection, so the agent
//! paces itself below that limit (a burst, then a steady rate) instead of being cut off.

use std::time::Duration;

use tokio::time::Instant;

/// Events sent back to back before pacing starts: a whole 5-minute backfill (about 60 parts)
/// and the first live sample fit, so a viewer sees live data within milliseconds. The relay
/// allows an agent token 100 events/s with a 200-event burst.
pub const BURST: f64 = 100.0;
/// Steady rate after the burst, per second.
pub const RATE: f64 = 80.0;

#[derive(Debug)]
pub struct Pacer {
    burst: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(BURST, RATE)
    }
}

impl Pacer {
    pub fn new(burst: f64, rate: f64) -> Self {
        Self { burst, rate, tokens: burst, last: Instant::now() }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    /// Waits until one event may be sent, and counts it.
    pub async fn acquire(&mut self) {
        self.refill();
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
            tokio::time::sleep(wait).await;
            self.refill();
        }
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_steady_rate() {
        let mut p = Pacer::default();
        let start = Instant::now();
        for _ in 0..100 {
            p.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..160 {
            p.acquire().await;
        }
        let secs = start.elapsed().as_secs_f64();
        assert!((1.95..=2.05).contains(&secs), "160 more at 80/s took {secs}s");
    }
}
