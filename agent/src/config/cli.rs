//! Command-line flags. Each has a `SONDE_AGENT_*` environment variable; clap reads the process
//! environment itself, and tests hand in their own variables instead (see [`parse`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// Sonde's agent: per-second host metrics, streamed to the relay only while someone watches.
#[derive(Debug, Default, Parser)]
#[command(name = "sonde-agent", version, about)]
pub struct Cli {
    /// Relay websocket URL: ws://HOST:PORT, or wss://HOST[:PORT] (TLS, verified)
    #[arg(long, env = "SONDE_AGENT_RELAY", value_name = "URL")]
    pub relay: Option<String>,
    /// PEM file of a private CA to trust for wss://, besides the system's trust store
    #[arg(long, env = "SONDE_AGENT_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The app key the relay knows this account by
    #[arg(long, env = "SONDE_AGENT_KEY")]
    pub key: Option<String>,
    /// Agent token (JWT) for this host's channel. On the command line `ps` shows it: prefer
    /// --token-file, or this variable
    #[arg(long, env = "SONDE_AGENT_TOKEN", value_name = "JWT", hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<super::Secret>,
    /// File holding the agent token, read again before every connection attempt (replace it to
    /// rotate the token) [default: $CREDENTIALS_DIRECTORY/token when systemd provides it]
    #[arg(long, env = "SONDE_AGENT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Host name to report [default: the system's host name]
    #[arg(long, env = "SONDE_AGENT_HOST", value_name = "NAME")]
    pub host: Option<String>,
    /// Where the install id is kept [default: /var/lib/sonde-agent, or a user directory]
    #[arg(long, env = "SONDE_AGENT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// StatsD/DogStatsD UDP listen address, or "off" [default: 127.0.0.1:8125]
    #[arg(long, env = "SONDE_AGENT_STATSD", value_name = "ADDR|off")]
    pub statsd: Option<String>,
    /// Report the host by its install id only, never by name
    #[arg(long, env = "SONDE_AGENT_ANONYMOUS", action = ArgAction::SetTrue)]
    pub anonymous: bool,
    /// Send no minute snapshots; only answer sessions (DO_NOT_TRACK=1 does the same)
    #[arg(long, env = "SONDE_AGENT_DISABLE_USAGE_STATISTICS", action = ArgAction::SetTrue)]
    pub disable_usage_statistics: bool,
    /// TOML file with the same settings (flags and environment take precedence)
    #[arg(long, env = "SONDE_AGENT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Where environment variables come from.
#[derive(Debug, Clone)]
pub enum Env {
    /// The process environment, read by clap.
    Process,
    /// Variables given explicitly (tests).
    Map(HashMap<String, String>),
}

impl Env {
    pub fn var(&self, name: &str) -> Option<String> {
        match self {
            Self::Process => std::env::var(name).ok(),
            Self::Map(m) => m.get(name).cloned(),
        }
    }
}

/// clap's reading of boolean environment values.
pub fn truthy(v: &str) -> bool {
    !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "n" | "no" | "f" | "false" | "off")
}

/// Parses `args` (program name first). With [`Env::Map`], the variables become flags placed
/// before the real arguments, and later flags win, so the command line still overrides them.
pub fn parse(args: &[OsString], env: &Env) -> Result<Cli, clap::Error> {
    let cmd = Cli::command().args_override_self(true);
    let Env::Map(vars) = env else {
        return Cli::from_arg_matches(&cmd.try_get_matches_from(args)?);
    };
    let mut argv: Vec<OsString> = vec![args.first().cloned().unwrap_or_else(|| "sonde-agent".into())];
    for arg in cmd.get_arguments() {
        let (Some(name), Some(long)) = (arg.get_env().and_then(|e| e.to_str()), arg.get_long()) else { continue };
        let Some(value) = vars.get(name) else { continue };
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            if truthy(value) {
                argv.push(format!("--{long}").into());
            }
        } else {
            argv.push(format!("--{long}={value}").into());
        }
    }
    argv.extend(args.iter().skip(1).cloned());
    let cmd = cmd.mut_args(|a| a.env(None::<&'static str>));
    Cli::from_arg_matches(&cmd.try_get_matches_from(argv)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        std::iter::once("sonde-agent").chain(a.iter().copied()).map(OsString::from).collect()
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::Map(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn flags_and_env_with_flags_winning() {
        let e = env(&[("SONDE_AGENT_RELAY", "ws://env:1"), ("SONDE_AGENT_KEY", "k"), ("SONDE_AGENT_ANONYMOUS", "1")]);
        let cli = parse(&args(&["--relay", "ws://flag:2"]), &e).unwrap();
        assert_eq!(cli.relay.as_deref(), Some("ws://flag:2"));
        assert_eq!(cli.key.as_deref(), Some("k"));
        assert!(cli.anonymous);
        assert!(!cli.disable_usage_statistics);
        let cli = parse(&args(&[]), &env(&[("SONDE_AGENT_ANONYMOUS", "false")])).unwrap();
        assert!(!cli.anonymous);
    }

    #[test]
    fn every_flag_has_an_agent_env_var() {
        for arg in Cli::command().get_arguments() {
            if arg.get_long().is_some_and(|l| l != "help" && l != "version") {
                let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
                assert!(env.starts_with("SONDE_AGENT_"), "--{} has no SONDE_AGENT_ variable", arg.get_long().unwrap());
            }
        }
    }

    #[test]
    fn unknown_flags_are_errors() {
        assert!(parse(&args(&["--nope"]), &env(&[])).is_err());
        assert!(parse(&args(&["--statsd"]), &env(&[])).is_err());
    }
}
