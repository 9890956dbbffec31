//! The `info` attributes a caller may ask of channels (`user_count`, `subscription_count`),
//! read once and written the same way by every endpoint that answers them.

use serde_json::{Map, Value};

use super::ApiError;
use crate::hub::ChannelInfo;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InfoAttrs {
    pub user_count: bool,
    pub subscription_count: bool,
}

impl InfoAttrs {
    /// Parses `info=user_count,subscription_count`; an unknown attribute is the caller's error.
    pub fn parse(info: Option<&str>) -> Result<Self, ApiError> {
        let mut out = Self::default();
        for attr in info.unwrap_or("").split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match attr {
                "user_count" => out.user_count = true,
                "subscription_count" => out.subscription_count = true,
                other => return Err(ApiError::bad_request(format!("unknown info attribute '{other}' (use user_count, subscription_count)"))),
            }
        }
        Ok(out)
    }

    pub fn any(self) -> bool {
        self.user_count || self.subscription_count
    }

    /// The attributes asked for, of one channel (`user_count` only where there is one: a
    /// presence channel).
    pub fn of(self, info: &ChannelInfo) -> Map<String, Value> {
        let mut attrs = Map::new();
        if let (true, Some(u)) = (self.user_count, info.user_count) {
            attrs.insert("user_count".into(), u.into());
        }
        if self.subscription_count {
            attrs.insert("subscription_count".into(), info.subscription_count.into());
        }
        attrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_attributes_and_refuses_others() {
        assert_eq!(InfoAttrs::parse(None).unwrap(), InfoAttrs::default());
        assert_eq!(InfoAttrs::parse(Some(" user_count , subscription_count")).unwrap(), InfoAttrs { user_count: true, subscription_count: true });
        assert!(InfoAttrs::parse(Some("user_count,members")).is_err());
    }
}
