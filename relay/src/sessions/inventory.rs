//! The agent inventory: which agents are online and their latest minute snapshot.
//!
//! Dashboards follow it on one channel. Changes are batched: each flush publishes only the
//! agents that changed since the last one, and a new dashboard gets the full list once, in
//! pages. So 10,000 agents cost each dashboard a few frames a second, never n² traffic.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::hub::NodeId;

use parking_lot::Mutex;
use serde_json::value::RawValue;

/// Agents per inventory frame.
pub const PAGE: usize = 100;
/// Offline agents are forgotten after this long.
pub const FORGET_AFTER_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    /// Connections of the agent on this node.
    pub connections: u32,
    /// Connections on other nodes of the cluster.
    pub remote: HashMap<NodeId, u32>,
    pub last_seen_ms: u64,
    pub since_ms: u64,
    /// Raw JSON of the latest snapshot.
    pub snapshot: Option<Arc<str>>,
}

impl AgentEntry {
    pub fn online(&self) -> bool {
        self.connections > 0 || !self.remote.is_empty()
    }

    /// `{"host":…,"online":…,"last_seen":…,"since":…,"snapshot":…}`
    pub fn to_json(&self, host: &str) -> String {
        format!(
            "{{\"host\":{},\"online\":{},\"last_seen\":{},\"since\":{},\"snapshot\":{}}}",
            serde_json::to_string(host).expect("str"),
            self.online(),
            self.last_seen_ms,
            self.since_ms,
            self.snapshot.as_deref().unwrap_or("null")
        )
    }
}

#[derive(Default)]
struct State {
    agents: BTreeMap<Arc<str>, AgentEntry>,
    /// Hosts changed since the last flush, in the order they first changed: a flush takes the
    /// oldest first, so a backlog larger than a flush drains in order and starves nobody.
    dirty: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
}

impl State {
    fn mark(&mut self, host: Arc<str>) {
        if self.dirty.insert(host.clone()) {
            self.order.push_back(host);
        }
    }
}

/// Told when an agent goes online or offline anywhere in the cluster (as this node sees it):
/// its host, whether it is online now, and its latest snapshot. Called under the inventory's
/// lock, so in order; it must not block or call the inventory.
pub type Transitions = Box<dyn Fn(&str, bool, Option<&str>) + Send + Sync>;

#[derive(Default)]
pub struct Inventory {
    state: Mutex<State>,
    observer: std::sync::OnceLock<Transitions>,
}

impl Inventory {
    /// Reports every online/offline transition to `f` from now on (once).
    pub fn observe(&self, f: Transitions) {
        let _ = self.observer.set(f);
    }

    /// Applies `f` to the host's entry (made if new); `f` tells whether it changed what a
    /// dashboard sees besides the online state. Dashboards are told of new entries, online
    /// changes and what `f` reports, not of a node repeating what it said (a cluster sync
    /// re-announces every agent: at 50,000 hosts, 29 MB of updates to every dashboard).
    fn touch(&self, host: &str, now_ms: u64, f: impl FnOnce(&mut AgentEntry) -> bool) {
        let mut st = self.state.lock();
        let known = st.agents.get_key_value(host).map(|(k, _)| k.clone());
        let is_new = known.is_none();
        let key: Arc<str> = known.unwrap_or_else(|| Arc::from(host));
        let e = st.agents.entry(key.clone()).or_insert(AgentEntry {
            connections: 0,
            remote: HashMap::new(),
            last_seen_ms: now_ms,
            since_ms: now_ms,
            snapshot: None,
        });
        let was = e.online();
        let changed = f(e) || is_new || was != e.online();
        if was != e.online() {
            e.since_ms = now_ms;
            if let Some(tell) = self.observer.get() {
                tell(&key, e.online(), e.snapshot.as_deref());
            }
        }
        e.last_seen_ms = now_ms;
        if changed {
            st.mark(key);
        }
    }

    pub fn online(&self, host: &str, now_ms: u64) {
        self.touch(host, now_ms, |e| {
            e.connections += 1;
            true
        });
    }

    pub fn offline(&self, host: &str, now_ms: u64) {
        self.touch(host, now_ms, |e| {
            e.connections = e.connections.saturating_sub(1);
            true
        });
    }

    /// What another node reports about an agent connected to it. A snapshot that is not a
    /// JSON object is left out (listings join entries as they are).
    pub fn remote(&self, node: &NodeId, host: &str, connections: u32, snapshot: Option<&str>, now_ms: u64) {
        let snapshot = snapshot.filter(|s| is_object(s));
        self.touch(host, now_ms, |e| {
            if connections == 0 {
                e.remote.remove(node);
            } else {
                e.remote.insert(node.clone(), connections);
            }
            match snapshot {
                Some(s) if e.snapshot.as_deref() != Some(s) => {
                    e.snapshot = Some(Arc::from(s));
                    true
                }
                Some(_) | None => false,
            }
        });
    }

