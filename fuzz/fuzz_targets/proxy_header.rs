//! The PROXY protocol header parser: arbitrary bytes must give a header within the bounds, a
//! request for more, or a refusal, never a panic; and the answer must not depend on how much
//! of the stream had arrived when it was asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonde_relay::proxy_header::{parse, Parsed, MAX_V1_BYTES, MAX_V2_BYTES};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    match whole {
        Parsed::Complete { len, .. } => {
            assert!(len <= data.len());
            assert!(len <= MAX_V1_BYTES.max(MAX_V2_BYTES));
            // The header alone is the same header, and any shorter prefix asks for more.
            assert_eq!(parse(&data[..len]), whole);
            for n in [0, len / 2, len.saturating_sub(1)] {
                if n < len {
                    assert_eq!(parse(&data[..n]), Parsed::Incomplete);
                }
            }
        }
        // More bytes may complete it or refuse it, but a prefix never refuses what its
        // continuation accepts: every prefix is Incomplete too.
        Parsed::Incomplete => {
            assert!(data.len() < MAX_V2_BYTES);
            if let Some(n) = data.len().checked_sub(1) {
                assert_eq!(parse(&data[..n]), Parsed::Incomplete);
            }
        }
        Parsed::Invalid(reject) => assert!(!reject.as_str().is_empty()),
    }
});
