//! The TOML config file: the same settings as the flags, all optional.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `--config FILE`. Unknown keys are errors, so a typo does not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `--relay`: the relay's websocket URL.
    pub relay: Option<String>,
    /// `--ca-file`: a private CA's certificates, for a wss:// relay.
    pub ca_file: Option<PathBuf>,
    /// `--key`: the app key.
    pub key: Option<String>,
    /// `--token`: the agent token. Keep the file readable by the agent only. It is read again
    /// before every connection attempt.
    pub token: Option<super::Secret>,
    /// `--token-file`: a file holding the agent token.
    pub token_file: Option<PathBuf>,
    /// `--host`: the host name to report.
    pub host: Option<String>,
    /// `--state-dir`: where the install id is kept.
    pub state_dir: Option<PathBuf>,
    /// `--statsd`: an address, or "off".
    pub statsd: Option<String>,
    /// `--anonymous`: report the host by its install id only.
    #[serde(default)]
    pub anonymous: bool,
    /// `--disable-usage-statistics`: no minute snapshots.
    #[serde(default)]
    pub disable_usage_statistics: bool,
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Toml { path: path.to_owned(), message: e.to_string() })
    }

    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File { path: path.to_owned(), source: e })?;
        Self::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_keys_and_rejects_unknown_ones() {
        let f = FileConfig::parse(
            "relay = \"wss://r\"\nca_file = \"/etc/ca.pem\"\nkey = \"k\"\ntoken = \"t\"\ntoken_file = \"/run/t\"\nhost = \"web1\"\nstate_dir = \"/tmp/s\"\nstatsd = \"off\"\nanonymous = true\ndisable_usage_statistics = true\n",
            Path::new("a.toml"),
        )
        .unwrap();
        assert_eq!(f.relay.as_deref(), Some("wss://r"));
        assert_eq!(f.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(f.state_dir.as_deref(), Some(Path::new("/tmp/s")));
        assert_eq!(f.token_file.as_deref(), Some(Path::new("/run/t")));
        assert!(f.anonymous && f.disable_usage_statistics);
        assert!(FileConfig::parse("relya = \"x\"", Path::new("a.toml")).is_err());
        assert!(FileConfig::parse("", Path::new("a.toml")).unwrap().relay.is_none());
    }
}
