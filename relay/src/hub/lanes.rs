//! Writers for large fan-outs.
//!
//! Waking one task per subscriber costs about as much as the write itself, so a publish to a
//! large channel does not wake the subscribers' tasks: it hands each lane (one thread per core)
//! its share of the channel's subscribers, and the lane writes to their sockets itself. A
//! connection always belongs to the same lane and a lane works through its jobs in order, so a
//! connection's frames keep their order. When a lane falls behind, frames for the same
//! subscribers join the ones already going round, and each connection gets all of them in one
//! system call.
//! A socket that is full gets the rest queued in its outbox, where its own task finishes the
//! write (and slow readers are conflated or closed as usual).
//!
//! The lanes belong to one relay (every app's hub shares them): built from `fanout_threads`
//! by the relay's constructor, their threads end when the last hub holding them is dropped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sonde_protocol::ChannelName;

use super::{Conn, Meter, Pass, PassReport, Publish};

/// Frames going round one share at most, when a lane is behind.
const RUN_MAX: usize = 64;

/// A channel's subscribers, split by lane. Shared by every publish until the channel changes.
pub struct Shares {
    by_lane: Vec<Vec<Arc<Conn>>>,
}

impl Shares {
    pub fn new<'a>(lanes: &Lanes, conns: impl Iterator<Item = &'a Arc<Conn>>) -> Self {
        let mut by_lane = vec![Vec::new(); lanes.count()];
        for c in conns {
            // `assign` gave each connection a lane below the count; the modulo only keeps a
            // connection made for other lanes (a test's) from indexing past them.
            by_lane[c.lane % lanes.count()].push(c.clone());
        }
        Self { by_lane }
    }
}

struct Job {
    share: Arc<Shares>,
    channel: ChannelName,
    publish: Publish,
    /// The channel's count of jobs not yet written.
    in_flight: Arc<AtomicUsize>,
    /// Who times this publish, and when it was accepted.
    timed: Option<(Arc<dyn Meter>, Instant)>,
}

/// A meter of some app (every job of a circle is for the same channel, so the same app).
type AnyMeter = Option<Arc<dyn Meter>>;

/// One relay's fan-out threads. Dropping it (with the last hub) ends them once their queued
/// jobs are written.
pub struct Lanes {
    senders: Vec<Sender<Job>>,
    /// Deliveries handed to lanes and not yet written or queued.
    backlog: Arc<AtomicUsize>,
    next: AtomicUsize,
}

impl Lanes {
    /// `threads` lanes (1 to 64), or one per core. A relay sharing its machine with other busy
    /// processes may want fewer than its cores.
    pub fn start(threads: Option<usize>) -> std::io::Result<Arc<Self>> {
        let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).clamp(1, 64);
        let backlog = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel::<Job>();
            let lane = Lane { index: i, count: n, backlog: backlog.clone() };
            std::thread::Builder::new().name(format!("sonde-fanout-{i}")).spawn(move || run(&lane, rx))?;
            senders.push(tx);
        }
        Ok(Arc::new(Self { senders, backlog, next: AtomicUsize::new(0) }))
    }

    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// The lane of a new connection (they take turns).
    pub fn assign(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.count()
    }

    /// Deliveries waiting for a lane.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Hands a frame for every subscriber in `share` to their lanes; `in_flight` counts the
    /// channel's jobs until they are written.
    pub fn dispatch(&self, share: &Arc<Shares>, channel: &ChannelName, p: &Publish, in_flight: &Arc<AtomicUsize>, timed: Option<(Arc<dyn Meter>, Instant)>) {
        for (lane, conns) in share.by_lane.iter().enumerate() {
            if conns.is_empty() {
                continue;
            }
            self.backlog.fetch_add(conns.len(), Ordering::Relaxed);
            in_flight.fetch_add(1, Ordering::AcqRel);
            let job = Job { share: share.clone(), channel: channel.clone(), publish: p.clone(), in_flight: in_flight.clone(), timed: timed.clone() };
            // A lane thread ends only when these senders are dropped, so the receiver is there.
            let _ = self.senders[lane].send(job);
        }
    }
}

