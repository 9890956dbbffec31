//! The websocket frame decoder: arbitrary bytes, fed in arbitrary pieces, must give messages
//! within the size limit or a close code, never a panic or an allocation past the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonde_relay::ws::codec::{Decoder, Inbound};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let mut dec = Decoder::new(MAX, &[]);
    for piece in bytes.chunks(usize::from(split).max(1)) {
        dec.feed(piece);
        loop {
            match dec.next_message() {
                Ok(Some(Inbound::Text(t))) => {
                    assert!(t.len() <= MAX);
                    assert!(std::str::from_utf8(&t).is_ok());
                }
                Ok(Some(Inbound::Ping(p))) => assert!(p.len() <= 125),
                Ok(Some(Inbound::Close(Some(code)))) => assert!(sonde_relay::ws::codec::valid_close_code(code)),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
                    return;
                }
            }
        }
    }
});
