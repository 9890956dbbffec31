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
use sonde_protocol::{ChannelName, CloseCode};
use tokio::sync::Notify;

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

/// How much of a frame a socket took at once.
pub enum Written {
    All,
    /// The rest, already framed.
    Part(Bytes),
    /// Nothing now (would block, or an error the writer task will meet).
    Nothing,
}

/// Writing to the socket without waiting, from whichever thread publishes. The edge provides
/// it; the core only calls it when nothing is queued and no write is in progress, so frames
/// stay in order.
pub trait DirectWrite: Send + Sync {
    fn try_write(&self, frame: &Outgoing) -> Written;
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
    fn outgoing(&self) -> Outgoing {
        match self {
            Self::Frame(b) | Self::Sample(_, b) => Outgoing::Text(b.clone()),
            Self::Raw(b) => Outgoing::Raw(b.clone()),
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
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self { inner: Mutex::new(Inner { queue: VecDeque::new(), bytes: 0, close: None, writing: false }), notify: Notify::new(), limit, direct: OnceLock::new() }
    }

    /// Lets publishers write to the socket themselves when nothing waits before them.
    pub fn set_direct(&self, direct: Arc<dyn DirectWrite>) {
        let _ = self.direct.set(direct);
    }

    /// Writes at once when the queue is empty and no write is in progress: no wake-up of the
    /// connection's task. Returns the item back when it must be queued.
    fn try_direct(&self, inner: &mut Inner, item: Queued) -> Result<(), Queued> {
        let Some(direct) = self.direct.get() else { return Err(item) };
        if !inner.queue.is_empty() || inner.writing {
            return Err(item);
        }
        match direct.try_write(&item.outgoing()) {
            Written::All => Ok(()),
            Written::Part(rest) => {
                inner.bytes += rest.len();
                inner.queue.push_back(Queued::Raw(rest));
                self.notify.notify_one();
                Ok(())
            }
            Written::Nothing => Err(item),
        }
    }

    /// The one way in: a direct write when allowed and possible, else the queue, where a
    /// sample may replace an older one of its channel and an overflow closes the connection
    /// (frames already framed, like pongs, are never refused for size).
    fn push_item(&self, item: Queued, direct: bool) -> Pushed {
        let mut inner = self.inner.lock();
        if inner.close.is_some() {
            return Pushed::Refused;
        }
        let item = match direct {
            true => match self.try_direct(&mut inner, item) {
                Ok(()) => return Pushed::Queued,
                Err(item) => item,
            },
            false => item,
        };
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
            drop(inner);
            self.notify.notify_one();
            return Pushed::Refused;
        }
        inner.bytes += item.len();
        inner.queue.push_back(item);
        drop(inner);
        self.notify.notify_one();
        Pushed::Queued
    }

    /// Queues bytes that are already a whole websocket frame (pongs, close frames).
    pub fn push_raw(&self, frame: Bytes) -> Pushed {
        self.push_item(Queued::Raw(frame), true)
    }

    /// Queues a frame that must arrive (events, control frames), writing it at once when
    /// nothing waits before it.
    pub fn push(&self, frame: Bytes) -> Pushed {
        self.push_item(Queued::Frame(frame), true)
    }

    /// Like `push`; `direct: false` always leaves the write to the connection's task (a large
    /// fan-out is faster spread over the workers than written from one thread).
    pub fn push_with(&self, frame: Bytes, direct: bool) -> Pushed {
        self.push_item(Queued::Frame(frame), direct)
    }

    /// Queues a sample: once the queue holds more than a quarter of its bound, a newer
    /// sample replaces a queued one of the same channel instead of queueing behind it.
    pub fn push_sample(&self, channel: &ChannelName, frame: Bytes, direct: bool) -> Pushed {
        self.push_item(Queued::Sample(channel.clone(), frame), direct)
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

    /// Resolves when something was pushed since the last drain.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Moves every queued frame into `out` for the writer and returns a pending close
    /// request. Until `finish_writing` says the queue is empty, publishers queue behind them.
    pub fn take(&self, out: &mut Vec<Outgoing>) -> Option<CloseRequest> {
        let mut inner = self.inner.lock();
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
        assert_eq!(o.push_sample(&ch, Bytes::from(vec![b'1'; 15]), true), Pushed::Queued);
        assert_eq!(o.push_sample(&ch, Bytes::from(vec![b'2'; 15]), true), Pushed::Queued, "not behind yet");
        assert_eq!(o.push_sample(&ch, Bytes::from(vec![b'3'; 15]), true), Pushed::Conflated, "over a quarter: latest wins");
        assert_eq!(o.push_sample(&other, Bytes::from(vec![b'x'; 15]), true), Pushed::Queued, "other channels keep theirs");
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
