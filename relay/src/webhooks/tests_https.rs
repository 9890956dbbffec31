//! https targets through a real TLS receiver: a certificate of a private CA is trusted once
//! `ca_file` names that CA, and refused (counted as `tls` failures, retried, never delivered)
//! without it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sonde_protocol::webhook::signature;
use sonde_protocol::{ChannelName, SocketId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::tests::{fast, header, read_request, started};
use super::*;

/// A CA written to `dir/ca.pem`, and a server config with a certificate it issued for
/// 127.0.0.1.
fn private_ca(dir: &std::path::Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.pem()).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    (path, Arc::new(config))
}

/// An https receiver answering 200 to every request; each request's headers and body go to
/// the returned channel. Failed handshakes are counted in the returned counter.
async fn https_receiver(
    config: Arc<rustls::ServerConfig>,
) -> (String, mpsc::UnboundedReceiver<(Vec<(String, String)>, String)>, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let counter = refused.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (tx, acceptor, counter) = (tx.clone(), acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    return;
                };
                while let Some(request) = read_request(&mut tls).await {
                    let _ = tx.send(request);
                    if tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx, refused)
}

fn target(url: &str) -> String {
    format!("[[webhooks]]\nurl = \"{url}\"\nevent_types = [\"client_event\"]\n")
}

#[tokio::test]
async fn https_targets_trust_the_configured_ca_and_refuse_others() {
    let dir = std::env::temp_dir().join(format!("sonde-webhook-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_file, server) = private_ca(&dir);
    let (url, mut rx, refused) = https_receiver(server).await;
    let ch = ChannelName::parse("private-a").unwrap();

    // Trusting the private CA: delivered, signed.
    let trusting = WebhookSettings { ca_file: Some(ca_file), ..fast() };
    assert!(trusting.validate().is_ok());
    let (w, stop) = started(&target(&url), 0, &trusting, &Metrics::default()).await;
    w.client_event(&ch, "client-x", "\"1\"", SocketId::new(1, 2), None);
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(header(&headers, "X-Pusher-Signature"), signature("secret", &body));
    assert!(body.contains("client-x"), "{body}");
    stop.cancel();

    // The system's roots alone do not know that CA: TLS failures, retried, nothing delivered.
    let metrics = Metrics::default();
    let (w, stop) = started(&target(&url), 0, &fast(), &metrics).await;
    w.client_event(&ch, "client-x", "\"2\"", SocketId::new(1, 2), None);
    let label = url.trim_start_matches("https://").trim_end_matches("/hooks");
    let series = format!("sonde_webhook_requests_total{{app=\"1\",target=\"{label}\",outcome=\"tls\"}} ");
    let tls_failures = || metrics.encode().lines().find_map(|l| l.strip_prefix(series.as_str())?.parse::<u64>().ok()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(5);
    // The relay counts a refusal as soon as it rejects the certificate; the receiver sees the
    // handshake fail when the alert reaches it, a moment later: wait for both.
    let seen_refused = || refused.load(std::sync::atomic::Ordering::SeqCst);
    while tls_failures() < 3 || seen_refused() < 3 {
        assert!(Instant::now() < deadline, "the receiver saw {} handshakes fail; {}", seen_refused(), metrics.encode());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rx.try_recv().is_err(), "nothing delivered without trust");
    stop.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}
