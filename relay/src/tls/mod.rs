//! TLS on the public listener: rustls (ring), TLS 1.2 and 1.3, ALPN `http/1.1`, session
//! tickets and a bounded session cache, and certificates reloaded from disk without a restart.
//!
//! Websockets, the HTTP API, the dashboard and `/metrics` are all served over it; the
//! handshake runs under the edge's head deadline and per-address handshake count, and once
//! it is done a websocket connection reads and writes through [`TlsReader`] and
//! [`TlsWriter`], keeping the plaintext path's contracts (direct writes from publishers, no
//! read buffer between messages).

mod certs;
pub mod handshake;
mod socket;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::server::ServerSessionMemoryCache;
use rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

pub use crate::config::TlsConfig;
pub use socket::{TlsReader, TlsSocket, TlsStream};
pub use writer::TlsWriter;

use crate::metrics::Metrics;
use certs::{CertStore, Stamp};

/// The TLS side of a listener: its rustls config and the certificate it hands out.
pub struct Tls {
    pub(crate) server: Arc<ServerConfig>,
    store: Arc<CertStore>,
    files: TlsConfig,
    /// The files' metadata when they were last loaded (or refused).
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.files.cert).field("key", &self.files.key).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate and key and builds the server config; the error says which file
    /// is wrong and how, never what the key holds.
    pub fn load(files: &TlsConfig) -> Result<Arc<Self>, String> {
        let seen = certs::stamp(&files.cert, &files.key);
        let store = Arc::new(CertStore::new(certs::load(&files.cert, &files.key)?));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        server.session_storage = ServerSessionMemoryCache::new(files.session_cache.max(1));
        server.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
        // One TLS 1.3 ticket per handshake (rustls sends two by default): a browser or agent
        // resumes once per reconnect, and each ticket is a record encrypted and written.
        server.send_tls13_tickets = 1;
        Ok(Arc::new(Self { server: Arc::new(server), store, files: files.clone(), seen: Mutex::new(seen) }))
    }

    /// The certificate chain new handshakes get now (its leaf first).
    pub fn current_chain(&self) -> Vec<rustls_pki_types::CertificateDer<'static>> {
        self.store.current().cert.clone()
    }

    /// Loads the files again; on failure the current certificate stays and the reason is
    /// logged. Returns whether the new one took effect.
    pub fn reload(&self, why: &str, metrics: &Metrics) -> bool {
        *self.seen.lock() = certs::stamp(&self.files.cert, &self.files.key);
        match certs::load(&self.files.cert, &self.files.key) {
            Ok(next) => {
                self.store.replace(next);
                metrics.tls_reloads.inc();
                tracing::info!(cert = %self.files.cert.display(), %why, "TLS certificate reloaded");
                true
            }
            Err(error) => {
                metrics.tls_reload_failures.inc();
                tracing::warn!(%error, %why, "TLS certificate renewal not loaded: keeping the current certificate");
                false
            }
        }
    }

    /// Whether the files changed since they were last loaded.
    fn changed(&self) -> bool {
        certs::stamp(&self.files.cert, &self.files.key) != *self.seen.lock()
    }

    /// Reloads on SIGHUP and when the files change (looked at every `reload_poll_ms`). The
    /// signal handler is installed now, before the future is first polled, so a SIGHUP sent
    /// once the relay is up never falls on the default action (ending the process).
    pub fn watch(self: &Arc<Self>, metrics: Arc<Metrics>, stop: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(|e| tracing::warn!(error = %e, "no SIGHUP handler: certificates reload on file changes only")).ok();
        let poll = (self.files.reload_poll_ms > 0).then(|| Duration::from_millis(self.files.reload_poll_ms));
        let tls = self.clone();
        async move {
            let mut tick = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                        tls.reload("SIGHUP", &metrics);
                    }
                    _ = tick.tick(), if poll.is_some() => {
                        if tls.changed() {
                            tls.reload("the files changed", &metrics);
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Without TLS there is nothing to reload, but a SIGHUP (`systemctl reload`, a certbot hook
/// run on the wrong unit) would otherwise take the signal's default and end the relay: it is
/// taken and logged instead. The handler is installed before this returns.
pub fn hangup_without_tls(stop: CancellationToken) -> Option<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| tracing::warn!(error = %e, "no SIGHUP handler")).ok()?;
    Some(async move {
        loop {
            tokio::select! {
                got = hup.recv() => match got {
                    Some(()) => tracing::info!("SIGHUP: nothing to reload (no [tls] configured)"),
                    None => return,
                },
                () = stop.cancelled() => return,
            }
        }
    })
}
