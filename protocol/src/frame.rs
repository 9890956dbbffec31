//! Pusher frames: what clients send (parsed into a closed enum) and what the server sends
//! (encoded once into shared bytes).
//!
//! Server→client `data` is always a JSON-encoded string, as hosted Pusher sends it;
//! client→server `data` may be an object or a string holding one (pusher-js sends objects).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{CloseCode, SocketId};

/// A frame a client sent, validated as far as the protocol goes without app state.
#[derive(Debug)]
pub enum ClientFrame {
    Ping,
    Pong,
    Subscribe(Subscribe),
    Unsubscribe { channel: String },
    Signin { auth: String, user_data: String },
    ClientEvent(ClientEvent),
}

#[derive(Debug, Deserialize)]
pub struct Subscribe {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    /// Presence only: the exact JSON string that was signed.
    #[serde(default, deserialize_with = "string_or_raw")]
    pub channel_data: Option<String>,
}

#[derive(Debug)]
pub struct ClientEvent {
    pub event: String,
    pub channel: String,
    /// The payload as a JSON string literal (quotes included), ready to forward.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not a JSON object with an 'event' string")]
    NotJson,
    #[error("event '{0}' is reserved: clients may not send pusher: or pusher_internal: events other than the protocol's own")]
    Reserved(String),
    #[error("event '{0}' is not supported: client events must start with 'client-'")]
    Unsupported(String),
    #[error("'{0}' is missing its data")]
    BadData(&'static str),
    #[error("client event '{0}' needs a channel")]
    MissingChannel(String),
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct UnsubscribeData {
    channel: String,
}

#[derive(Deserialize)]
struct SigninData {
    auth: String,
    #[serde(deserialize_with = "string_or_raw")]
    user_data: Option<String>,
}

/// Accepts a JSON string (kept as its text) or any other JSON value (kept as raw JSON text).
fn string_or_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
    Ok(match raw {
        None => None,
        Some(r) => match serde_json::from_str::<String>(r.get()) {
            Ok(s) => Some(s),
            Err(_) if r.get() == "null" => None,
            Err(_) => Some(r.get().to_owned()),
        },
    })
}

/// Parses `data` given as an object or as a string that holds one.
fn parse_data<'a, T: Deserialize<'a>>(data: Option<&'a RawValue>, what: &'static str, buf: &'a mut String) -> Result<T, FrameError> {
    let raw = data.ok_or(FrameError::BadData(what))?;
    if raw.get().starts_with('"') {
        *buf = serde_json::from_str::<String>(raw.get()).map_err(|_| FrameError::BadData(what))?;
        return serde_json::from_str(buf).map_err(|_| FrameError::BadData(what));
    }
    serde_json::from_str(raw.get()).map_err(|_| FrameError::BadData(what))
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
        let mut buf = String::new();
        match raw.event {
            "pusher:ping" => Ok(Self::Ping),
            "pusher:pong" => Ok(Self::Pong),
            "pusher:subscribe" => Ok(Self::Subscribe(parse_data(raw.data, "pusher:subscribe", &mut buf)?)),
            "pusher:unsubscribe" => {
                let d: UnsubscribeData = parse_data(raw.data, "pusher:unsubscribe", &mut buf)?;
                Ok(Self::Unsubscribe { channel: d.channel })
            }
            "pusher:signin" => {
                let d: SigninData = parse_data(raw.data, "pusher:signin", &mut buf)?;
                let user_data = d.user_data.ok_or(FrameError::BadData("pusher:signin"))?;
                Ok(Self::Signin { auth: d.auth, user_data })
            }
            e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => Err(FrameError::Reserved(e.to_owned())),
            e if e.starts_with("client-") => {
                let channel = raw.channel.ok_or_else(|| FrameError::MissingChannel(e.to_owned()))?;
                let data = match raw.data {
                    None => "\"{}\"".to_owned(),
                    Some(d) if d.get().starts_with('"') => d.get().to_owned(),
                    Some(d) => json_string(d.get()),
                };
                Ok(Self::ClientEvent(ClientEvent { event: e.to_owned(), channel, data }))
            }
            e => Err(FrameError::Unsupported(e.to_owned())),
        }
    }
}

/// Encodes `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a str always serialises")
}

/// One presence member as it appears in `subscription_succeeded` and `member_added`.
pub struct Member<'a> {
    pub user_id: &'a str,
    /// Raw JSON text of `user_info` (already validated), or `None`.
    pub user_info: Option<&'a str>,
}

/// A watchlist transition for `pusher_internal:watchlist_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Online,
    Offline,
}

