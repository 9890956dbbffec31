//! The last five minutes of ticks. Slots are recycled: once full, recording a tick swaps the
//! new one in and hands back the oldest, whose buffers the sampler fills next.

use crate::tick::Tick;

/// Five minutes of one-second ticks.
pub const RING_CAPACITY: usize = 300;

/// A fixed-capacity ring of ticks, oldest first.
pub struct Ring {
    slots: Vec<Tick>,
    /// Index of the oldest tick once the ring is full.
    head: usize,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        assert!(cap > 0, "a ring needs room for one tick");
        Self { slots: Vec::with_capacity(cap), head: 0, cap }
    }

    /// Stores `tick` as the newest and returns a spent tick (the evicted oldest, or a fresh
    /// one) for the caller to reuse.
    pub fn record(&mut self, tick: Tick) -> Tick {
        if self.slots.len() < self.cap {
            self.slots.push(tick);
            return Tick::default();
        }
        let old = std::mem::replace(&mut self.slots[self.head], tick);
        self.head = (self.head + 1) % self.cap;
        old
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Ticks from oldest to newest.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Tick> + '_ {
        let (newer, older) = self.slots.split_at(self.head);
        older.iter().chain(newer.iter())
    }

    pub fn latest(&self) -> Option<&Tick> {
        self.iter().next_back()
    }

    /// The tick with sequence number `seq`, if it is still held.
    pub fn get(&self, seq: u64) -> Option<&Tick> {
        let latest = self.latest()?;
        let back = latest.seq.checked_sub(seq)? as usize;
        self.iter().rev().nth(back).filter(|t| t.seq == seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(seq: u64) -> Tick {
        Tick { ts: seq * 1000, seq, ..Tick::default() }
    }

    #[test]
    fn keeps_the_last_300_in_order_across_wrap_around() {
        let mut ring = Ring::new(RING_CAPACITY);
        for seq in 1..=1000 {
            ring.record(tick(seq));
        }
        assert_eq!(ring.len(), 300);
        let seqs: Vec<u64> = ring.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, (701..=1000).collect::<Vec<_>>());
        assert_eq!(ring.latest().unwrap().seq, 1000);
        assert_eq!(ring.get(701).unwrap().ts, 701_000);
        assert_eq!(ring.get(850).unwrap().seq, 850);
        assert!(ring.get(700).is_none());
        assert!(ring.get(1001).is_none());
    }

    #[test]
    fn hands_back_the_evicted_tick_for_reuse() {
        let mut ring = Ring::new(2);
        assert_eq!(ring.record(tick(1)).seq, 0);
        ring.record(tick(2));
        assert_eq!(ring.record(tick(3)).seq, 1);
        assert_eq!(ring.record(tick(4)).seq, 2);
        let seqs: Vec<u64> = ring.iter().map(|t| t.seq).collect();
        assert_eq!(seqs, [3, 4]);
    }

    #[test]
    fn partial_ring() {
        let mut ring = Ring::new(RING_CAPACITY);
        assert!(ring.is_empty() && ring.latest().is_none());
        for seq in 1..=5 {
            ring.record(tick(seq));
        }
        assert_eq!(ring.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(ring.get(3).unwrap().seq, 3);
    }
}
