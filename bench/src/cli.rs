//! Command line.

use clap::{Args, Parser, Subcommand};

use crate::publish::Via;

#[derive(Debug, Parser)]
#[command(name = "sonde-bench", version, about = "Load generator for Sonde and any Pusher Channels (protocol 7) server.")]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Server host (websocket and HTTP API).
    #[arg(long, global = true, default_value = "127.0.0.1", env = "SONDE_BENCH_HOST")]
    pub host: String,
    /// Server port (websocket and HTTP API).
    #[arg(long, global = true, default_value_t = 6001, env = "SONDE_BENCH_PORT")]
    pub port: u16,
    #[arg(long, global = true, default_value = "1", env = "SONDE_BENCH_APP_ID")]
    pub app_id: String,
    #[arg(long, global = true, default_value = "key", env = "SONDE_BENCH_KEY")]
    pub key: String,
    #[arg(long, global = true, default_value = "secret", env = "SONDE_BENCH_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The server's process id, to report its CPU time and RSS (Linux /proc).
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, global = true)]
    pub save: Option<std::path::PathBuf>,
    /// On loopback, spread connections over 127.0.0.2, 127.0.0.3, … (each has its own
    /// ephemeral port range); 0 lets the kernel pick the source address.
    #[arg(long, global = true, default_value_t = 16)]
    pub source_addrs: u8,
    /// Worker threads of the bench's runtime (default: one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Before measuring, wait up to this many seconds for other processes to leave the
    /// machine nearly idle (below 0.2 cores); 0 does not wait.
    #[arg(long, global = true, default_value_t = 0)]
    pub wait_quiet: u64,
    /// Handshakes in flight while opening connections.
    #[arg(long, global = true, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Connect over TLS (wss:// and https://), verifying the server as --host.
    #[arg(long, global = true)]
    pub tls: bool,
    /// With --tls, trust only the CA certificates in this PEM file (default: the system's
    /// roots). `sonde-bench tls-certs DIR` writes a throwaway one.
    #[arg(long, global = true, requires = "tls")]
    pub tls_ca: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N subscribed connections that do nothing: server memory per connection.
    Idle(IdleArgs),
    /// One channel, N subscribers, one publisher at R msg/s: throughput, loss, latency.
    Broadcast(BroadcastArgs),
    /// H hosts publishing a ~1 KB sample each second to V viewers each, plus idle connections.
    Metrics(MetricsArgs),
    /// Connect, authorised subscribe, close, R times a second.
    Churn(ChurnArgs),
    /// Signed HTTP API publishes with C requests in flight.
    Http(HttpArgs),
    /// A viewer subscribes to a real agent's host channel, again and again: subscribe → first
    /// live sample, and the agent's own CPU and memory while it streams.
    Session(SessionArgs),
    /// A broadcast measured alone and then while thousands of hostile sockets attack the
    /// server: the normal clients' loss and latency, health checks, what the server holds after.
    Hostile(HostileArgs),
    /// The attack of `hostile` alone, in a child process (started by it).
    #[command(hide = true)]
    HostileAttack(HostileAttackArgs),
    /// StatsD load on a real agent: its CPU and RSS, kernel drops, what its samples carry.
    AgentLoad(crate::scenario::agent_load::AgentLoadArgs),
    /// A broadcast while thousands of channels a second are occupied and vacated, with a
    /// webhook receiver: run against a relay with and without webhooks to see their cost.
    Webhooks(crate::scenario::webhooks::WebhooksArgs),
    /// N simulated agents (as `sonde-agent` speaks), dashboards on the inventory, viewers
    /// starting sessions; optionally a relay restart and the reconnect curve.
    Fleet(crate::scenario::fleet::FleetArgs),
    /// The cheapest possible fan-out on this machine: a child process that only writes the
    /// same frames to N subscribers (no protocol, no queues), read by the usual subscribers.
    Floor(FloorArgs),
    /// The child process of `floor` (started by it).
    #[command(hide = true)]
    FloorServer(FloorServerArgs),
    /// New connections as fast as C in flight allow (upgrade to `connection_established`,
    /// then close): server CPU per connection; with --tls, full and resumed handshakes.
    Handshakes(crate::scenario::handshakes::HandshakesArgs),
    /// Writes a throwaway CA (ca.pem) and a server certificate (cert.pem, key.pem) into DIR
    /// for measuring a TLS relay, and prints the relay's flags.
    TlsCerts {
        dir: std::path::PathBuf,
        /// DNS names and IP addresses the certificate is for.
        #[arg(long = "name", default_values = ["localhost", "127.0.0.1", "::1"])]
        names: Vec<String>,
    },
    /// Markdown tables of the JSON reports in a folder (as `run-all.sh` writes them).
    Summary { dir: std::path::PathBuf },
}

#[derive(Debug, Args)]
pub struct IdleArgs {
    #[arg(long, short = 'n', default_value_t = 20_000)]
    pub connections: usize,
    /// Connections are spread over this many channels (`idle-0`, `idle-1`, …).
    #[arg(long, default_value_t = 100)]
    pub channels: usize,
    /// Subscribe to private channels (with auth) instead of public ones.
    #[arg(long)]
    pub private: bool,
    /// Seconds to hold the connections before the second measurement.
    #[arg(long, default_value_t = 5)]
    pub hold: u64,
}

