//! The agent's configuration: plain data, assembled from flags, `SONDE_AGENT_*` variables, a
//! TOML file and defaults, in that order of precedence. The sources are passed in
//! ([`Sources`]), so tests never touch the process environment.

mod cli;
mod file;
mod token;

use std::ffi::OsString;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

pub use cli::{Cli, Env};
pub use file::FileConfig;
pub use sonde_ca::{read_ca_file, CaError};
pub use token::{TokenError, TokenSource, CREDENTIAL};

/// Where the install id lives when `--state-dir` is not given.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sonde-agent";
/// The StatsD listener's default address: loopback only, the standard StatsD port.
pub const DEFAULT_STATSD: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8125));

/// A value that must never reach logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// As a flag's value (`--token`), so the parsed flags never show it in `Debug` either.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(s))
    }
}

/// As a config file's value (`token = …`).
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

/// Everything the agent needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Relay base URL, `ws://HOST:PORT` or `wss://HOST[:PORT]`; a path prefix is allowed.
    pub relay: String,
    /// A private CA the relay's certificate may chain to, trusted besides the system's store.
    pub ca_file: Option<PathBuf>,
    /// The app key in the relay.
    pub key: String,
    /// Where the agent token (a JWT authorising this agent for its host channel) is read from,
    /// before every connection attempt.
    pub token: TokenSource,
    /// The token was given with `--token` on the command line, where `ps` shows it.
    pub token_in_args: bool,
    /// The host name reported and used in the channel name (unless `anonymous`).
    pub host: String,
    /// Directories to keep the install id in, tried in order.
    pub state_dirs: Vec<PathBuf>,
    /// Where the StatsD listener binds; `None` turns it off.
    pub statsd: Option<SocketAddr>,
    /// Report the host by its install id only.
    pub anonymous: bool,
    /// Send the minute snapshot. Off with `--disable-usage-statistics` or `DO_NOT_TRACK`.
    pub usage_statistics: bool,
}

/// The inputs configuration is read from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Command-line arguments, program name first.
    pub args: Vec<OsString>,
    pub env: Env,
}

impl Sources {
    /// This process's arguments and environment.
    pub fn process() -> Self {
        Self { args: std::env::args_os().collect(), env: Env::Process }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Includes `--help` and `--version`, which clap reports as errors: show and exit.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("--{0} is required (or SONDE_AGENT_{upper}, or `{0}` in the config file)", upper = .0.to_uppercase())]
    Missing(&'static str),
    #[error(
        "no agent token: give --token-file FILE (or SONDE_AGENT_TOKEN_FILE, `token_file` in the config file, or a systemd credential named `{CREDENTIAL}`), or --token / SONDE_AGENT_TOKEN"
    )]
    NoToken,
    #[error("{0}: set either `token` or `token_file`, not both")]
    TwoTokens(PathBuf),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("--relay must be a ws:// or wss:// URL, got {0:?}")]
    BadRelay(String),
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("host name {0:?} cannot be used in a channel name (allowed: letters, digits, _-=@,.;)")]
    BadHost(String),
    #[error("--statsd must be an address like 127.0.0.1:8125 or \"off\", got {0:?}")]
    BadStatsd(String),
}

/// Reads the configuration from `src`.
pub fn load(src: &Sources) -> Result<Config, ConfigError> {
    let cli = cli::parse(&src.args, &src.env)?;
    let file = match &cli.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let relay = cli.relay.clone().or_else(|| file.relay.clone()).ok_or(ConfigError::Missing("relay"))?;
    match relay.split_once("://") {
        Some(("ws", rest)) if !rest.is_empty() => {}
        Some(("wss", rest)) if !rest.is_empty() => {}
        _ => return Err(ConfigError::BadRelay(relay)),
    }
    let ca_file = cli.ca_file.clone().or_else(|| file.ca_file.clone());
    if let Some(path) = &ca_file {
        read_ca_file(path)?;
    }
    let key = cli.key.clone().or_else(|| file.key.clone()).ok_or(ConfigError::Missing("key"))?;
    let token = token_source(&cli, &file, &src.env)?;
    // Checked once here so a wrong path stops the agent at start, with a clear message.
    token.read()?;
    let host = cli.host.or(file.host).unwrap_or_else(system_host_name);
    if sonde_protocol::sonde::host_channel(&host).is_err() {
        return Err(ConfigError::BadHost(host));
    }
    let token_in_args = src.args.iter().skip(1).any(|a| a == "--token" || a.to_string_lossy().starts_with("--token="));
    let state_dirs = match cli.state_dir.or(file.state_dir) {
        Some(dir) => vec![dir],
        None => default_state_dirs(&src.env),
    };
    let statsd = match cli.statsd.or(file.statsd).as_deref() {
        None => Some(DEFAULT_STATSD),
        Some("off") => None,
        Some(addr) => Some(addr.parse().map_err(|_| ConfigError::BadStatsd(addr.to_owned()))?),
    };
    let do_not_track = src.env.var("DO_NOT_TRACK").is_some_and(|v| cli::truthy(&v));
    Ok(Config {
        relay,
        ca_file,
        key,
        token,
        token_in_args,
        host,
        state_dirs,
        statsd,
        anonymous: cli.anonymous || file.anonymous,
        usage_statistics: !(cli.disable_usage_statistics || file.disable_usage_statistics || do_not_track),
    })
}

/// Flags and their variables first, then the config file, then a systemd credential.
fn token_source(cli: &Cli, file: &FileConfig, env: &Env) -> Result<TokenSource, ConfigError> {
    if let Some(t) = &cli.token {
        return Ok(TokenSource::Value(Secret::new(t.expose().trim())));
    }
    if let Some(p) = &cli.token_file {
        return Ok(TokenSource::File(p.clone()));
    }
    let config_path = cli.config.clone().unwrap_or_default();
    match (&file.token, &file.token_file) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoTokens(config_path)),
        (None, Some(p)) => return Ok(TokenSource::File(p.clone())),
        (Some(_), None) => return Ok(TokenSource::ConfigFile(config_path)),
        (None, None) => {}
    }
    let credential = env.var("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join(CREDENTIAL));
    match credential {
        Some(path) if path.exists() => Ok(TokenSource::File(path)),
        Some(_) | None => Err(ConfigError::NoToken),
    }
}

/// The system directory, then the user's state directory. Never the temp directory: an
/// install id there would change with every reboot, and the agent with it.
fn default_state_dirs(env: &Env) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(DEFAULT_STATE_DIR)];
    if let Some(x) = env.var("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        dirs.push(PathBuf::from(x).join("sonde-agent"));
    } else if let Some(home) = env.var("HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join(".local/state/sonde-agent"));
    }
    dirs
}

fn system_host_name() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    // The short name: `web1.example.com` shows as `web1`, as most dashboards do.
    name.split('.').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests;
