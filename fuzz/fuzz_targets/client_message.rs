//! What a websocket client sends, as text: the Pusher frame parser and the payloads inside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sonde_protocol::ClientFrame;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ClientFrame::parse(text);
        let _ = sonde_protocol::ChannelName::parse(text);
    }
});
