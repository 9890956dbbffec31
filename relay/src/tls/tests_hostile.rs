//! Hostile bytes where a ClientHello should be: random bytes, and real ClientHellos with
//! bytes flipped, in pieces of any size. Each case ends in an error or a wait for more, never
//! a panic, and never keeps more than its bound.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::server::UnbufferedServerConnection;

use super::state::{TlsState, MAX_PARTIAL};
use super::tests::configs;

/// A real client's first flight (its ClientHello record).
fn client_hello(config: std::sync::Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut client = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Feeds `bytes` to a fresh server in pieces of random sizes; true if it refused them.
fn feed(config: &std::sync::Arc<rustls::ServerConfig>, bytes: &mut [u8], rng: &mut StdRng) -> bool {
    let mut st = TlsState::new(UnbufferedServerConnection::new(config.clone()).unwrap());
    let mut out = Vec::new();
    let piece = rng.gen_range(1..=64);
    for chunk in bytes.chunks_mut(piece) {
        match st.receive(chunk, &mut out, &mut |_| panic!("plaintext before any handshake")) {
            Err(_) => return true,
            Ok(_) => assert!(st.partial.len() <= MAX_PARTIAL, "kept {} bytes", st.partial.len()),
        }
    }
    false
}

#[test]
fn random_and_corrupted_client_hellos_end_in_an_error_or_a_wait_never_a_panic() {
    let (server, client) = configs();
    let hello = client_hello(client);
    let mut rng = StdRng::seed_from_u64(0x7115);
    let mut refused = 0;
    for case in 0..3000 {
        let mut bytes = if case % 3 == 0 {
            let len = rng.gen_range(0..2048);
            (0..len).map(|_| rng.gen()).collect::<Vec<u8>>()
        } else {
            let mut b = hello.clone();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..b.len());
                b[at] ^= 1 << rng.gen_range(0..8);
            }
            b
        };
        if case % 3 == 0 && bytes.len() > 3 {
            // Most cases look like a handshake record, so the parser gets past the header.
            bytes[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        }
        refused += usize::from(feed(&server, &mut bytes, &mut rng));
    }
    assert!(refused > 1000, "most corrupted hellos are refused: {refused}");
    // And the untouched hello is taken: the server answers it.
    let mut st = TlsState::new(UnbufferedServerConnection::new(server).unwrap());
    let mut out = Vec::new();
    let mut bytes = hello;
    st.receive(&mut bytes, &mut out, &mut |_| {}).expect("a real ClientHello");
    assert!(out.first() == Some(&0x16), "a ServerHello record");
}
