//! `kill -USR1 <relay>`: the flight recorder's events into the log, for an operator with a
//! shell but no token at hand.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Recorder;

/// Events a dump writes at most (every kind's ring, newest last).
const DUMP_MAX: usize = 10_000;

/// Writes every recorded event to the log, one line each.
pub fn dump(recorder: &Recorder) -> usize {
    let events = recorder.latest(None, DUMP_MAX);
    tracing::warn!(events = events.len(), recording = recorder.enabled(), "flight recorder dump (SIGUSR1)");
    for e in &events {
        let line = serde_json::to_string(e).unwrap_or_default();
        tracing::warn!(event = %line, "flight recorder");
    }
    events.len()
}

/// Dumps the recorder on every SIGUSR1 until `stop`. The handler is installed before this
/// returns, so a signal sent once the relay is up never takes SIGUSR1's default (ending it).
pub fn dump_on_sigusr1(recorder: Arc<Recorder>, stop: CancellationToken) -> Option<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGUSR1: no flight recorder dumps");
            return None;
        }
    };
    Some(async move {
        loop {
            tokio::select! {
                got = usr1.recv() => match got {
                    Some(()) => { dump(&recorder); }
                    None => return,
                },
                () = stop.cancelled() => return,
            }
        }
    })
}
