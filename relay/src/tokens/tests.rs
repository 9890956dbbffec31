use super::*;
fn app() -> KeySettings<'static> {
    KeySettings { app_id: "1", secret: "secret", public_keys: Vec::new(), leeway_s: 30 }
}

fn claims(exp_in: i64) -> Claims {
    let mut c = role_claims("1", "viewer", None, None, Duration::from_secs(60)).unwrap();
    c.exp = (now_s() as i64 + exp_in) as u64;
    c
}

fn forge(header: &str, claims: &serde_json::Value, sig: &str) -> String {
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.{}", e(header), e(&claims.to_string()), sig)
}

#[test]
fn hs256_round_trip_and_capabilities() {
    let v = Verifier::new(&app()).unwrap();
    let g = v.verify(&mint_hs256(&claims(60), "secret")).unwrap();
    assert!(g.may_subscribe("private-sonde-host.web1"));
    assert!(g.may_subscribe(INVENTORY_CHANNEL));
    assert!(!g.may_publish("private-sonde-host.web1"), "viewers publish nothing");
    let agent = role_claims("1", "agent", Some("web1"), None, Duration::from_secs(60)).unwrap();
    let g = v.verify(&mint_hs256(&agent, "secret")).unwrap();
    assert!(g.may_publish("private-sonde-host.web1") && !g.may_publish("private-sonde-host.web2"));
    assert!(!g.may_subscribe("private-sonde-host.web2"));
}

#[test]
fn rejections_table() {
    let v = Verifier::new(&app()).unwrap();
    let now = now_s();
    let c = serde_json::to_value(claims(60)).unwrap();
    let mut other_app = claims(60);
    other_app.app = "2".into();
    let mut future = claims(600);
    future.nbf = Some(now + 300);
    let cases: Vec<(String, TokenError)> = vec![
        (forge(r#"{"alg":"none","typ":"JWT"}"#, &c, ""), TokenError::AlgNone),
        (forge(r#"{"alg":"RS256","typ":"JWT"}"#, &c, "abc"), TokenError::AlgNotRegistered("RS256".into())),
        (forge(r#"{"alg":"HS512","typ":"JWT"}"#, &c, "abc"), TokenError::AlgNotRegistered("HS512".into())),
        (mint_hs256(&claims(60), "other-secret"), TokenError::BadSignature),
        (mint_hs256(&claims(-3600), "secret"), TokenError::Expired),
        (mint_hs256(&future, "secret"), TokenError::NotYetValid),
        (mint_hs256(&other_app, "secret"), TokenError::WrongApp("2".into())),
    ];
    for (token, want) in cases {
        assert_eq!(v.verify(&token).unwrap_err(), want);
    }
    for bad in ["", "a.b", "a.b.c.d", "!!!.???.x"] {
        assert!(matches!(v.verify(bad), Err(TokenError::Malformed(_))), "{bad}");
    }
}

#[test]
fn clock_skew_is_tolerated() {
    let v = Verifier::new(&app()).unwrap();
    assert!(v.verify(&mint_hs256(&claims(-10), "secret")).is_ok(), "10 s past expiry is within the 30 s leeway");
    assert_eq!(v.verify(&mint_hs256(&claims(-40), "secret")).unwrap_err(), TokenError::Expired);
}

#[test]
fn jwt_and_hmac_auth_strings_are_told_apart() {
    assert!(looks_like_jwt("eyJ.eyJ.sig"));
    assert!(!looks_like_jwt("key:abcdef"));
    assert_eq!(parse_ttl("12h").unwrap(), Duration::from_secs(43200));
    assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
    assert!(parse_ttl("1w").is_err());
    assert!(role_claims("1", "agent", None, None, Duration::ZERO).is_err());
    assert!(role_claims("1", "agent", Some("bad host"), None, Duration::ZERO).is_err());
}
