//! TLS for the bench's connections (`--tls`): a rustls client that trusts the CA given with
//! `--tls-ca` (or the system's roots), and one stream type for plain and TLS sockets.
//!
//! All connections made with one [`TlsClient`] share its rustls config, so they share its
//! session cache: a connection after the first resumes with a ticket from an earlier one, as
//! a browser or SDK reconnecting to the same host does. [`TlsClient::without_resumption`]
//! gives the same client with no cache, for measuring full handshakes.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use rustls::client::Resumption;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A TLS client for one server name.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// The host as given, for URLs and `Host` headers.
    host: String,
    /// The CA file's PEM, for the HTTP publisher (reqwest builds its own rustls config).
    pub ca_pem: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("name", &self.name).field("private_ca", &self.ca_pem.is_some()).finish()
    }
}

impl TlsClient {
    /// Trusts the certificates in `ca_file`, or the system's roots without one; verifies the
    /// server as `host` (a DNS name or an IP address, as in the certificate).
    pub fn new(ca_file: Option<&Path>, host: &str) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        let ca_pem = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    roots.add(cert.with_context(|| format!("{}: not a PEM certificate", path.display()))?)?;
                }
                anyhow::ensure!(!roots.is_empty(), "{}: no certificate in it", path.display());
                Some(Arc::new(pem))
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                None
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_no_client_auth();
        let name = ServerName::try_from(host.to_owned()).with_context(|| format!("{host}: not a server name"))?;
        Ok(Self { config: Arc::new(config), name, host: host.to_owned(), ca_pem })
    }

    /// The host as a URL writes it (an IPv6 address in brackets).
    pub fn host(&self) -> String {
        if self.host.parse::<std::net::Ipv6Addr>().is_ok() {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The same trust with a session cache of its own, as one client that reconnects has.
    /// (One cache shared by many connections keeps 8 tickets at most for a server, fewer
    /// than the handshakes a load generator has in flight.)
    pub fn with_own_cache(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(8);
        Self { config: Arc::new(config), ..self.clone() }
    }

    /// The same trust, with no session cache: every handshake is a full one.
    pub fn without_resumption(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::disabled();
        Self { config: Arc::new(config), ..self.clone() }
    }

    pub async fn connect(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(self.config.clone()).connect(self.name.clone(), tcp).await
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the TLS handshake resumed an earlier session (false for plain TCP).
    pub fn resumed(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(t) => t.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }

    /// The TCP socket underneath (a stalled consumer is read raw at the end: only its byte
    /// count matters then).
    pub fn into_tcp(self) -> TcpStream {
        match self {
            Self::Plain(s) => s,
            Self::Tls(t) => t.into_inner().0,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{Endpoint, Message, WsConn};
    use rustls_pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS websocket server made from `tls-certs` output: answers each upgrade with one text
    /// message and a close.
    async fn server(dir: &Path) -> std::net::SocketAddr {
        let chain = CertificateDer::pem_file_iter(dir.join(crate::certs::CERT)).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join(crate::certs::KEY)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut s) = acceptor.accept(tcp).await else { continue };
                let mut req = vec![0u8; 1024];
                let n = s.read(&mut req).await.unwrap();
                assert!(req[..n].starts_with(b"GET /app/k HTTP/1.1\r\nHost: 127.0.0.1:"));
                let mut out = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
                out.extend_from_slice(&[0x81, 2, b'h', b'i', 0x88, 0]);
                s.write_all(&out).await.unwrap();
                s.flush().await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn websockets_over_tls_resume_through_the_shared_cache() {
        let dir = std::env::temp_dir().join(format!("sonde-bench-tls-{}", rand::random::<u64>()));
        crate::certs::write(&dir, &["127.0.0.1".into()]).unwrap();
        let addr = server(&dir).await;
        let tls = TlsClient::new(Some(&dir.join(crate::certs::CA)), "127.0.0.1").unwrap();
        let ep = |tls: &TlsClient| Endpoint { server: addr, source: None, recv_buffer: None, tls: Some(tls.clone()) };
        let mut resumed = Vec::new();
        let own = tls.with_own_cache();
        for client in [&tls, &tls, &tls.without_resumption(), &own, &own] {
            let mut c = WsConn::connect(ep(client), &format!("127.0.0.1:{}", addr.port()), "/app/k").await.unwrap();
            assert_eq!(c.read().await.unwrap(), Message::Text(b"hi"));
            resumed.push(c.resumed());
        }
        assert_eq!(resumed, [false, true, false, false, true], "the second resumes the first's session; no cache, no resumption; an own cache starts empty");
        // A client that trusts the system's roots only refuses the throwaway CA.
        let strict = TlsClient::new(None, "127.0.0.1").unwrap();
        assert!(WsConn::connect(ep(&strict), "127.0.0.1", "/app/k").await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
