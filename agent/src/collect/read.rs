//! Reading /proc files into a buffer that is kept between reads, and turning counters into
//! per-second rates.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A reusable read buffer. /proc files are generated on read, so each is read whole in one go.
#[derive(Default)]
pub struct ProcReader {
    buf: Vec<u8>,
}

impl ProcReader {
    pub fn read(&mut self, path: impl AsRef<Path>) -> io::Result<&[u8]> {
        self.buf.clear();
        File::open(path)?.read_to_end(&mut self.buf)?;
        Ok(&self.buf)
    }
}

/// The per-second rate of a monotonic counter. A counter that went backwards (a reset, a
/// device that was replaced) yields 0 rather than a huge bogus value.
pub fn rate(prev: u64, cur: u64, secs: f64) -> f64 {
    if secs <= 0.0 || cur < prev {
        return 0.0;
    }
    (cur - prev) as f64 / secs
}

/// `part` as a percentage of `whole`, 0 when `whole` is 0.
pub fn pct(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        part / whole * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_percentages() {
        assert_eq!(rate(100, 300, 2.0), 100.0);
        assert_eq!(rate(300, 100, 1.0), 0.0);
        assert_eq!(rate(1, 2, 0.0), 0.0);
        assert_eq!(pct(1.0, 4.0), 25.0);
        assert_eq!(pct(1.0, 0.0), 0.0);
    }

    #[test]
    fn reads_a_proc_file_into_the_same_buffer() {
        let mut r = ProcReader::default();
        let first = r.read("/proc/loadavg").unwrap().to_vec();
        assert!(!first.is_empty());
        let cap = r.buf.capacity();
        r.read("/proc/loadavg").unwrap();
        assert_eq!(r.buf.capacity(), cap);
        assert!(r.read("/proc/does-not-exist").is_err());
    }
}
