//! The task that drains one lane of a target: waits for events, gathers a batch, POSTs it
//! signed, and retries it with backoff until it is accepted or the retry window is over. One
//! request at a time per lane keeps each channel's events in order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::CONTENT_TYPE;
use sonde_protocol::webhook::{self, HEADER_KEY, HEADER_SIGNATURE};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::event::Event;
use super::target::Target;

/// What every sender of an app needs. No `Debug`: it holds the app secret.
pub(super) struct Delivery {
    pub key: Arc<str>,
    pub secret: Arc<str>,
    /// How long the first event of a batch waits for others; zero sends one per request.
    pub batch: Duration,
    pub max_batch: usize,
    pub timeout: Duration,
    pub backoff: Backoff,
}

/// Most bytes of events in one request (beyond one event).
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Most bytes of a response body read (so its connection can be reused) before it is dropped.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How one request ended, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Ok,
    Status(u16),
    Timeout,
    Connect,
    /// The TLS handshake failed: most often a certificate not trusted or expired.
    Tls,
    Error,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Status(s) if s < 200 => "http_1xx",
            Self::Status(s) if s < 400 => "http_3xx",
            Self::Status(s) if s < 500 => "http_4xx",
            Self::Status(_) => "http_5xx",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Error => "error",
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Drains lane `lane` of `target` until `stop`; then sends what is left once, without retries.
pub(super) async fn run(target: Arc<Target>, lane: usize, d: Arc<Delivery>, client: reqwest::Client, stop: CancellationToken) {
    let l = &target.lanes[lane];
    loop {
        while l.is_empty() {
            tokio::select! {
                () = l.wake.notified() => {}
                () = stop.cancelled() => return flush(&target, lane, &d, &client).await,
            }
        }
        if !d.batch.is_zero() && l.len() < d.max_batch {
            tokio::select! {
                () = tokio::time::sleep(d.batch) => {}
                () = stop.cancelled() => {}
            }
        }
        let events = take(&target, lane, &d);
        if !deliver(&target, &d, &client, &events, &stop).await {
            return flush(&target, lane, &d, &client).await;
        }
    }
}

fn take(target: &Target, lane: usize, d: &Delivery) -> Vec<Arc<Event>> {
    let events = target.lanes[lane].take(if d.batch.is_zero() { 1 } else { d.max_batch }, MAX_REQUEST_BYTES);
    target.metrics.queued.dec_by(events.len() as i64);
    events
}

/// Sends one batch until it is accepted or the retry window is over. Returns false when
/// `stop` came while waiting to retry (the batch is then dropped and counted).
async fn deliver(target: &Target, d: &Delivery, client: &reqwest::Client, events: &[Arc<Event>], stop: &CancellationToken) -> bool {
    let first = Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let outcome = post(target, d, client, events).await;
        target.metrics.request(outcome.label());
        if outcome == Outcome::Ok {
            delivered(target, events);
            return true;
        }
        attempt = attempt.saturating_add(1);
        target.metrics.failed(outcome.label(), events.len(), attempt);
        let Some(delay) = d.backoff.next(attempt, first.elapsed(), rand::random::<f64>()) else {
            target.metrics.dropped("retry_window", events.len() as u64);
            tracing::warn!(url = %target.shown, events = events.len(), attempts = attempt, last = outcome.label(), "webhook: the target failed for the whole retry window; events dropped");
            return true;
        };
        target.metrics.retries.inc();
        tracing::debug!(url = %target.shown, attempt, outcome = outcome.label(), delay_ms = delay.as_millis() as u64, "webhook: retrying");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => {
                target.metrics.dropped("shutdown", events.len() as u64);
                return false;
            }
        }
    }
}

fn delivered(target: &Target, events: &[Arc<Event>]) {
    target.metrics.delivered.inc_by(events.len() as u64);
    for e in events {
        target.metrics.delivery.observe(e.at.elapsed().as_secs_f64());
    }
}

/// One attempt. The body is built afresh with the current `time_ms`, so a late retry is not
/// refused by backends that check its age (the Python SDK allows 5 minutes).
pub(super) async fn post(target: &Target, d: &Delivery, client: &reqwest::Client, events: &[Arc<Event>]) -> Outcome {
    let jsons: Vec<&str> = events.iter().map(|e| &*e.json).collect();
    let body = webhook::body(now_ms(), &jsons);
    let signature = webhook::signature(&d.secret, &body);
    let request = client
        .post(target.url.clone())
        .timeout(d.timeout)
        .headers(target.headers.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(HEADER_KEY, &*d.key)
        .header(HEADER_SIGNATURE, signature)
        .body(body);
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Outcome::Timeout,
        Err(e) => return failed(target, &e),
    };
    let status = response.status();
    let mut read = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if read + chunk.len() <= MAX_RESPONSE_BYTES => read += chunk.len(),
            Ok(Some(_)) | Ok(None) => break,
            Err(e) if e.is_timeout() => return Outcome::Timeout,
            Err(_) => break,
        }
    }
    if status.is_success() {
        Outcome::Ok
    } else {
        Outcome::Status(status.as_u16())
    }
}

/// A request that got no response. The TLS cause is logged on its own: the request's error
/// would show the URL, which may hold a credential.
fn failed(target: &Target, e: &reqwest::Error) -> Outcome {
    if let Some(cause) = super::tls::tls_cause(e) {
        tracing::warn!(url = %target.shown, %cause, "webhook: TLS to the target failed");
        return Outcome::Tls;
    }
    if e.is_connect() {
        Outcome::Connect
    } else {
        Outcome::Error
    }
}

/// After `stop`: what is still queued goes out once each, without retries.
async fn flush(target: &Target, lane: usize, d: &Delivery, client: &reqwest::Client) {
    loop {
        let events = take(target, lane, d);
        if events.is_empty() {
            return;
        }
        let outcome = post(target, d, client, &events).await;
        target.metrics.request(outcome.label());
        if outcome == Outcome::Ok {
            delivered(target, &events);
        } else {
            target.metrics.dropped("shutdown", events.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn outcome_labels() {
        let labels: Vec<&str> = [
            Outcome::Ok,
            Outcome::Status(101),
            Outcome::Status(302),
            Outcome::Status(404),
            Outcome::Status(503),
            Outcome::Timeout,
            Outcome::Connect,
            Outcome::Tls,
            Outcome::Error,
        ]
        .iter()
        .map(|o| o.label())
        .collect();
        assert_eq!(labels, ["ok", "http_1xx", "http_3xx", "http_4xx", "http_5xx", "timeout", "connect", "tls", "error"]);
    }
}
