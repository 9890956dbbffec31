use super::*;
use sonde_protocol::frame::Incoming;

fn lanes() -> Arc<Lanes> {
    Lanes::start(Some(2)).unwrap()
}

fn hub() -> Hub {
    Hub::new(HubOptions { subscription_count: false, max_presence_members: 2, cache_ttl: Duration::from_secs(60) }, lanes())
}

/// A connection on lane `n % 2`, as `Lanes::assign` would spread them.
fn conn(n: u64) -> Arc<Conn> {
    Conn::new(SocketId::new(n, n), 1 << 20, n as usize)
}

fn events(c: &Conn) -> Vec<(String, serde_json::Value)> {
    let mut v = Vec::new();
    c.outbox.drain(&mut v);
    v.iter()
        .map(|b| {
            let i = Incoming::parse(std::str::from_utf8(b).unwrap()).unwrap();
            let d = i.data_value();
            (i.event, d)
        })
        .collect()
}

fn names(c: &Conn) -> Vec<String> {
    events(c).into_iter().map(|(e, _)| e).collect()
}

fn user(id: &str) -> Option<PresenceUser> {
    Some(PresenceUser { user_id: id.into(), user_info: Some(format!("{{\"name\":\"{id}\"}}").into()) })
}

#[test]
fn presence_counts_distinct_users() {
    let h = hub();
    let ch = ChannelName::parse("presence-room").unwrap();
    let (a1, a2, b) = (conn(1), conn(2), conn(3));
    h.subscribe(&a1, &ch, user("a")).unwrap();
    assert_eq!(names(&a1), ["pusher_internal:subscription_succeeded"]);
    h.subscribe(&a2, &ch, user("a")).unwrap();
    assert_eq!(names(&a1), Vec::<String>::new(), "no member_added for a second tab of the same user");
    let ev = events(&a2);
    assert_eq!(ev[0].1["presence"]["count"], 1);
    h.subscribe(&b, &ch, user("b")).unwrap();
    assert_eq!(names(&a1), ["pusher_internal:member_added"]);
    assert_eq!(names(&a2), ["pusher_internal:member_added"]);
    let ev = events(&b);
    assert_eq!(ev[0].1["presence"]["ids"], serde_json::json!(["a", "b"]));
    assert_eq!(h.channel_info(&ch), ChannelInfo { subscription_count: 3, user_count: Some(2) });
    assert_eq!(h.subscribe(&conn(4), &ch, user("c")), Err(SubscribeError::PresenceFull(2)));
    h.unsubscribe(&a1, &ch);
    assert_eq!(names(&b), Vec::<String>::new(), "a is still there through a2");
    h.unsubscribe(&a2, &ch);
    let ev = events(&b);
    assert_eq!(ev, [("pusher_internal:member_removed".to_owned(), serde_json::json!({"user_id":"a"}))]);
    assert_eq!(h.presence_users(&ch), vec![Arc::<str>::from("b")]);
}

#[test]
fn publish_skips_the_excluded_socket_and_empty_channels_vanish() {
    let h = hub();
    let ch = ChannelName::parse("news").unwrap();
    let (a, b) = (conn(1), conn(2));
    h.subscribe(&a, &ch, None).unwrap();
    h.subscribe(&b, &ch, None).unwrap();
    events(&a);
    events(&b);
    let d = h.publish(&ch, Publish { frame: Bytes::from_static(b"{\"event\":\"x\",\"data\":\"1\"}"), except: Some(a.socket_id), urgency: Urgency::Always });
    assert_eq!(d.delivered, 1);
    assert_eq!(names(&a), Vec::<String>::new());
    assert_eq!(names(&b), ["x"]);
    h.unsubscribe(&a, &ch);
    h.unsubscribe(&b, &ch);
    assert!(h.channels("").is_empty());
    assert_eq!(h.publish(&ch, Publish::to_all(Bytes::from_static(b"{}"))), Delivery::default());
}

#[test]
fn cache_channels_replay_the_last_event() {
    let h = hub();
    let ch = ChannelName::parse("cache-price").unwrap();
    let a = conn(1);
    h.subscribe(&a, &ch, None).unwrap();
    assert_eq!(names(&a), ["pusher_internal:subscription_succeeded", "pusher:cache_miss"]);
    h.publish(&ch, Publish::to_all(ServerFrame::Event { event: "p", channel: Some("cache-price"), data_json: "\"1\"", user_id: None }.encode()));
    h.publish(&ch, Publish::to_all(ServerFrame::Event { event: "p", channel: Some("cache-price"), data_json: "\"2\"", user_id: None }.encode()));
    h.unsubscribe(&a, &ch);
    let b = conn(2);
    h.subscribe(&b, &ch, None).unwrap();
    let ev = events(&b);
    assert_eq!(ev[1], ("p".to_owned(), serde_json::json!(2)));
}