    /// Marks a node's agents offline (the node left or stopped answering).
    pub fn drop_node(&self, node: &NodeId, now_ms: u64) {
        let hosts: Vec<Arc<str>> = self.state.lock().agents.iter().filter(|(_, e)| e.remote.contains_key(node)).map(|(h, _)| h.clone()).collect();
        for h in hosts {
            self.touch(&h, now_ms, |e| {
                e.remote.remove(node);
                false
            });
        }
    }

    /// This node's connections of an agent and its latest snapshot.
    pub fn local(&self, host: &str) -> (u32, Option<Arc<str>>) {
        self.state.lock().agents.get(host).map_or((0, None), |e| (e.connections, e.snapshot.clone()))
    }

    /// Agents connected to this node, to announce to the cluster.
    pub fn local_hosts(&self) -> Vec<Arc<str>> {
        self.state.lock().agents.iter().filter(|(_, e)| e.connections > 0).map(|(h, _)| h.clone()).collect()
    }

    /// Records a snapshot; `json` must be a JSON object (checked here).
    pub fn snapshot(&self, host: &str, json: &str, now_ms: u64) -> Result<(), String> {
        let raw: Box<RawValue> = serde_json::from_str(json).map_err(|_| "snapshot is not JSON".to_owned())?;
        if !is_object(raw.get()) {
            return Err("snapshot must be a JSON object".into());
        }
        self.touch(host, now_ms, |e| {
            e.snapshot = Some(Arc::from(raw.get()));
            true
        });
        Ok(())
    }

    /// Entries changed since the last call, as JSON, about `max_bytes` of them at most (at
    /// least one): the rest stay for the next call. Every dashboard gets these at once, so a
    /// burst of changes (a node's agents all moving after it died) must not pass what its
    /// outbox holds, or the relay would close every dashboard at the moment they matter.
    pub fn take_changes(&self, max_bytes: usize) -> Vec<String> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while out.is_empty() || bytes < max_bytes {
            let Some(h) = st.order.pop_front() else { break };
            st.dirty.remove(&h);
            if let Some(e) = st.agents.get(&h) {
                let json = e.to_json(&h);
                bytes = bytes.saturating_add(json.len());
                out.push(json);
            }
        }
        out
    }

    /// Whether changes are waiting for a flush.
    pub fn has_changes(&self) -> bool {
        !self.state.lock().order.is_empty()
    }

    /// Every host known, in name order (a dashboard's full list is paged over these).
    pub fn hosts(&self) -> Vec<Arc<str>> {
        self.state.lock().agents.keys().cloned().collect()
    }

    /// The current entries of `hosts`, as JSON; hosts forgotten meanwhile are left out.
    pub fn entries(&self, hosts: &[Arc<str>]) -> Vec<String> {
        let st = self.state.lock();
        hosts.iter().filter_map(|h| st.agents.get(h).map(|e| e.to_json(h))).collect()
    }

    pub fn all(&self) -> Vec<String> {
        self.state.lock().agents.iter().map(|(h, e)| e.to_json(h)).collect()
    }

    pub fn online_count(&self) -> usize {
        self.state.lock().agents.values().filter(|e| e.online()).count()
    }

    pub fn prune(&self, now_ms: u64) {
        self.state.lock().agents.retain(|_, e| e.online() || now_ms.saturating_sub(e.last_seen_ms) < FORGET_AFTER_MS);
    }
}

/// Whether `json` is one valid JSON object.
fn is_object(json: &str) -> bool {
    serde_json::from_str::<Box<RawValue>>(json).is_ok_and(|r| r.get().starts_with('{'))
}

/// One page's `data`: `{"full":…,"agents":[…]}`, with `"last":true` on the last page of a
/// full list (so a dashboard need not guess from a pause that the list is complete).
pub fn page(entries: &[String], full: bool, last: bool) -> String {
    let last = if last { ",\"last\":true" } else { "" };
    format!("{{\"full\":{full}{last},\"agents\":[{}]}}", entries.join(","))
}

