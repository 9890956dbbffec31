//! /proc/net/dev: traffic, packets, errors and drops per interface.

use std::collections::HashMap;

use procfs_core::net::{DeviceStatus, InterfaceDeviceStatus};
use procfs_core::FromBufRead;

use super::read::{rate, ProcReader};
use super::CollectError;
use crate::tick::{round, Family, Tick};

const FIELDS: [&str; 8] = ["rx_bytes_ps", "tx_bytes_ps", "rx_packets_ps", "tx_packets_ps", "rx_errors_ps", "tx_errors_ps", "rx_drops_ps", "tx_drops_ps"];
/// Keeps a host with hundreds of container interfaces inside the sample size limit.
const MAX_INTERFACES: usize = 16;

type Counters = [u64; 8];

fn counters(d: &DeviceStatus) -> Counters {
    [d.recv_bytes, d.sent_bytes, d.recv_packets, d.sent_packets, d.recv_errs, d.sent_errs, d.recv_drop, d.sent_drop]
}

/// Loopback and the host side of container veth pairs say nothing about the host's traffic.
fn is_reported(name: &str) -> bool {
    name != "lo" && !name.starts_with("veth")
}

pub struct Network {
    keys: Family<8>,
    prev: HashMap<String, Counters>,
}

impl Network {
    pub fn new() -> Self {
        Self { keys: Family::new("net", FIELDS), prev: HashMap::new() }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, secs: f64, tick: &mut Tick) -> Result<(), CollectError> {
        let devs = InterfaceDeviceStatus::from_buf_read(reader.read("/proc/net/dev")?)?;
        let mut names: Vec<&String> = devs.0.keys().filter(|n| is_reported(n)).collect();
        names.sort_unstable();
        names.truncate(MAX_INTERFACES);
        for name in names {
            let now = counters(&devs.0[name]);
            let Some(prev) = self.prev.get_mut(name.as_str()) else {
                self.prev.insert(name.clone(), now);
                continue;
            };
            let keys = self.keys.keys(name);
            for ((k, &p), &c) in keys.iter().zip(prev.iter()).zip(now.iter()) {
                let r = rate(p, c, secs);
                tick.push(k, if r >= 100.0 { r.round() } else { round(r, 1) });
            }
            *prev = now;
        }
        if self.prev.len() > devs.0.len() {
            self.prev.retain(|name, _| devs.0.contains_key(name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_loopback_and_veth() {
        assert!(is_reported("eth0"));
        assert!(is_reported("wg0"));
        assert!(!is_reported("lo"));
        assert!(!is_reported("veth12ab"));
    }
}
