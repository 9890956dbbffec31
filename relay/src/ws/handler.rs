//! What one connection's frames do: subscriptions, auth, client events, sign-in.
//!
//! Independent of the transport: frames come in as text, replies go to the connection's
//! outbox, and the result says whether the connection goes on.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sonde_protocol::frame::{ClientEvent, Subscribe};
use sonde_protocol::sign::{channel_string, user_string, verify_auth};
use sonde_protocol::{ChannelKind, ChannelName, ClientFrame, CloseCode, ServerFrame};

use super::payloads::{backfill_for, parse_channel_data, parse_user_data};
use crate::apps::App;
use crate::hub::{Conn, PresenceUser, Publish, SubscribeError, Urgency};
use crate::limits::TokenBucket;
use crate::sessions::Clock;
use crate::tokens::{looks_like_jwt, Grant, INVENTORY_CHANNEL};
use sonde_protocol::sonde::{host_of, EVENT_BACKFILL, EVENT_SAMPLE, EVENT_SNAPSHOT};

/// Whether the connection goes on after a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close(CloseCode, String),
}

/// What a subscription means to the session controller.
#[derive(Debug, Clone)]
enum Role {
    Plain,
    /// A viewer of a host channel.
    Viewer(Arc<str>),
    /// The host's own agent: its token may publish on the host channel.
    Agent(Arc<str>),
}

/// One subscription of this connection.
struct Sub {
    role: Role,
    /// The presence user id, on presence channels.
    user: Option<Arc<str>>,
    /// Authorised by a token (which then decides about client events too).
    by_token: bool,
    /// The token's publish capability covers the channel.
    token_publish: bool,
}

/// A connection's subscriptions: a few each, so a vector costs less memory than a map.
#[derive(Default)]
struct Subs(Vec<(ChannelName, Sub)>);

impl Subs {
    fn get(&self, name: &ChannelName) -> Option<&Sub> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    fn contains_key(&self, name: &ChannelName) -> bool {
        self.get(name).is_some()
    }

    fn insert(&mut self, name: ChannelName, sub: Sub) {
        self.remove(&name);
        self.0.push((name, sub));
    }

    fn remove(&mut self, name: &ChannelName) -> Option<Sub> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.swap_remove(i).1)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// How a subscription was authorised.
struct Access {
    presence: Option<PresenceUser>,
    by_token: bool,
    token_publish: bool,
}

pub struct Handler {
    app: Arc<App>,
    conn: Arc<Conn>,
    /// The token given on the websocket URL, if any.
    grant: Option<Arc<Grant>>,
    channels: Subs,
    limiter: TokenBucket,
    token_limiter: TokenBucket,
    /// The earliest expiry of a token this connection relies on.
    expiry: Option<SystemTime>,
}

impl Handler {
    pub fn new(app: Arc<App>, conn: Arc<Conn>, grant: Option<Arc<Grant>>) -> Self {
        let l = &app.config.limits;
        let limiter = TokenBucket::new(l.client_events_per_second, l.client_events_per_second);
        // Agents burst when they send a backfill: twice the rate may queue up.
        let token_limiter = TokenBucket::new(l.token_client_events_per_second, l.token_client_events_per_second.saturating_mul(2));
        let expiry = grant.as_ref().map(|g| g.expires_at);
        Self { app, conn, grant, channels: Subs::default(), limiter, token_limiter, expiry }
    }

