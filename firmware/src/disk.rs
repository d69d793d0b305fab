//! Which disk to write (spec: "Kernel Command Line"; docs/installer.md,
//! "Disk choice").
//!
//! Policy over facts read from `/sys/block` (see `ze_hal::block`):
//! - virtual, optical, floppy and flash devices are never candidates:
//!   `loop*`, `ram*`, `dm-*`, `zram*`, `md*`, `sr*`, `fd*`, `mtdblock*`;
//! - removable, read-only and empty (size 0) devices are skipped;
//! - HTTP mode takes the first candidate in name order;
//! - ISO mode excludes the source media and refuses to pick one of several;
//! - `ze.target=/dev/<disk>` wins, and a bad target is an error that says why
//!   (a `/dev/disk/by-id/` or `serial:` target is first resolved to its
//!   kernel name by [`crate::byid`]).

use core::fmt;
use heapless::String;
use ze_hal::block::{BlockFacts, MAX_DEVICE_NAME};

/// Kernel name prefixes that are never an install target.
pub const NEVER: [&str; 8] = ["loop", "ram", "dm-", "zram", "md", "sr", "fd", "mtdblock"];

/// The longest `/dev/...` path built here.
pub const MAX_PATH: usize = MAX_DEVICE_NAME + 8;

/// Why a device is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A virtual, optical, floppy or flash device (by name).
    Kind,
    /// `removable` is 1.
    Removable,
    /// `ro` is 1.
    ReadOnly,
    /// Size 0 (no medium).
    Empty,
    /// The installer's own source media (ISO mode).
    Source,
}

impl Skip {
    fn as_str(self) -> &'static str {
        match self {
            Skip::Kind => "virtual, optical, floppy or flash device",
            Skip::Removable => "removable",
            Skip::ReadOnly => "read-only",
            Skip::Empty => "no medium (size 0)",
            Skip::Source => "the installer's own media",
        }
    }
}

/// Where the image comes from, as far as disk choice cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode<'a> {
    /// HTTP install: first candidate wins.
    Http,
    /// ISO install: exclude the source media; refuse ambiguity.
    Iso {
        /// Kernel names of the devices carrying the installer ISO (its
        /// media id): never a target.
        sources: &'a [&'a str],
    },
}

/// The most candidates an ambiguity error names.
pub const MAX_NAMED: usize = 4;

/// Why no disk could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskError {
    /// No candidate at all; `seen` devices were looked at.
    NoDisk {
        /// How many block devices sysfs listed.
        seen: usize,
    },
    /// ISO mode with several candidates and no `ze.target`.
    Ambiguous {
        /// The first [`MAX_NAMED`] candidates: name and size in bytes.
        named: heapless::Vec<(String<MAX_DEVICE_NAME>, u64), MAX_NAMED>,
        /// How many candidates there are.
        count: usize,
    },
    /// `ze.target` names no whole disk in `/sys/block`.
    TargetNotFound(String<MAX_DEVICE_NAME>),
    /// `ze.target` names a disk that must not be written.
    TargetUnsuitable(String<MAX_DEVICE_NAME>, Skip),
    /// A by-id or serial `ze.target` names no disk, or several.
    Resolve(crate::byid::ResolveError),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::NoDisk { seen } => write!(
                f,
                "no writable disk: none of the {seen} block devices is a fixed, writable, non-empty disk (removable, virtual, optical and mtdblock devices are skipped; name one with ze.target=/dev/...)"
            ),
            DiskError::Ambiguous { named, count } => {
                write!(f, "{count} fixed disks (")?;
                for (i, (name, bytes)) in named.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}/dev/{name} {}", Size(*bytes))?;
                }
                if *count > named.len() {
                    f.write_str(", ...")?;
                }
                f.write_str(
                    ") and no ze.target: refusing to guess which to erase; rebuild the ISO with `ze appliance iso --target /dev/<disk> <appliance>`",
                )
            }
            DiskError::TargetNotFound(name) => write!(
                f,
                "ze.target=/dev/{name}: no such whole disk in /sys/block (a partition, or a device that did not appear?)"
            ),
            DiskError::Resolve(e) => write!(f, "{e}"),
            DiskError::TargetUnsuitable(name, why) => {
                write!(
                    f,
                    "ze.target=/dev/{name}: refusing to write: {}",
                    why.as_str()
                )
            }
        }
    }
}

