//! The appliance image's partition layout: where each partition starts and
//! ends for a given image size, as a GPT [`Table`].
//!
//! ```text
//! 0     20 KiB         1 MiB      65 MiB       193 MiB      321 MiB          end-1 MiB  end
//! | GPT | p5 bios-boot  | p1 ESP   | p2 root-a  | p3 root-b  | p4 perm        | (free) |GPT|
//! |     | GRUB core.img | FAT32    | squashfs   | squashfs   | ext4, the rest |        |   |
//! ```
//!
//! Every partition but p5 starts and ends on a 1 MiB boundary. The ESP and
//! the two roots have fixed sizes, so a later update can write a new root
//! into the inactive slot of any installed appliance; `/perm` takes what is
//! left. On amd64, p5 (the BIOS boot partition, [`super::bios`]) fills the
//! gap between the primary GPT and the ESP; it is the last entry so that
//! partitions 1–4 keep their numbers, and it lies inside the first MiB, which
//! the installer writes last. arm64 images boot by UEFI only and have no p5.

use super::{
    config::Arch,
    gpt::{self, Guid, Partition, Table, types},
    size::ByteSize,
};
use thiserror::Error;

/// Partition alignment.
pub const ALIGN: u64 = 1 << 20;
/// The EFI system partition: the boot loader and one kernel per slot.
pub const ESP_BYTES: u64 = 64 << 20;
/// Each read-only root (A and B).
pub const ROOT_BYTES: u64 = 128 << 20;
/// The smallest `/perm` worth having.
pub const MIN_PERM_BYTES: u64 = 32 << 20;
/// GPT names of partitions 1–4; the appliance finds `/perm` by name.
pub const NAMES: [&str; 4] = ["ESP", "root-a", "root-b", "perm"];
/// The partition number of `/perm`.
pub const PERM_PARTITION: usize = 4;
/// The partition number of the BIOS boot partition (amd64 only).
pub const BIOS_BOOT_PARTITION: usize = 5;
/// Its GPT name.
pub const BIOS_BOOT_NAME: &str = "bios-boot";
/// Its first sector: the first 4 KiB boundary after the primary GPT
/// (sectors 0–33).
pub const BIOS_BOOT_FIRST_LBA: u64 = 40;
/// Its last sector: the one before the ESP.
pub const BIOS_BOOT_LAST_LBA: u64 = ALIGN / gpt::SECTOR - 1;

/// The smallest image the layout fits: the leading MiB (MBR, primary
/// GPT), the ESP, two roots, a minimal `/perm`, and the trailing MiB that
/// holds the backup GPT.
pub const fn min_image_bytes() -> u64 {
    ALIGN + ESP_BYTES + 2 * ROOT_BYTES + MIN_PERM_BYTES + ALIGN
}

/// Why a size cannot be laid out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum LayoutError {
    /// Not a whole number of 512-byte sectors.
    #[error("image size {0} bytes is not a multiple of 512")]
    NotSectors(u64),
    /// Below [`min_image_bytes`].
    #[error(
        "image size {size} is too small for the A/B layout: it needs at least {min} \
         (1 MiB GPT, ESP {esp}, two roots of {root}, /perm of at least {perm}, 1 MiB for the backup GPT)",
        size = ByteSize(*.0),
        min = ByteSize(min_image_bytes()),
        esp = ByteSize(ESP_BYTES),
        root = ByteSize(ROOT_BYTES),
        perm = ByteSize(MIN_PERM_BYTES)
    )]
    TooSmall(u64),
}

/// The identities a layout gives its disk and partitions (random per
/// build; fixed in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identities {
    /// The disk GUID.
    pub disk: Guid,
    /// Partition GUIDs (`PARTUUID=`), p1..p4.
    pub partitions: [Guid; 4],
    /// The BIOS boot partition's GUID (p5, amd64 only).
    pub bios_boot: Guid,
}

