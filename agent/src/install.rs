//! The install id: 128 random bits created on first start and kept in the state directory.
//! It is never derived from anything about the host, so it identifies an installation without
//! revealing which machine it is.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const FILE: &str = "install_id";

/// An install id: 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallId(String);

impl InstallId {
    pub fn random() -> Self {
        Self(format!("{:032x}", rand::random::<u128>()))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for InstallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no usable state directory (tried {tried}): {last}")]
pub struct StateDirError {
    tried: String,
    last: io::Error,
}

/// Loads the id from the first of `dirs` that holds one or can be written, creating it there
/// if needed. Returns the id and the directory used. A directory that cannot be used is
/// reported at `warn` (the id, and with it the agent's identity, then lives elsewhere).
pub fn load_or_create(dirs: &[PathBuf]) -> Result<(InstallId, PathBuf), StateDirError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no state directory configured");
    for (i, dir) in dirs.iter().enumerate() {
        match load_or_create_in(dir) {
            Ok(id) => return Ok((id, dir.clone())),
            Err(e) => {
                let next = dirs.get(i + 1).map(|d| d.display().to_string());
                tracing::warn!(dir = %dir.display(), error = %e, next, "state directory not usable (give --state-dir to choose one)");
                last = e;
            }
        }
    }
    let tried = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(StateDirError { tried, last })
}

fn load_or_create_in(dir: &Path) -> io::Result<InstallId> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            if let Some(id) = InstallId::parse(&text) {
                return Ok(id);
            }
            tracing::warn!(path = %path.display(), "install id file is malformed; writing a new id");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(dir)?;
    let id = InstallId::random();
    // Write then rename, so a crash never leaves a half-written id behind.
    let tmp = dir.join(format!("{FILE}.tmp"));
    fs::write(&tmp, format!("{id}\n"))?;
    fs::rename(&tmp, &path)?;
    tracing::info!(path = %path.display(), "created install id");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sonde-agent-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn created_once_then_kept() {
        let dir = temp_dir("keep");
        let (a, used) = load_or_create(&[dir.join("state")]).unwrap();
        assert_eq!(used, dir.join("state"));
        assert_eq!(a.as_str().len(), 32);
        let (b, _) = load_or_create(&[dir.join("state")]).unwrap();
        assert_eq!(a, b);
        assert_ne!(InstallId::random(), InstallId::random());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn falls_back_when_a_directory_is_unusable() {
        let dir = temp_dir("fallback");
        fs::create_dir_all(&dir).unwrap();
        // A regular file where a directory should be: cannot be created or read as one.
        let blocked = dir.join("blocked");
        fs::write(&blocked, "").unwrap();
        let (_, used) = load_or_create(&[blocked.join("state"), dir.join("user")]).unwrap();
        assert_eq!(used, dir.join("user"));
        assert!(load_or_create(&[blocked.join("x")]).is_err());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn parses_only_well_formed_ids() {
        assert!(InstallId::parse("0123456789abcdef0123456789abcdef\n").is_some());
        assert!(InstallId::parse("0123456789ABCDEF0123456789abcdef").is_none());
        assert!(InstallId::parse("0123").is_none());
    }
}
