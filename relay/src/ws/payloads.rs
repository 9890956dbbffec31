//! The JSON payloads clients send inside frames: presence `channel_data`, sign-in
//! `user_data`, and the viewer a late backfill is addressed to.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::hub::PresenceUser;

/// Most ids a sign-in watchlist may hold.
const MAX_WATCHLIST: usize = 100;

#[derive(Deserialize)]
struct BackfillFor {
    #[serde(default, rename = "for")]
    for_socket: Option<String>,
}

/// The viewer a backfill is addressed to (`data` is the event's JSON string literal).
pub(super) fn backfill_for(data_json: &str) -> Option<sonde_protocol::SocketId> {
    let text: String = serde_json::from_str(data_json).ok()?;
    let b: BackfillFor = serde_json::from_str(&text).ok()?;
    b.for_socket?.parse().ok()
}

#[derive(Deserialize)]
struct ChannelData<'a> {
    #[serde(borrow)]
    user_id: &'a RawValue,
    #[serde(default, borrow)]
    user_info: Option<&'a RawValue>,
}

/// A presence `channel_data`: `user_id` (string or number) and an optional `user_info`.
pub(super) fn parse_channel_data(data: &str, max_info: usize) -> Result<PresenceUser, String> {
    let d: ChannelData<'_> = serde_json::from_str(data).map_err(|_| "channel_data must be a JSON object with a user_id".to_owned())?;
    let id = match serde_json::from_str::<serde_json::Value>(d.user_id.get()) {
        Ok(serde_json::Value::String(s)) if !s.is_empty() => s,
        Ok(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err("user_id must be a non-empty string or a number".into()),
    };
    let info = d.user_info.map(|r| r.get()).filter(|r| *r != "null");
    if let Some(i) = info {
        if i.len() > max_info {
            return Err(format!("user_info is larger than {max_info} bytes"));
        }
    }
    Ok(PresenceUser { user_id: id.into(), user_info: info.map(Arc::from) })
}

#[derive(Deserialize)]
struct UserData {
    id: serde_json::Value,
    #[serde(default)]
    watchlist: Vec<String>,
}

pub(super) fn parse_user_data(data: &str) -> Result<(String, Vec<Arc<str>>), String> {
    let d: UserData = serde_json::from_str(data).map_err(|_| "user_data must be a JSON object with an id".to_owned())?;
    let id = match d.id {
        serde_json::Value::String(s) if !s.is_empty() => s,
        _ => return Err("user_data.id must be a non-empty string".into()),
    };
    if d.watchlist.len() > MAX_WATCHLIST {
        return Err(format!("a watchlist holds at most {MAX_WATCHLIST} user ids"));
    }
    Ok((id, d.watchlist.into_iter().map(Arc::from).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_table() {
        let ok = parse_channel_data(r#"{"user_id":"1","user_info":{"n":"a"}}"#, 100).unwrap();
        assert_eq!((&*ok.user_id, ok.user_info.as_deref()), ("1", Some(r#"{"n":"a"}"#)));
        assert_eq!(&*parse_channel_data(r#"{"user_id":42}"#, 100).unwrap().user_id, "42");
        for bad in [r#"{"user_id":""}"#, r#"{"user_info":{}}"#, "[]", r#"{"user_id":null}"#] {
            assert!(parse_channel_data(bad, 100).is_err(), "{bad}");
        }
        assert!(parse_channel_data(r#"{"user_id":"1","user_info":"xxxxxxxxxx"}"#, 5).unwrap_err().contains("larger"));
    }

    #[test]
    fn user_data_table() {
        assert_eq!(parse_user_data(r#"{"id":"7","watchlist":["1"]}"#).unwrap().0, "7");
        assert!(parse_user_data(r#"{"id":""}"#).is_err());
        assert!(parse_user_data(r#"{"id":7}"#).is_err());
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        assert!(parse_user_data(&serde_json::json!({"id":"1","watchlist":many}).to_string()).is_err());
    }
}
