use std::time::Duration;

use sonde_protocol::sonde::{Backfill, Sample, SessionId, SessionState, Snapshot};
use tokio::task::JoinHandle;

use super::*;
use crate::custom::MinuteTotals;
use crate::install::InstallId;
use crate::tick::{Key, Tick};
use crate::ShutdownTrigger;

const START_MS: u64 = 1_700_000_000_000;

struct Harness {
    ring: SharedRing,
    latest: watch::Sender<u64>,
    link: mpsc::Sender<LinkEvent>,
    out: mpsc::Receiver<Outbound>,
    clock: Clock,
    seq: u64,
    trigger: ShutdownTrigger,
    task: JoinHandle<()>,
}

impl Harness {
    fn spawn(with_snapshots: bool) -> Self {
        let ring: SharedRing = Arc::new(Mutex::new(Ring::new(crate::ring::RING_CAPACITY)));
        let (latest, latest_rx) = watch::channel(0);
        let (link, link_rx) = mpsc::channel(16);
        let (out_tx, out) = mpsc::channel(1024);
        let clock = Clock::virtual_at(START_MS);
        let snapshots = with_snapshots.then(|| {
            let own = crate::own::PerMinute::new(crate::own::Sources { recorder: crate::Recorder::new(), statsd: None });
            SnapshotSource::new(InstallId::random(), Some("web1".into()), crate::snapshot::host_facts(), MinuteTotals::default(), own)
        });
        let core = Core { ring: ring.clone(), latest: latest_rx, out: out_tx, clock: clock.clone(), snapshots };
        let (trigger, shutdown) = crate::shutdown_channel();
        let task = tokio::spawn(core.run(link_rx, shutdown));
        Self { ring, latest, link, out, clock, seq: 0, trigger, task }
    }

    /// Records one tick for the current second, as the sampler would.
    fn record_tick(&mut self) {
        self.seq += 1;
        let mut t = Tick { ts: self.clock.now_ms() / 1000 * 1000, seq: self.seq, ..Tick::default() };
        t.push(&Key::from("cpu.idle_pct"), 90.0);
        t.push(&Key::from("mem.used_pct"), 40.0);
        lock(&self.ring).record(t);
        self.latest.send_replace(self.seq);
    }

    /// Lets one second pass: a tick, then whatever the core sends.
    async fn second(&mut self) -> Vec<Outbound> {
        tokio::time::advance(Duration::from_secs(1)).await;
        self.record_tick();
        self.settle().await
    }

    async fn send(&mut self, ev: LinkEvent) -> Vec<Outbound> {
        self.link.send(ev).await.unwrap();
        self.settle().await
    }

    /// Runs the core until it waits again, and collects what it sent.
    async fn settle(&mut self) -> Vec<Outbound> {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        let mut got = Vec::new();
        while let Ok(o) = self.out.try_recv() {
            got.push(o);
        }
        got
    }

    fn directive(&self, state: SessionState, id: &str, lease_s: u64) -> LinkEvent {
        let lease_until = self.clock.now_ms() + lease_s * 1000;
        LinkEvent::Directive(SessionDirective { state, id: SessionId(id.into()), interval_ms: 1000, lease_until, for_socket: None })
    }

    async fn stop(self) {
        self.trigger.fire();
        self.task.await.unwrap();
    }
}

fn samples(out: &[Outbound]) -> Vec<u64> {
    out.iter().filter(|o| o.event == EVENT_SAMPLE).map(|o| serde_json::from_str::<Sample>(&o.data).unwrap().seq).collect()
}

fn backfilled(out: &[Outbound]) -> Vec<u64> {
    out.iter().filter(|o| o.event == EVENT_BACKFILL).flat_map(|o| serde_json::from_str::<Backfill>(&o.data).unwrap().samples).map(|s| s.seq).collect()
}

