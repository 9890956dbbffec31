//! TLS to a `wss://` relay: rustls with the *ring* provider, trusting the system's store
//! (what operators expect with an internal CA installed there) plus `--ca-file`. Verification
//! is always on; there is no switch to turn it off.

use std::path::Path;
use std::sync::Arc;

use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::config::{read_ca_file, CaError};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("the CA file {path}: {message}")]
    BadCa { path: String, message: String },
    #[error("no certificate to trust: the system's trust store is empty or unreadable, and no --ca-file was given")]
    NoRoots,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The client configuration for every connection to the relay, built once at start.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(errors = ?native.errors, "some of the system's trusted certificates could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "the system's trusted certificates");
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::BadCa { path: path.display().to_string(), message: e.to_string() })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots).with_no_client_auth();
    // The websocket upgrade is HTTP/1.1; a relay that negotiates ALPN sees it said.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The reason a TLS handshake failed, when `e` is one, in words that name the cause: the
/// certificate's problem and what usually fixes it.
pub fn describe(e: &std::io::Error) -> Option<String> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(c) => format!("certificate not trusted: {c}{}", hint(c)),
        other => format!("TLS handshake failed: {other}"),
    })
}

fn hint(c: &CertificateError) -> &'static str {
    match c {
        CertificateError::UnknownIssuer => " (the relay's certificate is not issued by a CA in the system's trust store or --ca-file)",
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            " (the certificate is for another name than the host in --relay)"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => " (the relay's certificate expired: renew it; check this machine's clock)",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => " (check this machine's clock)",
        // rustls may add causes; its own words are then all there is.
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(e: rustls::Error) -> std::io::Error {
        // As tokio-rustls reports a failed handshake.
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn describes_the_certificate_problem() {
        let unknown = describe(&io(CertificateError::UnknownIssuer.into())).unwrap();
        assert!(unknown.starts_with("certificate not trusted: UnknownIssuer"), "{unknown}");
        assert!(unknown.contains("--ca-file"), "{unknown}");
        let expired = CertificateError::ExpiredContext {
            time: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(2000)),
            not_after: rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(1000)),
        };
        let expired = describe(&io(expired.into())).unwrap();
        assert!(expired.contains("expired") && expired.contains("1000 seconds ago"), "{expired}");
        assert!(describe(&io(CertificateError::NotValidForName.into())).unwrap().contains("another name"));
        let other = describe(&io(rustls::Error::DecryptError)).unwrap();
        assert!(other.starts_with("TLS handshake failed"), "{other}");
        assert_eq!(describe(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)), None);
    }

    #[test]
    fn a_ca_file_that_holds_no_certificate_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("sonde-agent-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        // Valid PEM, but not a certificate: the error names the file.
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n").unwrap();
        let err = client_config(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
