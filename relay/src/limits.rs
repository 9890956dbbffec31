//! Abuse limits shared by a whole app: token buckets per client IP and for the HTTP API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use parking_lot::Mutex;

use crate::config::Limits;

/// A token bucket: `rate` per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self { rate: f64::from(rate), burst: f64::from(burst), tokens: f64::from(burst), at: None }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        if let Some(at) = self.at {
            self.tokens = (self.tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        }
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether a token is there now, without taking it.
    pub fn peek(&self, now: Instant) -> bool {
        let refilled = self.at.map_or(self.tokens, |at| self.tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate);
        refilled >= 1.0
    }

    pub fn full_at(&self, now: Instant) -> bool {
        self.at.is_none_or(|at| self.tokens + now.saturating_duration_since(at).as_secs_f64() * self.rate >= self.burst)
    }
}

/// Most client IPs tracked at once; past it, full buckets are dropped first.
const MAX_TRACKED_IPS: usize = 100_000;

pub struct Limiters {
    per_ip_rate: u32,
    per_ip: Mutex<HashMap<IpAddr, TokenBucket>>,
    http: Option<Mutex<TokenBucket>>,
}

impl Limiters {
    pub fn new(l: &Limits) -> Self {
        let http = (l.http_requests_per_second > 0).then(|| Mutex::new(TokenBucket::new(l.http_requests_per_second, l.http_requests_per_second)));
        Self { per_ip_rate: l.new_connections_per_second_per_ip, per_ip: Mutex::default(), http }
    }

    /// Whether a new connection from `ip` is allowed now.
    pub fn connection(&self, ip: IpAddr, now: Instant) -> bool {
        if self.per_ip_rate == 0 {
            return true;
        }
        let mut map = self.per_ip.lock();
        if map.len() >= MAX_TRACKED_IPS {
            map.retain(|_, b| !b.full_at(now));
        }
        map.entry(ip).or_insert_with(|| TokenBucket::new(self.per_ip_rate, self.per_ip_rate)).take(now)
    }

    /// Whether one more HTTP API request is allowed now.
    pub fn http_request(&self, now: Instant) -> bool {
        self.http.as_ref().is_none_or(|b| b.lock().take(now))
    }

    /// Forgets IPs whose buckets are full again (called periodically).
    pub fn sweep(&self, now: Instant) {
        self.per_ip.lock().retain(|_, b| !b.full_at(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills_at_rate() {
        let mut b = TokenBucket::new(10, 20);
        let t0 = Instant::now();
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 20, "burst");
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn per_ip_limit_is_per_ip() {
        let l = Limiters::new(&Limits { new_connections_per_second_per_ip: 2, ..Limits::default() });
        let now = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        assert!(l.connection(a, now) && l.connection(a, now));
        assert!(!l.connection(a, now));
        assert!(l.connection(b, now));
        l.sweep(now + Duration::from_secs(5));
        assert!(l.per_ip.lock().is_empty());
    }
}