/// A frame the server sends. `encode` produces the exact bytes of one websocket text message.
pub enum ServerFrame<'a> {
    ConnectionEstablished {
        socket_id: SocketId,
        activity_timeout_s: u64,
    },
    Error {
        code: Option<CloseCode>,
        message: &'a str,
    },
    Ping,
    Pong,
    SubscriptionSucceeded {
        channel: &'a str,
    },
    PresenceSucceeded {
        channel: &'a str,
        members: &'a [Member<'a>],
    },
    SubscriptionError {
        channel: &'a str,
        message: &'a str,
        status: u16,
    },
    MemberAdded {
        channel: &'a str,
        member: Member<'a>,
    },
    MemberRemoved {
        channel: &'a str,
        user_id: &'a str,
    },
    SubscriptionCount {
        channel: &'a str,
        count: usize,
    },
    CacheMiss {
        channel: &'a str,
    },
    SigninSuccess {
        user_data: &'a str,
    },
    Watchlist {
        user_ids: &'a [&'a str],
        watch: Watch,
    },
    /// An application event. `data` is already a JSON string literal (quotes included).
    Event {
        event: &'a str,
        channel: Option<&'a str>,
        data_json: &'a str,
        user_id: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct Envelope<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorData<'a> {
    message: &'a str,
    code: Option<u16>,
}

fn envelope(event: &str, channel: Option<&str>, data: Option<&str>) -> Bytes {
    Bytes::from(serde_json::to_vec(&Envelope { event, channel, data }).expect("frames always serialise"))
}

fn presence_json(members: &[Member<'_>]) -> String {
    let mut out = String::from("{\"presence\":{\"ids\":[");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(m.user_id));
    }
    out.push_str("],\"hash\":{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(m.user_id));
        out.push(':');
        out.push_str(m.user_info.unwrap_or("null"));
    }
    out.push_str(&format!("}},\"count\":{}}}}}", members.len()));
    out
}

fn member_json(m: &Member<'_>) -> String {
    format!("{{\"user_id\":{},\"user_info\":{}}}", json_string(m.user_id), m.user_info.unwrap_or("null"))
}

impl ServerFrame<'_> {
    pub fn encode(&self) -> Bytes {
        match self {
            Self::ConnectionEstablished { socket_id, activity_timeout_s } => {
                let d = format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout_s}}}");
                envelope("pusher:connection_established", None, Some(&d))
            }
            Self::Error { code, message } => {
                let d = serde_json::to_string(&ErrorData { message, code: code.map(CloseCode::code) }).expect("serialises");
                envelope("pusher:error", None, Some(&d))
            }
            Self::Ping => envelope("pusher:ping", None, Some("{}")),
            Self::Pong => envelope("pusher:pong", None, Some("{}")),
            Self::SubscriptionSucceeded { channel } => envelope("pusher_internal:subscription_succeeded", Some(channel), Some("{}")),
            Self::PresenceSucceeded { channel, members } => envelope("pusher_internal:subscription_succeeded", Some(channel), Some(&presence_json(members))),
            Self::SubscriptionError { channel, message, status } => {
                let d = format!("{{\"type\":\"AuthError\",\"error\":{},\"status\":{status}}}", json_string(message));
                envelope("pusher:subscription_error", Some(channel), Some(&d))
            }
            Self::MemberAdded { channel, member } => envelope("pusher_internal:member_added", Some(channel), Some(&member_json(member))),
            Self::MemberRemoved { channel, user_id } => {
                let d = format!("{{\"user_id\":{}}}", json_string(user_id));
                envelope("pusher_internal:member_removed", Some(channel), Some(&d))
            }
            Self::SubscriptionCount { channel, count } => {
                let d = format!("{{\"subscription_count\":{count}}}");
                envelope("pusher_internal:subscription_count", Some(channel), Some(&d))
            }
            Self::CacheMiss { channel } => envelope("pusher:cache_miss", Some(channel), None),
            Self::SigninSuccess { user_data } => {
                let d = format!("{{\"user_data\":{}}}", json_string(user_data));
                envelope("pusher:signin_success", None, Some(&d))
            }
            Self::Watchlist { user_ids, watch } => {
                let name = match watch {
                    Watch::Online => "online",
                    Watch::Offline => "offline",
                };
                let ids: Vec<String> = user_ids.iter().map(|u| json_string(u)).collect();
                let d = format!("{{\"events\":[{{\"name\":\"{name}\",\"user_ids\":[{}]}}]}}", ids.join(","));
                envelope("pusher_internal:watchlist_events", None, Some(&d))
            }
            Self::Event { event, channel, data_json, user_id } => encode_event(event, *channel, data_json, *user_id),
        }
    }
}

/// Writes an application event by hand: `data_json` is already a JSON string literal, so it is
/// copied, not re-escaped. This is the hot path of every publish.
fn encode_event(event: &str, channel: Option<&str>, data_json: &str, user_id: Option<&str>) -> Bytes {
    let mut out = Vec::with_capacity(data_json.len() + event.len() + channel.map_or(0, str::len) + 48);
    out.extend_from_slice(b"{\"event\":");
    serde_json::to_writer(&mut out, event).expect("vec write");
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        serde_json::to_writer(&mut out, c).expect("vec write");
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data_json.as_bytes());
    if let Some(u) = user_id {
        out.extend_from_slice(b",\"user_id\":");
        serde_json::to_writer(&mut out, u).expect("vec write");
    }
    out.push(b'}');
    Bytes::from(out)
}

/// A frame as a client receives it, decoded leniently (for test clients, the agent and the bench).
#[derive(Debug, Clone, Deserialize)]
pub struct Incoming {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub user_id: Option<String>,
}

