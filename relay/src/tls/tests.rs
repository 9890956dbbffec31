//! The TLS writer and reader over a real TLS connection on loopback: a socket that stops
//! taking bytes, ciphertext kept and written once, in order, and plaintext read back.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{TlsReader, TlsSocket, TlsWriter};
use crate::hub::{DirectWrite, Outbox, Outgoing, Written};
use crate::net::Source;

type Client = tokio_rustls::client::TlsStream<TcpStream>;

/// A server config with a self-signed certificate for 127.0.0.1, and a client trusting it.
pub(super) fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A TLS connection: the relay's side as a `TlsSocket` (with a small send buffer, so it
/// fills quickly) and a client trusting a self-signed certificate.
async fn pair() -> (Arc<TlsSocket>, Client) {
    let (server, client) = configs();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    socket2::SockRef::from(&accepted).set_send_buffer_size(4096).unwrap();
    socket2::SockRef::from(&tcp).set_recv_buffer_size(4096).unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let (server, client) = tokio::join!(super::handshake::handshake(accepted, server), tokio_rustls::TlsConnector::from(client).connect(name, tcp));
    (Arc::new(server.expect("handshake")), client.unwrap())
}

/// Frame `i`'s payload: its number, then filler.
fn frame(i: u32) -> Bytes {
    let mut b = i.to_be_bytes().to_vec();
    b.resize(1000, b'x');
    Bytes::from(b)
}

/// Reads `n` unmasked text frames from the client and returns their numbers.
async fn read_frames(client: &mut Client, n: usize) -> Vec<u32> {
    let mut got = Vec::new();
    while got.len() < n {
        let mut h = [0u8; 2];
        client.read_exact(&mut h).await.unwrap();
        assert_eq!(h[0], 0x81, "a final text frame");
        let len = match h[1] {
            126 => {
                let mut l = [0u8; 2];
                client.read_exact(&mut l).await.unwrap();
                usize::from(u16::from_be_bytes(l))
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).await.unwrap();
        got.push(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]));
    }
    got
}

#[tokio::test]
async fn ciphertext_the_socket_did_not_take_is_kept_in_order_and_written_once() {
    let (tls, mut client) = pair().await;
    let writer = TlsWriter(tls.clone());
    // Publishers write runs of frames until the socket stops taking them.
    let mut sent = 0u32;
    let held = loop {
        let run: Vec<Bytes> = (sent..sent + 8).map(frame).collect();
        let w = writer.try_write(&run, false);
        assert!(matches!(w, Written::All | Written::Held), "a TLS writer takes every frame: {w:?}");
        sent += 8;
        if w == Written::Held {
            break sent;
        }
        assert!(sent < 100_000, "the socket never filled");
    };
    // While ciphertext waits, nothing is written directly: new frames queue in the outbox.
    assert_eq!(writer.try_write(&[frame(held)], false), Written::Nothing);
    // The connection's task writes what is held, then the queued frame, as the peer reads.
    let reader = tokio::spawn(async move {
        let got = read_frames(&mut client, held as usize + 1).await;
        (got, client)
    });
    tokio::time::timeout(Duration::from_secs(10), writer.write(&[Outgoing::Text(frame(held))])).await.expect("written once the peer reads").unwrap();
    let (got, _client) = reader.await.unwrap();
    assert_eq!(got, (0..=held).collect::<Vec<_>>(), "every frame once, in order");
    // With room again, publishers write directly.
    assert_eq!(writer.try_write(&[frame(0)], false), Written::All);
}