/// One channel's load: its subscribers and the messages published to it.
#[derive(Debug, Args)]
pub struct ChannelLoad {
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages a second; a comma list runs steps over the same subscribers (`broadcast`
    /// stops at the first step that is not sustained).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub rate: Vec<f64>,
    /// Seconds of publishing per step.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Approximate size of each message's data, bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Seconds to wait after a step for late deliveries.
    #[arg(long, default_value_t = 3)]
    pub drain: u64,
}

#[derive(Debug, Args)]
pub struct BroadcastArgs {
    #[command(flatten)]
    pub load: ChannelLoad,
    #[arg(long, value_enum, default_value_t = Via::Http)]
    pub via: Via,
    /// Percentage of subscribers that subscribe and then never read their socket.
    #[arg(long, default_value_t = 0.0)]
    pub stalled: f64,
    /// Receive buffer (SO_RCVBUF) of the stalled subscribers' sockets, bytes.
    #[arg(long, default_value_t = 4096)]
    pub stalled_rcvbuf: u32,
    /// HTTP publishes in flight at most.
    #[arg(long, default_value_t = 64)]
    pub http_inflight: usize,
    /// Publish through another server of the same cluster (host:port), to measure cross-node
    /// delivery: subscribers stay on `--host`/`--port`.
    #[arg(long)]
    pub publish_to: Option<std::net::SocketAddr>,
    /// A step is sustained when nothing is lost and the deliveries still queued when
    /// publishing stops arrive within this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub max_drain_ms: u64,
}

#[derive(Debug, Args, Clone)]
pub struct AttackArgs {
    /// Hostile sockets, each repeating one attack (slow head, trickled body, silence,
    /// garbage frames, an overflowing length, a disconnect mid-frame) from 200 addresses.
    #[arg(long, default_value_t = 3000)]
    pub attackers: usize,
    /// How long an attacker turned away at once waits before it tries again, ms.
    #[arg(long, default_value_t = 1000)]
    pub retry_ms: u64,
    /// Sockets a single address tries to hold at once.
    #[arg(long, default_value_t = 2000)]
    pub flood: usize,
    /// The app key the hostile websocket requests name.
    #[arg(long, default_value = "key")]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct HostileArgs {
    #[command(flatten)]
    pub load: ChannelLoad,
    #[command(flatten)]
    pub attack: AttackArgs,
    /// Seconds to wait after the attack for the server to let go of it.
    #[arg(long, default_value_t = 30)]
    pub settle: u64,
    /// Port of the server's separate metrics listener (`metrics_bind`), where `/healthz` and
    /// `/metrics` are read; default: the main port.
    #[arg(long)]
    pub health_port: Option<u16>,
    /// Run the attack in a child process at this niceness (e.g. 19), so the attackers' own
    /// work on a small machine yields to the relay and the measuring readers.
    #[arg(long)]
    pub attack_nice: Option<i32>,
}

#[derive(Debug, Args)]
pub struct HostileAttackArgs {
    #[command(flatten)]
    pub attack: AttackArgs,
    /// How long to attack.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[arg(long, default_value_t = 500)]
    pub hosts: usize,
    #[arg(long, default_value_t = 2)]
    pub viewers: usize,
    /// Extra connections that subscribe to nothing.
    #[arg(long, default_value_t = 0)]
    pub idle: usize,
    #[arg(long, default_value_t = 15)]
    pub duration: u64,
    #[arg(long, value_enum, default_value_t = Via::Http)]
    pub via: Via,
    /// Approximate size of one sample's JSON, bytes.
    #[arg(long, default_value_t = 1000)]
    pub sample_bytes: usize,
    #[arg(long, default_value_t = 3)]
    pub drain: u64,
}

#[derive(Debug, Args)]
pub struct ChurnArgs {
    /// Connects a second to start (0: as many as the concurrency allows).
    #[arg(long, default_value_t = 5000.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Connect-subscribe-close cycles in flight at most.
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The agent's host name (its channel is `private-sonde-host.{host}`).
    #[arg(long = "agent-host")]
    pub agent_host: String,
    /// The agent's process id, to report its CPU and RSS while it streams.
    #[arg(long)]
    pub agent_pid: Option<u32>,
    #[arg(long, default_value_t = 30)]
    pub iterations: usize,
    /// Seconds each viewer watches before leaving.
    #[arg(long, default_value_t = 3.0)]
    pub watch: f64,
    /// Milliseconds between leaving and the next subscribe (longer than the relay's session
    /// grace, so every iteration starts a new session).
    #[arg(long, default_value_t = 1500)]
    pub gap_ms: u64,
}

#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Requests in flight.
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Publishes a second in total (0: as fast as the server answers).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Websocket subscribers of the published channel.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    #[arg(long, default_value_t = 3)]
    pub drain: u64,
}

#[derive(Debug, Args)]
pub struct FloorArgs {
    #[command(flatten)]
    pub load: ChannelLoad,
    /// Threads writing in parallel, each to its share of the subscribers.
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
}

#[derive(Debug, Args)]
pub struct FloorServerArgs {
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
}
