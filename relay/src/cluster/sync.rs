//! A (re)joined node's wait for the other nodes' state before it calls itself ready.
//!
//! Every node in Redis's list is expected to answer the `Hello` (`SyncStart`, its state,
//! `SyncDone`). A node listed there may be dead (its key outlives it by up to the node
//! timeout), so after a short first wait the nodes that have not started answering are given
//! up on. A node that has started is waited for until it is done or falls silent: with
//! 50,000 hosts in a cluster the answers take longer than the first wait, and a node that
//! called itself ready then would list a fraction of the inventory to the dashboards a
//! balancer sends it. A last bound keeps a node that never finishes from holding it back.

use std::collections::HashSet;
use std::time::Duration;

/// Longest wait for the others, however they answer.
pub(super) const SYNC_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct SyncWait {
    waiting: HashSet<String>,
    answering: HashSet<String>,
    /// After this, only nodes that are answering are waited for.
    first_wait: Duration,
}

impl SyncWait {
    pub fn new(expected: HashSet<String>, first_wait: Duration) -> Self {
        Self { waiting: expected, answering: HashSet::new(), first_wait }
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// `node` began its answer to this node (`SyncStart` addressed here).
    pub fn answering(&mut self, node: &str) {
        if self.waiting.contains(node) {
            self.answering.insert(node.to_owned());
        }
    }

    /// `node` finished its answer (or was dropped as silent): true when it was the last one.
    pub fn finished(&mut self, node: &str) -> bool {
        self.waiting.remove(node) && self.waiting.is_empty()
    }

    /// Whether the wait is over `elapsed` after the `Hello`.
    pub fn over(&mut self, elapsed: Duration) -> bool {
        if elapsed >= SYNC_LIMIT {
            return true;
        }
        if elapsed >= self.first_wait {
            let answering = &self.answering;
            self.waiting.retain(|n| answering.contains(n));
        }
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(nodes: &[&str]) -> SyncWait {
        SyncWait::new(nodes.iter().map(|n| (*n).to_owned()).collect(), Duration::from_secs(3))
    }

    #[test]
    fn a_node_still_answering_is_waited_for_past_the_first_wait() {
        let mut w = wait(&["a", "b", "dead"]);
        w.answering("a");
        w.answering("b");
        assert!(!w.finished("a"));
        assert!(!w.over(Duration::from_secs(1)));
        // 3 s: the dead node never began; b is still sending its state.
        assert!(!w.over(Duration::from_secs(3)));
        assert!(!w.over(Duration::from_secs(10)));
        assert!(w.finished("b"), "b done: nobody else is awaited");
        assert!(w.over(Duration::from_secs(10)));
    }

    #[test]
    fn nodes_that_never_answer_are_given_up_after_the_first_wait() {
        let mut w = wait(&["dead1", "dead2"]);
        w.answering("someone-not-expected");
        assert!(!w.over(Duration::from_millis(2_999)));
        assert!(w.over(Duration::from_secs(3)));
        assert!(wait(&[]).is_empty());
    }

    #[test]
    fn the_last_bound_ends_any_wait() {
        let mut w = wait(&["slow"]);
        w.answering("slow");
        assert!(!w.over(SYNC_LIMIT - Duration::from_millis(1)));
        assert!(w.over(SYNC_LIMIT));
    }
}
