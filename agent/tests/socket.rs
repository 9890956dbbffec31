//! The whole agent (`sonde_agent::run`) against a stand-in relay on a real local socket: the
//! URL, the Pusher handshake, the snapshot, a session's backfill and samples, and the close
//! with 1000 on shutdown. Tests against the real relay live in the workspace's `tests/`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sonde_agent::config::{Config, Secret, TokenSource};
use sonde_protocol::frame::{ClientFrame, Incoming};
use sonde_protocol::sonde::{Backfill, Sample, Snapshot, EVENT_BACKFILL, EVENT_SAMPLE, EVENT_SNAPSHOT};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const CHANNEL: &str = "private-sonde-host.web1";

struct Relay {
    ws: WebSocketStream<TcpStream>,
}

impl Relay {
    async fn say(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    async fn heard(&mut self) -> Message {
        timeout(Duration::from_secs(10), self.ws.next()).await.expect("the agent went quiet").expect("socket ended").unwrap()
    }

    /// The next client event, skipping pings.
    async fn event(&mut self) -> Incoming {
        loop {
            let Message::Text(text) = self.heard().await else { continue };
            let inc = Incoming::parse(&text).unwrap();
            if inc.event.starts_with("client-") {
                assert_eq!(inc.channel.as_deref(), Some(CHANNEL));
                return inc;
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test]
#[allow(clippy::result_large_err)] // tungstenite's handshake callback signature, not ours
async fn streams_a_session_over_a_real_socket_and_closes_with_1000() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = std::env::temp_dir().join(format!("sonde-agent-socket-test-{}", std::process::id()));
    let config = Config {
        relay: format!("ws://{}", listener.local_addr().unwrap()),
        ca_file: None,
        key: "app-key".into(),
        token: TokenSource::Value(Secret::new("header.claims.signature")),
        token_in_args: false,
        host: "web1".into(),
        state_dirs: vec![state.clone()],
        statsd: None,
        anonymous: false,
        usage_statistics: true,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(sonde_agent::run(config, async {
        let _ = stopped.await;
    }));

    let (tcp, _) = listener.accept().await.unwrap();
    let mut uri = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        uri = req.uri().to_string();
        Ok(resp)
    })
    .await
    .unwrap();
    assert!(uri.starts_with("/app/app-key?protocol=7&client=sonde-agent&version="), "{uri}");
    assert!(uri.ends_with("&token=header.claims.signature"), "{uri}");
    let mut relay = Relay { ws };

    relay.say(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.1\",\"activity_timeout\":120}"}"#.into()).await;
    let Message::Text(sub) = relay.heard().await else { panic!("expected subscribe") };
    let ClientFrame::Subscribe(sub) = ClientFrame::parse(&sub).unwrap() else { panic!("expected subscribe") };
    assert_eq!(sub.channel, CHANNEL);
    relay.say(format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":"{CHANNEL}","data":"{{}}"}}"#)).await;

    let snap = relay.event().await;
    assert_eq!(snap.event, EVENT_SNAPSHOT);
    let snap: Snapshot = serde_json::from_value(snap.data_value()).unwrap();
    assert_eq!(snap.host.as_deref(), Some("web1"));
    assert_eq!(snap.install_id.len(), 32);

    // Let the ring gather a couple of seconds, then start a session.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let lease = now_ms() + 30_000;
    relay
        .say(format!(
            r#"{{"event":"sonde:session","channel":"{CHANNEL}","data":"{{\"state\":\"started\",\"id\":\"s1\",\"interval_ms\":1000,\"lease_until\":{lease}}}"}}"#
        ))
        .await;
    let first = relay.event().await;
    assert_eq!(first.event, EVENT_BACKFILL);
    let backfill: Backfill = serde_json::from_value(first.data_value()).unwrap();
    assert_eq!((backfill.session.0.as_str(), backfill.part), ("s1", 0));
    let mut last_seq = backfill.samples.last().map(|s| s.seq).unwrap_or(0);
    assert!(last_seq >= 1, "two seconds of history");
    for _ in 1..backfill.parts {
        let part: Backfill = serde_json::from_value(relay.event().await.data_value()).unwrap();
        last_seq = part.samples.last().unwrap().seq;
    }
    for _ in 0..2 {
        let ev = relay.event().await;
        assert_eq!(ev.event, EVENT_SAMPLE);
        let sample: Sample = serde_json::from_value(ev.data_value()).unwrap();
        assert_eq!(sample.seq, last_seq + 1);
        assert_eq!(sample.ts % 1000, 0);
        assert!(sample.metrics.contains_key("cpu.user_pct") && !sample.top.is_empty());
        last_seq = sample.seq;
    }

    stop.send(()).unwrap();
    loop {
        if let Message::Close(frame) = relay.heard().await {
            assert_eq!(u16::from(frame.unwrap().code), 1000);
            break;
        }
    }
    drop(relay);
    timeout(Duration::from_secs(5), agent).await.unwrap().unwrap().unwrap();
    std::fs::remove_dir_all(state).unwrap();
}