#[tokio::test(start_paused = true)]
async fn start_sends_backfill_then_live_samples() {
    let mut h = Harness::spawn(false);
    for _ in 0..10 {
        h.second().await;
    }
    assert!(h.send(LinkEvent::Subscribed).await.is_empty(), "nothing leaves outside a session");
    assert!(h.second().await.is_empty());
    let out = h.send(h.directive(SessionState::Started, "s1", 30)).await;
    assert_eq!(backfilled(&out), (1..=10).collect::<Vec<_>>(), "the history as backfill");
    assert_eq!(samples(&out), [11], "the newest tick at once as the first live sample");
    let mut live = Vec::new();
    for _ in 0..3 {
        live.extend(samples(&h.second().await));
    }
    assert_eq!(live, [12, 13, 14]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn renewed_extends_and_stopped_stops() {
    let mut h = Harness::spawn(false);
    h.send(LinkEvent::Subscribed).await;
    h.send(h.directive(SessionState::Started, "s1", 10)).await;
    let mut sent = 0;
    for i in 0..30 {
        if i % 5 == 0 {
            h.send(h.directive(SessionState::Renewed, "s1", 10)).await;
        }
        sent += samples(&h.second().await).len();
    }
    assert_eq!(sent, 30, "renewals keep the session alive past its first lease");
    let out = h.send(h.directive(SessionState::Stopped, "s1", 0)).await;
    assert!(out.is_empty());
    for _ in 0..5 {
        assert!(h.second().await.is_empty(), "no samples after stopped");
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn lease_expiry_without_renewal_stops_by_itself() {
    let mut h = Harness::spawn(false);
    h.send(LinkEvent::Subscribed).await;
    h.send(h.directive(SessionState::Started, "s1", 10)).await;
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(samples(&h.second().await).len());
    }
    assert_eq!(seen[..9], [1; 9]);
    assert_eq!(seen[10..], [0; 10], "stopped once the lease passed: {seen:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn duplicate_start_does_not_backfill_twice() {
    let mut h = Harness::spawn(false);
    for _ in 0..5 {
        h.second().await;
    }
    h.send(LinkEvent::Subscribed).await;
    let first = h.send(h.directive(SessionState::Started, "s1", 30)).await;
    assert_eq!(backfilled(&first).len(), 4);
    assert_eq!(samples(&first).len(), 1);
    h.second().await;
    let again = h.send(h.directive(SessionState::Started, "s1", 30)).await;
    assert!(again.is_empty());
    assert_eq!(samples(&h.second().await), [7]);
    let other = h.send(h.directive(SessionState::Started, "s2", 30)).await;
    assert_eq!(backfilled(&other).len(), 6, "a new session id gets its own backfill");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn offline_sends_nothing_and_resumes_after_resubscribe() {
    let mut h = Harness::spawn(false);
    h.send(LinkEvent::Subscribed).await;
    h.send(h.directive(SessionState::Started, "s1", 60)).await;
    assert_eq!(samples(&h.second().await).len(), 1);
    h.send(LinkEvent::Down).await;
    assert!(h.second().await.is_empty());
    h.send(LinkEvent::Subscribed).await;
    assert_eq!(samples(&h.second().await), [3]);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn snapshots_once_a_minute_outside_sessions_only() {
    let mut h = Harness::spawn(true);
    h.second().await;
    assert!(h.send(LinkEvent::Subscribed).await.is_empty(), "one tick is too few for rates: the snapshot waits");
    let out = h.second().await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, EVENT_SNAPSHOT);
    let snap: Snapshot = serde_json::from_str(&out[0].data).unwrap();
    assert_eq!(snap.host.as_deref(), Some("web1"));
    assert_eq!(snap.summary.cpu_pct, 10.0);
    let mut snapshots = 0;
    for _ in 0..120 {
        snapshots += h.second().await.iter().filter(|o| o.event == EVENT_SNAPSHOT).count();
    }
    assert_eq!(snapshots, 2);
    h.send(h.directive(SessionState::Started, "s1", 600)).await;
    for _ in 0..120 {
        assert!(h.second().await.iter().all(|o| o.event == EVENT_SAMPLE), "no snapshot during a session");
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn usage_statistics_off_means_no_snapshots() {
    let mut h = Harness::spawn(false);
    assert!(h.send(LinkEvent::Subscribed).await.is_empty());
    for _ in 0..130 {
        assert!(h.second().await.is_empty());
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_backfill_directive_resends_the_history_for_one_viewer() {
    let mut h = Harness::spawn(false);
    for _ in 0..5 {
        h.second().await;
    }
    h.send(LinkEvent::Subscribed).await;
    let started = h.send(h.directive(SessionState::Started, "s1", 30)).await;
    let mut live = samples(&started);
    live.extend(samples(&h.second().await));
    let last_live = *live.last().expect("live samples flow");
    let mut d = match h.directive(SessionState::Backfill, "s1", 30) {
        LinkEvent::Directive(d) => d,
        other => panic!("{other:?}"),
    };
    d.for_socket = Some("123.456".into());
    let out = h.send(LinkEvent::Directive(d.clone())).await;
    let parts: Vec<Backfill> = out.iter().filter(|o| o.event == EVENT_BACKFILL).map(|o| serde_json::from_str(&o.data).unwrap()).collect();
    assert!(!parts.is_empty());
    assert!(parts.iter().all(|p| p.for_socket.as_deref() == Some("123.456")));
    let seqs: Vec<u64> = parts.iter().flat_map(|p| p.samples.iter().map(|s| s.seq)).collect();
    assert_eq!(seqs, (1..=last_live).collect::<Vec<_>>(), "everything streamed so far, the live samples follow");
    d.id = SessionId("other".into());
    let out = h.send(LinkEvent::Directive(d)).await;
    assert!(!backfilled(&out).is_empty() && samples(&out).is_empty(), "the relay names the session: followed, no restart");
    assert_eq!(samples(&h.second().await).len(), 1, "the stream goes on");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_renewal_after_the_lease_ran_out_brings_the_stream_back_at_once() {
    let mut h = Harness::spawn(false);
    for _ in 0..3 {
        h.second().await;
    }
    h.send(LinkEvent::Subscribed).await;
    h.send(h.directive(SessionState::Started, "s1", 5)).await;
    let mut quiet = 0;
    for _ in 0..10 {
        if samples(&h.second().await).is_empty() {
            quiet += 1;
        }
    }
    assert!(quiet >= 4, "the lease ran out while the relay was silent");
    // The relay comes back and renews the session it still holds.
    let out = h.send(h.directive(SessionState::Renewed, "s1", 30)).await;
    assert_eq!(samples(&out), [h.seq], "the newest sample at once, not at the next second");
    assert_eq!(*backfilled(&out).last().unwrap(), h.seq - 1, "history up to it fills the gap");
    assert_eq!(samples(&h.second().await), [h.seq]);
    h.stop().await;
}
