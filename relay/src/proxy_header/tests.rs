use super::*;

fn v2_header(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(command);
    h.push(family);
    let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(addresses);
    h.extend_from_slice(tlvs);
    h
}

fn v4_block() -> Vec<u8> {
    let mut b = vec![203, 0, 113, 7, 10, 0, 0, 1];
    b.extend_from_slice(&51_234u16.to_be_bytes());
    b.extend_from_slice(&443u16.to_be_bytes());
    b
}

fn complete(client: &str, len: usize) -> Parsed {
    Parsed::Complete { client: Some(client.parse().unwrap()), len }
}

/// Every strict prefix of a complete header asks for more; the whole of it, followed by the
/// client's own bytes, is the same header.
fn assert_prefixes_incomplete(header: &[u8]) {
    for n in 0..header.len() {
        assert_eq!(parse(&header[..n]), Parsed::Incomplete, "prefix of {n} bytes");
    }
    let mut with_request = header.to_vec();
    with_request.extend_from_slice(b"GET /app/key HTTP/1.1\r\n");
    assert_eq!(parse(&with_request), parse(header));
}

#[test]
fn v1_tcp4_and_tcp6_name_the_client() {
    let line = b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443\r\n";
    assert_eq!(parse(line), complete("198.51.100.22:35646", line.len()));
    assert_prefixes_incomplete(line);
    let line6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n";
    assert_eq!(parse(line6), complete("[2001:db8::1]:65535", line6.len()));
    assert_prefixes_incomplete(line6);
}

#[test]
fn v1_unknown_leaves_the_peer_address() {
    assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parsed::Complete { client: None, len: 15 });
    let long = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(parse(long), Parsed::Complete { client: None, len: long.len() });
}

#[test]
fn v1_is_bounded_at_107_bytes() {
    // The longest legal line (the specification's worst case) is accepted...
    let mut max = b"PROXY UNKNOWN ".to_vec();
    max.resize(MAX_V1_BYTES - 2, b'x');
    max.extend_from_slice(b"\r\n");
    assert_eq!(parse(&max), Parsed::Complete { client: None, len: MAX_V1_BYTES });
    // ...one byte more is refused without waiting for the rest.
    let mut over = b"PROXY UNKNOWN ".to_vec();
    over.resize(MAX_V1_BYTES, b'x');
    assert_eq!(parse(&over), Parsed::Invalid(Reject::TooLong));
    over.extend_from_slice(b"\r\n");
    assert!(matches!(parse(&over), Parsed::Invalid(_)));
}

