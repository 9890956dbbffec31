//! Webhooks: the events a relay POSTs to an app's backend, in Pusher's wire form, and their
//! signature.
//!
//! A request body is `{"time_ms":…,"events":[{"name":…,"channel":…,…},…]}`, sent with
//! `X-Pusher-Key` (the app key) and `X-Pusher-Signature` (hex HMAC-SHA256 of the raw body with
//! the app secret). Each event is encoded once, when it happens; a request joins the encoded
//! events of its batch.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::sign::hmac_hex;

/// Header carrying the app key.
pub const HEADER_KEY: &str = "X-Pusher-Key";
/// Header carrying hex(HMAC-SHA256(secret, body)).
pub const HEADER_SIGNATURE: &str = "X-Pusher-Signature";

/// What a webhook target subscribes to (`event_types` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
    SondeSessionStarted,
    SondeSessionStopped,
    SondeAgentOnline,
    SondeAgentOffline,
}

impl EventType {
    pub const ALL: [EventType; 11] = [
        Self::ChannelOccupied,
        Self::ChannelVacated,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::ClientEvent,
        Self::CacheMiss,
        Self::SubscriptionCount,
        Self::SondeSessionStarted,
        Self::SondeSessionStopped,
        Self::SondeAgentOnline,
        Self::SondeAgentOffline,
    ];

    /// A bit of its own, for sets of event types.
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Who started a realtime session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Starter {
    /// A viewer subscribed to the host channel.
    #[default]
    Viewer,
    /// A server-side directive (`POST /apps/{id}/sessions`).
    Api,
}

/// One webhook event. `channel` is the channel it concerns (for Sonde's own events, the host
/// channel), so a target's `channel_prefix` filters every kind alike.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum WebhookEvent<'a> {
    ChannelOccupied {
        channel: &'a str,
    },
    ChannelVacated {
        channel: &'a str,
    },
    MemberAdded {
        channel: &'a str,
        user_id: &'a str,
    },
    MemberRemoved {
        channel: &'a str,
        user_id: &'a str,
    },
    ClientEvent {
        channel: &'a str,
        event: &'a str,
        /// The event's data as a JSON string literal (quotes included), as clients send it.
        #[serde(serialize_with = "raw_json")]
        data: &'a str,
        socket_id: &'a str,
        /// Presence channels only.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
    },
    CacheMiss {
        channel: &'a str,
    },
    SubscriptionCount {
        channel: &'a str,
        subscription_count: usize,
    },
    SondeSessionStarted {
        channel: &'a str,
        host: &'a str,
        session_id: &'a str,
        started_by: Starter,
    },
    SondeSessionStopped {
        channel: &'a str,
        host: &'a str,
        session_id: &'a str,
        started_by: Starter,
        duration_ms: u64,
    },
    SondeAgentOnline {
        channel: &'a str,
        host: &'a str,
        install_id: Option<&'a str>,
        agent_version: Option<&'a str>,
    },
    SondeAgentOffline {
        channel: &'a str,
        host: &'a str,
        install_id: Option<&'a str>,
        agent_version: Option<&'a str>,
    },
}

fn raw_json<S: Serializer>(text: &&str, s: S) -> Result<S::Ok, S::Error> {
    let raw: &RawValue = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
    raw.serialize(s)
}

impl WebhookEvent<'_> {
    pub fn kind(&self) -> EventType {
        match self {
            Self::ChannelOccupied { .. } => EventType::ChannelOccupied,
            Self::ChannelVacated { .. } => EventType::ChannelVacated,
            Self::MemberAdded { .. } => EventType::MemberAdded,
            Self::MemberRemoved { .. } => EventType::MemberRemoved,
            Self::ClientEvent { .. } => EventType::ClientEvent,
            Self::CacheMiss { .. } => EventType::CacheMiss,
            Self::SubscriptionCount { .. } => EventType::SubscriptionCount,
            Self::SondeSessionStarted { .. } => EventType::SondeSessionStarted,
            Self::SondeSessionStopped { .. } => EventType::SondeSessionStopped,
            Self::SondeAgentOnline { .. } => EventType::SondeAgentOnline,
            Self::SondeAgentOffline { .. } => EventType::SondeAgentOffline,
        }
    }

    /// The event as one JSON object. `None` only for a client event whose data is not JSON,
    /// which the frame parser never lets through.
    pub fn encode(&self) -> Option<String> {
        serde_json::to_string(self).ok()
    }
}