#[tokio::test]
async fn an_outbox_over_a_full_tls_socket_queues_behind_the_held_ciphertext() {
    let (tls, mut client) = pair().await;
    let outbox = Outbox::new(1 << 30);
    outbox.set_direct(Arc::new(TlsWriter(tls.clone())));
    let mut n = 0u32;
    // The marker of held ciphertext is empty: the first frame queued behind it ends this.
    while outbox.queued_bytes() == 0 && n < 100_000 {
        outbox.push(frame(n));
        n += 1;
    }
    for i in n..n + 10 {
        outbox.push(frame(i));
    }
    let mut taken = Vec::new();
    outbox.take(&mut taken);
    assert_eq!(taken.first(), Some(&Outgoing::Raw(Bytes::new())), "the marker of held ciphertext comes first");
    assert_eq!(taken.len(), 12, "the frames pushed after it wait behind it");
    let reader = tokio::spawn(async move { read_frames(&mut client, n as usize + 10).await });
    tokio::time::timeout(Duration::from_secs(10), TlsWriter(tls).write(&taken)).await.unwrap().unwrap();
    assert_eq!(reader.await.unwrap(), (0..n + 10).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_reader_hands_on_exactly_the_plaintext_sent_and_then_the_end() {
    let (tls, mut client) = pair().await;
    let message: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let sender = {
        let message = message.clone();
        tokio::spawn(async move {
            client.write_all(&message).await.unwrap();
            client.shutdown().await.unwrap();
            client
        })
    };
    let mut reader = TlsReader(tls);
    let mut buf = BytesMut::new();
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| reader.poll_fill(cx, &mut buf))).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
    }
    assert_eq!(buf.len(), message.len());
    assert!(buf[..] == message[..]);
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn garbage_after_the_handshake_is_an_error_not_a_hang() {
    let (tls, client) = pair().await;
    let (tcp, _) = client.into_inner();
    let mut tcp = tcp;
    tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20]).await.unwrap();
    tcp.write_all(&[0xAB; 32]).await.unwrap();
    let mut reader = TlsReader(tls);
    let mut buf = BytesMut::new();
    let got = tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| reader.poll_fill(cx, &mut buf))).await.unwrap();
    assert!(got.is_err(), "a record that does not decrypt ends the connection: {got:?}");
    assert!(buf.is_empty());
}

#[tokio::test]
async fn records_that_arrive_a_byte_at_a_time_are_put_together_and_nothing_is_kept_after() {
    let (tls, client) = pair().await;
    let (mut tcp, mut conn) = client.into_inner();
    tcp.set_nodelay(true).unwrap();
    // Two records' worth of plaintext, sent as ciphertext in pieces of one to seven bytes.
    let message: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
    std::io::Write::write_all(&mut conn.writer(), &message).unwrap();
    let mut cipher = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut cipher).unwrap();
    }
    let trickle = tokio::spawn(async move {
        for (i, piece) in cipher.chunks(7).enumerate() {
            let n = 1 + i % piece.len();
            tcp.write_all(&piece[..n]).await.unwrap();
            tcp.write_all(&piece[n..]).await.unwrap();
            if i % 64 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        tcp
    });
    let mut reader = TlsReader(tls.clone());
    let mut buf = BytesMut::new();
    let mut most_kept = 0;
    while buf.len() < message.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), poll_fn(|cx| reader.poll_fill(cx, &mut buf))).await.unwrap().unwrap();
        assert!(n > 0, "the stream ended early");
        most_kept = most_kept.max(tls.state.lock().partial.len());
    }
    assert!(buf[..] == message[..]);
    assert!(most_kept > 0, "records did arrive in pieces");
    assert!(most_kept <= 17 * 1024, "at most one incomplete record is kept: {most_kept}");
    {
        let st = tls.state.lock();
        assert!(st.partial.is_empty() && st.partial.capacity() == 0, "no buffer is kept between messages");
        assert!(st.held.capacity() == 0 && st.plain.capacity() == 0);
    }
    drop(trickle.await.unwrap());
}

#[tokio::test]
async fn a_peer_that_asks_for_key_updates_and_reads_nothing_is_cut_with_little_held() {
    let (tls, client) = pair().await;
    let (mut tcp, mut conn) = client.into_inner();
    let mut reader = TlsReader(tls.clone());
    let mut buf = BytesMut::new();
    let mut ended = None;
    for _ in 0..20_000 {
        // Each one asks the relay to answer with a key update of its own.
        conn.refresh_traffic_keys().unwrap();
        let mut cipher = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut cipher).unwrap();
        }
        tcp.write_all(&cipher).await.unwrap();
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(50), poll_fn(|cx| reader.poll_fill(cx, &mut buf))).await {
            ended = Some(e);
            break;
        }
        assert!(tls.state.lock().held.len() <= super::state::MAX_HELD_REPLIES + 64 * 1024);
    }
    // rustls refuses a flood of key update requests itself; the reply bound stands behind it.
    ended.expect("the connection ends");
    assert!(buf.is_empty());
}
