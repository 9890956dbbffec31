//! The kernel's count of datagrams dropped on one UDP socket, from `/proc/net/udp` and
//! `/proc/net/udp6` (the socket's network namespace: `/proc/self/net`).

/// The `drops` column of the socket with this inode, if it is listed.
pub fn drops(inode: u64) -> Option<u64> {
    ["/proc/self/net/udp", "/proc/self/net/udp6"].iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        drops_in(&text, inode)
    })
}

/// Lines after the header: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref
/// pointer drops`.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ino: u64 = fields.get(9)?.parse().ok()?;
        (ino == inode).then(|| fields.get(12)?.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_socket_by_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n\
  123: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 48213 2 0000000000000000 0        \n\
  500: 0100007F:2710 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 99001 2 0000000000000000 1465     \n";
        assert_eq!(drops_in(table, 99001), Some(1465));
        assert_eq!(drops_in(table, 48213), Some(0));
        assert_eq!(drops_in(table, 7), None);
        assert_eq!(drops_in("header only\n", 1), None);
    }
}
