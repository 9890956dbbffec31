//! Usage counts fed from the relay's counters: read once a second into each app's minutes
//! (a closed minute announced to the other nodes), and today's totals for the relay page.
//! `http::usage` answers `GET /apps/{id}/usage` from the same readings (`App::usage_reading`).

use crate::apps::Apps;
use crate::bus::Msg;
use crate::insight::usage::{Minute, Totals, DAY_MS};
use crate::sessions::Clock;

/// Once a second: every app's counters into its open minute; a minute just closed goes to
/// the other nodes (unless nothing at all happened in it).
pub fn tick(apps: &Apps) {
    let now_ms = Clock::now().now_ms;
    for app in apps.iter() {
        if let Some(m) = app.usage.sample(app.usage_reading(now_ms)) {
            if m != (Minute { minute: m.minute, ..Minute::default() }) {
                app.announce(Msg::Usage { usage: m });
            }
        }
    }
}

/// Every app's totals since midnight (UTC), for the relay page.
pub fn today(apps: &Apps) -> Totals {
    let now_ms = Clock::now().now_ms;
    let (from, to) = ((now_ms - now_ms % DAY_MS) / 60_000, now_ms / 60_000);
    let mut all = Totals::default();
    apps.iter().for_each(|a| all.add_app(&a.usage.totals(from, to, a.usage_reading(now_ms))));
    all
}
