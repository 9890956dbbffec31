//! Keeping secrets out of logs and `Debug` output.

/// A URL with its password (if any) replaced: `redis://user:secret@host` →
/// `redis://user:<redacted>@host`.
pub fn url(u: &str) -> String {
    let Some((scheme, rest)) = u.split_once("://") else { return u.to_owned() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return u.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None if scheme.starts_with("redis") => format!("{scheme}://<redacted>@{host}"),
        None => u.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_hidden() {
        assert_eq!(super::url("redis://:hunter2@10.0.0.1:6379/0"), "redis://:<redacted>@10.0.0.1:6379/0");
        assert_eq!(super::url("redis://app:hunter2@r:6379"), "redis://app:<redacted>@r:6379");
        assert_eq!(super::url("redis://hunter2@r"), "redis://<redacted>@r");
        assert_eq!(super::url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
