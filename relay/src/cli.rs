//! Command-line flags and their environment mirrors (`SONDE_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{AppConfig, Config, ConfigError};

/// Development app used when no app is configured: for a first look on 127.0.0.1 only.
pub const DEV_APP: &str = "1:sonde-dev:sonde-dev-secret";

#[derive(Debug, Parser)]
#[command(name = "sonde-relay", version, about = "Sonde: a Pusher-compatible realtime relay for live metrics")]
pub struct Cli {
    /// TOML configuration file; flags override it.
    #[arg(long, env = "SONDE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on (websocket, HTTP API, dashboard).
    #[arg(long, env = "SONDE_BIND")]
    pub bind: Option<SocketAddr>,
    /// An app as ID:KEY:SECRET (repeatable; comma-separated in SONDE_APP).
    #[arg(long = "app", env = "SONDE_APP", value_delimiter = ',')]
    pub apps: Vec<String>,
    /// Log format: text or json.
    #[arg(long, env = "SONDE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (the default).
    Serve,
}

impl Cli {
    /// The effective configuration: file, then flags; the development app when none is given.
    pub fn load(&self) -> Result<(Config, bool), ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)?,
            None => Config::default(),
        };
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        for spec in &self.apps {
            config.apps.push(AppConfig::from_flag(spec)?);
        }
        let dev = config.apps.is_empty();
        if dev {
            config.apps.push(AppConfig::from_flag(DEV_APP)?);
        }
        config.validate()?;
        Ok((config, dev))
    }
}
