//! Reading the few fields the bench needs straight out of frame bytes.
//!
//! Every delivered message passes through here, so nothing allocates: no `serde_json::Value`,
//! no `String`. The bench's payloads put their markers first (`{"_bt":…,"_bs":…,…}`), and the
//! marker names cannot occur in a Pusher envelope, so a forward scan finds them in a few bytes.
//! The `data` of a server frame is a JSON string (`"{\"_bt\":1,…}"`), but some servers send an
//! object instead; both spellings are accepted.

use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Send time in nanoseconds since the Unix epoch, written by the publisher.
pub const SENT_AT: &str = "_bt";
/// Sequence number of a publish within a run.
pub const SEQUENCE: &str = "_bs";

static SENT_AT_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SENT_AT));
static SEQUENCE_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(SEQUENCE));

/// The unsigned integer that follows `"key":` or `\"key\":` in `frame`.
pub fn find_u64(frame: &[u8], key: &Finder<'_>) -> Option<u64> {
    let k = key.needle();
    let mut from = 0;
    while let Some(pos) = key.find(&frame[from..]) {
        let start = from + pos;
        let after = start + k.len();
        if start > 0 && frame[start - 1] == b'"' {
            let rest = &frame[after..];
            let rest = rest.strip_prefix(b"\\\"").or_else(|| rest.strip_prefix(b"\"")).unwrap_or(&[]);
            if let Some(rest) = rest.strip_prefix(b":") {
                return parse_u64(rest);
            }
        }
        from = after;
    }
    None
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    Some(bytes[..digits].iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// Built once: a `Finder` precomputes its search tables.
static EVENT_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"event\":\""));

/// The `event` of a server frame, without decoding the rest.
pub fn event_name(frame: &[u8]) -> Option<&[u8]> {
    let start = EVENT_KEY.find(frame)? + EVENT_KEY.needle().len();
    let len = memchr::memchr(b'"', &frame[start..])?;
    Some(&frame[start..start + len])
}

/// What a received frame means to the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bench publish: send time and sequence number.
    Payload {
        sent_at_ns: u64,
        seq: u64,
    },
    SubscriptionSucceeded,
    Ping,
    /// `pusher:error` or `pusher:subscription_error`.
    Error,
    /// Anything else: other events, counts, member changes.
    Other,
}

pub fn classify(frame: &[u8]) -> Kind {
    let Some(event) = event_name(frame) else { return Kind::Other };
    if event.starts_with(b"pusher") {
        return match event {
            b"pusher_internal:subscription_succeeded" => Kind::SubscriptionSucceeded,
            b"pusher:ping" => Kind::Ping,
            b"pusher:error" | b"pusher:subscription_error" => Kind::Error,
            _ => Kind::Other,
        };
    }
    match (find_u64(frame, &SENT_AT_KEY), find_u64(frame, &SEQUENCE_KEY)) {
        (Some(sent_at_ns), Some(seq)) => Kind::Payload { sent_at_ns, seq },
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_markers_in_string_and_object_data() {
        let s = br#"{"event":"bench","channel":"c","data":"{\"_bt\":1700000000123456789,\"_bs\":42,\"p\":\"x\"}"}"#;
        assert_eq!(classify(s), Kind::Payload { sent_at_ns: 1_700_000_000_123_456_789, seq: 42 });
        let o = br#"{"event":"bench","channel":"c","data":{"_bt":5,"_bs":6}}"#;
        assert_eq!(classify(o), Kind::Payload { sent_at_ns: 5, seq: 6 });
    }

    #[test]
    fn ignores_lookalikes() {
        // `x_bt` is another key; `_bt` inside a value is not a key.
        let f = br#"{"event":"e","data":"{\"x_bt\":1,\"v\":\"_bt\",\"_bt\":7,\"_bs\":8}"}"#;
        assert_eq!(find_u64(f, &SENT_AT_KEY), Some(7));
        assert_eq!(find_u64(br#"{"_bt":-1}"#, &SENT_AT_KEY), None);
        assert_eq!(find_u64(br#"{"_bt":"1"}"#, &SENT_AT_KEY), None);
        assert_eq!(find_u64(br#"{"_bt":123456789012345678901}"#, &SENT_AT_KEY), None);
        assert_eq!(classify(br#"{"event":"e","data":"{\"_bt\":1}"}"#), Kind::Other);
    }

    #[test]
    fn protocol_events() {
        let cases: &[(&[u8], Kind)] = &[
            (br#"{"event":"pusher_internal:subscription_succeeded","channel":"c"}"#, Kind::SubscriptionSucceeded),
            (br#"{"channel":"c","event":"pusher_internal:subscription_succeeded","data":"{}"}"#, Kind::SubscriptionSucceeded),
            (br#"{"event":"pusher:ping","data":{}}"#, Kind::Ping),
            (br#"{"event":"pusher:error","data":{"code":4301,"message":"slow down"}}"#, Kind::Error),
            (br#"{"event":"pusher:subscription_error","channel":"c","data":"{}"}"#, Kind::Error),
            (br#"{"event":"pusher_internal:subscription_count","channel":"c","data":"{\"_bt\":1,\"_bs\":2}"}"#, Kind::Other),
            (b"garbage", Kind::Other),
        ];
        for (frame, want) in cases {
            assert_eq!(classify(frame), *want, "{}", String::from_utf8_lossy(frame));
        }
    }
}
