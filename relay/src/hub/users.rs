//! Signed-in users: which sockets belong to whom, and who watches whom.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sonde_protocol::frame::Watch;
use sonde_protocol::SocketId;

use super::NodeId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigninError {
    #[error("this connection is already signed in")]
    AlreadySignedIn,
    #[error("user id must be a valid channel-name fragment")]
    BadUserId,
}

/// A watchlist notification for one socket.
pub(super) struct WatchEvent {
    pub to: SocketId,
    pub user_ids: Vec<Arc<str>>,
    pub watch: Watch,
}

#[derive(Default)]
pub(super) struct Users {
    sockets: HashMap<Arc<str>, Vec<SocketId>>,
    /// watched user → sockets watching it.
    watchers: HashMap<Arc<str>, HashSet<SocketId>>,
    /// socket → the users it watches.
    watching: HashMap<SocketId, Vec<Arc<str>>>,
    /// Users signed in on other nodes.
    remote: HashMap<Arc<str>, HashSet<NodeId>>,
}

impl Users {
    fn online(&self, user: &str) -> bool {
        self.sockets.contains_key(user) || self.remote.contains_key(user)
    }

    /// Returns the watch events and whether this is the user's first connection here.
    pub(super) fn signin(&mut self, user: Arc<str>, socket: SocketId, watchlist: Vec<Arc<str>>) -> (Vec<WatchEvent>, bool) {
        let mut events = Vec::new();
        let online: Vec<Arc<str>> = watchlist.iter().filter(|w| self.online(w)).cloned().collect();
        if !online.is_empty() {
            events.push(WatchEvent { to: socket, user_ids: online, watch: Watch::Online });
        }
        for w in &watchlist {
            self.watchers.entry(w.clone()).or_default().insert(socket);
        }
        if !watchlist.is_empty() {
            self.watching.insert(socket, watchlist);
        }
        let was_online = self.online(&user);
        let socks = self.sockets.entry(user.clone()).or_default();
        socks.push(socket);
        let first = socks.len() == 1;
        if !was_online {
            events.extend(self.notify(&user, Watch::Online));
        }
        (events, first)
    }

    /// Returns the watch events and whether this was the user's last connection here.
    pub(super) fn signout(&mut self, user: &Arc<str>, socket: SocketId) -> (Vec<WatchEvent>, bool) {
        if let Some(list) = self.watching.remove(&socket) {
            for w in list {
                if let Some(set) = self.watchers.get_mut(&w) {
                    set.remove(&socket);
                    if set.is_empty() {
                        self.watchers.remove(&w);
                    }
                }
            }
        }
        let Some(socks) = self.sockets.get_mut(user) else { return (Vec::new(), false) };
        socks.retain(|s| *s != socket);
        if !socks.is_empty() {
            return (Vec::new(), false);
        }
        self.sockets.remove(user);
        let events = if self.online(user) { Vec::new() } else { self.notify(user, Watch::Offline) };
        (events, true)
    }

    /// Another node's first or last connection of `user`.
    pub(super) fn remote(&mut self, node: &NodeId, user: Arc<str>, online: bool) -> Vec<WatchEvent> {
        let was = self.online(&user);
        if online {
            self.remote.entry(user.clone()).or_default().insert(node.clone());
        } else if let Some(nodes) = self.remote.get_mut(&user) {
            nodes.remove(node);
            if nodes.is_empty() {
                self.remote.remove(&user);
            }
        }
        match (was, self.online(&user)) {
            (false, true) => self.notify(&user, Watch::Online),
            (true, false) => self.notify(&user, Watch::Offline),
            _ => Vec::new(),
        }
    }

    pub(super) fn drop_node(&mut self, node: &NodeId) -> Vec<WatchEvent> {
        let users: Vec<Arc<str>> = self.remote.iter().filter(|(_, n)| n.contains(node)).map(|(u, _)| u.clone()).collect();
        users.into_iter().flat_map(|u| self.remote(node, u, false)).collect()
    }

    pub(super) fn local_users(&self) -> Vec<Arc<str>> {
        self.sockets.keys().cloned().collect()
    }

    fn notify(&self, user: &Arc<str>, watch: Watch) -> Vec<WatchEvent> {
        self.watchers.get(user).map(|set| set.iter().map(|s| WatchEvent { to: *s, user_ids: vec![user.clone()], watch }).collect()).unwrap_or_default()
    }

    pub(super) fn sockets_of(&self, user: &str) -> Vec<SocketId> {
        self.sockets.get(user).cloned().unwrap_or_default()
    }
}
