//! Filesystem usage: the mounts of local filesystems (re-read once a minute) and statvfs on
//! each every tick.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use procfs_core::process::MountInfos;
use procfs_core::FromBufRead;

use super::read::{pct, ProcReader};
use super::CollectError;
use crate::tick::{round, Family, Tick};

const MAX_MOUNTS: usize = 16;
const MOUNTS_REFRESH: Duration = Duration::from_secs(60);

/// Local filesystems only: statvfs on a network mount can block for as long as the server is
/// away, and the sampler must never stall.
const LOCAL_FS: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "vfat", "exfat", "ntfs", "ntfs3", "jfs", "reiserfs", "bcachefs"];

struct Mount {
    path: PathBuf,
    /// The path as it appears in metric names.
    label: String,
}

pub struct Filesystems {
    keys: Family<4>,
    mounts: Vec<Mount>,
    refreshed: Option<Instant>,
}

impl Filesystems {
    pub fn new() -> Self {
        Self { keys: Family::new("fs", ["size_bytes", "used_bytes", "avail_bytes", "used_pct"]), mounts: Vec::new(), refreshed: None }
    }

    pub fn collect(&mut self, reader: &mut ProcReader, tick: &mut Tick) -> Result<(), CollectError> {
        if self.refreshed.map_or(true, |t| t.elapsed() >= MOUNTS_REFRESH) {
            self.refresh(reader)?;
        }
        for m in &self.mounts {
            let Ok(st) = rustix::fs::statvfs(&m.path) else { continue };
            let frsize = st.f_frsize.max(1);
            let size = st.f_blocks * frsize;
            let used = st.f_blocks.saturating_sub(st.f_bfree) * frsize;
            let avail = st.f_bavail * frsize;
            // As df computes it: the share of the space an unprivileged user could fill.
            let used_pct = round(pct(used as f64, (used + avail) as f64), 2);
            for (k, v) in self.keys.keys(&m.label).iter().zip([size as f64, used as f64, avail as f64, used_pct]) {
                tick.push(k, v);
            }
        }
        Ok(())
    }

    fn refresh(&mut self, reader: &mut ProcReader) -> Result<(), CollectError> {
        self.refreshed = Some(Instant::now());
        let infos = MountInfos::from_buf_read(reader.read("/proc/self/mountinfo")?)?;
        self.mounts.clear();
        let mut devices: Vec<&str> = Vec::new();
        for mi in infos.iter() {
            let local = LOCAL_FS.contains(&mi.fs_type.as_str()) || (mi.fs_type == "overlay" && mi.mount_point.as_os_str() == "/");
            // A device mounted twice (bind mounts) is reported once, at its first mount point.
            if !local || devices.contains(&mi.majmin.as_str()) || self.mounts.len() >= MAX_MOUNTS {
                continue;
            }
            devices.push(&mi.majmin);
            let label = mi.mount_point.to_string_lossy().into_owned();
            self.mounts.push(Mount { path: mi.mount_point.clone(), label });
        }
        Ok(())
    }
}