#[test]
fn v1_refuses_broken_lines() {
    let cases: &[(&[u8], Reject)] = &[
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 35646\r\n", Reject::Malformed),
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443 9\r\n", Reject::Malformed),
        (b"PROXY TCP4  198.51.100.22 10.0.0.1 35646 443\r\n", Reject::Malformed),
        (b"PROXY UDP4 198.51.100.22 10.0.0.1 35646 443\r\n", Reject::Malformed),
        (b"PROXY TCP4 2001:db8::1 10.0.0.1 35646 443\r\n", Reject::BadAddress),
        (b"PROXY TCP6 198.51.100.22 2001:db8::2 35646 443\r\n", Reject::BadAddress),
        (b"PROXY TCP4 198.51.100.256 10.0.0.1 35646 443\r\n", Reject::BadAddress),
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 65536 443\r\n", Reject::BadAddress),
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 +1 443\r\n", Reject::BadAddress),
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 0443 443\r\n", Reject::BadAddress),
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443\n", Reject::Malformed),
        (b"PROXY TCP4 198.51.100.22 10.0.0.1 35646 443\rX", Reject::Malformed),
        (b"PROXY TCP4 198.51.100.22\t10.0.0.1 35646 443\r\n", Reject::Malformed),
        (b"PROXY TCP4 \xc3\xa9 10.0.0.1 35646 443\r\n", Reject::Malformed),
        // Found by the fuzzer: a bad byte before a lone CR is refused, not waited on.
        (b"PROXY TCP61\xff\xff\"\r", Reject::Malformed),
    ];
    for (line, reject) in cases {
        assert_eq!(parse(line), Parsed::Invalid(*reject), "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn anything_else_is_not_a_proxy_header() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid(Reject::NotProxy));
    assert_eq!(parse(b"\x16\x03\x01\x02\x00"), Parsed::Invalid(Reject::NotProxy), "a TLS ClientHello");
    assert_eq!(parse(b"PROXy"), Parsed::Invalid(Reject::NotProxy));
    assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Parsed::Invalid(Reject::NotProxy));
    assert_eq!(parse(b""), Parsed::Incomplete);
    assert_eq!(parse(b"PRO"), Parsed::Incomplete);
    assert_eq!(parse(b"\r\n\r"), Parsed::Incomplete);
}

#[test]
fn v2_tcp4_and_tcp6_name_the_client() {
    let h = v2_header(0x21, 0x11, &v4_block(), &[]);
    assert_eq!(parse(&h), complete("203.0.113.7:51234", 28));
    assert_prefixes_incomplete(&h);

    let mut block6 = Vec::new();
    block6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    block6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block6.extend_from_slice(&[0xc8, 0x00, 0x01, 0xbb]);
    let h6 = v2_header(0x21, 0x21, &block6, &[]);
    assert_eq!(parse(&h6), complete("[2001:db8::7]:51200", 52));
    assert_prefixes_incomplete(&h6);
}

#[test]
fn v2_skips_tlvs_and_honours_local() {
    // An AWS-style TLV (type 0xEA) after the addresses: skipped, counted in the length.
    let tlv = [0xea, 0x00, 0x05, 0x01, b'v', b'p', b'c', b'e'];
    let h = v2_header(0x21, 0x11, &v4_block(), &tlv);
    assert_eq!(parse(&h), complete("203.0.113.7:51234", 16 + 12 + tlv.len()));
    // LOCAL: the proxy's own connection (a health check); whatever follows is not looked at.
    assert_eq!(parse(&v2_header(0x20, 0x00, &[], &[])), Parsed::Complete { client: None, len: 16 });
    assert_eq!(parse(&v2_header(0x20, 0x77, &[1, 2, 3], &[])), Parsed::Complete { client: None, len: 19 });
    // PROXY over a Unix socket or AF_UNSPEC: no IP client to name.
    assert_eq!(parse(&v2_header(0x21, 0x31, &[0; 216], &[])), Parsed::Complete { client: None, len: 232 });
    assert_eq!(parse(&v2_header(0x21, 0x00, &[], &[])), Parsed::Complete { client: None, len: 16 });
}

#[test]
fn v2_refuses_bad_versions_families_and_lengths() {
    assert_eq!(parse(&v2_header(0x11, 0x11, &v4_block(), &[])), Parsed::Invalid(Reject::BadVersion));
    assert_eq!(parse(&v2_header(0x22, 0x11, &v4_block(), &[])), Parsed::Invalid(Reject::BadVersion));
    // A bad version byte is refused before the rest arrives.
    assert_eq!(parse(&v2_header(0x31, 0x11, &[], &[])[..13]), Parsed::Invalid(Reject::BadVersion));
    assert_eq!(parse(&v2_header(0x21, 0x41, &v4_block(), &[])), Parsed::Invalid(Reject::BadAddress));
    assert_eq!(parse(&v2_header(0x21, 0x13, &v4_block(), &[])), Parsed::Invalid(Reject::BadAddress));
    // A length too short for the family's addresses.
    assert_eq!(parse(&v2_header(0x21, 0x11, &v4_block()[..11], &[])), Parsed::Invalid(Reject::Truncated));
    assert_eq!(parse(&v2_header(0x21, 0x21, &v4_block(), &[])), Parsed::Invalid(Reject::Truncated));
}

#[test]
fn v2_length_is_bounded_before_anything_is_buffered() {
    let mut h = v2_header(0x21, 0x11, &[], &[]);
    h[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(parse(&h), Parsed::Invalid(Reject::TooLong));
    let largest = u16::try_from(MAX_V2_BYTES - 16).unwrap();
    h[14..16].copy_from_slice(&largest.to_be_bytes());
    assert_eq!(parse(&h), Parsed::Incomplete, "the largest accepted length waits for its bytes");
    h[14..16].copy_from_slice(&(largest + 1).to_be_bytes());
    assert_eq!(parse(&h), Parsed::Invalid(Reject::TooLong));
}

#[test]
fn reject_labels_are_distinct() {
    let all = [Reject::NotProxy, Reject::TooLong, Reject::Malformed, Reject::BadAddress, Reject::BadVersion, Reject::Truncated];
    let labels: std::collections::HashSet<_> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), all.len());
}