/// A request body: `{"time_ms":…,"events":[…]}` from events already encoded.
pub fn body<S: AsRef<str>>(time_ms: u64, events: &[S]) -> String {
    let len = events.iter().map(|e| e.as_ref().len() + 1).sum::<usize>() + 40;
    let mut out = String::with_capacity(len);
    out.push_str("{\"time_ms\":");
    out.push_str(&time_ms.to_string());
    out.push_str(",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e.as_ref());
    }
    out.push_str("]}");
    out
}

/// `X-Pusher-Signature`: hex(HMAC-SHA256(secret, raw body)).
pub fn signature(secret: &str, body: &str) -> String {
    hmac_hex(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_pusher_form() {
        let occupied = WebhookEvent::ChannelOccupied { channel: "presence-x" }.encode().unwrap();
        assert_eq!(occupied, r#"{"name":"channel_occupied","channel":"presence-x"}"#);
        let member = WebhookEvent::MemberRemoved { channel: "presence-x", user_id: "7" }.encode().unwrap();
        assert_eq!(member, r#"{"name":"member_removed","channel":"presence-x","user_id":"7"}"#);
        let client = WebhookEvent::ClientEvent { channel: "private-a", event: "client-x", data: r#""{\"n\":1}""#, socket_id: "1.2", user_id: None };
        assert_eq!(client.encode().unwrap(), r#"{"name":"client_event","channel":"private-a","event":"client-x","data":"{\"n\":1}","socket_id":"1.2"}"#);
        let count = WebhookEvent::SubscriptionCount { channel: "a", subscription_count: 3 }.encode().unwrap();
        assert_eq!(count, r#"{"name":"subscription_count","channel":"a","subscription_count":3}"#);
        let stopped =
            WebhookEvent::SondeSessionStopped { channel: "private-sonde-host.web1", host: "web1", session_id: "ab", started_by: Starter::Api, duration_ms: 5 };
        let v: serde_json::Value = serde_json::from_str(&stopped.encode().unwrap()).unwrap();
        assert_eq!(v["name"], "sonde_session_stopped");
        assert_eq!(v["started_by"], "api");
        assert_eq!(WebhookEvent::ClientEvent { channel: "a", event: "e", data: "{not json", socket_id: "1.1", user_id: None }.encode(), None);
    }

    #[test]
    fn body_and_signature() {
        let b = body(1327078148132, &[r#"{"name":"channel_vacated","channel":"a"}"#, r#"{"name":"cache_miss","channel":"cache-b"}"#]);
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["time_ms"], 1327078148132u64);
        assert_eq!(v["events"].as_array().unwrap().len(), 2);
        assert_eq!(body::<&str>(1, &[]), r#"{"time_ms":1,"events":[]}"#);
        // hex HMAC-SHA256, checked against an independent computation (openssl dgst -sha256 -hmac).
        assert_eq!(signature("secret", "{}"), "77325902caca812dc259733aacd046b73817372c777b8d95b402647474516e13");
    }

    #[test]
    fn event_types_by_name() {
        #[derive(Deserialize)]
        struct T {
            t: Vec<EventType>,
        }
        let t: T = serde_json::from_str(r#"{"t":["channel_occupied","sonde_agent_offline"]}"#).unwrap();
        assert_eq!(t.t, vec![EventType::ChannelOccupied, EventType::SondeAgentOffline]);
        assert!(serde_json::from_str::<T>(r#"{"t":["channel_created"]}"#).is_err());
        let bits: Vec<u16> = EventType::ALL.iter().map(|e| e.bit()).collect();
        assert_eq!(bits.iter().fold(0u16, |a, b| a | b).count_ones(), 11, "every type has its own bit");
    }
}
