//! Pusher signatures: channel and user authorisation, and HTTP API request signing.
//! Every comparison is constant time.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// hex(HMAC-SHA256(secret, message)).
pub fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a hex signature in constant time.
pub fn verify_hmac_hex(secret: &str, message: &str, signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else { return false };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// The string signed for a channel subscription: `socket_id:channel[:channel_data]`.
pub fn channel_string(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(d) => format!("{socket_id}:{channel}:{d}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string signed for a user sign-in: `socket_id::user::user_data`.
pub fn user_string(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// `key:hex(HMAC)` as an auth endpoint returns it.
pub fn auth_token(key: &str, secret: &str, signed: &str) -> String {
    format!("{key}:{}", hmac_hex(secret, signed))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("auth must have the form '<key>:<signature>'")]
    Malformed,
    #[error("auth was made for another app key")]
    WrongKey,
    #[error("invalid signature: expected HMAC SHA256 hex digest of '{0}'")]
    BadSignature(String),
}

/// Verifies a `key:signature` auth string against the string that should have been signed.
pub fn verify_auth(auth: &str, key: &str, secret: &str, signed: &str) -> Result<(), AuthError> {
    let (k, sig) = auth.split_once(':').ok_or(AuthError::Malformed)?;
    // The key is public, so comparing it in variable time leaks nothing.
    if k != key {
        return Err(AuthError::WrongKey);
    }
    if verify_hmac_hex(secret, signed, sig) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(signed.to_owned()))
    }
}

/// hex(MD5(body)), as `body_md5`.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The HTTP API string to sign: `METHOD\nPATH\nQUERY`, where QUERY is every parameter but
/// `auth_signature`, keys lower-cased, sorted, joined as `k=v&…`, not URL-escaped.
pub fn request_string(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut ps: Vec<(String, &str)> = params.iter().filter(|(k, _)| k != "auth_signature").map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
    ps.sort();
    let query: Vec<String> = ps.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}\n{}\n{}", method.to_ascii_uppercase(), path, query.join("&"))
}

/// Signs an HTTP API request and returns the full query string (for clients: tests, bench).
pub fn sign_request(method: &str, path: &str, key: &str, secret: &str, timestamp: u64, body: &[u8], extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(String, String)> =
        vec![("auth_key".into(), key.into()), ("auth_timestamp".into(), timestamp.to_string()), ("auth_version".into(), "1.0".into())];
    if !body.is_empty() {
        params.push(("body_md5".into(), body_md5(body)));
    }
    params.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let sig = hmac_hex(secret, &request_string(method, path, &params));
    params.push(("auth_signature".into(), sig));
    params.iter().map(|(k, v)| format!("{k}={}", url_escape(v))).collect::<Vec<_>>().join("&")
}

/// Percent-encodes all but RFC 3986's unreserved characters (a JWT passes through unchanged).
pub fn url_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of the Pusher HTTP API reference.
    #[test]
    fn http_api_reference_vector() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let params = vec![
            ("auth_key".to_owned(), "278d425bdf160c739803".to_owned()),
            ("auth_timestamp".to_owned(), "1353088179".to_owned()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            ("body_md5".to_owned(), body_md5(body)),
        ];
        let s = request_string("POST", "/apps/3/events", &params);
        assert_eq!(
            s,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(hmac_hex("7ad3773142a6692b25b8", &s), "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c");
        let q = sign_request("POST", "/apps/3/events", "278d425bdf160c739803", "7ad3773142a6692b25b8", 1353088179, body, &[]);
        assert!(q.ends_with("auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"));
    }

    #[test]
    fn channel_auth_round_trip() {
        let signed = channel_string("1234.1234", "private-foobar", None);
        let auth = auth_token("278d425bdf160c739803", "7ad3773142a6692b25b8", &signed);
        // The private-channel example of the Pusher auth-signature docs.
        assert_eq!(auth, "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4");
        assert_eq!(verify_auth(&auth, "278d425bdf160c739803", "7ad3773142a6692b25b8", &signed), Ok(()));
        assert_eq!(verify_auth(&auth, "other", "7ad3773142a6692b25b8", &signed), Err(AuthError::WrongKey));
        assert!(matches!(verify_auth(&auth, "278d425bdf160c739803", "x", &signed), Err(AuthError::BadSignature(_))));
        assert_eq!(verify_auth("nocolon", "k", "s", &signed), Err(AuthError::Malformed));
        assert!(matches!(verify_auth("k:zz", "k", "s", &signed), Err(AuthError::BadSignature(_))));
        assert_eq!(user_string("1.2", "{}"), "1.2::user::{}");
    }
}
