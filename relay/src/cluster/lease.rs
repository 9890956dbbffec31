//! The session leader's lease: one Redis key, `{prefix}:leader` = `{term}:{node}`, taken only
//! while nobody holds it and renewed by its holder every heartbeat with the node timeout as its
//! time to live. Whoever holds it runs the sessions. It changes hands only when its holder
//! stops renewing (it died or lost Redis) or lets it go on shutdown; a node joining, whatever
//! its id, never takes it.
//!
//! Terms fence a deposed leader: every directive and table carries the term it speaks for, and
//! nodes drop what comes from a term older than one they heard. A new term is above the last
//! one Redis stored, above every term the claiming node heard, and at least Redis's clock in
//! milliseconds, so terms keep growing even after Redis restarts empty.
//!
//! A node restarted with the same id (see `RedisConfig::node_id`) takes its own lease back at
//! once: node ids must be unique in a cluster.

use redis::aio::MultiplexedConnection;

type Res<T> = redis::RedisResult<T>;

/// KEYS: leader, term. ARGV: node, highest term heard, time to live (ms).
/// Returns {1, term, node} when taken, {0, holder's term, holder} when another node holds it.
const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local t = string.match(cur, '^(%d+):')
  if t and string.sub(cur, #t + 2) ~= ARGV[1] then
    return {0, tonumber(t), string.sub(cur, #t + 2)}
  end
end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local term = math.max(tonumber(redis.call('GET', KEYS[2]) or '0') + 1, tonumber(ARGV[2]) + 1, ms)
local s = string.format('%.0f', term)
redis.call('SET', KEYS[2], s)
redis.call('SET', KEYS[1], s .. ':' .. ARGV[1], 'PX', ARGV[3])
return {1, term, ARGV[1]}
";

/// KEYS: leader. ARGV: `{term}:{node}`, time to live (ms). 1 when still held and renewed.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// KEYS: leader. ARGV: `{term}:{node}`.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Claim {
    /// This node leads for the term.
    Won(u64),
    /// Another node (the id) leads for the term.
    Held(u64, String),
}

pub(super) struct Lease {
    key: String,
    term_key: String,
    node: String,
    ttl_ms: u64,
}

impl Lease {
    pub(super) fn new(prefix: &str, node: &str, ttl_ms: u64) -> Self {
        Self { key: format!("{prefix}:leader"), term_key: format!("{prefix}:leader-term"), node: node.to_owned(), ttl_ms }
    }

    fn value(&self, term: u64) -> String {
        format!("{term}:{}", self.node)
    }

    pub(super) async fn claim(&self, con: &mut MultiplexedConnection, heard: u64) -> Res<Claim> {
        let (won, term, holder): (u8, u64, String) =
            redis::cmd("EVAL").arg(CLAIM).arg(2).arg(&self.key).arg(&self.term_key).arg(&self.node).arg(heard).arg(self.ttl_ms).query_async(con).await?;
        Ok(if won == 1 { Claim::Won(term) } else { Claim::Held(term, holder) })
    }

    /// Whether this node still holds the lease of `term` (now renewed).
    pub(super) async fn renew(&self, con: &mut MultiplexedConnection, term: u64) -> Res<bool> {
        let renewed: i64 = redis::cmd("EVAL").arg(RENEW).arg(1).arg(&self.key).arg(self.value(term)).arg(self.ttl_ms).query_async(con).await?;
        Ok(renewed == 1)
    }

    /// Lets the lease go, so another node takes over without waiting for it to expire.
    pub(super) async fn release(&self, con: &mut MultiplexedConnection, term: u64) -> Res<()> {
        redis::cmd("EVAL").arg(RELEASE).arg(1).arg(&self.key).arg(self.value(term)).query_async::<i64>(con).await.map(drop)
    }
}
