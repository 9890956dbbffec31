//! One bounded outbound queue per connection.
//!
//! Publishers push shared `Bytes` and never wait: the connection's writer task drains the
//! queue and writes everything queued in one go. When a connection falls behind, sample
//! frames are conflated (the latest per channel wins); control frames are never dropped:
//! if they would overflow the bound, the connection is asked to close with a reconnect code.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;
use sonde_protocol::{ChannelName, CloseCode, SocketId};
use tokio::sync::Notify;

use super::meter::{mark_ms, since_mark};
use super::{Delivery, Meter, Overflow, Urgency};

/// What the writer should do after writing the frames it drained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: CloseCode,
    pub reason: String,
}

/// What the writer puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text message's payload: the writer frames it.
    Text(Bytes),
    /// Bytes already framed (control frames, the rest of a partly written frame).
    Raw(Bytes),
}

/// How much of a run of frames a socket took at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    All,
    /// `frames` whole frames, and of the next one the bytes in `rest` are still to write
    /// (already framed), when it was cut.
    Part {
        frames: usize,
        rest: Option<Bytes>,
    },
    /// Nothing now (would block, or an error the writer task will meet).
    Nothing,
    /// Every frame is taken, but the writer holds bytes of them the socket did not take (a TLS
    /// writer's ciphertext, which must not be made again): only the connection's task may
    /// write next, once it has written those.
    Held,
}

/// Writing to the socket without waiting, from whichever thread publishes. The edge provides
/// it; the core only calls it when nothing is queued and no write is in progress, so frames
/// stay in order.
pub trait DirectWrite: Send + Sync {
    /// Writes `frames` in order, in one system call, as far as the socket takes them: text
    /// payloads that the writer frames, or (`raw`) bytes already framed.
    fn try_write(&self, frames: &[Bytes], raw: bool) -> Written;
}

enum Queued {
    Frame(Bytes),
    /// A frame that a newer one of the same channel may replace while it waits.
    Sample(ChannelName, Bytes),
    Raw(Bytes),
}

impl Queued {
    fn len(&self) -> usize {
        match self {
            Self::Frame(b) | Self::Sample(_, b) | Self::Raw(b) => b.len(),
        }
    }
    fn into_outgoing(self) -> Outgoing {
        match self {
            Self::Frame(b) | Self::Sample(_, b) => Outgoing::Text(b),
            Self::Raw(b) => Outgoing::Raw(b),
        }
    }
}

struct Inner {
    queue: VecDeque<Queued>,
    bytes: usize,
    close: Option<CloseRequest>,
    /// The connection's writer holds frames taken from the queue and is writing them.
    writing: bool,
    /// When the writer last took the queue (`mark_ms`): how long an overflowing reader has
    /// not been reading. In the padding after `writing`, so it costs no memory.
    taken_at: u32,
}

/// Outcome of a push, for the publisher's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// A queued sample of the same channel was replaced by this one.
    Conflated,
    /// The connection is closing (or was just asked to): the frame was not queued.
    Refused,
}

