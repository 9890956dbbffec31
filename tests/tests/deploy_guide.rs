//! docs/deploy.md against the relay: every relay configuration it shows parses and validates
//! (the config refuses unknown keys, so a renamed setting fails here), and its TLS
//! configuration, with test certificates in place of Let's Encrypt's, serves wss://.

use sonde_relay::config::{AppConfig, Config};
use sonde_tests::agent::TempDir;
use sonde_tests::tls::{KeyKind, TestCa};
use sonde_tests::{Client, TestRelay};

const GUIDE: &str = include_str!("../../docs/deploy.md");

/// The guide's TOML blocks that configure the relay (the agent's has `relay =`).
fn relay_blocks() -> Vec<&'static str> {
    let mut blocks = Vec::new();
    let mut rest = GUIDE;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed code block");
        if !body[..end].contains("relay = ") {
            blocks.push(&body[..end]);
        }
        rest = &body[end + 3..];
    }
    blocks
}

/// Parses a block as the relay's config file, with the certificate paths pointing at
/// `cert` and `key`, and gives it an app (the guide's blocks leave the apps out).
fn parse(block: &str, dir: &TempDir, cert: &std::path::Path, key: &std::path::Path) -> Config {
    let text = block
        .replace("/etc/sonde-relay/tls/fullchain.pem", &cert.display().to_string())
        .replace("/etc/sonde-relay/tls/privkey.pem", &key.display().to_string());
    let path = dir.0.join("relay.toml");
    std::fs::write(&path, text).unwrap();
    let mut config = Config::from_toml_file(&path).unwrap_or_else(|e| panic!("{e}\n{block}"));
    config.apps.push(AppConfig::from_flag("1:key:secret").unwrap());
    config.validate().unwrap_or_else(|e| panic!("{e}\n{block}"));
    config
}

#[test]
fn every_relay_configuration_in_the_guide_is_accepted() {
    let dir = TempDir::new("guide");
    let blocks = relay_blocks();
    assert!(blocks.len() >= 4, "the guide's relay configurations were found: {}", blocks.len());
    for block in blocks {
        parse(block, &dir, "c.pem".as_ref(), "k.pem".as_ref());
    }
}

#[tokio::test]
async fn the_guides_tls_configuration_serves_wss() {
    let dir = TempDir::new("guide-tls");
    let ca = TestCa::new();
    let (cert, key) = ca.issue(KeyKind::EcdsaP256).write_to(&dir.0);
    let block = relay_blocks().into_iter().find(|b| b.contains("[tls]")).expect("a [tls] block");
    let mut config = parse(block, &dir, &cert, &key);
    assert!(config.tls.is_some());
    // The guide's addresses are a server's; the test binds loopback.
    config.metrics_bind = None;
    let relay = TestRelay::with_config(config).await;
    let url = format!("wss://127.0.0.1:{}/app/key?protocol=7&client=rust-test&version=1.0", relay.addr.port());
    let mut client = Client::connect_tls(&url, ca.client_config()).await;
    assert!(!client.socket_id.is_empty());
    client.subscribe("public-guide").await;
}