/// A lane looks for new jobs after writing to this many connections.
const POLL_EVERY: u64 = 8;

/// A frame being written around a share: it is done at step `end`.
struct InFlight {
    job: Job,
    end: u64,
}

/// Writes one share's frames connection by connection, in a circle. A job for the same
/// subscribers that arrives meanwhile joins at the current connection: from there on each
/// connection gets every frame still going round in one write, and each frame is done once it
/// has gone all the way round. A job for other subscribers waits (and stops the joining of any
/// behind it) until the circle is empty, so no channel's frames overtake each other.
/// What a lane's thread knows of itself and the others.
struct Lane {
    index: usize,
    count: usize,
    /// `Lanes::backlog`.
    backlog: Arc<AtomicUsize>,
}

fn run(lane: &Lane, rx: Receiver<Job>) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut going: VecDeque<InFlight> = VecDeque::new();
    let mut frames: Vec<Bytes> = Vec::new();
    loop {
        let first = match waiting.pop_front() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let share = first.share.clone();
        let (channel, urgency) = (first.channel.clone(), first.publish.urgency);
        let conns = &share.by_lane[lane.index];
        let n = conns.len() as u64;
        let mut step = 0u64;
        let meter: AnyMeter = first.timed.as_ref().map(|(m, _)| m.clone());
        let mut conflated = 0usize;
        // `frames` is the frames of `going`, in order, for the connections no job excludes.
        frames.push(first.publish.frame.clone());
        going.push_back(InFlight { job: first, end: n });
        while !going.is_empty() {
            if step.is_multiple_of(POLL_EVERY) {
                // New jobs queue behind the waiting ones; those at the front that are for the
                // same subscribers join the circle (they came after everything in it).
                waiting.extend(rx.try_iter());
                while going.len() < RUN_MAX && waiting.front().is_some_and(|j| Arc::ptr_eq(&j.share, &share) && j.publish.urgency == urgency) {
                    let job = waiting.pop_front().expect("front exists");
                    frames.push(job.publish.frame.clone());
                    going.push_back(InFlight { job, end: step + n });
                }
            }
            let conn = &conns[(step % n) as usize];
            if going.iter().any(|f| f.job.publish.except == Some(conn.socket_id)) {
                // The publisher of a client event gets the others' frames only.
                let own: Vec<Bytes> = going.iter().filter(|f| f.job.publish.except != Some(conn.socket_id)).map(|f| f.job.publish.frame.clone()).collect();
                if !own.is_empty() {
                    conflated += conn.outbox.push_run(&channel, &own, urgency).conflated;
                }
            } else {
                conflated += conn.outbox.push_run(&channel, &frames, urgency).conflated;
            }
            step += 1;
            while going.front().is_some_and(|f| f.end == step) {
                let done = going.pop_front().expect("front exists");
                frames.remove(0);
                let behind = lane.backlog.fetch_sub(conns.len(), Ordering::Relaxed).saturating_sub(conns.len());
                done.job.in_flight.fetch_sub(1, Ordering::AcqRel);
                lane.report(&done.job, conns.len(), going.len() + 1, behind);
            }
        }
        if let (Some(m), true) = (meter, conflated > 0) {
            m.conflated(conflated);
        }
    }
}

/// A job went all the way round this lane's share: one clock read for the whole pass.
impl Lane {
    fn report(&self, job: &Job, subscribers: usize, frames: usize, backlog: usize) {
        let Some((meter, accepted)) = &job.timed else { return };
        let elapsed = accepted.elapsed();
        let (bytes, lanes, accepted) = (job.publish.frame.len(), self.count, *accepted);
        meter.pass(&PassReport { pass: Pass::Lanes, channel: &job.channel, subscribers, bytes, frames, backlog, lanes, accepted, elapsed });
    }
}
