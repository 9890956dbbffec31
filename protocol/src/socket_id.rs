//! Socket ids: `\d+\.\d+`, as the official SDKs validate them.

use std::fmt;
use std::str::FromStr;

/// A connection's id. Two numbers; the relay draws them at random.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId {
    pub high: u64,
    pub low: u64,
}

impl SocketId {
    pub fn new(high: u64, low: u64) -> Self {
        Self { high, low }
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

impl fmt::Debug for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("socket_id must have the form <digits>.<digits>")]
pub struct BadSocketId;

impl FromStr for SocketId {
    type Err = BadSocketId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s.split_once('.').ok_or(BadSocketId)?;
        let num = |p: &str| {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return Err(BadSocketId);
            }
            p.parse::<u64>().map_err(|_| BadSocketId)
        };
        Ok(Self::new(num(a)?, num(b)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let id: SocketId = "123.456".parse().unwrap();
        assert_eq!(id.to_string(), "123.456");
        for bad in ["", "1", "1.", ".1", "1.2.3", "a.1", "-1.2", "1.+2"] {
            assert!(bad.parse::<SocketId>().is_err(), "{bad}");
        }
    }
}
