//! What relay nodes tell each other over the Redis bus (one JSON envelope per message), and
//! the `Link` through which an app sends its part. Below the apps and the cluster adapter
//! alike: an app announces through a `Link`; the cluster runs the Redis connection behind it
//! and applies what it hears to the apps.

mod link;

use serde::{Deserialize, Serialize};

pub use link::Link;

/// A message and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    /// The app it concerns; empty for node-level messages.
    #[serde(default)]
    pub app: String,
    pub msg: Msg,
    /// When the sender encoded it, Unix milliseconds: how long the bus took, on arrival.
    /// Absent (0) from nodes of an older version, which also ignore it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One node's view of a session, as the leader broadcasts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub host: String,
    pub id: String,
    pub started_ms: u64,
    pub lease_until_ms: u64,
    #[serde(default)]
    pub until_ms: Option<u64>,
    pub viewers: usize,
    /// Who started it, for the stop's webhook on whichever node stops it.
    #[serde(default)]
    pub started_by: sonde_protocol::webhook::Starter,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    /// A frame to fan out to the channel's subscribers on every other node.
    Publish {
        channel: String,
        frame: String,
        #[serde(default)]
        except: Option<String>,
        #[serde(default)]
        sample: bool,
    },
    /// This node's subscriber count of a channel.
    Count {
        channel: String,
        count: usize,
    },
    /// A user's first connection on this node joined a presence channel.
    Join {
        channel: String,
        user: String,
        #[serde(default)]
        info: Option<String>,
    },
    /// A user's last connection on this node left a presence channel.
    Leave {
        channel: String,
        user: String,
    },
    /// A user's first (online) or last (offline) signed-in connection on this node.
    User {
        user: String,
        online: bool,
    },
    Terminate {
        user: String,
    },
    /// A frame for one connection, wherever it is, if it is subscribed to `channel`.
    Deliver {
        socket: String,
        #[serde(default)]
        channel: Option<String>,
        frame: String,
    },
    /// This node's viewers and agent connections of a host channel.
    Host {
        host: String,
        viewers: usize,
        agents: Vec<String>,
    },
    /// An agent's state for the inventory, on the node it is connected to.
    Agent {
        host: String,
        connections: u32,
        #[serde(default)]
        snapshot: Option<String>,
    },
    /// A server-side directive for the session leader.
    SessionStart {
        host: String,
        duration_s: u64,
    },
    SessionStop {
        host: String,
    },
    /// The session table, versioned by the term of the leader that wrote it and a sequence
    /// number within the term: the leader's, or the newest a node heard (in its sync).
    Sessions {
        #[serde(default)]
        term: u64,
        #[serde(default)]
        seq: u64,
        sessions: Vec<SessionRecord>,
    },
    /// A session directive for the host channel's subscribers (or one connection) on every
    /// other node, dropped by a node that heard of a newer term than `term`.
    Directive {
        term: u64,
        host: String,
        #[serde(default)]
        to: Option<String>,
        frame: String,
    },
    /// A cache channel's last event, so a node that joins later can replay it.
    Cache {
        channel: String,
        frame: String,
        ttl_ms: u64,
    },
    /// A minute of the app's usage the sender has closed: its own counts, added by every
    /// other node to its ring.
    Usage {
        usage: crate::insight::usage::Minute,
    },
    Heartbeat,
    /// The sender (re)joined: every node answers `SyncStart`, its whole state, `SyncDone`.
    Hello,
    SyncStart {
        to: String,
    },
    SyncDone {
        to: String,
    },
    /// The sender is leaving.
    Bye,
}

impl Msg {
    /// The message's kind, as its `t` tag says it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Publish { .. } => "publish",
            Self::Count { .. } => "count",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::User { .. } => "user",
            Self::Terminate { .. } => "terminate",
            Self::Deliver { .. } => "deliver",
            Self::Host { .. } => "host",
            Self::Agent { .. } => "agent",
            Self::SessionStart { .. } => "session_start",
            Self::SessionStop { .. } => "session_stop",
            Self::Sessions { .. } => "sessions",
            Self::Directive { .. } => "directive",
            Self::Cache { .. } => "cache",
            Self::Usage { .. } => "usage",
            Self::Heartbeat => "heartbeat",
            Self::Hello => "hello",
            Self::SyncStart { .. } => "sync_start",
            Self::SyncDone { .. } => "sync_done",
            Self::Bye => "bye",
        }
    }
}

impl Envelope {
    /// A message from `node`, stamped with the time now.
    pub fn new(node: &str, app: &str, msg: Msg) -> Self {
        let sent_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        Self { node: node.to_owned(), app: app.to_owned(), msg, sent_ms }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelopes serialise")
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Envelope::new("n1", "1", Msg::Join { channel: "presence-a".into(), user: "u".into(), info: Some("{\"n\":1}".into()) });
        assert!(e.sent_ms > 0);
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
        let hb = Envelope { node: "n1".into(), app: String::new(), msg: Msg::Heartbeat, sent_ms: 0 };
        assert_eq!(String::from_utf8(hb.encode()).unwrap(), r#"{"node":"n1","app":"","msg":{"t":"heartbeat"}}"#);
        assert_eq!(Envelope::decode(b"junk"), None);
        // A node of an older version sends no time, and takes one it does not know.
        let old = Envelope::decode(br#"{"node":"n1","app":"","msg":{"t":"heartbeat"}}"#).unwrap();
        assert_eq!((old.sent_ms, old.msg), (0, Msg::Heartbeat));
        #[derive(Deserialize)]
        struct OldEnvelope {
            node: String,
            msg: Msg,
        }
        let seen: OldEnvelope = serde_json::from_slice(&Envelope::new("n2", "", Msg::Bye).encode()).unwrap();
        assert_eq!((seen.node.as_str(), seen.msg), ("n2", Msg::Bye));
    }
}
