//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`.

use std::sync::Arc;

use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sonde_protocol::frame::json_string;
use sonde_protocol::{ChannelKind, ChannelName, SocketId};

use super::info::InfoAttrs;
use super::{ApiError, Signed};
use crate::apps::{ApiEvent, App};

#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: Box<RawValue>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// An event that passed every check, ready to fan out.
pub struct Checked {
    event: ApiEvent,
    info: InfoAttrs,
}

fn check(app: &App, ev: EventBody) -> Result<Checked, ApiError> {
    let l = &app.config.limits;
    if ev.name.is_empty() || ev.name.len() > l.max_event_name_len {
        return Err(ApiError::bad_request(format!("event name must have 1 to {} characters", l.max_event_name_len)));
    }
    if ["pusher:", "pusher_internal:", sonde_protocol::sonde::RELAY_EVENT_PREFIX].iter().any(|p| ev.name.starts_with(p)) {
        return Err(ApiError::bad_request("event names starting with pusher:, pusher_internal: or sonde: are reserved"));
    }
    let raw = ev.data.get();
    let (data_json, data_len) = if raw.starts_with('"') {
        let s: String = serde_json::from_str(raw).map_err(|_| ApiError::bad_request("data is not a valid JSON string"))?;
        (raw.to_owned(), s.len())
    } else {
        (json_string(raw), raw.len())
    };
    if data_len > l.max_payload_bytes {
        return Err(ApiError::too_large(format!("data is {data_len} bytes; the limit is {}", l.max_payload_bytes)));
    }
    let names = match (ev.channel, ev.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give either channel or channels, not both")),
        (None, None) => return Err(ApiError::bad_request("channel or channels is required")),
    };
    if names.is_empty() || names.len() > l.max_channels_per_event {
        return Err(ApiError::bad_request(format!("an event goes to 1 to {} channels", l.max_channels_per_event)));
    }
    let channels = names
        .iter()
        .map(|n| ChannelName::parse_server(n).map_err(|e| ApiError::bad_request(format!("invalid channel name '{n}': {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if channels.len() > 1 && channels.iter().any(|c| c.kind() == ChannelKind::PrivateEncrypted) {
        return Err(ApiError::bad_request("an event to an encrypted channel must name exactly one channel"));
    }
    let except = ev.socket_id.map(|s| s.parse::<SocketId>().map_err(|e| ApiError::bad_request(e.to_string()))).transpose()?;
    let info = InfoAttrs::parse(ev.info.as_deref())?;
    Ok(Checked { event: ApiEvent { name: ev.name, data_json, channels, except }, info })
}

/// Accepts events for fan-out, in order, and answers with the `info` attributes asked for.
fn publish(app: &App, events: Vec<Checked>) -> Result<Vec<Option<Value>>, ApiError> {
    let infos = events.iter().map(|ev| info(app, ev)).collect();
    app.publish_events(events.iter().map(|c| &c.event))
        .map_err(|_| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "the relay is busy fanning out earlier events; retry"))?;
    Ok(infos)
}

fn info(app: &App, ev: &Checked) -> Option<Value> {
    if !ev.info.any() {
        return None;
    }
    let mut out = Map::new();
    for ch in &ev.event.channels {
        out.insert(ch.to_string(), Value::Object(ev.info.of(&app.hub.channel_info(ch))));
    }
    Some(Value::Object(out))
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

pub async fn events(signed: Signed) -> Result<Json<Value>, ApiError> {
    let ev = check(&signed.app, parse_json(&signed.body)?)?;
    let info = publish(&signed.app, vec![ev])?.pop().flatten();
    Ok(Json(match info {
        Some(channels) => json!({ "channels": channels }),
        None => json!({}),
    }))
}

pub async fn batch_events(signed: Signed) -> Result<Json<Value>, ApiError> {
    let app: &Arc<App> = &signed.app;
    let batch: BatchBody = parse_json(&signed.body)?;
    let max = app.config.limits.max_batch_events;
    if batch.batch.is_empty() || batch.batch.len() > max {
        return Err(ApiError::bad_request(format!("a batch holds 1 to {max} events")));
    }
    let mut checked = Vec::with_capacity(batch.batch.len());
    for ev in batch.batch {
        if ev.channels.is_some() {
            return Err(ApiError::bad_request("each batch event names one channel"));
        }
        checked.push(check(app, ev)?);
    }
    let infos = publish(app, checked)?;
    if infos.iter().all(Option::is_none) {
        return Ok(Json(json!({})));
    }
    let batch: Vec<Value> =
        infos.into_iter().map(|i| i.and_then(|v| v.as_object().and_then(|m| m.values().next().cloned())).unwrap_or_else(|| json!({}))).collect();
    Ok(Json(json!({ "batch": batch })))
}
