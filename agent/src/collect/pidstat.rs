//! A parser for /proc/[pid]/stat that borrows from the read buffer. The top-process scan reads
//! hundreds of these files every second, so it allocates nothing per process.

/// The fields of /proc/[pid]/stat the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidStat<'a> {
    /// `comm`: the executable's name, up to 15 bytes, as the kernel keeps it.
    pub comm: &'a [u8],
    /// Ticks in user plus kernel mode.
    pub cpu_ticks: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parses one stat line (see proc(5)). `comm` may hold spaces and parentheses, so the fields
/// after it are found from the *last* `)`.
pub fn parse(buf: &[u8]) -> Option<PidStat<'_>> {
    let open = buf.iter().position(|&b| b == b'(')?;
    let close = buf.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = &buf[open + 1..close];
    // Fields after comm, starting with field 3 (state): utime is field 14, stime 15, rss 24.
    let mut fields = buf.get(close + 2..)?.split(|&b| b == b' ');
    let utime = num(fields.nth(11)?)?;
    let stime = num(fields.next()?)?;
    let rss = fields.nth(8).and_then(num_signed)?;
    Some(PidStat { comm, cpu_ticks: utime + stime, rss_pages: rss.max(0) as u64 })
}

fn num(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| if b.is_ascii_digit() { acc.checked_mul(10)?.checked_add(u64::from(b - b'0')) } else { None })
}

fn num_signed(s: &[u8]) -> Option<i64> {
    match s.strip_prefix(b"-") {
        Some(rest) => num(rest).map(|n| -(n as i64)),
        None => num(s).map(|n| n as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_used() {
        let line =
            b"475071 (cat) R 323893 475071 323893 34826 475071 4194304 94 0 0 0 7 3 0 0 20 0 1 0 201288208 5738496 225 18446744073709551615 94881179934720 0\n";
        let s = parse(line).unwrap();
        assert_eq!(s.comm, b"cat");
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.rss_pages, 225);
    }

    #[test]
    fn comm_with_spaces_and_parentheses() {
        let line = b"12 (tmux: (server) x) S 1 12 12 0 -1 4194560 1 0 0 0 100 50 0 0 20 0 1 0 2 3 -1 0\n";
        let s = parse(line).unwrap();
        assert_eq!(s.comm, b"tmux: (server) x");
        assert_eq!(s.cpu_ticks, 150);
        assert_eq!(s.rss_pages, 0);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [&b""[..], b"12 cat R", b"12 (cat) R 1 2", b"12 (cat) R 1 2 3 4 5 6 7 8 9 x 1 0 0 0 0 0 0 0 0 0"] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn parses_this_process() {
        let buf = std::fs::read("/proc/self/stat").unwrap();
        let s = parse(&buf).unwrap();
        assert!(!s.comm.is_empty());
        assert!(s.rss_pages > 0);
    }
}
