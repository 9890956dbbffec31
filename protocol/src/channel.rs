//! Channel names and the channel kinds their prefixes select.

use std::fmt;
use std::sync::Arc;

/// Longest channel name accepted, prefix included (pusher-http-node and the open servers use 200).
pub const MAX_CHANNEL_NAME_LEN: usize = 200;

/// Prefix of the per-user channel a signed-in connection is subscribed to by the server.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// A channel name that is known to be valid. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_NAME_LEN} characters")]
    TooLong,
    #[error("channel name contains a character outside [A-Za-z0-9_-=@,.;]")]
    BadCharacter,
    #[error("channel names starting with '#' are reserved for the server")]
    Reserved,
}

/// What a channel's prefix makes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: only the server subscribes a connection to it, after sign-in.
    ServerToUser,
}

impl ChannelKind {
    /// Private, encrypted and presence channels need an authorisation to subscribe.
    pub fn needs_auth(self) -> bool {
        matches!(self, Self::Private | Self::PrivateEncrypted | Self::Presence)
    }

    /// Client events are allowed on private and presence channels only (never encrypted ones).
    pub fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

fn valid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

impl ChannelName {
    /// Parses a name a client or an API caller may use: never a `#` (server-reserved) name.
    pub fn parse(name: &str) -> Result<Self, ChannelError> {
        if name.starts_with('#') {
            return Err(ChannelError::Reserved);
        }
        Self::check_chars(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// Parses any valid name, including the reserved `#server-to-user-{id}` form, as the
    /// HTTP API accepts it (that is how `sendToUser` works).
    pub fn parse_server(name: &str) -> Result<Self, ChannelError> {
        match name.strip_prefix(SERVER_TO_USER_PREFIX) {
            Some(user) => {
                Self::check_chars(user)?;
                if name.len() > MAX_CHANNEL_NAME_LEN {
                    return Err(ChannelError::TooLong);
                }
                Ok(Self(Arc::from(name)))
            }
            None => Self::parse(name),
        }
    }

    /// The server-to-user channel of a user id (which must itself be a valid name fragment).
    pub fn server_to_user(user_id: &str) -> Result<Self, ChannelError> {
        Self::parse_server(&format!("{SERVER_TO_USER_PREFIX}{user_id}"))
    }

    fn check_chars(name: &str) -> Result<(), ChannelError> {
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(ChannelError::TooLong);
        }
        if !name.bytes().all(valid_char) {
            return Err(ChannelError::BadCharacter);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> ChannelKind {
        let n = self.as_str();
        if n.starts_with(SERVER_TO_USER_PREFIX) {
            ChannelKind::ServerToUser
        } else if n.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if n.starts_with("private-") {
            ChannelKind::Private
        } else if n.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// Cache channels keep their last event and replay it to new subscribers.
    pub fn is_cache(&self) -> bool {
        let n = self.as_str();
        ["cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"].iter().any(|p| n.starts_with(p))
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_prefix() {
        let cases = [
            ("news", ChannelKind::Public, false),
            ("cache-news", ChannelKind::Public, true),
            ("private-a", ChannelKind::Private, false),
            ("private-cache-a", ChannelKind::Private, true),
            ("private-encrypted-a", ChannelKind::PrivateEncrypted, false),
            ("private-encrypted-cache-a", ChannelKind::PrivateEncrypted, true),
            ("presence-room", ChannelKind::Presence, false),
            ("presence-cache-room", ChannelKind::Presence, true),
        ];
        for (name, kind, cache) in cases {
            let c = ChannelName::parse(name).unwrap();
            assert_eq!(c.kind(), kind, "{name}");
            assert_eq!(c.is_cache(), cache, "{name}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        let cases = [
            ("", ChannelError::Empty),
            ("a b", ChannelError::BadCharacter),
            ("a/b", ChannelError::BadCharacter),
            ("é", ChannelError::BadCharacter),
            ("#server-to-user-1", ChannelError::Reserved),
        ];
        for (name, err) in cases {
            assert_eq!(ChannelName::parse(name).unwrap_err(), err, "{name:?}");
        }
        assert_eq!(ChannelName::parse(&"a".repeat(201)).unwrap_err(), ChannelError::TooLong);
        assert!(ChannelName::parse(&"a".repeat(200)).is_ok());
        assert!(ChannelName::parse("A-z_0=9@,.;").is_ok());
    }

    #[test]
    fn server_to_user_names() {
        let c = ChannelName::server_to_user("42").unwrap();
        assert_eq!(c.as_str(), "#server-to-user-42");
        assert_eq!(c.kind(), ChannelKind::ServerToUser);
        assert!(ChannelName::server_to_user("a b").is_err());
        assert!(ChannelName::parse_server("#other").is_err());
    }
}
