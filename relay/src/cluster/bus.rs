//! What relay nodes tell each other over the Redis bus. One JSON envelope per message.

use serde::{Deserialize, Serialize};

/// A message and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    /// The app it concerns; empty for node-level messages.
    #[serde(default)]
    pub app: String,
    pub msg: Msg,
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
    Count { channel: String, count: usize },
    /// A user's first connection on this node joined a presence channel.
    Join {
        channel: String,
        user: String,
        #[serde(default)]
        info: Option<String>,
    },
    /// A user's last connection on this node left a presence channel.
    Leave { channel: String, user: String },
    /// A user's first (online) or last (offline) signed-in connection on this node.
    User { user: String, online: bool },
    Terminate { user: String },
    /// A frame for one connection, wherever it is, if it is subscribed to `channel`.
    Deliver {
        socket: String,
        #[serde(default)]
        channel: Option<String>,
        frame: String,
    },
    /// This node's viewers and agent connections of a host channel.
    Host { host: String, viewers: usize, agents: Vec<String> },
    /// An agent's state for the inventory, on the node it is connected to.
    Agent {
        host: String,
        connections: u32,
        #[serde(default)]
        snapshot: Option<String>,
    },
    /// A server-side directive for the session leader.
    SessionStart { host: String, duration_s: u64 },
    SessionStop { host: String },
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
    Cache { channel: String, frame: String, ttl_ms: u64 },
    Heartbeat,
    /// The sender (re)joined: every node answers `SyncStart`, its whole state, `SyncDone`.
    Hello,
    SyncStart { to: String },
    SyncDone { to: String },
    /// The sender is leaving.
    Bye,
}

impl Envelope {
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
        let e = Envelope { node: "n1".into(), app: "1".into(), msg: Msg::Join { channel: "presence-a".into(), user: "u".into(), info: Some("{\"n\":1}".into()) } };
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
        let hb = Envelope { node: "n1".into(), app: String::new(), msg: Msg::Heartbeat };
        assert_eq!(String::from_utf8(hb.encode()).unwrap(), r#"{"node":"n1","app":"","msg":{"t":"heartbeat"}}"#);
        assert_eq!(Envelope::decode(b"junk"), None);
    }
}