impl Identities {
    /// All-zero GUIDs, for checking a size or showing a layout.
    pub fn placeholder() -> Identities {
        Identities {
            disk: Guid::default(),
            partitions: [Guid::default(); 4],
            bios_boot: Guid::default(),
        }
    }

    /// Fresh random GUIDs.
    pub fn random() -> std::io::Result<Identities> {
        let g = || -> std::io::Result<Guid> {
            let mut b = [0u8; 16];
            crate::random::fill(&mut b)?;
            Ok(Guid::from_random(b))
        };
        Ok(Identities {
            disk: g()?,
            partitions: [g()?, g()?, g()?, g()?],
            bios_boot: g()?,
        })
    }
}

/// A planned image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Image size in bytes.
    pub size: u64,
    /// The partition table.
    pub table: Table,
}

impl DiskLayout {
    /// Lay out an image of `size` bytes for `arch`.
    pub fn plan(size: u64, arch: Arch, ids: Identities) -> Result<DiskLayout, LayoutError> {
        if !size.is_multiple_of(gpt::SECTOR) {
            return Err(LayoutError::NotSectors(size));
        }
        let sectors = size / gpt::SECTOR;
        // The backup GPT takes the last 33 sectors; /perm ends on the last
        // MiB boundary before it.
        let perm_end = (sectors - 1 - gpt::ENTRY_SECTORS) * gpt::SECTOR / ALIGN * ALIGN;
        let perm_start = ALIGN + ESP_BYTES + 2 * ROOT_BYTES;
        if size < min_image_bytes() || perm_end < perm_start + MIN_PERM_BYTES {
            return Err(LayoutError::TooSmall(size));
        }
        let root_type = match arch {
            Arch::Amd64 => types::ROOT_X86_64,
            Arch::Arm64 => types::ROOT_ARM64,
        };
        let spans = [
            (ALIGN, ESP_BYTES, types::ESP, 0),
            (
                ALIGN + ESP_BYTES,
                ROOT_BYTES,
                root_type,
                gpt::ATTR_READ_ONLY,
            ),
            (
                ALIGN + ESP_BYTES + ROOT_BYTES,
                ROOT_BYTES,
                root_type,
                gpt::ATTR_READ_ONLY,
            ),
            (perm_start, perm_end - perm_start, types::LINUX_DATA, 0),
        ];
        let mut partitions: Vec<Partition> = spans
            .iter()
            .zip(NAMES)
            .zip(ids.partitions)
            .map(
                |(((start, len, type_guid, attributes), name), guid)| Partition {
                    type_guid: *type_guid,
                    guid,
                    first_lba: start / gpt::SECTOR,
                    last_lba: (start + len) / gpt::SECTOR - 1,
                    attributes: *attributes,
                    name: name.to_string(),
                },
            )
            .collect();
        if arch == Arch::Amd64 {
            partitions.push(Partition {
                type_guid: types::BIOS_BOOT,
                guid: ids.bios_boot,
                first_lba: BIOS_BOOT_FIRST_LBA,
                last_lba: BIOS_BOOT_LAST_LBA,
                attributes: 0,
                name: BIOS_BOOT_NAME.to_string(),
            });
        }
        let table = Table {
            disk_guid: ids.disk,
            disk_sectors: sectors,
            partitions,
        };
        debug_assert_eq!(table.validate(), Ok(()));
        Ok(DiskLayout { size, table })
    }

    /// Partition `n` (1-based).
    pub fn partition(&self, n: usize) -> &Partition {
        &self.table.partitions[n - 1]
    }

    /// The EFI system partition.
    pub fn esp(&self) -> &Partition {
        self.partition(1)
    }

    /// Root A (slot `a`) or B.
    pub fn root(&self, slot: Slot) -> &Partition {
        self.partition(match slot {
            Slot::A => 2,
            Slot::B => 3,
        })
    }

    /// `/perm`.
    pub fn perm(&self) -> &Partition {
        self.partition(PERM_PARTITION)
    }

