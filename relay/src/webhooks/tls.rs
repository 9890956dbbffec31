//! https targets: the system's trusted roots (reqwest's native roots) plus the certificates of
//! an optional private CA (`ca_file` in `[webhooks]`), and telling a TLS failure from other
//! connection failures, so the metrics and the log name a certificate problem as one.

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
    fn a_tls_error_is_found_under_io_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer));
        let outer = std::io::Error::other(io);
        assert!(matches!(tls_cause(&outer), Some(rustls::Error::InvalidCertificate(_))));
        assert!(tls_cause(&std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).is_none());
    }
}
