//! What the agent receives from the relay: Pusher frames carrying session directives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sonde_agent::client::RelayFrame::parse(text);
        let _ = serde_json::from_str::<sonde_protocol::sonde::SessionDirective>(text);
    }
});
