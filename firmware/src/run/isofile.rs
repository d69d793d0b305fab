//! The installer ISO as a *file* on a data partition (Ventoy's layout,
//! checklist O6): partition 1 of a removable disk is an exFAT (or FAT, or
//! ext4) filesystem holding `*.iso` files, and a boot loader on the disk
//! boots the ISO's own kernel and initrd with the ISO's own command line.
//! The kernel then has no ISO 9660 volume on any block device; the
//! installer looks for the file itself:
//!
//! - on removable whole disks only (`removable` = 1: USB sticks, card
//!   readers), each partition (`/sys/block/<disk>/<disk>N/partition`);
//! - mounted read-only on [`MOUNT`], as exFAT, FAT or ext4, whichever the
//!   kernel accepts (the qemu-profile kernel has no exFAT);
//! - `*.iso` (any case) in the filesystem's root and one directory level
//!   down, at most [`MAX_CANDIDATES`] per partition;
//! - each checked with the installer's own ISO 9660 reader for the media
//!   id, through the file (`ze_hal::os::Os::media_open` reads a regular
//!   file as it reads a device).
//!
//! The partition holding the right file stays mounted while the image is
//! read from it and is unmounted when the install ends, on every path;
//! every other partition is unmounted as soon as it was looked at. The
//! whole disk carrying the file is the media: it is never a target.

use crate::{console::say, disk};
use core::fmt::Write;
use heapless::{String, Vec};
use ze_hal::{
    block::{BlockFacts, MAX_DEVICE_NAME},
    os::Os,
    sysfs::SysFs,
};

/// Where a data partition is mounted while it is looked at.
pub const MOUNT: &str = "/run/ze-media";
/// The filesystems tried, in order.
pub const FILESYSTEMS: [&str; 3] = ["exfat", "vfat", "ext4"];
/// The most `*.iso` files checked on one partition.
pub const MAX_CANDIDATES: usize = 16;
/// The longest path of an ISO file kept.
pub const MAX_FILE_PATH: usize = 160;
/// The most partitions of one disk looked at.
pub const MAX_PARTITIONS: usize = 16;

/// A path under [`MOUNT`].
pub type FilePath = String<MAX_FILE_PATH>;

/// A partition already looked at (so it is not mounted again while the
/// installer waits for the media).
pub type Looked = Vec<String<MAX_DEVICE_NAME>, 32>;

/// The ISO file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The whole disk carrying it (`sdb`).
    pub disk: String<MAX_DEVICE_NAME>,
    /// Its partition (`sdb1`).
    pub partition: String<MAX_DEVICE_NAME>,
    /// The filesystem it was mounted as.
    pub fstype: &'static str,
    /// The file, under [`MOUNT`].
    pub path: FilePath,
}

fn is_iso(name: &str) -> bool {
    name.len() > 4
        && name
            .get(name.len() - 4..)
            .is_some_and(|ext| ext.eq_ignore_ascii_case(".iso"))
}

fn join(dir: &str, name: &str) -> Option<FilePath> {
    let mut p = FilePath::new();
    write!(p, "{dir}/{name}").ok()?;
    Some(p)
}

/// The partitions of `disk` in sysfs (`sdb1`, `sdb2`, `nvme0n1p1`), sorted.
pub fn partitions<S: SysFs + ?Sized>(
    sys: &S,
    disk: &str,
) -> Vec<String<MAX_DEVICE_NAME>, MAX_PARTITIONS> {
    let mut dir: String<64> = String::new();
    let _ = write!(dir, "/sys/block/{disk}");
    let mut found: Vec<String<MAX_DEVICE_NAME>, MAX_PARTITIONS> = Vec::new();
    let _ = sys.list(&dir, &mut |entry| {
        if entry.starts_with(disk) && entry.len() > disk.len() {
            let mut name = String::new();
            if name.push_str(entry).is_ok() {
                let _ = found.push(name);
            }
        }
    });
    found.retain(|p| {
        let mut f: String<128> = String::new();
        let _ = write!(f, "{dir}/{p}/partition");
        sys.exists(&f)
    });
    found.sort_unstable();
    found
}

