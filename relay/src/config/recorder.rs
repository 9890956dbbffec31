//! The `[recorder]` section: how many slow events the flight recorder keeps and what counts as
//! slow. The defaults fire only on the rare event, so a healthy relay records nothing.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// Off: nothing is recorded and no threshold is checked (the histograms stay).
    pub enabled: bool,
    /// Events kept per kind (the oldest goes first), so a flood of one kind never pushes the
    /// others out.
    pub size: usize,
    /// A publish whose pass over its subscribers (one lane's share, or the publisher's own
    /// pass) ended this long after it was accepted.
    pub slow_publish_ms: u64,
    /// An HTTP API request answered this long after it arrived.
    pub slow_http_ms: u64,
    /// A cluster bus message applied this long after another node sent it.
    pub slow_bus_ms: u64,
    /// A websocket (or TLS) handshake that took this long.
    pub slow_handshake_ms: u64,
}

/// Most events kept per kind: the ring is read whole by an HTTP request.
pub const MAX_SIZE: usize = 10_000;

impl Default for RecorderConfig {
    fn default() -> Self {
        Self { enabled: true, size: 100, slow_publish_ms: 250, slow_http_ms: 1_000, slow_bus_ms: 500, slow_handshake_ms: 2_000 }
    }
}

impl RecorderConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(format!("recorder.size must be 1 to {MAX_SIZE}"));
        }
        let ms = [
            ("slow_publish_ms", self.slow_publish_ms),
            ("slow_http_ms", self.slow_http_ms),
            ("slow_bus_ms", self.slow_bus_ms),
            ("slow_handshake_ms", self.slow_handshake_ms),
        ];
        for (name, v) in ms {
            // A day: past that nothing would ever be recorded, which is `enabled = false`.
            if v > 86_400_000 {
                return Err(format!("recorder.{name} must be at most 86400000 (a day)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let c: RecorderConfig = toml::from_str("size = 10\nslow_publish_ms = 5").unwrap();
        assert_eq!((c.size, c.slow_publish_ms, c.slow_http_ms), (10, 5, 1_000));
        assert!(c.validate().is_ok());
        assert!(RecorderConfig { size: 0, ..c.clone() }.validate().is_err());
        assert!(RecorderConfig { slow_bus_ms: u64::MAX, ..c }.validate().is_err());
        assert!(toml::from_str::<RecorderConfig>("sise = 1").is_err(), "unknown keys are refused");
    }
}