impl Incoming {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `data` decoded: a string holding JSON is parsed, anything else is returned as is.
    pub fn data_value(&self) -> serde_json::Value {
        match &self.data {
            Some(serde_json::Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.clone())),
            Some(v) => v.clone(),
            None => serde_json::Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_accepts_object_and_string_data() {
        let obj = r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{\"user_id\":\"1\"}"}}"#;
        let s = r#"{"event":"pusher:subscribe","data":"{\"channel\":\"private-a\",\"auth\":\"k:s\"}"}"#;
        match ClientFrame::parse(obj).unwrap() {
            ClientFrame::Subscribe(sub) => {
                assert_eq!(sub.channel, "presence-a");
                assert_eq!(sub.channel_data.as_deref(), Some(r#"{"user_id":"1"}"#));
            }
            other => panic!("{other:?}"),
        }
        match ClientFrame::parse(s).unwrap() {
            ClientFrame::Subscribe(sub) => {
                assert_eq!(sub.channel, "private-a");
                assert_eq!(sub.auth.as_deref(), Some("k:s"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Result<&str, FrameError>)] = &[
            (r#"{"event":"pusher:ping","data":{}}"#, Ok("ping")),
            (r#"{"event":"pusher:pong"}"#, Ok("pong")),
            (r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#, Ok("unsubscribe")),
            (r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#, Ok("signin")),
            (r#"{"event":"client-x","channel":"private-a","data":{"a":1}}"#, Ok("client")),
            (r#"{"event":"pusher:subscribe"}"#, Err(FrameError::BadData("pusher:subscribe"))),
            (r#"{"event":"pusher_internal:member_added","data":{}}"#, Err(FrameError::Reserved("pusher_internal:member_added".into()))),
            (r#"{"event":"pusher:connection_established"}"#, Err(FrameError::Reserved("pusher:connection_established".into()))),
            (r#"{"event":"hello"}"#, Err(FrameError::Unsupported("hello".into()))),
            (r#"{"event":"client-x","data":{}}"#, Err(FrameError::MissingChannel("client-x".into()))),
            ("not json", Err(FrameError::NotJson)),
            (r#"{"data":1}"#, Err(FrameError::NotJson)),
        ];
        for (text, want) in cases {
            let got = ClientFrame::parse(text).map(|f| match f {
                ClientFrame::Ping => "ping",
                ClientFrame::Pong => "pong",
                ClientFrame::Subscribe(_) => "subscribe",
                ClientFrame::Unsubscribe { .. } => "unsubscribe",
                ClientFrame::Signin { .. } => "signin",
                ClientFrame::ClientEvent(_) => "client",
            });
            assert_eq!(&got, want, "{text}");
        }
    }

    #[test]
    fn client_event_data_becomes_a_string() {
        let f = ClientFrame::parse(r#"{"event":"client-x","channel":"private-a","data":{"a":1}}"#).unwrap();
        let ClientFrame::ClientEvent(e) = f else { panic!() };
        assert_eq!(e.data, r#""{\"a\":1}""#);
        let f = ClientFrame::parse(r#"{"event":"client-x","channel":"private-a","data":"hi"}"#).unwrap();
        let ClientFrame::ClientEvent(e) = f else { panic!() };
        assert_eq!(e.data, r#""hi""#);
    }

    #[test]
    fn server_frames_carry_string_data() {
        let f = ServerFrame::ConnectionEstablished { socket_id: SocketId::new(1, 2), activity_timeout_s: 120 }.encode();
        assert_eq!(&f[..], br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#);
        let members = [Member { user_id: "1", user_info: Some(r#"{"name":"A"}"#) }, Member { user_id: "2", user_info: None }];
        let f = ServerFrame::PresenceSucceeded { channel: "presence-a", members: &members }.encode();
        let inc = Incoming::parse(std::str::from_utf8(&f).unwrap()).unwrap();
        assert_eq!(inc.data_value(), serde_json::json!({"presence":{"ids":["1","2"],"hash":{"1":{"name":"A"},"2":null},"count":2}}));
        let f = ServerFrame::Event { event: "e", channel: Some("c"), data_json: r#""x""#, user_id: Some("7") }.encode();
        assert_eq!(&f[..], br#"{"event":"e","channel":"c","data":"x","user_id":"7"}"#);
        let f = ServerFrame::Watchlist { user_ids: &["7", "9"], watch: Watch::Online }.encode();
        let inc = Incoming::parse(std::str::from_utf8(&f).unwrap()).unwrap();
        assert_eq!(inc.event, "pusher_internal:watchlist_events");
        assert_eq!(inc.data_value(), serde_json::json!({"events":[{"name":"online","user_ids":["7","9"]}]}));
        let f = ServerFrame::Error { code: Some(CloseCode::ClientEventRejected), message: "slow down" }.encode();
        let inc = Incoming::parse(std::str::from_utf8(&f).unwrap()).unwrap();
        assert_eq!(inc.data_value(), serde_json::json!({"message":"slow down","code":4301}));
    }
}