/// A disk size for people: `128 MiB`, `500 GB`-style binary units, one
/// decimal below 10.
#[derive(Debug, Clone, Copy)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
        let mut unit = 0;
        let mut tenths = self.0.saturating_mul(10);
        while tenths >= 10 * 1024 && unit + 1 < UNITS.len() {
            tenths /= 1024;
            unit += 1;
        }
        let name = UNITS.get(unit).copied().unwrap_or("bytes");
        if unit == 0 || tenths >= 100 {
            write!(f, "{} {name}", tenths / 10)
        } else {
            write!(f, "{}.{} {name}", tenths / 10, tenths % 10)
        }
    }
}

/// Why `facts` is not a candidate, or `None` when it is one.
pub fn skip_reason(facts: &BlockFacts) -> Option<Skip> {
    let name = facts.name.as_str();
    if NEVER.iter().any(|p| name.starts_with(p)) {
        return Some(Skip::Kind);
    }
    if facts.read_only {
        return Some(Skip::ReadOnly);
    }
    if facts.sectors == 0 {
        return Some(Skip::Empty);
    }
    if facts.removable {
        return Some(Skip::Removable);
    }
    None
}

/// Choose the disk to write. `devices` must be sorted by name (as
/// `ze_hal::block::scan` returns them).
pub fn choose<'f>(
    devices: &'f [BlockFacts],
    target: Option<&str>,
    mode: Mode<'_>,
) -> Result<&'f BlockFacts, DiskError> {
    let sources: &[&str] = match mode {
        Mode::Iso { sources } => sources,
        Mode::Http => &[],
    };
    let is_source = |name: &str| sources.contains(&name);
    if let Some(path) = target {
        let name = path.strip_prefix("/dev/").unwrap_or(path);
        let found = devices.iter().find(|d| d.name.as_str() == name);
        let Some(disk) = found else {
            return Err(DiskError::TargetNotFound(short(name)));
        };
        // An explicit target may be removable (an SD card the operator
        // chose); everything else that makes a disk unwritable still counts.
        let why = match skip_reason(disk) {
            Some(Skip::Removable) | None => None,
            other => other,
        };
        let why = why.or(is_source(name).then_some(Skip::Source));
        return match why {
            Some(why) => Err(DiskError::TargetUnsuitable(short(name), why)),
            None => Ok(disk),
        };
    }
    let mut candidates = devices
        .iter()
        .filter(|d| skip_reason(d).is_none() && !is_source(d.name.as_str()));
    let first = candidates.next().ok_or(DiskError::NoDisk {
        seen: devices.len(),
    })?;
    if let Mode::Iso { .. } = mode
        && candidates.clone().next().is_some()
    {
        let mut named = heapless::Vec::new();
        let mut count = 0;
        for d in core::iter::once(first).chain(candidates) {
            let _ = named.push((d.name.clone(), d.size_bytes()));
            count += 1;
        }
        return Err(DiskError::Ambiguous { named, count });
    }
    Ok(first)
}

fn short(name: &str) -> String<MAX_DEVICE_NAME> {
    let mut s = String::new();
    for c in name.chars() {
        if s.push(c).is_err() {
            break;
        }
    }
    s
}

/// `/dev/<disk>`.
pub fn disk_path(disk: &str) -> String<MAX_PATH> {
    let mut p = String::new();
    let _ = p.push_str("/dev/");
    let _ = p.push_str(disk);
    p
}