pub struct Outbox {
    // A std-style mutex: held for a few instructions (or one non-blocking write), never
    // across an await.
    inner: Mutex<Inner>,
    notify: Notify,
    limit: usize,
    direct: OnceLock<Arc<dyn DirectWrite>>,
    /// Who is told of queue depths and overflows, and which socket this is.
    meter: OnceLock<(Arc<dyn Meter>, SocketId)>,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner { queue: VecDeque::new(), bytes: 0, close: None, writing: false, taken_at: mark_ms() }),
            notify: Notify::new(),
            limit,
            direct: OnceLock::new(),
            meter: OnceLock::new(),
        }
    }

    /// Reports this connection's queue depths and overflow to `meter`.
    pub fn set_meter(&self, meter: Arc<dyn Meter>, socket: SocketId) {
        let _ = self.meter.set((meter, socket));
    }

    /// Lets publishers write to the socket themselves when nothing waits before them.
    pub fn set_direct(&self, direct: Arc<dyn DirectWrite>) {
        let _ = self.direct.set(direct);
    }

    /// Whether a publisher may write to the socket now: nothing queued, nothing being written.
    fn direct_now(&self, inner: &Inner) -> Option<&Arc<dyn DirectWrite>> {
        self.direct.get().filter(|_| inner.queue.is_empty() && !inner.writing)
    }

    /// Queues one frame: a sample may replace an older one of its channel, and an overflow
    /// closes the connection (frames already framed, like pongs, are never refused for size).
    /// The caller notifies the writer.
    fn enqueue(&self, inner: &mut Inner, item: Queued) -> Pushed {
        if inner.close.is_some() {
            return Pushed::Refused;
        }
        if let Queued::Sample(channel, _) = &item {
            if inner.bytes > self.limit / 4 {
                let slot = inner.queue.iter_mut().rev().find(|q| matches!(q, Queued::Sample(c, _) if c == channel));
                if let Some(slot) = slot {
                    let (old, new) = (slot.len(), item.len());
                    *slot = item;
                    inner.bytes = inner.bytes - old + new;
                    return Pushed::Conflated;
                }
            }
        }
        if !matches!(item, Queued::Raw(_)) && inner.bytes + item.len() > self.limit {
            inner.close = Some(CloseRequest { code: CloseCode::OverCapacity, reason: "client is too slow to read its messages".into() });
            if let Some((m, socket)) = self.meter.get() {
                m.overflow(&Overflow { socket: *socket, queued_bytes: inner.bytes, unread: since_mark(inner.taken_at) });
            }
            return Pushed::Refused;
        }
        if inner.bytes == 0 && self.meter.get().is_some() {
            // Unread from here on, until the writer takes it.
            inner.taken_at = mark_ms();
        }
        inner.bytes += item.len();
        inner.queue.push_back(item);
        Pushed::Queued
    }

    /// Writes what the socket takes of `frames` when nothing waits before them (no wake-up of
    /// the connection's task); the rest of a frame cut short is queued. Returns how many
    /// frames are written or queued that way.
    fn write_direct(&self, inner: &mut Inner, frames: &[Bytes], raw: bool) -> usize {
        let Some(direct) = self.direct_now(inner) else { return 0 };
        match direct.try_write(frames, raw) {
            Written::All => frames.len(),
            Written::Part { frames: n, rest: None } => n,
            Written::Part { frames: n, rest: Some(cut) } => {
                inner.bytes += cut.len();
                inner.queue.push_back(Queued::Raw(cut));
                n + 1
            }
            Written::Nothing => 0,
            Written::Held => {
                // An empty frame in the queue: publishers queue behind it, and the task wakes
                // to write what the writer holds before anything else.
                inner.queue.push_back(Queued::Raw(Bytes::new()));
                frames.len()
            }
        }
    }

    /// The one way in for a single frame: written at once when nothing waits before it, else
    /// queued.
    fn push_item(&self, item: Queued) -> Pushed {
        let mut inner = self.inner.lock();
        if inner.close.is_some() {
            return Pushed::Refused;
        }
        let (bytes, raw) = match &item {
            Queued::Frame(b) | Queued::Sample(_, b) => (b, false),
            Queued::Raw(b) => (b, true),
        };
        let pushed = match self.write_direct(&mut inner, std::slice::from_ref(bytes), raw) {
            0 => self.enqueue(&mut inner, item),
            _ => Pushed::Queued,
        };
        let queued = !inner.queue.is_empty() || inner.close.is_some();
        drop(inner);
        if queued {
            self.notify.notify_one();
        }
        pushed
    }

    /// Frames of one channel, in order: written in one system call when nothing waits before
    /// them, and what the socket does not take is queued (`urgency` as for `push_sample`).
    pub fn push_run(&self, channel: &ChannelName, frames: &[Bytes], urgency: Urgency) -> Delivery {
        let mut d = Delivery::default();
        let mut inner = self.inner.lock();
        if inner.close.is_some() {
            d.refused = frames.len();
            return d;
        }
        d.delivered = self.write_direct(&mut inner, frames, false);
        for frame in &frames[d.delivered..] {
            let item = match urgency {
                Urgency::Always => Queued::Frame(frame.clone()),
                Urgency::Conflatable => Queued::Sample(channel.clone(), frame.clone()),
            };
            match self.enqueue(&mut inner, item) {
                Pushed::Queued => d.delivered += 1,
                Pushed::Conflated => d.conflated += 1,
                Pushed::Refused => d.refused += 1,
            }
        }
        let queued = !inner.queue.is_empty() || inner.close.is_some();
        drop(inner);
        if queued {
            self.notify.notify_one();
        }
        d
    }

    /// Queues bytes that are already a whole websocket frame (pongs, close frames).
    pub fn push_raw(&self, frame: Bytes) -> Pushed {
        self.push_item(Queued::Raw(frame))
    }

    /// Queues a frame that must arrive (events, control frames), writing it at once when
    /// nothing waits before it.
    pub fn push(&self, frame: Bytes) -> Pushed {
        self.push_item(Queued::Frame(frame))
    }

    /// Queues a sample: once the queue holds more than a quarter of its bound, a newer
    /// sample replaces a queued one of the same channel instead of queueing behind it.
    pub fn push_sample(&self, channel: &ChannelName, frame: Bytes) -> Pushed {
        self.push_item(Queued::Sample(channel.clone(), frame))
    }

    /// Asks the writer to close the connection after what is already queued.
    pub fn close(&self, code: CloseCode, reason: impl Into<String>) {
        let mut inner = self.inner.lock();
        if inner.close.is_none() {
            inner.close = Some(CloseRequest { code, reason: reason.into() });
        }
        drop(inner);
        self.notify.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.inner.lock().close.is_some()
    }

    /// The connection is closing because it fell too far behind.
    pub fn overflowed(&self) -> bool {
        self.inner.lock().close.as_ref().is_some_and(|c| c.code == CloseCode::OverCapacity)
    }

    /// Resolves when something was pushed since the last drain. The hub never awaits: this
    /// hands the connection's task a future to await.
    pub fn ready(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Moves every queued frame into `out` for the writer and returns a pending close
    /// request. Until `finish_writing` says the queue is empty, publishers queue behind them.
    pub fn take(&self, out: &mut Vec<Outgoing>) -> Option<CloseRequest> {
        let mut inner = self.inner.lock();
        if let (Some((m, _)), true) = (self.meter.get(), inner.bytes > 0) {
            m.depth(inner.bytes);
            inner.taken_at = mark_ms();
        }
        out.extend(inner.queue.drain(..).map(Queued::into_outgoing));
        inner.bytes = 0;
        // Most connections are idle most of the time: keep no queue storage between bursts.
        inner.queue = VecDeque::new();
        if !out.is_empty() {
            inner.writing = true;
        }
        inner.close.clone()
    }

    /// The writer wrote what it took. Returns true when more is queued (take it next).
    pub fn finish_writing(&self) -> bool {
        let mut inner = self.inner.lock();
        let more = !inner.queue.is_empty();
        inner.writing = more;
        more
    }

    /// Takes the payloads of every queued frame (tests and tools without a socket).
    pub fn drain(&self, out: &mut Vec<Bytes>) -> Option<CloseRequest> {
        let mut taken = Vec::new();
        let close = self.take(&mut taken);
        self.finish_writing();
        out.extend(taken.into_iter().map(|o| match o {
            Outgoing::Text(b) | Outgoing::Raw(b) => b,
        }));
        close
    }

    pub fn queued_bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(o: &Outbox) -> (Vec<Bytes>, Option<CloseRequest>) {
        let mut v = Vec::new();
        let c = o.drain(&mut v);
        (v, c)
    }

    #[test]
    fn frames_keep_their_order() {
        let o = Outbox::new(1000);
        o.push(Bytes::from_static(b"a"));
        o.push(Bytes::from_static(b"b"));
        let (v, c) = drained(&o);
        assert_eq!(v, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert_eq!(c, None);
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn samples_conflate_only_when_behind() {
        let ch = ChannelName::parse("private-sonde-host.a").unwrap();
        let other = ChannelName::parse("private-sonde-host.b").unwrap();
        let o = Outbox::new(100);
        assert_eq!(o.push_sample(&ch, Bytes::from(vec![b'1'; 15])), Pushed::Queued);
        assert_eq!(o.push_sample(&ch, Bytes::from(vec![b'2'; 15])), Pushed::Queued, "not behind yet");
        assert_eq!(o.push_sample(&ch, Bytes::from(vec![b'3'; 15])), Pushed::Conflated, "over a quarter: latest wins");
        assert_eq!(o.push_sample(&other, Bytes::from(vec![b'x'; 15])), Pushed::Queued, "other channels keep theirs");
        let (v, c) = drained(&o);
        assert_eq!(v.len(), 3);
        assert_eq!(v[1], Bytes::from(vec![b'3'; 15]));
        assert!(c.is_none());
    }

    #[test]
    fn overflowing_control_frames_close_instead_of_dropping() {
        let o = Outbox::new(10);
        assert_eq!(o.push(Bytes::from(vec![0; 8])), Pushed::Queued);
        assert_eq!(o.push(Bytes::from(vec![0; 8])), Pushed::Refused);
        assert_eq!(o.push(Bytes::from(vec![0; 1])), Pushed::Refused, "nothing is queued after a close");
        let (v, c) = drained(&o);
        assert_eq!(v.len(), 1);
        assert_eq!(c.unwrap().code, CloseCode::OverCapacity);
    }
}