    /// The BIOS boot partition, on amd64.
    pub fn bios_boot(&self) -> Option<&Partition> {
        self.table.partitions.get(BIOS_BOOT_PARTITION - 1)
    }
}

/// One of the two root slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Partition 2.
    A,
    /// Partition 3.
    B,
}

impl Slot {
    /// `a` or `b`, as in file names and the boot loader's `ze_slot`.
    pub fn letter(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Identities {
        Identities {
            disk: Guid::from_random([1; 16]),
            partitions: [2, 3, 4, 5].map(|n| Guid::from_random([n; 16])),
            bios_boot: Guid::from_random([6; 16]),
        }
    }

    #[test]
    fn a2_default_two_gib_layout() {
        let l = DiskLayout::plan(2 << 30, Arch::Amd64, ids()).unwrap();
        let mib = |p: &Partition| (p.offset() >> 20, p.size() >> 20);
        assert_eq!(mib(l.esp()), (1, 64));
        assert_eq!(mib(l.root(Slot::A)), (65, 128));
        assert_eq!(mib(l.root(Slot::B)), (193, 128));
        assert_eq!(mib(l.perm()), (321, 2048 - 321 - 1));
        assert_eq!(
            l.table
                .partitions
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            [&NAMES[..], &[BIOS_BOOT_NAME]].concat()
        );
        assert_eq!(l.root(Slot::A).type_guid, types::ROOT_X86_64);
        // p5, the BIOS boot partition: the gap between the primary GPT
        // and the ESP, 4 KiB aligned.
        let bios = l.bios_boot().unwrap();
        assert_eq!(bios.type_guid, types::BIOS_BOOT);
        assert_eq!(
            bios.type_guid.to_string(),
            "21686148-6449-6e6f-744e-656564454649"
        );
        assert_eq!((bios.first_lba, bios.last_lba), (40, 2047));
        assert_eq!((bios.offset(), bios.size()), (20 << 10, 1004 << 10));
        assert!(bios.first_lba >= gpt::FIRST_USABLE_LBA);
        assert_eq!(bios.last_lba + 1, l.esp().first_lba);
        let arm = DiskLayout::plan(2 << 30, Arch::Arm64, ids()).unwrap();
        assert_eq!(arm.root(Slot::B).type_guid, types::ROOT_ARM64);
        assert_eq!(arm.table.partitions.len(), 4, "arm64 boots by UEFI only");
        assert!(arm.bios_boot().is_none());
        // Partitions 1-4 are where they were before p5 was added.
        let spans = |t: &Table| {
            t.partitions
                .iter()
                .take(4)
                .map(|p| (p.first_lba, p.last_lba, p.name.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(spans(&arm.table), spans(&l.table));
        assert!(l.table.validate().is_ok());
    }

    #[test]
    fn the_smallest_image_fits_and_one_mib_less_does_not() {
        let min = min_image_bytes();
        assert_eq!(min, 354 << 20);
        let l = DiskLayout::plan(min, Arch::Amd64, ids()).unwrap();
        assert_eq!(l.perm().size(), MIN_PERM_BYTES);
        let err = DiskLayout::plan(min - ALIGN, Arch::Amd64, ids()).unwrap_err();
        assert_eq!(err, LayoutError::TooSmall(min - ALIGN));
        let text = err.to_string();
        assert!(
            text.contains("353 MiB") && text.contains("354 MiB"),
            "{text}"
        );
        assert_eq!(
            DiskLayout::plan(min + 1, Arch::Amd64, ids()),
            Err(LayoutError::NotSectors(min + 1))
        );
        // An odd number of sectors still ends /perm on a MiB boundary.
        let l = DiskLayout::plan(min + 512 * 7, Arch::Amd64, ids()).unwrap();
        assert_eq!(l.perm().size() % ALIGN, 0);
        assert!(l.table.validate().is_ok());
    }
}
