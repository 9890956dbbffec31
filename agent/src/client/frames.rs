//! Frames between the agent and the relay: what the agent reads (decoded once into a closed
//! enum) and the few it writes.

use sonde_protocol::frame::{json_string, Incoming};
use sonde_protocol::sonde::{SessionDirective, EVENT_SESSION};

/// A frame from the relay, as far as the agent cares.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayFrame {
    Established {
        activity_timeout_s: u64,
    },
    Ping,
    Pong,
    Error {
        code: Option<u16>,
        message: String,
    },
    Subscribed {
        channel: String,
    },
    SubscriptionError {
        channel: String,
        message: String,
    },
    Directive {
        channel: String,
        directive: SessionDirective,
    },
    /// Anything else (other events on the channel, subscription counts): ignored.
    Other {
        event: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum BadFrame {
    #[error("not a Pusher frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("'{0}' has unexpected data")]
    Data(String),
}

impl RelayFrame {
    pub fn parse(text: &str) -> Result<Self, BadFrame> {
        let inc = Incoming::parse(text)?;
        let data = inc.data_value();
        let channel = || inc.channel.clone().unwrap_or_default();
        let bad = || BadFrame::Data(inc.event.clone());
        Ok(match inc.event.as_str() {
            "pusher:connection_established" => {
                let t = data.get("activity_timeout").and_then(serde_json::Value::as_u64).ok_or_else(bad)?;
                Self::Established { activity_timeout_s: t }
            }
            "pusher:ping" => Self::Ping,
            "pusher:pong" => Self::Pong,
            "pusher:error" => Self::Error {
                code: data.get("code").and_then(serde_json::Value::as_u64).and_then(|c| u16::try_from(c).ok()),
                message: data.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned(),
            },
            "pusher_internal:subscription_succeeded" => Self::Subscribed { channel: channel() },
            "pusher:subscription_error" => {
                let message = data.get("error").and_then(|m| m.as_str()).map_or_else(|| data.to_string(), str::to_owned);
                Self::SubscriptionError { channel: channel(), message }
            }
            EVENT_SESSION => {
                let directive = serde_json::from_value(data).map_err(|_| bad())?;
                Self::Directive { channel: channel(), directive }
            }
            _ => Self::Other { event: inc.event },
        })
    }
}

/// `pusher:subscribe` for a channel whose access the connection token already grants.
pub fn subscribe(channel: &str) -> String {
    format!("{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":{}}}}}", json_string(channel))
}

pub const PING: &str = r#"{"event":"pusher:ping","data":{}}"#;
pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// A client event. `data` is JSON text and goes in as an object, as pusher-js sends it.
pub fn client_event(event: &str, channel: &str, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + event.len() + channel.len() + 40);
    out.push_str("{\"event\":");
    out.push_str(&json_string(event));
    out.push_str(",\"channel\":");
    out.push_str(&json_string(channel));
    out.push_str(",\"data\":");
    out.push_str(data);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use sonde_protocol::frame::ClientFrame;
    use sonde_protocol::sonde::{SessionId, SessionState};

    use super::*;

    #[test]
    fn parses_relay_frames() {
        let cases: &[(&str, RelayFrame)] = &[
            (
                r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#,
                RelayFrame::Established { activity_timeout_s: 120 },
            ),
            (r#"{"event":"pusher:ping","data":"{}"}"#, RelayFrame::Ping),
            (r#"{"event":"pusher:pong"}"#, RelayFrame::Pong),
            (
                r#"{"event":"pusher:error","data":"{\"message\":\"slow down\",\"code\":4301}"}"#,
                RelayFrame::Error { code: Some(4301), message: "slow down".into() },
            ),
            (
                r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-sonde-host.web1","data":"{}"}"#,
                RelayFrame::Subscribed { channel: "private-sonde-host.web1".into() },
            ),
            (
                r#"{"event":"pusher:subscription_error","channel":"c","data":"{\"type\":\"AuthError\",\"error\":\"denied\",\"status\":403}"}"#,
                RelayFrame::SubscriptionError { channel: "c".into(), message: "denied".into() },
            ),
            (
                r#"{"event":"sonde:session","channel":"c","data":"{\"state\":\"started\",\"id\":\"s1\",\"interval_ms\":1000,\"lease_until\":5}"}"#,
                RelayFrame::Directive {
                    channel: "c".into(),
                    directive: SessionDirective {
                        state: SessionState::Started,
                        id: SessionId("s1".into()),
                        interval_ms: 1000,
                        lease_until: 5,
                        for_socket: None,
                    },
                },
            ),
            (r#"{"event":"client-sonde-sample","channel":"c","data":"{}"}"#, RelayFrame::Other { event: "client-sonde-sample".into() }),
        ];
        for (text, want) in cases {
            assert_eq!(&RelayFrame::parse(text).unwrap(), want, "{text}");
        }
        assert!(RelayFrame::parse("nope").is_err());
        assert!(RelayFrame::parse(r#"{"event":"sonde:session","data":"{\"state\":\"paused\"}"}"#).is_err());
        assert!(RelayFrame::parse(r#"{"event":"pusher:connection_established","data":"{}"}"#).is_err());
    }

    #[test]
    fn written_frames_are_what_the_relay_parses() {
        let ClientFrame::Subscribe(s) = ClientFrame::parse(&subscribe("private-sonde-host.web1")).unwrap() else { panic!() };
        assert_eq!(s.channel, "private-sonde-host.web1");
        assert!(s.auth.is_none());
        assert!(matches!(ClientFrame::parse(PING).unwrap(), ClientFrame::Ping));
        assert!(matches!(ClientFrame::parse(PONG).unwrap(), ClientFrame::Pong));
        let ClientFrame::ClientEvent(e) = ClientFrame::parse(&client_event("client-sonde-sample", "private-sonde-host.web1", r#"{"ts":1}"#)).unwrap() else {
            panic!()
        };
        assert_eq!((e.event.as_str(), e.channel.as_str(), e.data.as_str()), ("client-sonde-sample", "private-sonde-host.web1", r#""{\"ts\":1}""#));
    }
}
