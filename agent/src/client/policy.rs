//! How a connection ended, and how soon to try again.

use std::time::Duration;

use rand::Rng;
use sonde_protocol::CloseCode;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The agent is stopping.
    Shutdown,
    /// The relay closed the socket with this code.
    Closed { code: u16, reason: String },
    /// The socket failed or ended without a close frame.
    Lost(String),
    /// No reply to our ping in time.
    PongTimeout,
    /// The relay refused the subscription (token or channel wrong).
    Rejected(String),
    /// Connecting or the Pusher handshake failed.
    Handshake(String),
    /// The TLS handshake failed; the text names the cause (an untrusted or expired
    /// certificate, one for another name). Backed off like any failed connection: a renewed
    /// certificate is picked up by the next attempt.
    Tls(String),
    /// The HTTP upgrade was refused with a client error (4xx): a configuration problem.
    Refused(u16),
    /// The token source yields no token (file missing, empty, unreadable).
    NoToken(String),
}

/// When to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Soon (the relay asked for it: 4200-4299), after a short random spread.
    Now,
    /// After an exponential backoff with jitter.
    Backoff,
    /// Slowly: the same request would fail the same way until the configuration changes.
    Slow,
    /// The token expired or was refused: back off (a few attempts a minute at most), and
    /// reconnect as soon as the token source holds a different token.
    Token,
}

/// Retry interval for errors only a configuration change can fix.
pub const SLOW_RETRY: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Token backoff: waits of 5-10 s, 10-20 s, 20-40 s, then 30-60 s.
const TOKEN_BACKOFF_MIN: Duration = Duration::from_secs(10);

/// Close code of a connection whose token expired: reconnect after a backoff, with a fresh
/// token.
pub const CLOSE_TOKEN_EXPIRED: u16 = CloseCode::TokenExpired.code();
/// Close code of a connection refused for its token (expired or invalid) or a failed sign-in.
pub const CLOSE_UNAUTHORIZED: u16 = CloseCode::Unauthorized.code();

impl Ended {
    /// `None`: do not reconnect.
    pub fn retry(&self) -> Option<Retry> {
        match self {
            Self::Shutdown => None,
            // Only a new token helps; the token source is watched for one.
            Self::Closed { code: CLOSE_TOKEN_EXPIRED | CLOSE_UNAUTHORIZED, .. } | Self::Refused(401 | 403) | Self::NoToken(_) => Some(Retry::Token),
            // Pusher's ranges: 4000-4099 do not reconnect unchanged, 4100-4199 back off,
            // 4200-4299 reconnect at once.
            Self::Closed { code: 4000..=4099, .. } | Self::Rejected(_) | Self::Refused(_) => Some(Retry::Slow),
            Self::Closed { code: 4200..=4299, .. } => Some(Retry::Now),
            Self::Closed { .. } | Self::Lost(_) | Self::PongTimeout | Self::Handshake(_) | Self::Tls(_) => Some(Retry::Backoff),
        }
    }
}

/// The longest wait before reconnecting after a 4200-4299 close. A relay that stops closes
/// every connection at once: without a spread its agents (thousands on one node) would all
/// reconnect in the same instant to the nodes that remain. A second at most: no longer than
/// the first step of the backoff, so every bound stated for a reconnect still holds.
pub const RECONNECT_SPREAD: Duration = Duration::from_secs(1);

/// A random wait between zero and `RECONNECT_SPREAD`.
pub fn reconnect_spread() -> Duration {
    rand::thread_rng().gen_range(Duration::ZERO..=RECONNECT_SPREAD)
}

/// Exponential backoff (1 s to 60 s by default) with "equal jitter": a random delay between
/// half and all of the current step, so agents restarted together do not reconnect in
/// lockstep.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { attempt: 0, min: BACKOFF_MIN, max: BACKOFF_MAX }
    }
}

impl Backoff {
    /// The backoff after a token was refused.
    pub fn token() -> Self {
        Self { attempt: 0, min: TOKEN_BACKOFF_MIN, max: BACKOFF_MAX }
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self.min.saturating_mul(1 << self.attempt.min(6)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_ranges() {
        let closed = |code| Ended::Closed { code, reason: String::new() };
        assert_eq!(closed(4001).retry(), Some(Retry::Slow));
        assert_eq!(closed(4009).retry(), Some(Retry::Token));
        assert_eq!(closed(4100).retry(), Some(Retry::Backoff));
        assert_eq!(closed(4102).retry(), Some(Retry::Token));
        assert_eq!(Ended::Refused(401).retry(), Some(Retry::Token));
        assert_eq!(Ended::NoToken("gone".into()).retry(), Some(Retry::Token));
        assert_eq!(closed(4200).retry(), Some(Retry::Now));
        assert_eq!(closed(4201).retry(), Some(Retry::Now));
        assert_eq!(closed(1000).retry(), Some(Retry::Backoff));
        assert_eq!(closed(4301).retry(), Some(Retry::Backoff));
        assert_eq!(Ended::Rejected("no".into()).retry(), Some(Retry::Slow));
        assert_eq!(Ended::Refused(404).retry(), Some(Retry::Slow));
        assert_eq!(Ended::PongTimeout.retry(), Some(Retry::Backoff));
        assert_eq!(Ended::Tls("certificate not trusted: UnknownIssuer".into()).retry(), Some(Retry::Backoff));
        assert_eq!(Ended::Shutdown.retry(), None);
    }

    #[test]
    fn a_requested_reconnect_is_spread_over_a_second() {
        let waits: Vec<Duration> = (0..200).map(|_| reconnect_spread()).collect();
        assert!(waits.iter().all(|w| *w <= RECONNECT_SPREAD), "{waits:?}");
        // Spread, not in lockstep: both halves of the window are used.
        assert!(waits.iter().any(|w| *w < RECONNECT_SPREAD / 2) && waits.iter().any(|w| *w > RECONNECT_SPREAD / 2), "{waits:?}");
    }

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&first), "{first:?}");
        let second = b.next_delay();
        assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&second), "{second:?}");
        let steps: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        assert!(steps.windows(2).all(|w| w[1] >= w[0] / 2 && w[1] <= w[0] * 4), "{steps:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= BACKOFF_MAX && d >= BACKOFF_MAX / 2, "{d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn token_backoff_allows_a_few_attempts_a_minute() {
        let mut b = Backoff::token();
        let mut waited = Duration::ZERO;
        let mut attempts = 0;
        while waited < Duration::from_secs(60) {
            waited += b.next_delay();
            attempts += 1;
        }
        assert!(attempts <= 4, "{attempts} attempts in the first minute");
        for _ in 0..10 {
            assert!(b.next_delay() >= Duration::from_secs(30));
        }
    }
}
