//! The certificates of a private CA, trusted besides the system's store: the agent's
//! `--ca-file` (the relay's certificate may chain to it) and the relay's `[webhooks] ca_file`
//! (a webhook receiver's may). Read once at start, so a wrong path stops the program with a
//! clear message before it ever connects. A crate of its own so that both can use it without
//! `protocol` (no I/O) reading files.

use std::io::Read;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// A CA bundle is a few KiB; the system's whole bundle is about 200 KiB.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("cannot read the CA file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the CA file {0} is larger than 1 MiB")]
    TooLarge(PathBuf),
    #[error("the CA file {path} is not PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("the CA file {0} holds no certificate (expected -----BEGIN CERTIFICATE-----)")]
    Empty(PathBuf),
}

/// The certificates in the PEM file at `path` (other PEM sections are skipped).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let read = |e| CaError::Read { path: path.to_owned(), source: e };
    let mut bytes = Vec::new();
    std::fs::File::open(path).map_err(read)?.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(CaError::TooLarge(path.to_owned()));
    }
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<_, _>>().map_err(|e| CaError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(CaError::Empty(path.to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syntactically valid PEM block; its contents are not checked until a handshake.
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";

    #[test]
    fn reads_certificates_and_names_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("sonde-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, format!("# comment\n{PEM}{PEM}")).unwrap();
        assert_eq!(read_ca_file(&path).unwrap().len(), 2);
        std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(matches!(read_ca_file(&path), Err(CaError::Empty(_))));
        std::fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAEC\n").unwrap();
        assert!(matches!(read_ca_file(&path), Err(CaError::Pem { .. })));
        std::fs::write(&path, vec![b'a'; 1024 * 1024 + 1]).unwrap();
        assert!(matches!(read_ca_file(&path), Err(CaError::TooLarge(_))));
        std::fs::remove_file(&path).unwrap();
        let err = read_ca_file(&path).unwrap_err().to_string();
        assert!(err.contains("ca.pem"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
