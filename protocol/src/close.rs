//! Pusher close and error codes. Every code the relay sends comes from this one enum.

/// A Pusher protocol error code. pusher-js decides whether to reconnect from the range:
/// 4000-4099 never, 4100-4199 after a backoff, 4200-4299 at once, 4300-4399 errors that
/// usually leave the connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 4001: no app with this key.
    UnknownApp,
    /// 4003: the app is disabled.
    AppDisabled,
    /// 4004: the app is over its connection quota.
    OverQuota,
    /// 4005: path not found.
    PathNotFound,
    /// 4006: invalid version string format.
    InvalidVersion,
    /// 4007: unsupported protocol version.
    UnsupportedProtocol,
    /// 4008: no protocol version supplied.
    NoProtocol,
    /// 4009: connection not authorised (sign-in failed, or a token that expired).
    Unauthorized,
    /// 4100: over capacity; reconnect after a backoff.
    OverCapacity,
    /// 4102: the connection's token expired; reconnect after a backoff with a fresh token
    /// (the expired one is refused from then on).
    TokenExpired,
    /// 4200: reconnect now (server shutting down, or a node leaving).
    Reconnect,
    /// 4201: pong reply not received.
    PongNotReceived,
    /// 4202: closed after inactivity.
    Inactivity,
    /// 4301: client event rejected (rate limit, disabled, too large).
    ClientEventRejected,
}

impl CloseCode {
    pub const fn code(self) -> u16 {
        match self {
            Self::UnknownApp => 4001,
            Self::AppDisabled => 4003,
            Self::OverQuota => 4004,
            Self::PathNotFound => 4005,
            Self::InvalidVersion => 4006,
            Self::UnsupportedProtocol => 4007,
            Self::NoProtocol => 4008,
            Self::Unauthorized => 4009,
            Self::OverCapacity => 4100,
            Self::TokenExpired => 4102,
            Self::Reconnect => 4200,
            Self::PongNotReceived => 4201,
            Self::Inactivity => 4202,
            Self::ClientEventRejected => 4301,
        }
    }

    pub const ALL: [CloseCode; 14] = [
        Self::UnknownApp,
        Self::AppDisabled,
        Self::OverQuota,
        Self::PathNotFound,
        Self::InvalidVersion,
        Self::UnsupportedProtocol,
        Self::NoProtocol,
        Self::Unauthorized,
        Self::OverCapacity,
        Self::TokenExpired,
        Self::Reconnect,
        Self::PongNotReceived,
        Self::Inactivity,
        Self::ClientEventRejected,
    ];

    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// RFC 6455 §7.4.1 status codes the websocket layer itself uses, beside Pusher's.
pub mod rfc6455 {
    /// The purpose of the connection is fulfilled.
    pub const NORMAL: u16 = 1000;
    /// A frame broke the framing rules.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message of a type the endpoint does not take (the relay: binary).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A close frame without a status code (never sent on the wire; reported locally).
    pub const NO_STATUS: u16 = 1005;
    /// No close frame arrived (never sent on the wire; reported locally).
    pub const ABNORMAL: u16 = 1006;
    /// A text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message exceeded the size the endpoint takes.
    pub const TOO_BIG: u16 = 1009;

    /// Codes a peer may put in a close frame: the ones RFC 6455 and its registry define for
    /// use on the wire, and the ranges for libraries and applications (3000-4999).
    /// 1004-1006 and 1015 are reserved and must never be sent.
    pub fn valid_on_the_wire(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_reconnect_semantics() {
        use CloseCode::*;
        for c in [UnknownApp, AppDisabled, OverQuota, PathNotFound, InvalidVersion] {
            assert!((4000..4100).contains(&c.code()), "{c:?} must not reconnect");
        }
        for c in [UnsupportedProtocol, NoProtocol, Unauthorized] {
            assert!((4000..4100).contains(&c.code()), "{c:?} must not reconnect");
        }
        assert!((4100..4200).contains(&OverCapacity.code()));
        assert!((4100..4200).contains(&TokenExpired.code()), "pusher-js reconnects after a backoff");
        for c in [Reconnect, PongNotReceived, Inactivity] {
            assert!((4200..4300).contains(&c.code()), "{c:?} reconnects at once");
        }
        assert!((4300..4400).contains(&ClientEventRejected.code()));
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(c));
        }
    }
}