#[test]
fn signin_watchlist_and_terminate() {
    let h = hub();
    let (a, b) = (conn(1), conn(2));
    h.register(a.clone());
    h.register(b.clone());
    let success = || ServerFrame::SigninSuccess { user_data: "{}" }.encode();
    h.signin(&a, "alice".into(), vec!["bob".into()], success()).unwrap();
    assert_eq!(names(&a), ["pusher:signin_success", "pusher_internal:subscription_succeeded"]);
    h.signin(&b, "bob".into(), vec![], success()).unwrap();
    assert_eq!(names(&b), ["pusher:signin_success", "pusher_internal:subscription_succeeded"]);
    let ev = events(&a);
    assert_eq!(ev[0].0, "pusher_internal:watchlist_events");
    assert_eq!(ev[0].1, serde_json::json!({"events":[{"name":"online","user_ids":["bob"]}]}));
    assert_eq!(h.signin(&b, "bob".into(), vec![], success()), Err(SigninError::AlreadySignedIn));
    let ch = ChannelName::server_to_user("bob").unwrap();
    h.unregister(&b, [ch]);
    let ev = events(&a);
    assert_eq!(ev[0].1, serde_json::json!({"events":[{"name":"offline","user_ids":["bob"]}]}));
    assert_eq!(h.terminate_user("alice"), 1);
    assert!(a.outbox.is_closing());
}

#[test]
fn subscription_count_is_opt_in_and_skips_presence() {
    let h = Hub::new(HubOptions { subscription_count: true, max_presence_members: 10, cache_ttl: Duration::from_secs(1) }, lanes());
    let ch = ChannelName::parse("private-x").unwrap();
    let (a, b) = (conn(1), conn(2));
    h.subscribe(&a, &ch, None).unwrap();
    h.subscribe(&b, &ch, None).unwrap();
    let ev = events(&a);
    assert_eq!(ev.last().unwrap(), &("pusher_internal:subscription_count".to_owned(), serde_json::json!({"subscription_count":2})));
    let p = ChannelName::parse("presence-x").unwrap();
    h.subscribe(&a, &p, user("a")).unwrap();
    assert_eq!(names(&a), ["pusher_internal:subscription_succeeded"]);
}

/// A socket that takes a few frames, then a part of one, then nothing for a while: every
/// path of a direct write (all, part, none) meets the queue behind it.
struct FlakySocket {
    written: parking_lot::Mutex<Vec<u8>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl DirectWrite for FlakySocket {
    fn try_write(&self, frames: &[Bytes], _raw: bool) -> Written {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut w = self.written.lock();
        match call % 5 {
            0 | 1 => {
                frames.iter().for_each(|f| w.extend_from_slice(f));
                Written::All
            }
            2 if frames[0].len() > 3 => {
                w.extend_from_slice(&frames[0][..3]);
                Written::Part { frames: 0, rest: Some(frames[0].slice(3..)) }
            }
            _ => Written::Nothing,
        }
    }
}

/// What reached a flaky socket, directly or through the queue, as one byte string.
fn received(c: &Conn, sock: &FlakySocket) -> Vec<u8> {
    let mut queued = Vec::new();
    c.outbox.drain(&mut queued);
    let mut all = sock.written.lock().clone();
    sock.written.lock().clear();
    // The queue only ever holds what comes after the socket's bytes.
    queued.iter().for_each(|b| all.extend_from_slice(b));
    all
}

#[test]
fn large_fan_outs_keep_every_connections_order_through_the_lanes() {
    let h = hub();
    let ch = ChannelName::parse("big").unwrap();
    let socks: Vec<_> = (0..40).map(|_| Arc::new(FlakySocket { written: Default::default(), calls: Default::default() })).collect();
    let conns: Vec<_> = (0..40u64).map(|n| conn(n + 100)).collect();
    for (c, s) in conns.iter().zip(&socks) {
        h.subscribe(c, &ch, None).unwrap();
        c.outbox.drain(&mut Vec::new());
        c.outbox.set_direct(s.clone());
    }
    // Publishes from two threads at once would have no order to keep; one publisher does.
    let mut expected: Vec<Vec<u8>> = vec![Vec::new(); 40];
    for i in 0..300u64 {
        let frame = Bytes::from(format!("[{i}]"));
        let except = (i % 7 == 0).then(|| conns[(i % 40) as usize].socket_id);
        let d = h.publish(&ch, Publish { frame: frame.clone(), except, urgency: Urgency::Always });
        let present = if i <= 150 { 40 } else { 16 };
        let excluded = usize::from(i % 7 == 0 && ((i % 40) as usize) < present);
        assert_eq!(d.delivered, present - excluded);
        for (n, c) in conns.iter().enumerate() {
            // The last 24 leave after publish 150 and keep what came while they were there.
            if Some(c.socket_id) != except && (n < 16 || i <= 150) {
                expected[n].extend_from_slice(&frame);
            }
        }
        // Then the channel shrinks to the direct path while lane jobs may still be in flight.
        if i == 150 {
            for c in &conns[16..] {
                h.unsubscribe(c, &ch);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.lanes().backlog() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for (n, (c, s)) in conns.iter().zip(&socks).enumerate() {
        assert_eq!(String::from_utf8(received(c, s)).unwrap(), String::from_utf8(expected[n].clone()).unwrap(), "connection {n}");
    }
}
