//! The full agent list for a dashboard that just subscribed to the inventory, sent page by
//! page as its socket takes them.
//!
//! Queued all at once, 10,000 hosts (about 6 MB with their snapshots) overflowed the
//! connection's bounded outbox and the relay closed the dashboard (4100) before it saw one
//! host, again at every reconnect. Here the host names are taken at subscribe time and each
//! page is built from the inventory's current state only when the outbox has drained below an
//! eighth of its bound: memory stays at one page per listing dashboard, and changes made
//! meanwhile reach the dashboard either in a later page or as an update after it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::App;
use crate::hub::Conn;
use crate::sessions::inventory::PAGE;

/// How often a listing looks again at an outbox that is still too full.
const POLL: Duration = Duration::from_millis(5);
/// A dashboard that takes longer than this to read the whole list is dropped from the
/// listing (its updates keep coming); bounds how long a stalled reader holds the host names.
const MAX_LISTING: Duration = Duration::from_secs(300);

/// Bytes of one page at most (one entry more when a single entry is larger).
const PAGE_BYTES: usize = 64 * 1024;

/// Queues the full list for `conn`: the first page at once, the rest from a task as the
/// socket drains. Without a runtime (unit tests of the handler) every page is queued at once.
pub fn start(app: &Arc<App>, conn: &Arc<Conn>, limit: usize) {
    app.dashboards.add(conn);
    let hosts = app.inventory.hosts();
    // With the updates' half of the bound (`App::flush_inventory`), what is queued for a
    // dashboard stays under it: an eighth waiting, a page of a quarter, half of updates.
    let sizes = Sizes { page_bytes: PAGE_BYTES.min(limit / 4), low_water: limit / 8 };
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(feed(app.clone(), Arc::downgrade(conn), hosts, sizes));
        }
        Err(_) => {
            let mut from = 0;
            loop {
                let (frame, next) = page(app, &hosts, from, sizes.page_bytes);
                conn.outbox.push(frame);
                if next >= hosts.len() {
                    return;
                }
                from = next;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    page_bytes: usize,
    low_water: usize,
}

/// The page that starts at `hosts[from]`: up to `PAGE` hosts and about `page_bytes`, built
/// from the inventory now (a host forgotten since is left out). Returns where the next page
/// starts; the page is marked last when that is the end.
fn page(app: &App, hosts: &[Arc<str>], from: usize, page_bytes: usize) -> (Bytes, usize) {
    let (mut entries, mut bytes, mut next) = (Vec::new(), 0usize, from);
    while next < hosts.len() && next - from < PAGE && (entries.is_empty() || bytes < page_bytes) {
        if let Some(e) = app.inventory.entries(&hosts[next..=next]).pop() {
            bytes = bytes.saturating_add(e.len());
            entries.push(e);
        }
        next += 1;
    }
    (App::inventory_page(&entries, true, next >= hosts.len()), next)
}

async fn feed(app: Arc<App>, conn: Weak<Conn>, hosts: Vec<Arc<str>>, sizes: Sizes) {
    let deadline = Instant::now() + MAX_LISTING;
    let mut from = 0;
    loop {
        let Some(c) = conn.upgrade() else { return };
        if c.outbox.is_closing() || Instant::now() >= deadline {
            return;
        }
        // The first page goes out at once; later ones when the last ones have drained.
        if from == 0 || c.outbox.queued_bytes() <= sizes.low_water {
            let (frame, next) = page(&app, &hosts, from, sizes.page_bytes);
            c.outbox.push(frame);
            if next >= hosts.len() {
                return;
            }
            from = next;
            continue;
        }
        drop(c);
        tokio::time::sleep(POLL).await;
    }
}
