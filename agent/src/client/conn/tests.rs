use sonde_protocol::frame::{ClientFrame, Incoming};
use sonde_protocol::sonde::{SessionState, EVENT_SAMPLE};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use super::*;
use crate::ShutdownTrigger;

/// The agent's end of an in-memory socket.
struct Pipe {
    to_relay: UnboundedSender<Message>,
    from_relay: UnboundedReceiver<Message>,
}

impl Transport for Pipe {
    type Error = String;

    async fn send(&mut self, msg: Message) -> Result<(), String> {
        self.to_relay.send(msg).map_err(|e| e.to_string())
    }

    async fn recv(&mut self) -> Option<Result<Message, String>> {
        self.from_relay.recv().await.map(Ok)
    }
}

/// The relay's end, plus the agent-side channels around the connection.
struct FakeRelay {
    to_agent: UnboundedSender<Message>,
    from_agent: UnboundedReceiver<Message>,
    events: mpsc::Receiver<LinkEvent>,
    outbound: mpsc::Sender<Outbound>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Ended>,
}

const CHANNEL: &str = "private-sonde-host.web1";

impl FakeRelay {
    fn start() -> Self {
        let (to_relay, from_agent) = unbounded_channel();
        let (to_agent, from_relay) = unbounded_channel();
        let (events_tx, events) = mpsc::channel(16);
        let (outbound, mut outbound_rx) = mpsc::channel(256);
        let (trigger, mut shutdown) = crate::shutdown_channel();
        let task = tokio::spawn(async move {
            let channel = ChannelName::parse(CHANNEL).unwrap();
            let mut pacer = Pacer::default();
            let mut pipe = Pipe { to_relay, from_relay };
            let mut link =
                Link { channel: &channel, events: &events_tx, outbound: &mut outbound_rx, shutdown: &mut shutdown, pacer: &mut pacer, subscribed: false };
            drive(&mut pipe, &mut link).await
        });
        Self { to_agent, from_agent, events, outbound, trigger, task }
    }

    fn say(&self, text: &str) {
        self.to_agent.send(Message::text(text.to_owned())).unwrap();
    }

    async fn heard(&mut self) -> Message {
        timeout(Duration::from_secs(120), self.from_agent.recv()).await.expect("the agent said nothing").expect("socket gone")
    }

    async fn heard_text(&mut self) -> String {
        match self.heard().await {
            Message::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Runs the handshake and the subscription.
    async fn establish(&mut self, activity_timeout: u64) {
        self.say(&format!(r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"1.2\",\"activity_timeout\":{activity_timeout}}}"}}"#));
        let ClientFrame::Subscribe(sub) = ClientFrame::parse(&self.heard_text().await).unwrap() else { panic!("expected subscribe") };
        assert_eq!(sub.channel, CHANNEL);
        self.say(&format!(r#"{{"event":"pusher_internal:subscription_succeeded","channel":"{CHANNEL}","data":"{{}}"}}"#));
        assert_eq!(self.events.recv().await, Some(LinkEvent::Subscribed));
    }
}

#[tokio::test(start_paused = true)]
async fn subscribes_then_passes_directives_and_events() {
    let mut r = FakeRelay::start();
    r.establish(120).await;
    r.say(&format!(
        r#"{{"event":"sonde:session","channel":"{CHANNEL}","data":"{{\"state\":\"started\",\"id\":\"s1\",\"interval_ms\":1000,\"lease_until\":99}}"}}"#
    ));
    let Some(LinkEvent::Directive(d)) = r.events.recv().await else { panic!() };
    assert_eq!((d.state, d.id.0.as_str(), d.lease_until), (SessionState::Started, "s1", 99));
    // A directive for another host's channel is not ours to follow.
    r.say(r#"{"event":"sonde:session","channel":"private-sonde-host.db1","data":"{\"state\":\"stopped\",\"id\":\"s1\"}"}"#);
    r.say(r#"{"event":"pusher:ping","data":"{}"}"#);
    assert!(matches!(ClientFrame::parse(&r.heard_text().await).unwrap(), ClientFrame::Pong));
    assert!(r.events.try_recv().is_err());

    r.outbound.send(Outbound { event: EVENT_SAMPLE, data: r#"{"ts":1000}"#.into() }).await.unwrap();
    let ClientFrame::ClientEvent(e) = ClientFrame::parse(&r.heard_text().await).unwrap() else { panic!() };
    assert_eq!((e.event.as_str(), e.channel.as_str()), (EVENT_SAMPLE, CHANNEL));

    r.trigger.fire();
    let Message::Close(Some(frame)) = r.heard().await else { panic!("expected a close frame") };
    assert_eq!(u16::from(frame.code), 1000);
    drop(r.to_agent);
    assert_eq!(r.task.await.unwrap(), Ended::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn pings_after_silence_and_gives_up_without_pong() {
    let mut r = FakeRelay::start();
    r.establish(10).await;
    let start = Instant::now();
    assert!(matches!(ClientFrame::parse(&r.heard_text().await).unwrap(), ClientFrame::Ping));
    assert_eq!(start.elapsed().as_secs(), 10);
    r.say(r#"{"event":"pusher:pong","data":"{}"}"#);
    // Answered: the next ping comes after another quiet spell.
    assert!(matches!(ClientFrame::parse(&r.heard_text().await).unwrap(), ClientFrame::Ping));
    assert_eq!(start.elapsed().as_secs(), 20);
    assert_eq!(r.task.await.unwrap(), Ended::PongTimeout);
    assert_eq!(start.elapsed().as_secs(), 20 + PONG_TIMEOUT.as_secs());
}

#[tokio::test(start_paused = true)]
async fn close_codes_and_refusals_end_the_connection() {
    let r = FakeRelay::start();
    let frame = CloseFrame { code: CloseCode::from(4001), reason: "unknown app".into() };
    r.to_agent.send(Message::Close(Some(frame))).unwrap();
    assert_eq!(r.task.await.unwrap(), Ended::Closed { code: 4001, reason: "unknown app".into() });

    let mut r = FakeRelay::start();
    r.say(r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#);
    r.heard_text().await;
    r.say(&format!(
        r#"{{"event":"pusher:subscription_error","channel":"{CHANNEL}","data":"{{\"error\":\"token does not cover this channel\",\"status\":403}}"}}"#
    ));
    assert_eq!(r.task.await.unwrap(), Ended::Rejected("token does not cover this channel".into()));

    let r = FakeRelay::start();
    assert!(matches!(r.task.await.unwrap(), Ended::Handshake(_)), "silence after connecting times out");
}

#[tokio::test(start_paused = true)]
async fn client_events_are_paced() {
    let mut r = FakeRelay::start();
    r.establish(120).await;
    for i in 0..260 {
        r.outbound.send(Outbound { event: EVENT_SAMPLE, data: format!(r#"{{"seq":{i}}}"#) }).await.unwrap();
    }
    let start = Instant::now();
    let mut at = Vec::new();
    for i in 0..260 {
        let text = r.heard_text().await;
        let inc = Incoming::parse(&text).unwrap();
        assert_eq!(inc.data.unwrap()["seq"], i, "in order");
        at.push(start.elapsed().as_secs_f64());
    }
    assert_eq!(at[99], 0.0, "the first 100 go as a burst");
    let last = at[259];
    assert!((1.95..=2.05).contains(&last), "160 more at 80/s: last at {last}s");
    r.trigger.fire();
}
