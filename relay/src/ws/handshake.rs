//! What makes a request a websocket handshake the relay takes (RFC 6455 §4.2.1), checked
//! alike at both of the relay's websocket doors: `/app/{key}` on the socket itself (`accept`)
//! and any other path through hyper (`upgrade`), with the same refusals.

use axum::http::StatusCode;
use base64::Engine;
use sha1::{Digest, Sha1};

use crate::reply::ApiError;

/// The websocket version the relay speaks (a 426 names it).
pub const VERSION: &str = "13";
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a request is not a websocket handshake the relay takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No `Upgrade: websocket`, no `Connection: upgrade`, or no key.
    NotUpgrade,
    /// A key that is not 16 bytes in base64.
    BadKey,
    /// Another version than 13.
    Version,
}

impl Refused {
    pub fn reply(self) -> ApiError {
        match self {
            Self::NotUpgrade => ApiError::bad_request("expected a websocket upgrade"),
            Self::BadKey => ApiError::bad_request("Sec-WebSocket-Key must be 16 bytes in base64"),
            Self::Version => ApiError::new(StatusCode::UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13"),
        }
    }

    /// A header the reply carries besides the error: a 426 names the version to use.
    pub fn header(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Version => Some(("sec-websocket-version", VERSION)),
            Self::NotUpgrade | Self::BadKey => None,
        }
    }
}

/// Whether one of `values` (comma-separated lists) holds `token`, in any case.
pub fn has_token<'a>(mut values: impl Iterator<Item = &'a str>, token: &str) -> bool {
    values.any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// The request's `Sec-WebSocket-Key` if its headers make a websocket handshake. `header`
/// gives every value of a header (by lower-case name).
pub fn key<'a, I>(header: impl Fn(&'static str) -> I) -> Result<&'a str, Refused>
where
    I: Iterator<Item = &'a str>,
{
    let key = header("sec-websocket-key").next();
    let (true, true, Some(key)) = (has_token(header("upgrade"), "websocket"), has_token(header("connection"), "upgrade"), key) else {
        return Err(Refused::NotUpgrade);
    };
    if !base64::engine::general_purpose::STANDARD.decode(key.trim()).is_ok_and(|k| k.len() == 16) {
        return Err(Refused::BadKey);
    }
    if header("sec-websocket-version").next() != Some(VERSION) {
        return Err(Refused::Version);
    }
    Ok(key)
}

/// The headers of the 101 reply that completes the handshake of `key`, at either door.
pub fn switching_protocols(key: &[u8]) -> [(&'static str, String); 3] {
    [("upgrade", "websocket".to_owned()), ("connection", "Upgrade".to_owned()), ("sec-websocket-accept", accept_key(key))]
}

/// `Sec-WebSocket-Accept` for a key.
fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(headers: &[(&str, &str)]) -> Result<String, Refused> {
        key(|name| headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)).map(str::to_owned)
    }

    #[test]
    fn handshakes() {
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        assert_eq!(check(&good).unwrap(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(check(&good[1..]), Err(Refused::NotUpgrade));
        assert_eq!(check(&[good[0], good[2], good[3]]), Err(Refused::NotUpgrade));
        assert_eq!(check(&[good[0], good[1], good[3]]), Err(Refused::NotUpgrade));
        assert_eq!(check(&[good[0], good[1], ("Sec-WebSocket-Key", "c2hvcnQ="), good[3]]), Err(Refused::BadKey));
        assert_eq!(check(&[good[0], good[1], good[2], ("Sec-WebSocket-Version", "8")]), Err(Refused::Version));
        assert_eq!(check(&good[..3]), Err(Refused::Version));
        assert_eq!(Refused::Version.reply().status, StatusCode::UPGRADE_REQUIRED);
    }

    #[test]
    fn rfc6455_accept_key() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let reply = switching_protocols(b"dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(reply[2], ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".to_owned()));
    }
}
