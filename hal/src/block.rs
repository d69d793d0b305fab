//! Facts about the machine's block devices, read from `/sys/block`.
//!
//! Only facts, no policy: which disk to write is the firmware's `disk`
//! module's decision. Each entry of `/sys/block/<name>` gives:
//!
//! ```text
//! /sys/block/<name>/size       512-byte sectors, decimal
//! /sys/block/<name>/removable  0 or 1
//! /sys/block/<name>/ro         0 or 1
//! ```

use crate::{
    Error,
    sysfs::{SysFs, read_u64},
};
use heapless::{String, Vec};

/// The most block devices the installer considers. A machine with more is
/// still handled: the rest are reported as skipped by [`scan`].
pub const MAX_BLOCK_DEVICES: usize = 32;

/// The longest block device name kept (`nvme10n12`, `mmcblk0boot1`, …).
pub const MAX_DEVICE_NAME: usize = 32;

/// Where the kernel lists block devices.
pub const SYS_BLOCK: &str = "/sys/block";

/// What sysfs says about one whole-disk block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFacts {
    /// Kernel name: `sda`, `vda`, `nvme0n1`, `mmcblk0`, `sr0`, …
    pub name: String<MAX_DEVICE_NAME>,
    /// `removable` was 1 (USB sticks, card readers, optical drives).
    pub removable: bool,
    /// `ro` was 1 (write-protected).
    pub read_only: bool,
    /// Size in 512-byte sectors (sysfs always counts 512-byte units).
    pub sectors: u64,
}

impl BlockFacts {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors.saturating_mul(512)
    }
}

/// The result of [`scan`]: the devices read, sorted by name, and how many
/// entries did not fit or could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Devices sorted by kernel name.
    pub devices: Vec<BlockFacts, MAX_BLOCK_DEVICES>,
    /// Entries skipped because the table was full, the name too long, or a
    /// sysfs attribute unreadable.
    pub unreadable: usize,
}

/// Read every entry of `/sys/block` and return the facts sorted by name.
pub fn scan<S: SysFs + ?Sized>(fs: &S) -> Result<Scan, Error> {
    let mut names: Vec<String<MAX_DEVICE_NAME>, MAX_BLOCK_DEVICES> = Vec::new();
    let mut unreadable = 0usize;
    fs.list(SYS_BLOCK, &mut |name| {
        let mut owned = String::new();
        if owned.push_str(name).is_err() || names.push(owned).is_err() {
            unreadable += 1;
        }
    })?;
    names.sort_unstable();

    let mut scan = Scan {
        devices: Vec::new(),
        unreadable,
    };
    for name in names {
        match read_facts(fs, &name) {
            // `names` and `devices` share one capacity, so push cannot fail.
            Ok(facts) => {
                let _ = scan.devices.push(facts);
            }
            Err(_) => scan.unreadable += 1,
        }
    }
    Ok(scan)
}

/// Read the facts of one device, `name` being its `/sys/block` entry.
pub fn read_facts<S: SysFs + ?Sized>(fs: &S, name: &str) -> Result<BlockFacts, Error> {
    let mut path: String<96> = String::new();
    let mut attr = |leaf: &str| -> Result<u64, Error> {
        path.clear();
        for part in [SYS_BLOCK, "/", name, "/", leaf] {
            path.push_str(part).map_err(|_| Error::TooLarge)?;
        }
        read_u64(fs, &path)
    };
    let sectors = attr("size")?;
    let removable = attr("removable")? != 0;
    let read_only = attr("ro")? != 0;
    let mut owned = String::new();
    owned.push_str(name).map_err(|_| Error::TooLarge)?;
    Ok(BlockFacts {
        name: owned,
        removable,
        read_only,
        sectors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSys;

    fn disk(sys: &mut FakeSys, name: &str, size: u64, removable: u8, ro: u8) {
        sys.file(&format!("/sys/block/{name}/size"), &format!("{size}\n"));
        sys.file(
            &format!("/sys/block/{name}/removable"),
            &format!("{removable}\n"),
        );
        sys.file(&format!("/sys/block/{name}/ro"), &format!("{ro}\n"));
    }

    #[test]
    fn scan_reads_and_sorts_devices() {
        let mut sys = FakeSys::new();
        disk(&mut sys, "sdb", 30_031_872, 1, 0); // a USB stick
        disk(&mut sys, "sda", 976_773_168, 0, 0);
        disk(&mut sys, "sr0", 2_097_151, 1, 1);
        let scan = scan(&sys).unwrap();
        let names: std::vec::Vec<&str> = scan.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sdb", "sr0"]);
        assert_eq!(scan.devices[0].size_bytes(), 976_773_168 * 512);
        assert!(!scan.devices[0].removable);
        assert!(scan.devices[1].removable);
        assert!(scan.devices[2].read_only);
        assert_eq!(scan.unreadable, 0);
    }

    #[test]
    fn scan_counts_unreadable_entries_instead_of_failing() {
        let mut sys = FakeSys::new();
        disk(&mut sys, "vda", 4_194_304, 0, 0);
        sys.file("/sys/block/vdb/size", "garbage\n");
        sys.file("/sys/block/vdb/removable", "0\n");
        sys.file("/sys/block/vdb/ro", "0\n");
        let scan = scan(&sys).unwrap();
        assert_eq!(scan.devices.len(), 1);
        assert_eq!(scan.unreadable, 1);
    }

    #[test]
    fn scan_bounds_the_table() {
        let mut sys = FakeSys::new();
        for i in 0..(MAX_BLOCK_DEVICES + 5) {
            disk(&mut sys, &format!("loop{i:02}"), 0, 0, 0);
        }
        let scan = scan(&sys).unwrap();
        assert_eq!(scan.devices.len(), MAX_BLOCK_DEVICES);
        assert_eq!(scan.unreadable, 5);
    }

    #[test]
    fn missing_sys_block_is_an_error() {
        let sys = FakeSys::new();
        assert_eq!(scan(&sys).unwrap_err(), Error::NotFound);
    }
}