/// Frames' `data` for a list of entries: `{"full":…,"agents":[…]}` in pages of `PAGE`.
pub fn pages(entries: &[String], full: bool) -> Vec<String> {
    if entries.is_empty() && full {
        return vec!["{\"full\":true,\"agents\":[]}".to_owned()];
    }
    entries.chunks(PAGE).map(|chunk| format!("{{\"full\":{full},\"agents\":[{}]}}", chunk.join(","))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_changes_goes_out_over_several_flushes() {
        let inv = Inventory::default();
        for i in 0..100 {
            inv.online(&format!("h{i:02}"), 1);
        }
        let one = inv.take_changes(1).len();
        assert_eq!(one, 1, "at least one entry however small the budget");
        let mut seen = one;
        let mut flushes = 1;
        loop {
            let c = inv.take_changes(1000);
            if c.is_empty() {
                break;
            }
            assert!(c.iter().map(String::len).sum::<usize>() < 1000 + 200, "about the budget");
            seen += c.len();
            flushes += 1;
        }
        assert_eq!(seen, 100, "every change goes out once");
        assert!(flushes > 5, "{flushes} flushes");
    }

    #[test]
    fn a_backlog_goes_out_oldest_first() {
        let inv = Inventory::default();
        let names: Vec<String> = (0..200).map(|i| format!("h{:03}", (i * 37) % 200)).collect();
        names.iter().for_each(|h| inv.online(h, 1));
        // Hosts keep changing while the backlog drains; the first ones waiting still go first.
        let mut out = Vec::new();
        for name in &names[..50] {
            inv.snapshot(name, "{\"n\":1}", 2).unwrap();
            out.extend(inv.take_changes(1).into_iter().map(|j| serde_json::from_str::<serde_json::Value>(&j).unwrap()["host"].as_str().unwrap().to_owned()));
        }
        assert_eq!(out, names[..50], "in the order they changed, whatever changed meanwhile");
    }

    #[test]
    fn a_node_repeating_itself_changes_nothing() {
        let inv = Inventory::default();
        let (n2, n3) = (NodeId::from("n2"), NodeId::from("n3"));
        inv.remote(&n2, "web1", 1, Some("{\"a\":1}"), 1);
        assert_eq!(inv.take_changes(usize::MAX).len(), 1, "a new host");
        // A sync repeats every agent with its snapshot: nothing a dashboard sees changed.
        inv.remote(&n2, "web1", 1, Some("{\"a\":1}"), 2);
        inv.remote(&n2, "web1", 2, None, 3);
        assert!(inv.take_changes(usize::MAX).is_empty());
        // The agent moved to n3 before n2 was dropped: online all along.
        inv.remote(&n3, "web1", 1, Some("{\"a\":1}"), 4);
        inv.drop_node(&n2, 5);
        assert!(inv.take_changes(usize::MAX).is_empty());
        inv.remote(&n3, "web1", 1, Some("{\"a\":2}"), 6);
        inv.drop_node(&n3, 7);
        let changes = inv.take_changes(usize::MAX);
        assert_eq!(changes.len(), 1, "a new snapshot, then offline: once in the next flush");
        let v: serde_json::Value = serde_json::from_str(&changes[0]).unwrap();
        assert_eq!((v["online"].as_bool(), v["snapshot"]["a"].as_i64(), v["last_seen"].as_u64()), (Some(false), Some(2), Some(7)));
    }

    #[test]
    fn changes_are_batched_and_the_full_list_is_paged() {
        let inv = Inventory::default();
        inv.online("web1", 10);
        inv.snapshot("web1", r#"{"install_id":"ab"}"#, 11).unwrap();
        inv.online("web2", 12);
        let changes = inv.take_changes(usize::MAX);
        assert_eq!(changes.len(), 2, "each changed agent once per flush");
        assert!(inv.take_changes(usize::MAX).is_empty());
        inv.offline("web2", 20);
        let v: serde_json::Value = serde_json::from_str(&inv.take_changes(usize::MAX)[0]).unwrap();
        assert_eq!(v, serde_json::json!({"host":"web2","online":false,"last_seen":20,"since":20,"snapshot":null}));
        assert!(inv.snapshot("web1", "[1]", 30).is_err());
        let node = NodeId::from("n2");
        inv.remote(&node, "web3", 1, Some("{\"install_id\":"), 31);
        assert!(inv.all().iter().all(|e| serde_json::from_str::<serde_json::Value>(e).is_ok()), "a broken remote snapshot is left out");
        inv.remote(&node, "web3", 0, None, 32);
        for i in 0..250 {
            inv.online(&format!("h{i}"), 40);
        }
        let p = pages(&inv.all(), true);
        assert_eq!(p.len(), 3);
        let first: serde_json::Value = serde_json::from_str(&p[0]).unwrap();
        assert_eq!(first["agents"].as_array().unwrap().len(), PAGE);
        assert_eq!(inv.online_count(), 251);
        let hosts = inv.hosts();
        assert_eq!(hosts.len(), 253);
        assert!(hosts.windows(2).all(|w| w[0] < w[1]), "name order");
        assert_eq!(inv.entries(&[Arc::from("web1"), Arc::from("nope")]).len(), 1, "unknown hosts are left out");
        let last: serde_json::Value = serde_json::from_str(&page(&inv.entries(&hosts[..2]), true, true)).unwrap();
        assert_eq!((last["full"].as_bool(), last["last"].as_bool(), last["agents"].as_array().map(Vec::len)), (Some(true), Some(true), Some(2)));
        assert!(serde_json::from_str::<serde_json::Value>(&page(&[], false, false)).unwrap().get("last").is_none());
        inv.prune(40 + FORGET_AFTER_MS + 1);
        assert_eq!(inv.all().len(), 251, "web2 was seen at 20: forgotten; online ones stay");
    }
}