/// The device node of partition `n` of `disk`: `vda4`, `sda4`, but
/// `nvme0n1p4`, `mmcblk0p4`, `loop0p4` (a `p` when the disk name ends in a
/// digit), as `/dev/...`.
pub fn partition_path(disk: &str, n: u8) -> String<MAX_PATH> {
    let mut p = disk_path(disk);
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        let _ = p.push('p');
    }
    let _ = fmt::Write::write_fmt(&mut p, format_args!("{n}"));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use ze_hal::{block::scan, fake::FakeSys};

    /// Add `/sys/block/<name>` as the kernel shows it.
    fn dev(sys: &mut FakeSys, name: &str, sectors: u64, removable: u8, ro: u8) {
        sys.file(
            &std::format!("/sys/block/{name}/size"),
            &std::format!("{sectors}\n"),
        );
        sys.file(
            &std::format!("/sys/block/{name}/removable"),
            &std::format!("{removable}\n"),
        );
        sys.file(
            &std::format!("/sys/block/{name}/ro"),
            &std::format!("{ro}\n"),
        );
    }

    /// A laptop: SATA SSD, a USB stick, an optical drive, loop devices
    /// from snaps, zram swap (captured from /sys/block on a Debian laptop).
    fn laptop() -> FakeSys {
        let mut s = FakeSys::new();
        dev(&mut s, "loop0", 113_592, 0, 1);
        dev(&mut s, "loop1", 0, 0, 0);
        dev(&mut s, "sda", 500_118_192, 0, 0);
        dev(&mut s, "sdb", 60_620_800, 1, 0);
        dev(&mut s, "sr0", 2_097_151, 1, 0);
        dev(&mut s, "zram0", 16_777_216, 0, 0);
        s
    }

    /// A server: two NVMe drives and an md RAID.
    fn nvme_server() -> FakeSys {
        let mut s = FakeSys::new();
        dev(&mut s, "md0", 1_000_000, 0, 0);
        dev(&mut s, "nvme1n1", 1_875_385_008, 0, 0);
        dev(&mut s, "nvme0n1", 1_875_385_008, 0, 0);
        s
    }

    /// A single-board computer: eMMC with its boot partitions (read-only)
    /// and an SD card slot (removable), plus the QEMU virt pflash.
    fn sbc() -> FakeSys {
        let mut s = FakeSys::new();
        dev(&mut s, "mmcblk0", 30_535_680, 0, 0);
        dev(&mut s, "mmcblk0boot0", 8_192, 0, 1);
        dev(&mut s, "mmcblk0boot1", 8_192, 0, 1);
        dev(&mut s, "mmcblk1", 62_333_952, 1, 0);
        dev(&mut s, "mtdblock0", 131_072, 0, 0);
        s
    }

    /// QEMU: two virtio disks and a CD-ROM (sr0) with the installer ISO.
    fn qemu_virtio() -> FakeSys {
        let mut s = FakeSys::new();
        dev(&mut s, "sr0", 1_228_800, 1, 1);
        dev(&mut s, "vda", 4_194_304, 0, 0);
        dev(&mut s, "vdb", 4_194_304, 0, 0);
        dev(&mut s, "fd0", 8, 1, 0);
        s
    }

    fn pick(
        sys: &FakeSys,
        target: Option<&str>,
        mode: Mode<'_>,
    ) -> Result<std::string::String, DiskError> {
        let scan = scan(sys).unwrap();
        choose(&scan.devices, target, mode).map(|d| d.name.to_string())
    }

    #[test]
    fn i4_laptop_writes_the_fixed_sata_disk() {
        assert_eq!(pick(&laptop(), None, Mode::Http).unwrap(), "sda");
    }

    #[test]
    fn i4_i16_nvme_first_in_name_order() {
        assert_eq!(pick(&nvme_server(), None, Mode::Http).unwrap(), "nvme0n1");
    }

    #[test]
    fn i4_i16_mmc_skips_boot_partitions_sd_card_and_mtdblock() {
        assert_eq!(pick(&sbc(), None, Mode::Http).unwrap(), "mmcblk0");
        let mut s = sbc();
        s.remove("/sys/block/mmcblk0/size");
        s.remove("/sys/block/mmcblk0/removable");
        s.remove("/sys/block/mmcblk0/ro");
        assert_eq!(
            pick(&s, None, Mode::Http),
            Err(DiskError::NoDisk { seen: 4 })
        );
    }

    #[test]
    fn i4_virtio_skips_cdrom_and_floppy() {
        assert_eq!(pick(&qemu_virtio(), None, Mode::Http).unwrap(), "vda");
    }

    #[test]
    fn o2_iso_mode_refuses_two_fixed_disks() {
        let e = pick(&qemu_virtio(), None, Mode::Iso { sources: &["sr0"] }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "2 fixed disks (/dev/vda 2.0 GiB, /dev/vdb 2.0 GiB) and no ze.target: refusing to guess which to erase; rebuild the ISO with `ze appliance iso --target /dev/<disk> <appliance>`"
        );
        assert_eq!(
            pick(
                &qemu_virtio(),
                Some("/dev/vdb"),
                Mode::Iso { sources: &["sr0"] }
            )
            .unwrap(),
            "vdb"
        );
        // Many disks: the first four are named, the count is exact, and
        // the FATAL line still fits the console's 256 bytes.
        let mut s = FakeSys::new();
        for n in ["sda", "sdb", "sdc", "sdd", "sde", "nvme0n1"] {
            dev(&mut s, n, 3_907_029_168, 0, 0);
        }
        let e = pick(&s, None, Mode::Iso { sources: &[] }).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(
                "6 fixed disks (/dev/nvme0n1 1.8 TiB, /dev/sda 1.8 TiB, /dev/sdb 1.8 TiB, /dev/sdc 1.8 TiB, ...) and no ze.target"
            ),
            "{text}"
        );
        assert!(
            "[ze-install] FATAL: ".len() + text.len() < crate::console::MAX_LINE - 4,
            "{} bytes",
            text.len()
        );
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(Size(512).to_string(), "512 bytes");
        assert_eq!(Size(128 << 20).to_string(), "128 MiB");
        assert_eq!(Size(1536 << 20).to_string(), "1.5 GiB");
        assert_eq!(Size(500_107_862_016).to_string(), "465 GiB");
        assert_eq!(Size(3 << 40).to_string(), "3.0 TiB");
        assert_eq!(Size(40 << 40).to_string(), "40 TiB");
    }

    #[test]
    fn o2_iso_mode_excludes_its_source_disk() {
        // An ISO written to a fixed disk (dd to a USB-SATA bridge that says
        // removable=0): that disk is not a candidate.
        let mut s = FakeSys::new();
        dev(&mut s, "sda", 1_000_000, 0, 0);
        dev(&mut s, "sdb", 2_000_000, 0, 0);
        assert_eq!(
            pick(&s, None, Mode::Iso { sources: &["sda"] }).unwrap(),
            "sdb"
        );
        let e = pick(&s, Some("/dev/sda"), Mode::Iso { sources: &["sda"] }).unwrap_err();
        assert_eq!(e, DiskError::TargetUnsuitable(short("sda"), Skip::Source));
        assert_eq!(
            e.to_string(),
            "ze.target=/dev/sda: refusing to write: the installer's own media"
        );
        // The same ISO on two sticks: both are excluded.
        dev(&mut s, "sdc", 3_000_000, 0, 0);
        assert_eq!(
            pick(
                &s,
                None,
                Mode::Iso {
                    sources: &["sda", "sdc"]
                }
            )
            .unwrap(),
            "sdb"
        );
    }

    #[test]
    fn target_wins_and_bad_targets_say_why() {
        let s = qemu_virtio();
        assert_eq!(pick(&s, Some("/dev/vdb"), Mode::Http).unwrap(), "vdb");
        let e = pick(&s, Some("/dev/vdc"), Mode::Http).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ze.target=/dev/vdc: no such whole disk in /sys/block (a partition, or a device that did not appear?)"
        );
        let e = pick(&s, Some("/dev/vda1"), Mode::Http).unwrap_err();
        assert!(matches!(e, DiskError::TargetNotFound(_)));
        let e = pick(&s, Some("/dev/sr0"), Mode::Http).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ze.target=/dev/sr0: refusing to write: virtual, optical, floppy or flash device"
        );
        let e = pick(&sbc(), Some("/dev/mmcblk0boot0"), Mode::Http).unwrap_err();
        assert_eq!(
            e,
            DiskError::TargetUnsuitable(short("mmcblk0boot0"), Skip::ReadOnly)
        );
        // An explicitly named removable disk is allowed.
        assert_eq!(
            pick(&laptop(), Some("/dev/sdb"), Mode::Http).unwrap(),
            "sdb"
        );
    }

    #[test]
    fn i12_no_disk_message() {
        let mut s = FakeSys::new();
        dev(&mut s, "sr0", 1_228_800, 1, 1);
        let e = pick(&s, None, Mode::Http).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("no writable disk: none of the 1 block devices")
        );
    }

    #[test]
    fn i16_partition_nodes() {
        assert_eq!(partition_path("vda", 4).as_str(), "/dev/vda4");
        assert_eq!(partition_path("sda", 4).as_str(), "/dev/sda4");
        assert_eq!(partition_path("nvme0n1", 4).as_str(), "/dev/nvme0n1p4");
        assert_eq!(partition_path("mmcblk0", 4).as_str(), "/dev/mmcblk0p4");
        assert_eq!(disk_path("vda").as_str(), "/dev/vda");
    }
}
