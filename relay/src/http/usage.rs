//! `GET /apps/{app_id}/usage` (signed): an app's usage minutes, their totals and today's.

use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::{ApiError, Signed};
use crate::insight::usage::{Minute, Totals, DAY_MS, MINUTES_KEPT};
use crate::sessions::Clock;

/// The span returned when the request names none: the last hour.
const DEFAULT_SPAN_S: u64 = 3_600;

/// One minute as the API shows it.
#[derive(Serialize)]
struct MinuteView {
    /// The minute's start, in Unix seconds.
    t: u64,
    peak_connections: u64,
    messages_in: u64,
    messages_out: u64,
    deliveries: u64,
    agents_online: u64,
    sessions_started: u64,
    session_minutes: f64,
    /// The minute still being counted (this node's counts so far).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    open: bool,
}

fn view(m: &Minute, open: bool) -> MinuteView {
    MinuteView {
        t: m.minute.saturating_mul(60),
        peak_connections: m.peak_connections,
        messages_in: m.messages_in,
        messages_out: m.messages_out,
        deliveries: m.deliveries,
        agents_online: m.agents_online,
        sessions_started: m.sessions_started,
        session_minutes: m.session_ms as f64 / 60_000.0,
        open,
    }
}

/// `from` and `to` (Unix seconds) as minutes: by default the last hour; at most the seven
/// days kept.
fn span(from: Option<&str>, to: Option<&str>, now_ms: u64) -> Result<(u64, u64), ApiError> {
    let secs = |name: &str, v: Option<&str>, default: u64| match v {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("{name} must be a time in Unix seconds"))),
    };
    let to = secs("to", to, now_ms / 1_000)?;
    let from = secs("from", from, to.saturating_sub(DEFAULT_SPAN_S))?;
    if from > to {
        return Err(ApiError::bad_request("from must not be after to"));
    }
    if to - from > MINUTES_KEPT as u64 * 60 {
        return Err(ApiError::bad_request("at most seven days (604800 s) between from and to"));
    }
    Ok((from / 60, to / 60))
}

/// `GET /apps/{app_id}/usage[?from=UNIX_S&to=UNIX_S]`
pub async fn usage(signed: Signed) -> Result<Json<Value>, ApiError> {
    let now_ms = Clock::now().now_ms;
    let (from, to) = span(signed.param("from"), signed.param("to"), now_ms)?;
    let app = &signed.app;
    let r = app.usage_reading(now_ms);
    let (closed, open) = app.usage.minutes(from, to, r);
    let mut totals = Totals::default();
    closed.iter().chain(open.iter()).for_each(|m| totals.add(m));
    let minutes: Vec<MinuteView> = closed.iter().map(|m| view(m, false)).chain(open.iter().map(|m| view(m, true))).collect();
    let day = (now_ms - now_ms % DAY_MS) / 60_000;
    Ok(Json(json!({
        "from": from * 60,
        "to": to * 60,
        "kept_since": app.usage.kept_since().map(|m| m * 60),
        "minutes": minutes,
        "totals": totals,
        "today": app.usage.totals(day, now_ms / 60_000, r),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let now_ms = 1_800_000_000_000;
        assert_eq!(span(None, None, now_ms).unwrap(), ((1_800_000_000 - 3_600) / 60, 1_800_000_000 / 60));
        assert_eq!(span(Some("60"), Some("180"), now_ms).unwrap(), (1, 3));
        assert!(span(Some("x"), None, now_ms).is_err());
        assert!(span(Some("200"), Some("100"), now_ms).is_err());
        assert!(span(Some("0"), Some("604800"), now_ms).is_ok());
        assert!(span(Some("0"), Some("604801"), now_ms).is_err());
        assert!(span(None, Some("-1"), now_ms).is_err());
    }
}