/// The `*.iso` files in the mounted filesystem's root and one level down.
pub fn candidates<S: SysFs + ?Sized>(sys: &S) -> Vec<FilePath, MAX_CANDIDATES> {
    let mut out: Vec<FilePath, MAX_CANDIDATES> = Vec::new();
    let mut dirs: Vec<FilePath, MAX_CANDIDATES> = Vec::new();
    let _ = sys.list(MOUNT, &mut |name| {
        if let Some(p) = join(MOUNT, name) {
            let _ = if is_iso(name) {
                out.push(p)
            } else {
                dirs.push(p)
            };
        }
    });
    for dir in &dirs {
        // Not a directory, or unreadable: nothing listed.
        let _ = sys.list(dir, &mut |name| {
            if is_iso(name)
                && let Some(p) = join(dir, name)
            {
                let _ = out.push(p);
            }
        });
    }
    out.sort_unstable();
    out
}

/// Look for the ISO with `want` as its media id as a file on the
/// partitions of the removable disks among `devices`; partitions in
/// `looked` are skipped and the ones looked at now added. On a find the
/// partition is left mounted on [`MOUNT`] ([`release`] unmounts it).
pub fn search<O: Os>(
    os: &mut O,
    devices: &[BlockFacts],
    want: &[u8; crate::iso9660::MEDIA_ID_LEN],
    looked: &mut Looked,
) -> Option<Found> {
    let _ = os.mkdir("/run");
    let _ = os.mkdir(MOUNT);
    for d in devices
        .iter()
        .filter(|d| d.removable && super::iso_install::searched(d))
    {
        for part in partitions(os.sys(), &d.name) {
            if looked.contains(&part) {
                continue;
            }
            let _ = looked.push(part.clone());
            let node = disk::disk_path(&part);
            let Some(fstype) = FILESYSTEMS
                .iter()
                .find(|fs| os.mount_fs(&node, MOUNT, fs, true).is_ok())
            else {
                say!(os, "media: {node}: no exFAT, FAT or ext4 filesystem");
                continue;
            };
            let files = candidates(os.sys());
            say!(os, "media: {node} ({fstype}): {} ISO files", files.len());
            for path in files {
                let probe = match os.media_open(&path) {
                    Ok(mut m) => super::iso_install::probe(&mut m, want),
                    Err(e) => super::iso_install::Probe::Unreadable(e),
                };
                if probe == super::iso_install::Probe::Ours {
                    return Some(Found {
                        disk: d.name.clone(),
                        partition: part,
                        fstype,
                        path,
                    });
                }
                super::iso_install::say_probe(os, &path, &probe, want);
            }
            release(os);
        }
    }
    None
}

/// Unmount [`MOUNT`]; a failure is logged.
pub fn release<O: Os>(os: &mut O) {
    if let Err(e) = os.unmount(MOUNT) {
        say!(os, "warning: unmounting {MOUNT}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ze_hal::fake::FakeSys;

    #[test]
    fn o6_partitions_and_iso_files() {
        let mut s = FakeSys::new();
        s.file("/sys/block/sdb/size", "100\n")
            .file("/sys/block/sdb/sdb2/partition", "2\n")
            .file("/sys/block/sdb/sdb1/partition", "1\n")
            .file("/sys/block/sdb/queue/rotational", "0\n")
            .file("/sys/block/nvme0n1/nvme0n1p1/partition", "1\n");
        let parts = partitions(&s, "sdb");
        let names: std::vec::Vec<&str> = parts.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, ["sdb1", "sdb2"]);
        assert_eq!(partitions(&s, "nvme0n1")[0], "nvme0n1p1");
        assert!(partitions(&s, "sdc").is_empty());

        s.file("/run/ze-media/ze-prod.ISO", "")
            .file("/run/ze-media/notes.txt", "")
            .file("/run/ze-media/isos/debian.iso", "")
            .file("/run/ze-media/isos/deeper/ze.iso/x", "")
            .file("/run/ze-media/ventoy/ventoy.json", "")
            .file("/run/ze-media/.iso", "");
        let found = candidates(&s);
        let files: std::vec::Vec<&str> = found.iter().map(|p| p.as_str()).collect();
        assert_eq!(
            files,
            ["/run/ze-media/isos/debian.iso", "/run/ze-media/ze-prod.ISO"],
            "root and one level down only; a directory named *.iso deeper is not a file here"
        );
    }
}
