//! Signed-in users: which sockets belong to whom, and who watches whom.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sonde_protocol::frame::Watch;
use sonde_protocol::SocketId;

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
}

impl Users {
    pub(super) fn signin(&mut self, user: Arc<str>, socket: SocketId, watchlist: Vec<Arc<str>>) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        let online: Vec<Arc<str>> = watchlist.iter().filter(|w| self.sockets.contains_key(*w)).cloned().collect();
        if !online.is_empty() {
            events.push(WatchEvent { to: socket, user_ids: online, watch: Watch::Online });
        }
        for w in &watchlist {
            self.watchers.entry(w.clone()).or_default().insert(socket);
        }
        if !watchlist.is_empty() {
            self.watching.insert(socket, watchlist);
        }
        let socks = self.sockets.entry(user.clone()).or_default();
        socks.push(socket);
        if socks.len() == 1 {
            events.extend(self.notify(&user, Watch::Online));
        }
        events
    }

    pub(super) fn signout(&mut self, user: &Arc<str>, socket: SocketId) -> Vec<WatchEvent> {
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
        let Some(socks) = self.sockets.get_mut(user) else { return Vec::new() };
        socks.retain(|s| *s != socket);
        if !socks.is_empty() {
            return Vec::new();
        }
        self.sockets.remove(user);
        self.notify(user, Watch::Offline)
    }

    fn notify(&self, user: &Arc<str>, watch: Watch) -> Vec<WatchEvent> {
        self.watchers
            .get(user)
            .map(|set| set.iter().map(|s| WatchEvent { to: *s, user_ids: vec![user.clone()], watch }).collect())
            .unwrap_or_default()
    }

    pub(super) fn sockets_of(&self, user: &str) -> Vec<SocketId> {
        self.sockets.get(user).cloned().unwrap_or_default()
    }
}
