//! A certificate authority made at test time, certificates it issues for 127.0.0.1 and
//! localhost, and clients (websocket, HTTP, raw TLS) that trust it and nothing else. No key
//! is ever committed: every one is generated when a test runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::agent::TempDir;
use crate::{Api, Client, TestRelay};

/// The kinds of key a relay certificate may have, and how the key file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    /// SEC1 (`EC PRIVATE KEY`), as `openssl ecparam -genkey` writes it.
    EcdsaP384Sec1,
    Ed25519,
    Rsa2048,
    /// PKCS#1 (`RSA PRIVATE KEY`), as older tooling writes it.
    Rsa2048Pkcs1,
}

/// A test certificate authority.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and key issued by the test CA, as PEM.
pub struct Issued {
    /// The leaf then the CA: a full chain, as certbot's `fullchain.pem`.
    pub chain_pem: String,
    pub key_pem: String,
    pub leaf: CertificateDer<'static>,
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs openssl on `input`, returning what it printed (RSA keys: ring cannot make them).
fn openssl(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (needed to make RSA test keys)");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).expect("to openssl");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("openssl ran");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("PEM")
}

impl TestCa {
    pub fn new() -> Self {
        Self::named("Sonde test CA")
    }

    /// A CA with this common name (another name than the relay's CA: a client trusting it
    /// refuses the relay's certificate as from an unknown issuer).
    pub fn named(name: &str) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for 127.0.0.1 and localhost with a new key of `kind`.
    pub fn issue(&self, kind: KeyKind) -> Issued {
        let (key, key_pem) = match kind {
            KeyKind::EcdsaP256 => {
                let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
                let pem = k.serialize_pem();
                (k, pem)
            }
            KeyKind::EcdsaP384Sec1 => {
                let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
                let sec1 = openssl(&["ec"], Some(&k.serialize_pem()));
                assert!(sec1.contains("BEGIN EC PRIVATE KEY"), "{sec1}");
                (k, sec1)
            }
            KeyKind::Ed25519 => {
                let k = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
                let pem = k.serialize_pem();
                (k, pem)
            }
            KeyKind::Rsa2048 | KeyKind::Rsa2048Pkcs1 => {
                let pkcs8 = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], None);
                let k = KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).expect("RSA key");
                let pem = if kind == KeyKind::Rsa2048Pkcs1 { openssl(&["rsa", "-traditional"], Some(&pkcs8)) } else { pkcs8 };
                (k, pem)
            }
        };
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "sonde relay");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf certificate");
        Issued { chain_pem: format!("{}{}", cert.pem(), self.cert.pem()), key_pem, leaf: cert.der().clone() }
    }

    /// A client config trusting this CA only (TLS 1.2 and 1.3; resumption on).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client_config_for(&[&rustls::version::TLS13, &rustls::version::TLS12])
    }

    pub fn client_config_for(&self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("CA root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    /// An HTTP client trusting this CA (and no other).
    pub fn http_client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.pem().as_bytes()).expect("CA for reqwest");
        reqwest::Client::builder().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca).build().expect("https client")
    }
}

impl Issued {
    /// Writes the chain and key to `cert.pem` and `key.pem` in `dir`, each replaced in one
    /// rename (as certbot and cert-manager do), and returns their paths.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        replace_file(&cert, self.chain_pem.as_bytes());
        replace_file(&key, self.key_pem.as_bytes());
        (cert, key)
    }
}

/// Replaces a file's contents at once: written beside it, then renamed over it.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// A relay serving TLS with a certificate of the test CA, and clients for it.
pub struct TlsRelay {
    pub relay: TestRelay,
    pub ca: Arc<TestCa>,
    pub dir: TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsRelay {
    /// A relay with app `1:key:secret`, TLS with a fresh ECDSA certificate, and the config
    /// changed by `tune` first.
    pub async fn spawn(tune: impl FnOnce(&mut sonde_relay::config::Config)) -> Self {
        Self::with_key(KeyKind::EcdsaP256, tune).await
    }

    pub async fn with_key(kind: KeyKind, tune: impl FnOnce(&mut sonde_relay::config::Config)) -> Self {
        let ca = Arc::new(TestCa::new());
        let dir = TempDir::new("tls");
        let (cert, key) = ca.issue(kind).write_to(&dir.0);
        let mut config = sonde_relay::config::Config {
            apps: vec![sonde_relay::config::AppConfig::from_flag("1:key:secret").expect("app")],
            tls: Some(sonde_relay::tls::TlsConfig::new(&cert, &key)),
            ..Default::default()
        };
        tune(&mut config);
        let relay = TestRelay::with_config(config).await;
        Self { relay, ca, dir, cert, key }
    }

    pub fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}/app/key?protocol=7&client=rust-test&version=1.0", self.relay.addr.port())
    }

    /// A websocket client over TLS that has received `connection_established`.
    pub async fn client(&self) -> Client {
        Client::connect_tls(&self.wss_url(), self.ca.client_config()).await
    }

    /// The signed HTTP API over https.
    pub fn api(&self) -> Api {
        let mut api = self.relay.api();
        api.base = format!("https://127.0.0.1:{}", self.relay.addr.port());
        api.http = self.ca.http_client();
        api
    }

    /// A bare TLS connection (no HTTP on it yet).
    pub async fn connect(&self, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
        connect_tls(self.relay.addr, config).await
    }
}

/// A TLS connection to `addr`, checking the certificate for 127.0.0.1.
pub async fn connect_tls(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// The leaf certificate a TLS server at `addr` presents now.
pub async fn served_leaf(addr: std::net::SocketAddr, config: Arc<ClientConfig>) -> CertificateDer<'static> {
    let stream = connect_tls(addr, config).await.expect("TLS handshake");
    let (_, conn) = stream.get_ref();
    conn.peer_certificates().and_then(|c| c.first()).expect("a certificate").clone().into_owned()
}
