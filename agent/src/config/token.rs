//! Where the agent token comes from. It is read again before every connection attempt, so a
//! token replaced on disk (rotation, or a fresh one after expiry) takes effect without a
//! restart.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{FileConfig, Secret};

/// Name of the systemd credential (`LoadCredential=token:/etc/sonde-agent/token`), read from
/// `$CREDENTIALS_DIRECTORY/token`.
pub const CREDENTIAL: &str = "token";
/// A JWT is a few hundred bytes; anything much larger is not a token.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `SONDE_AGENT_TOKEN`: fixed for the life of the process.
    Value(Secret),
    /// `--token-file`, `token_file` in the config file, or the systemd credential.
    File(PathBuf),
    /// `token` in the config file, which is read again.
    ConfigFile(PathBuf),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(_) => f.write_str("Value(<redacted>)"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::ConfigFile(p) => f.debug_tuple("ConfigFile").field(p).finish(),
        }
    }
}

/// A source that yields no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the token file {0} is empty")]
    Empty(PathBuf),
    #[error("the token file {0} is larger than a token can be")]
    TooLarge(PathBuf),
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
}

impl TokenSource {
    /// The token as the source holds it now.
    pub fn read(&self) -> Result<Secret, TokenError> {
        match self {
            Self::Value(s) => Ok(s.clone()),
            Self::File(path) => read_file(path),
            Self::ConfigFile(path) => {
                let file = FileConfig::read(path).map_err(|e| TokenError::Config { path: path.clone(), message: e.to_string() })?;
                match (file.token, file.token_file) {
                    (Some(t), None) if !t.expose().trim().is_empty() => Ok(Secret::new(t.expose().trim())),
                    (None, Some(p)) => read_file(&p),
                    (Some(_), Some(_)) => Err(TokenError::Config { path: path.clone(), message: "both token and token_file are set".into() }),
                    (Some(_) | None, None) => Err(TokenError::Config { path: path.clone(), message: "no token in the file any more".into() }),
                }
            }
        }
    }

    /// Where the token comes from, for logs (never the token itself).
    pub fn describe(&self) -> String {
        match self {
            Self::Value(_) => "--token / SONDE_AGENT_TOKEN (fixed until restart)".into(),
            Self::File(p) => format!("the file {}", p.display()),
            Self::ConfigFile(p) => format!("`token` in {}", p.display()),
        }
    }
}

fn read_file(path: &Path) -> Result<Secret, TokenError> {
    let read = |e| TokenError::Read { path: path.to_owned(), source: e };
    let mut text = String::new();
    std::fs::File::open(path).map_err(read)?.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut text).map_err(read)?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(path.to_owned()));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty(path.to_owned()));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_again_each_time() {
        let dir = std::env::temp_dir().join(format!("sonde-agent-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first.jwt.sig\n").unwrap();
        let src = TokenSource::File(path.clone());
        assert_eq!(src.read().unwrap().expose(), "first.jwt.sig");
        std::fs::write(&path, "second.jwt.sig").unwrap();
        assert_eq!(src.read().unwrap().expose(), "second.jwt.sig");
        std::fs::write(&path, "  \n").unwrap();
        assert!(matches!(src.read(), Err(TokenError::Empty(_))));
        std::fs::write(&path, vec![b'a'; 70_000]).unwrap();
        assert!(matches!(src.read(), Err(TokenError::TooLarge(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(src.read(), Err(TokenError::Read { .. })));

        let toml = dir.join("agent.toml");
        std::fs::write(&toml, "token = \"from.the.file\"\n").unwrap();
        let src = TokenSource::ConfigFile(toml.clone());
        assert_eq!(src.read().unwrap().expose(), "from.the.file");
        std::fs::write(&toml, "relay = \"ws://r\"\n").unwrap();
        assert!(src.read().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn debug_and_descriptions_hide_the_token() {
        let v = TokenSource::Value(Secret::new("SECRET"));
        assert!(!format!("{v:?}").contains("SECRET") && !v.describe().contains("SECRET"));
        assert_eq!(TokenSource::File("/run/credentials/x/token".into()).describe(), "the file /run/credentials/x/token");
    }
}
