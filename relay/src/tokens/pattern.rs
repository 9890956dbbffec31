//! Channel patterns in token capabilities: an exact name, or a prefix ending in `*`.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub enum ChannelPattern {
    Exact(String),
    Prefix(String),
}

impl ChannelPattern {
    pub fn parse(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(p) => Self::Prefix(p.to_owned()),
            None => Self::Exact(s.to_owned()),
        }
    }

    pub fn matches(&self, channel: &str) -> bool {
        match self {
            Self::Exact(e) => e == channel,
            Self::Prefix(p) => channel.starts_with(p.as_str()),
        }
    }
}

impl fmt::Debug for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(e) => write!(f, "{e}"),
            Self::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// Whether any pattern covers `channel`.
pub fn covers(patterns: &[ChannelPattern], channel: &str) -> bool {
    patterns.iter().any(|p| p.matches(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_prefix() {
        let ps: Vec<_> = ["private-sonde-host.*", "private-sonde-inventory"].iter().map(|s| ChannelPattern::parse(s)).collect();
        assert!(covers(&ps, "private-sonde-host.web1"));
        assert!(covers(&ps, "private-sonde-inventory"));
        assert!(!covers(&ps, "private-sonde-inventory2"));
        assert!(!covers(&ps, "private-other"));
        assert!(!covers(&[], "x"));
        assert!(covers(&[ChannelPattern::parse("*")], "anything"));
    }
}
