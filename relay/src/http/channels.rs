//! Channel queries and user termination.

use axum::extract::Path;
use axum::Json;
use serde_json::{json, Map, Value};
use sonde_protocol::{ChannelKind, ChannelName};

use super::info::InfoAttrs;
use super::{ApiError, Signed};

fn info_attrs(signed: &Signed) -> Result<InfoAttrs, ApiError> {
    InfoAttrs::parse(signed.param("info"))
}

fn channel(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::parse_server(name).map_err(|e| ApiError::bad_request(format!("invalid channel name '{name}': {e}")))
}

/// `GET /apps/{id}/channels`
pub async fn list(signed: Signed) -> Result<Json<Value>, ApiError> {
    let prefix = signed.param("filter_by_prefix").unwrap_or("");
    let attrs = info_attrs(&signed)?;
    if attrs.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::bad_request("info=user_count needs filter_by_prefix=presence-"));
    }
    let mut out = Map::new();
    for (name, info) in signed.app.hub.channels(prefix) {
        if name.kind() == ChannelKind::ServerToUser {
            continue;
        }
        out.insert(name.to_string(), Value::Object(attrs.of(&info)));
    }
    Ok(Json(json!({ "channels": out })))
}

/// `GET /apps/{id}/channels/{name}`
pub async fn show(Path((_, name)): Path<(String, String)>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let name = channel(&name)?;
    let attrs = info_attrs(&signed)?;
    if attrs.user_count && name.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request("user_count is only available for presence channels"));
    }
    let info = signed.app.hub.channel_info(&name);
    let mut out = Map::new();
    out.insert("occupied".into(), (info.subscription_count > 0).into());
    out.extend(attrs.of(&info));
    Ok(Json(Value::Object(out)))
}

/// `GET /apps/{id}/channels/{name}/users`
pub async fn users(Path((_, name)): Path<(String, String)>, signed: Signed) -> Result<Json<Value>, ApiError> {
    let name = channel(&name)?;
    if name.kind() != ChannelKind::Presence {
        return Err(ApiError::bad_request("users are only available for presence channels"));
    }
    let users: Vec<Value> = signed.app.hub.presence_users(&name).iter().map(|u| json!({ "id": &**u })).collect();
    Ok(Json(json!({ "users": users })))
}

/// `POST /users/{user_id}/terminate_connections`: the path the official Python SDK (3.x)
/// posts to, without the `/apps/{id}` prefix. The app is the one whose key signed it.
pub async fn terminate_unprefixed(Path(user): Path<String>, signed: Signed) -> Result<Json<Value>, ApiError> {
    signed.app.terminate_user(&user);
    Ok(Json(json!({})))
}

/// `POST /apps/{id}/users/{user_id}/terminate_connections`
pub async fn terminate(Path((_, user)): Path<(String, String)>, signed: Signed) -> Result<Json<Value>, ApiError> {
    signed.app.terminate_user(&user);
    Ok(Json(json!({})))
}
