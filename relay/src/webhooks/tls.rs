//! https targets: the system's trusted roots (reqwest's native roots) plus the certificates of
//! an optional private CA (`ca_file` in `[webhooks]`), and telling a TLS failure from other
//! connection failures, so the metrics and the log name a certificate problem as one.

use std::path::Path;

/// The certificates of the PEM file at `path` (read by `sonde_ca`, as the agent reads its
/// `--ca-file`); `Err` says what is wrong, for the config error.
pub(super) fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = sonde_ca::read_ca_file(path).map_err(|e| format!("webhooks: ca_file: {e}"))?;
    certs.iter().map(|c| reqwest::Certificate::from_der(c).map_err(|e| format!("webhooks: ca_file {}: {e}", path.display()))).collect()
}

/// The TLS error under a failed request, if TLS is what failed. `io::Error::source` skips the
/// error it wraps, so the walk goes into an `io::Error` through `get_ref` instead.
pub(super) fn tls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("sonde-webhook-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_owned()]).unwrap();
        std::fs::write(&path, ca.cert.pem()).unwrap();
        assert_eq!(read_ca_file(&path).unwrap().len(), 1);
        std::fs::write(&path, "no certificate here\n").unwrap();
        assert!(read_ca_file(&path).unwrap_err().contains("no certificate"));
        std::fs::write(&path, vec![b'a'; 1024 * 1024 + 1]).unwrap();
        assert!(read_ca_file(&path).unwrap_err().contains("1 MiB"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(read_ca_file(&path).unwrap_err().contains("ca.pem"));
    }

    #[test]
    fn a_tls_error_is_found_under_io_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        let outer = std::io::Error::other(io);
        assert!(matches!(tls_cause(&outer), Some(rustls::Error::InvalidCertificate(_))));
        assert!(tls_cause(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).is_none());
    }
}
