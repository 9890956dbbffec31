//! `sonde-bench tls-certs DIR`: a throwaway CA and a server certificate it signed, written as
//! PEM files, so a TLS relay can be measured without a real certificate. The keys are made
//! here and now (ECDSA P-256, what Let's Encrypt hands out by default) and never leave DIR.

use std::path::Path;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// The files written, by name inside the folder.
pub const CA: &str = "ca.pem";
pub const CERT: &str = "cert.pem";
pub const KEY: &str = "key.pem";

/// Writes `ca.pem`, `cert.pem` (the server's chain: its certificate, then the CA's) and
/// `key.pem` (mode 0600) for `names` (DNS names or IP addresses) into `dir`.
pub fn write(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "sonde-bench throwaway CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names.to_vec()).context("a name is neither a DNS name nor an IP address")?;
    leaf.distinguished_name.push(DnType::CommonName, names.first().map_or("localhost", String::as_str));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;

    std::fs::write(dir.join(CA), ca_cert.pem())?;
    std::fs::write(dir.join(CERT), format!("{}{}", cert.pem(), ca_cert.pem()))?;
    write_private(&dir.join(KEY), key.serialize_pem().as_bytes())?;
    Ok(())
}

/// A key file readable by its owner only, from the moment it exists.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn writes_a_chain_its_ca_verifies() {
        let dir = std::env::temp_dir().join(format!("sonde-bench-certs-{}", rand::random::<u64>()));
        write(&dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join(CERT)).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(chain.len(), 2, "leaf then CA");
        let ca: Vec<_> = CertificateDer::pem_file_iter(dir.join(CA)).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(ca[0], chain[1]);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join(KEY)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // A client trusting only ca.pem accepts the leaf for both names.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca[0].clone()).unwrap();
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), rustls::crypto::ring::default_provider().into()).build().unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1"] {
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier.verify_server_cert(&chain[0], &chain[1..], &name, &[], now).unwrap();
        }
        let other = rustls_pki_types::ServerName::try_from("example.com").unwrap();
        assert!(verifier.verify_server_cert(&chain[0], &chain[1..], &other, &[], now).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
