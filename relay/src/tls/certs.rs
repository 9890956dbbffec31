//! The certificate and key: read from PEM files, checked, and swapped in place when they are
//! renewed on disk, so new handshakes get the new certificate while established connections
//! carry on untouched.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Largest PEM file read: a chain of a few certificates is a few KiB.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads a whole PEM file, refusing anything absurdly large before reading it.
fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!("{what} {}: larger than {MAX_PEM_BYTES} bytes", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// Parses a certificate chain and its private key, and checks that they belong together.
/// Errors name the file and the problem, never the key's bytes.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let cert_pem = read_pem(cert, "certificate")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {}: not a PEM certificate chain ({e})", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("certificate {}: no CERTIFICATE block in it", cert.display()));
    }
    let key_pem = read_pem(key, "key")?;
    // The parser's own error never quotes the input, only what kind of problem it met.
    let der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("key {}: no PKCS#8, PKCS#1 or SEC1 private key in it ({e})", key.display()))?;
    drop(key_pem);
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|_| format!("key {}: not an RSA, ECDSA (P-256, P-384) or Ed25519 key this relay can sign with", key.display()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!("key {} does not belong to the certificate {}", key.display(), cert.display()),
        other => format!("certificate {}: {other}", cert.display()),
    })?;
    Ok(Arc::new(certified))
}

/// What identifies one version of the two files: a renewal changes at least one of these.
pub type Stamp = [(Option<SystemTime>, u64); 2];

pub fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [one(cert), one(key)]
}

/// Hands every handshake the current certificate; a reload swaps it for the next ones.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn new(first: Arc<CertifiedKey>) -> Self {
        Self { current: RwLock::new(first) }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    pub fn replace(&self, next: Arc<CertifiedKey>) {
        *self.current.write() = next;
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
