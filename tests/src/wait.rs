//! Waiting for something to happen, instead of sleeping for a guess of how long it takes.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it holds; panics naming `what` once `within` has passed. A generous
/// `within` costs nothing when all is well (the wait ends as soon as the check holds) and keeps
/// the test steady on a loaded machine.
pub async fn eventually<F: Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "waited {within:?} in vain for {what}");
        tokio::time::sleep(POLL).await;
    }
}
