//! The agent's StatsD / DogStatsD line parser: any datagram, line by line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            let _ = sonde_agent::statsd::parse_line(line);
        }
    }
});