    /// When the connection must end because a token it relies on expires.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
    }

    fn note_expiry(&mut self, at: SystemTime) {
        self.expiry = Some(self.expiry.map_or(at, |e| e.min(at)));
    }

    pub fn on_text(&mut self, text: &str) -> Flow {
        self.app.metrics.messages_in.inc();
        self.app.metrics.bytes_in.inc_by(text.len() as u64);
        match ClientFrame::parse(text) {
            Err(e) => {
                self.error(None, &e.to_string());
                Flow::Continue
            }
            Ok(ClientFrame::Ping) => {
                self.conn.outbox.push(ServerFrame::Pong.encode());
                Flow::Continue
            }
            Ok(ClientFrame::Pong) => Flow::Continue,
            Ok(ClientFrame::Subscribe(s)) => {
                self.subscribe(s);
                Flow::Continue
            }
            Ok(ClientFrame::Unsubscribe { channel }) => {
                if let Ok(name) = ChannelName::parse_server(&channel) {
                    if let Some(sub) = self.channels.remove(&name) {
                        if let Some(change) = self.app.hub.unsubscribe(&self.conn, &name) {
                            self.app.metrics.subscriptions.dec();
                            self.app.announce_change(&name, &change);
                        }
                        self.left(&sub.role);
                    }
                }
                Flow::Continue
            }
            Ok(ClientFrame::Signin { auth, user_data }) => self.signin(&auth, &user_data),
            Ok(ClientFrame::ClientEvent(ev)) => {
                self.client_event(ev);
                Flow::Continue
            }
        }
    }

    fn error(&self, code: Option<CloseCode>, message: &str) {
        self.app.metrics.error(code);
        self.conn.outbox.push(ServerFrame::Error { code, message }.encode());
    }

    fn sub_error(&self, channel: &str, status: u16, message: &str) {
        self.app.metrics.error(None);
        self.conn.outbox.push(ServerFrame::SubscriptionError { channel, message, status }.encode());
    }

    fn subscribe(&mut self, s: Subscribe) {
        let name = match ChannelName::parse_server(&s.channel) {
            Ok(n) => n,
            Err(e) => return self.sub_error(&s.channel, 400, &format!("Invalid channel name '{}': {e}", s.channel)),
        };
        if self.channels.len() >= self.app.config.limits.max_channels_per_connection && !self.channels.contains_key(&name) {
            self.app.metrics.limit("channels_per_connection");
            let max = self.app.config.limits.max_channels_per_connection;
            return self.sub_error(name.as_str(), 403, &format!("a connection may subscribe to at most {max} channels"));
        }
        let kind = name.kind();
        let access = match kind {
            ChannelKind::ServerToUser => {
                let own = self.conn.user().and_then(|u| ChannelName::server_to_user(&u).ok());
                if own.as_ref() == Some(&name) {
                    // Already subscribed by sign-in; pusher-js asks again and expects success.
                    self.conn.outbox.push(ServerFrame::SubscriptionSucceeded { channel: name.as_str() }.encode());
                } else {
                    self.sub_error(name.as_str(), 403, "server-to-user channels are subscribed by signing in as that user");
                }
                return;
            }
            ChannelKind::Public => Access { presence: None, by_token: false, token_publish: false },
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence => match self.authorize(&name, &s) {
                Ok(a) => a,
                Err(msg) => return self.sub_error(name.as_str(), 401, &msg),
            },
        };
        let user = access.presence.as_ref().map(|p| p.user_id.clone());
        match self.app.hub.subscribe(&self.conn, &name, access.presence) {
            Ok(change) => {
                self.app.announce_change(&name, &change);
                self.app.metrics.subscriptions.inc();
                let role = match host_of(name.as_str()) {
                    Some(h) if access.token_publish => Role::Agent(h.into()),
                    Some(h) => Role::Viewer(h.into()),
                    None => Role::Plain,
                };
                self.joined(&name, &role);
                self.channels.insert(name, Sub { role, user, by_token: access.by_token, token_publish: access.token_publish });
            }
            Err(e @ SubscribeError::AlreadySubscribed(_)) => self.error(None, &e.to_string()),
            Err(e) => self.sub_error(name.as_str(), 403, &e.to_string()),
        }
    }

    /// Authorises a private, encrypted or presence subscription: by a token given with the
    /// subscription, by the connection's token, or by Pusher's HMAC.
    fn authorize(&mut self, name: &ChannelName, s: &Subscribe) -> Result<Access, String> {
        let grant = match s.auth.as_deref() {
            Some(a) if looks_like_jwt(a) => Some(Arc::new(self.app.tokens.verify(a).map_err(|e| e.to_string())?)),
            Some(_) => None,
            None => Some(self.grant.clone().ok_or("auth is required for private and presence channels")?),
        };
        match grant {
            Some(g) => {
                if let (ChannelKind::Presence, Some(data)) = (name.kind(), s.channel_data.as_deref()) {
                    // pusher-js sends channel_data on presence channels; with a token it must
                    // name the token's subject, which is the member the relay uses.
                    let claimed = parse_channel_data(data, usize::MAX)?;
                    if claimed.user_id != g.sub {
                        return Err(format!("channel_data user_id {} does not match the token subject {}", claimed.user_id, g.sub));
                    }
                }
                self.authorize_token(name, &g)
            }
            // The relay's own state is for operators: a token must say so, not an app's HMAC.
            None if name.as_str() == crate::tokens::RELAY_CHANNEL => Err("the relay's channel needs a token that allows it (an operator token)".into()),
            None => self.authorize_hmac(name, s).map(|presence| Access { presence, by_token: false, token_publish: false }),
        }
    }

    fn authorize_token(&mut self, name: &ChannelName, g: &Grant) -> Result<Access, String> {
        if !g.may_subscribe(name.as_str()) {
            self.app.metrics.limit("token_capability");
            return Err(format!("token does not allow subscribing to {name}"));
        }
        self.note_expiry(g.expires_at);
        let presence = (name.kind() == ChannelKind::Presence).then(|| PresenceUser { user_id: g.sub.clone(), user_info: g.user_info.clone() });
        if let Some(info) = presence.as_ref().and_then(|p| p.user_info.as_ref()) {
            let max = self.app.config.limits.max_presence_member_info_bytes;
            if info.len() > max {
                return Err(format!("user_info is larger than {max} bytes"));
            }
        }
        Ok(Access { presence, by_token: true, token_publish: g.may_publish(name.as_str()) })
    }

    fn authorize_hmac(&self, name: &ChannelName, s: &Subscribe) -> Result<Option<PresenceUser>, String> {
        let auth = s.auth.as_deref().ok_or("auth is required for private and presence channels")?;
        let presence = name.kind() == ChannelKind::Presence;
        let data = if presence { Some(s.channel_data.as_deref().ok_or("channel_data is required for presence channels")?) } else { None };
        let socket_id = self.conn.socket_id.to_string();
        let signed = channel_string(&socket_id, name.as_str(), data);
        verify_auth(auth, &self.app.config.key, &self.app.config.secret, &signed).map_err(|e| e.to_string())?;
        match data {
            None => Ok(None),
            Some(d) => parse_channel_data(d, self.app.config.limits.max_presence_member_info_bytes).map(Some),
        }
    }

    fn signin(&mut self, auth: &str, user_data: &str) -> Flow {
        let fail = |this: &Self, msg: String| {
            this.error(Some(CloseCode::Unauthorized), &msg);
            Flow::Close(CloseCode::Unauthorized, msg)
        };
        if !self.app.config.user_authentication {
            return fail(self, "user authentication is disabled for this app".into());
        }
        if self.conn.user().is_some() {
            return fail(self, "this connection is already signed in".into());
        }
        let (id, mut watchlist) = match parse_user_data(user_data) {
            Ok(v) => v,
            Err(e) => return fail(self, e),
        };
        if looks_like_jwt(auth) {
            let g = match self.app.tokens.verify(auth) {
                Ok(g) => g,
                Err(e) => return fail(self, format!("sign-in refused: {e}")),
            };
            if *g.sub != *id {
                return fail(self, format!("sign-in refused: the token is for user {}, not {id}", g.sub));
            }
            // A token vouches for the identity only; the watchlist comes from its claims.
            watchlist = g.watchlist.clone();
            self.note_expiry(g.expires_at);
        } else {
            let signed = user_string(&self.conn.socket_id.to_string(), user_data);
            if let Err(e) = verify_auth(auth, &self.app.config.key, &self.app.config.secret, &signed) {
                return fail(self, format!("sign-in refused: {e}"));
            }
        }
        if ChannelName::server_to_user(&id).is_err() {
            return fail(self, "user id may only use [A-Za-z0-9_-=@,.;]".into());
        }
        let user: Arc<str> = id.into();
        let success = ServerFrame::SigninSuccess { user_data }.encode();
        match self.app.hub.signin(&self.conn, user.clone(), watchlist, success) {
            Ok((channel, first)) => {
                if first {
                    self.app.announce_user(&user, true);
                }
                self.app.metrics.subscriptions.inc();
                self.channels.insert(channel, Sub { role: Role::Plain, user: None, by_token: false, token_publish: false });
                Flow::Continue
            }
            Err(e) => fail(self, e.to_string()),
        }
    }

    /// The channel a client event may go to, or why it may not (its name, size, channel,
    /// the connection's subscription and capability, the app's switch and the rate limits).
    fn admit_client_event(&mut self, ev: &ClientEvent) -> Result<ChannelName, String> {
        let limits = &self.app.config.limits;
        if ev.event.len() > limits.max_event_name_len {
            return Err(format!("event name longer than {} characters", limits.max_event_name_len));
        }
        let name = ChannelName::parse(&ev.channel).map_err(|_| format!("invalid channel name '{}'", ev.channel))?;
        if !name.kind().allows_client_events() {
            return Err("client events are only allowed on private and presence channels (not encrypted ones)".into());
        }
        let sub = self.channels.get(&name).ok_or_else(|| format!("not subscribed to channel {name}"))?;
        if ev.data.len() > limits.max_payload_bytes {
            return Err(format!("payload larger than {} bytes", limits.max_payload_bytes));
        }
        let allowed = if sub.token_publish {
            self.token_limiter.take(Instant::now()).then_some(()).ok_or(limits.token_client_events_per_second)
        } else if sub.by_token {
            self.app.metrics.limit("token_capability");
            return Err(format!("token does not allow publishing on {name}"));
        } else if !self.app.config.client_events {
            return Err("client events are not enabled for this app".into());
        } else {
            self.limiter.take(Instant::now()).then_some(()).ok_or(limits.client_events_per_second)
        };
        if let Err(rate) = allowed {
            self.app.metrics.limit("client_events");
            return Err(format!("client event rate limit of {rate}/s exceeded"));
        }
        Ok(name)
    }

    fn client_event(&mut self, ev: ClientEvent) {
        let reject = |this: &Self, msg: &str| this.error(Some(CloseCode::ClientEventRejected), msg);
        let name = match self.admit_client_event(&ev) {
            Ok(name) => name,
            Err(why) => return reject(self, &why),
        };
        let urgency = if ev.event == EVENT_SAMPLE { Urgency::Conflatable } else { Urgency::Always };
        let Some(sub) = self.channels.get(&name) else { return };
        if let (Role::Agent(_), EVENT_BACKFILL) = (&sub.role, ev.event.as_str()) {
            if let Some(to) = backfill_for(&ev.data) {
                // History for one viewer that joined late: to it alone, and only if it watches
                // this host (an agent must not reach other sockets of the app).
                let frame = ServerFrame::Event { event: &ev.event, channel: Some(name.as_str()), data_json: &ev.data, user_id: None }.encode();
                if !self.app.deliver(&name, to, frame) {
                    reject(self, &format!("the backfill's viewer is not subscribed to {name}"));
                }
                return;
            }
        }
        if let (Role::Agent(host), EVENT_SNAPSHOT) = (&sub.role, ev.event.as_str()) {
            let text: String = serde_json::from_str(&ev.data).unwrap_or_default();
            if let Err(e) = self.app.inventory.snapshot(host, &text, Clock::now().now_ms) {
                return reject(self, &format!("invalid snapshot: {e}"));
            }
            self.app.announce_agent(host);
        }
        let frame = ServerFrame::Event { event: &ev.event, channel: Some(name.as_str()), data_json: &ev.data, user_id: sub.user.as_deref() }.encode();
        if let Some(w) = &self.app.webhooks {
            w.client_event(&name, &ev.event, &ev.data, self.conn.socket_id, sub.user.as_deref());
        }
        let len = frame.len() as u64;
        // Conflation is counted by the hub's meter, for the lanes' deliveries too.
        let d = self.app.publish(&name, Publish { frame, except: Some(self.conn.socket_id), urgency });
        self.app.metrics.messages_out.inc_by(d.delivered as u64);
        self.app.metrics.bytes_out.inc_by(len * d.delivered as u64);
    }

    /// Tells the session controller and the inventory about a new subscription.
    fn joined(&self, name: &ChannelName, role: &Role) {
        match role {
            Role::Plain if name.as_str() == INVENTORY_CHANNEL => {
                crate::apps::listing::start(&self.app, &self.conn, self.app.config.limits.max_outbox_bytes);
            }
            Role::Plain => {}
            Role::Viewer(host) => {
                self.app.first_samples.viewer_joined(host, self.conn.socket_id, std::time::Instant::now());
                self.app.apply(self.app.sessions.viewer_joined(host, self.conn.socket_id, Clock::now()));
                self.app.announce_host(host);
            }
            Role::Agent(host) => {
                self.app.inventory.online(host, Clock::now().now_ms);
                self.app.announce_agent(host);
                self.app.apply(self.app.sessions.agent_joined(host, self.conn.socket_id));
                self.app.announce_host(host);
            }
        }
    }

    fn left(&self, role: &Role) {
        match role {
            Role::Plain => {}
            Role::Viewer(host) => {
                self.app.first_samples.viewer_left(host, self.conn.socket_id);
                self.app.sessions.viewer_left(host, Clock::now());
                self.app.announce_host(host);
            }
            Role::Agent(host) => {
                self.app.sessions.agent_left(host, self.conn.socket_id);
                self.app.inventory.offline(host, Clock::now().now_ms);
                self.app.announce_agent(host);
                self.app.announce_host(host);
            }
        }
    }

    /// Leaves every channel and the user registry.
    pub fn finish(mut self) {
        let n = self.channels.len() as i64;
        let channels = std::mem::take(&mut self.channels);
        let (changes, offline) = self.app.hub.unregister(&self.conn, channels.0.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>());
        self.app.metrics.subscriptions.dec_by(n);
        for (name, change) in &changes {
            self.app.announce_change(name, change);
        }
        if let Some(user) = offline {
            self.app.announce_user(&user, false);
        }
        for (_, sub) in &channels.0 {
            self.left(&sub.role);
        }
    }
}
