//! The BIOS boot path of amd64 images: GRUB for `i386-pc` in the BIOS boot
//! partition (p5, [`super::disk`]) and GRUB's boot sector in LBA 0, placed
//! and patched the way `grub-setup` does it for a GPT disk, by our own code.
//!
//! ```text
//! BIOS → LBA 0: boot.img (first 440 bytes; the protective MBR's disk
//!        signature, partition table and 0x55AA stay)
//!          0x5c  u64  LBA of core.img's first sector (p5's first LBA)
//!          0x64  u8   boot drive: 0xff, the one the BIOS passes in %dl
//!          0x66  2    a jmp, made two nops: a BIOS that passes a floppy
//!                     number for a hard disk gets 0x80
//!      → core.img sector 0: diskboot, which reads the rest by its block
//!        lists, 12 bytes each, growing down from the end of the sector:
//!          0x1f4 u64  first LBA   0x1fc u16 sectors   0x1fe u16 load segment
//!        (one list: p5's first LBA + 1, core.img's sectors - 1, 0x820);
//!        the 12 bytes below it are zero and end the lists
//!      → the GRUB kernel: runs the early configuration (serial console,
//!        find the ESP by FAT serial), then normal mode reads
//!        `(memdisk)/grub.cfg`: the A/B slot logic the EFI loader runs
//!        ([`super::grub::bios_disk_config`])
//! ```
//!
//! Everything lives inside the image's first MiB, which the installer
//! writes last, so installing needs nothing BIOS-specific. No Reed-Solomon
//! codes are added to core.img (`grub-install --no-rs-codes`): the image is
//! written whole, not by a file system that may move sectors.

use super::{config::Arch, gpt::Partition, tools};
use anyhow::Context;
use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};
use thiserror::Error;

/// GRUB's platform name.
pub const PLATFORM: &str = "i386-pc";
/// The Debian package with its modules and images.
pub const PACKAGE: &str = "grub-pc-bin";
/// Modules of the core image; `grub-mkimage` adds their dependencies.
/// `biosdisk` reads disks through the BIOS; `memdisk` and `newc` hold the
/// configuration; `serial` and `terminal` put the console on COM1.
pub const MODULES: &[&str] = &[
    "biosdisk",
    "part_gpt",
    "fat",
    "search",
    "search_fs_uuid",
    "loadenv",
    "linux",
    "normal",
    "test",
    "regexp",
    "echo",
    "serial",
    "terminal",
    "memdisk",
    "newc",
];
/// GRUB's boot sector, from [`modules_dir`].
pub const BOOT_IMG: &str = "boot.img";

/// Bytes per sector.
pub const SECTOR: usize = 512;
/// The boot code's share of LBA 0: from here on (disk signature, partition
/// table, 0x55AA) the protective MBR's bytes stay.
pub const MBR_CODE_END: usize = 0x1b8;
/// The BIOS parameter block area in boot.img (scratch space for its code):
/// `grub-setup` fills it from the disk's own sector 0, as here.
pub const BPB: std::ops::Range<usize> = 0x03..0x5a;
/// boot.img: the LBA of core.img's first sector, u64 little-endian.
pub const KERNEL_SECTOR: usize = 0x5c;
/// boot.img: the BIOS drive to read from; 0xff takes the one in `%dl`.
pub const BOOT_DRIVE: usize = 0x64;
/// boot.img: the 2-byte jmp that skips the hard-disk drive fix-up.
pub const DRIVE_CHECK: usize = 0x66;
/// Bytes of one diskboot block list.
pub const LIST_SIZE: usize = 12;
/// Where diskboot's first block list starts in its sector.
pub const FIRST_LIST: usize = SECTOR - LIST_SIZE;
/// The segment core.img's second sector is loaded to (0x8200: diskboot
/// itself is at 0x8000).
pub const LOAD_SEGMENT: u16 = 0x820;
/// The most sectors core.img may have: what fits below 0x78000 from the
/// kernel's link address 0x9000 (the limit `grub-setup` applies).
pub const MAX_CORE_SECTORS: u64 = (0x78000 - 0x9000) / SECTOR as u64;

/// `/usr/lib/grub/i386-pc`.
pub fn modules_dir() -> PathBuf {
    Path::new("/usr/lib/grub").join(PLATFORM)
}

/// Whether images for `arch` carry the BIOS boot path.
pub fn wanted(arch: Arch) -> bool {
    arch == Arch::Amd64
}

/// What is missing to build the BIOS boot path for `arch`, one line each
/// (nothing for arm64, which boots by UEFI only).
pub fn missing(arch: Arch) -> Vec<String> {
    missing_in(arch, &modules_dir())
}

fn missing_in(arch: Arch, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if !wanted(arch) {
        return out;
    }
    if !tools::GRUB_MKIMAGE.present() {
        out.push(tools::GRUB_MKIMAGE.missing_line());
    }
    if !dir.join("biosdisk.mod").is_file() || !dir.join(BOOT_IMG).is_file() {
        out.push(format!(
            "GRUB modules for {PLATFORM} ({}; the BIOS boot loader of amd64 images): not found; install them with `apt-get install {PACKAGE}`",
            dir.display()
        ));
    }
    out
}

/// Why GRUB's images cannot be placed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BiosError {
    /// boot.img is not GRUB's i386-pc boot sector.
    #[error("{0} is not GRUB's i386-pc boot sector: {1}")]
    BootImage(String, &'static str),
    /// core.img is not an i386-pc core image.
    #[error("{0} is not a GRUB i386-pc core image: {1}")]
    CoreImage(String, &'static str),
    /// core.img does not fit.
    #[error(
        "the GRUB core image is {sectors} sectors; the BIOS boot partition holds {room} and diskboot loads at most {MAX_CORE_SECTORS}"
    )]
    TooLarge { sectors: u64, room: u64 },
    /// The sector it would replace is not a protective MBR.
    #[error("LBA 0 is not a protective MBR (no 0x55AA signature)")]
    NoMbr,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// LBA 0 for BIOS: GRUB's boot sector `boot_img` over the protective MBR
/// `mbr`, pointing at core.img's first sector `core_lba`. The bytes from
/// [`MBR_CODE_END`] on and the BPB area are `mbr`'s; the rest is boot.img's,
/// patched as `grub-setup` does for a hard disk.
pub fn boot_sector(
    boot_img: &[u8],
    mbr: &[u8; SECTOR],
    core_lba: u64,
) -> Result<[u8; SECTOR], BiosError> {
    let bad = |why| BiosError::BootImage(BOOT_IMG.into(), why);
    if boot_img.len() != SECTOR {
        return Err(bad("not 512 bytes"));
    }
    if boot_img[510..] != [0x55, 0xAA] {
        return Err(bad("no 0x55AA signature"));
    }
    if boot_img[DRIVE_CHECK] != 0xEB {
        return Err(bad("no short jmp at the drive check (0x66)"));
    }
    if mbr[510..] != [0x55, 0xAA] {
        return Err(BiosError::NoMbr);
    }
    let mut out = *mbr;
    out[..MBR_CODE_END].copy_from_slice(&boot_img[..MBR_CODE_END]);
    out[BPB].copy_from_slice(&mbr[BPB]);
    out[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    out[BOOT_DRIVE] = 0xFF;
    out[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(out)
}

/// core.img as written at `core_lba` into a partition of `room` sectors:
/// padded to whole sectors, with diskboot's block list naming the sectors
/// after the first.
pub fn patch_core(core: &[u8], core_lba: u64, room: u64) -> Result<Vec<u8>, BiosError> {
    let bad = |why| BiosError::CoreImage("core.img".into(), why);
    if core.len() <= SECTOR {
        return Err(bad("not longer than its diskboot sector"));
    }
    let sectors = core.len().div_ceil(SECTOR) as u64;
    if sectors > room || sectors > MAX_CORE_SECTORS {
        return Err(BiosError::TooLarge { sectors, room });
    }
    let list = FIRST_LIST;
    let end = list - LIST_SIZE;
    if u16_at(core, list + 10) != LOAD_SEGMENT {
        return Err(bad("diskboot's block list does not load to segment 0x820"));
    }
    if u64::from(u16_at(core, list + 8)) != sectors - 1 {
        return Err(bad(
            "diskboot's block list does not count the sectors after it",
        ));
    }
    if core[end..list].iter().any(|&b| b != 0) {
        return Err(bad("diskboot has no room for the block lists' end"));
    }
    let mut out = core.to_vec();
    out.resize(sectors as usize * SECTOR, 0);
    out[list..list + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    out[list + 8..list + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    out[list + 10..list + 12].copy_from_slice(&LOAD_SEGMENT.to_le_bytes());
    Ok(out)
}

/// The configuration embedded in core.img. GRUB runs it with its rescue
/// parser (one command a line, no `if`, no comments); then normal mode
/// reads `(memdisk)/grub.cfg`.
pub fn early_config(esp_serial: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n\
         search --no-floppy --fs-uuid --set=ze_dev {esp_serial}\n"
    )
}

/// The memdisk: a newc archive holding `grub.cfg`, padded to whole
/// sectors (GRUB's memdisk drops a partial last sector).
pub fn memdisk(config: &str) -> anyhow::Result<Vec<u8>> {
    let mut w = crate::cpio::Writer::new(Vec::new());
    w.file("grub.cfg", 0o644, config.as_bytes())?;
    let mut bytes = w.finish()?;
    bytes.resize(bytes.len().div_ceil(SECTOR) * SECTOR, 0);
    Ok(bytes)
}

/// Build core.img at `out` with `grub-mkimage -O i386-pc`: [`MODULES`], the
/// early configuration `early` embedded, `config` as `(memdisk)/grub.cfg`.
/// `scratch` is a directory for the inputs.
pub fn mkimage(early: &str, config: &str, out: &Path, scratch: &Path) -> anyhow::Result<()> {
    let early_path = scratch.join("bios-early.cfg");
    let memdisk_path = scratch.join("bios-memdisk.cpio");
    std::fs::write(&early_path, early)
        .with_context(|| format!("cannot write {}", early_path.display()))?;
    std::fs::write(&memdisk_path, memdisk(config)?)
        .with_context(|| format!("cannot write {}", memdisk_path.display()))?;
    tools::run(
        std::process::Command::new(tools::GRUB_MKIMAGE.program)
            .arg("-O")
            .arg(PLATFORM)
            .arg("-d")
            .arg(modules_dir())
            .arg("-o")
            .arg(out)
            .arg("-c")
            .arg(&early_path)
            .arg("-m")
            .arg(&memdisk_path)
            .args(["-p", "(memdisk)"])
            .args(MODULES),
    )
    .with_context(|| {
        format!("grub-mkimage could not build the BIOS boot loader (package {PACKAGE})")
    })?;
    Ok(())
}

/// What [`install`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// core.img's sectors.
    pub core_sectors: u64,
    /// The partition's.
    pub room: u64,
}

/// Put `core` (from [`mkimage`]) into the BIOS boot partition `part` of
/// `disk` and GRUB's boot sector into LBA 0, over the protective MBR that
/// is already there.
pub fn install(disk: &File, part: &Partition, core: &[u8]) -> anyhow::Result<Installed> {
    let boot_path = modules_dir().join(BOOT_IMG);
    let boot_img = std::fs::read(&boot_path).with_context(|| {
        format!(
            "cannot read {} (install it with `apt-get install {PACKAGE}`)",
            boot_path.display()
        )
    })?;
    let room = part.last_lba + 1 - part.first_lba;
    let core = patch_core(core, part.first_lba, room)?;
    let mut mbr = [0u8; SECTOR];
    disk.read_exact_at(&mut mbr, 0)
        .context("cannot read LBA 0 of the image")?;
    let sector = boot_sector(&boot_img, &mbr, part.first_lba)
        .map_err(|e| anyhow::anyhow!("{e} ({})", boot_path.display()))?;
    disk.write_all_at(&core, part.offset())
        .context("cannot write the GRUB core image into the BIOS boot partition")?;
    disk.write_all_at(&sector, 0)
        .context("cannot write GRUB's boot sector to LBA 0")?;
    Ok(Installed {
        core_sectors: (core.len() / SECTOR) as u64,
        room,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::gpt::{Guid, Table, types};

    /// A stand-in for boot.img: code bytes everywhere, the jmp at 0x66,
    /// GRUB's defaults at 0x5c and 0x64, floppy-probe code where the
    /// partition table goes (as in GRUB 2.06), the signature.
    fn fake_boot_img() -> Vec<u8> {
        let mut b: Vec<u8> = (0..SECTOR).map(|i| (i % 251) as u8 | 1).collect();
        b[0..3].copy_from_slice(&[0xEB, 0x63, 0x90]);
        b[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&1u64.to_le_bytes());
        b[BOOT_DRIVE] = 0xFF;
        b[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0xEB, 0x05]);
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }

    /// A stand-in for core.img of `len` bytes: diskboot with the list
    /// grub-mkimage leaves (start 2, the sectors after it, segment 0x820).
    fn fake_core(len: usize) -> Vec<u8> {
        let mut c: Vec<u8> = (0..len).map(|i| (i % 253) as u8 | 1).collect();
        c[FIRST_LIST - LIST_SIZE..SECTOR].fill(0);
        c[FIRST_LIST..FIRST_LIST + 8].copy_from_slice(&2u64.to_le_bytes());
        let rest = (len.div_ceil(SECTOR) - 1) as u16;
        c[FIRST_LIST + 8..FIRST_LIST + 10].copy_from_slice(&rest.to_le_bytes());
        c[FIRST_LIST + 10..SECTOR].copy_from_slice(&LOAD_SEGMENT.to_le_bytes());
        c
    }

    fn table() -> Table {
        Table {
            disk_guid: Guid::from_random([1; 16]),
            disk_sectors: 1 << 20,
            partitions: vec![],
        }
    }

    #[test]
    fn the_boot_sector_points_at_core_and_keeps_the_partition_table() {
        let mbr = table().protective_mbr();
        let boot = fake_boot_img();
        let s = boot_sector(&boot, &mbr, 40).unwrap();
        // The code is boot.img's up to 440 bytes, but for the patched
        // fields and the BPB area, which keeps the disk's bytes.
        assert_eq!(s[..3], boot[..3]);
        assert_eq!(s[BPB], mbr[BPB]);
        assert_eq!(s[0x5a..KERNEL_SECTOR], boot[0x5a..KERNEL_SECTOR]);
        assert_eq!(
            u64::from_le_bytes(s[0x5c..0x64].try_into().unwrap()),
            40,
            "core.img's first LBA at 0x5c"
        );
        assert_eq!(s[0x64], 0xFF);
        assert_eq!(s[0x65], boot[0x65]);
        assert_eq!(s[0x66..0x68], [0x90, 0x90], "the drive check's jmp is nops");
        assert_eq!(s[0x68..MBR_CODE_END], boot[0x68..MBR_CODE_END]);
        // Disk signature, partition table and signature: the protective
        // MBR's, byte for byte.
        assert_eq!(s[MBR_CODE_END..], mbr[MBR_CODE_END..]);
        assert_eq!(s[446 + 4], 0xEE);
        assert_eq!(s[510..], [0x55, 0xAA]);
        // A big LBA is stored whole.
        let s = boot_sector(&boot, &mbr, 0x0123_4567_89AB).unwrap();
        assert_eq!(s[0x5c..0x64], 0x0123_4567_89ABu64.to_le_bytes());
    }

    #[test]
    fn a_wrong_boot_image_or_mbr_is_refused() {
        let mbr = table().protective_mbr();
        let mut short = fake_boot_img();
        short.pop();
        let mut unsigned = fake_boot_img();
        unsigned[511] = 0;
        let mut nojmp = fake_boot_img();
        nojmp[DRIVE_CHECK] = 0x90;
        for (img, why) in [
            (short, "not 512 bytes"),
            (unsigned, "no 0x55AA signature"),
            (nojmp, "no short jmp at the drive check (0x66)"),
        ] {
            assert_eq!(
                boot_sector(&img, &mbr, 40),
                Err(BiosError::BootImage(BOOT_IMG.into(), why))
            );
        }
        assert_eq!(
            boot_sector(&fake_boot_img(), &[0; SECTOR], 40),
            Err(BiosError::NoMbr)
        );
    }

    #[test]
    fn the_block_list_names_the_rest_of_core() {
        let core = fake_core(100 * SECTOR + 17);
        let out = patch_core(&core, 40, 2008).unwrap();
        assert_eq!(out.len(), 101 * SECTOR, "padded to whole sectors");
        assert!(out[core.len()..].iter().all(|&b| b == 0));
        let list = &out[0x1f4..0x200];
        assert_eq!(u64::from_le_bytes(list[..8].try_into().unwrap()), 41);
        assert_eq!(u16::from_le_bytes([list[8], list[9]]), 100);
        assert_eq!(u16::from_le_bytes([list[10], list[11]]), 0x820);
        // The entry below ends the lists; nothing else changed.
        assert!(out[0x1e8..0x1f4].iter().all(|&b| b == 0));
        assert_eq!(out[..0x1f4], core[..0x1f4]);
        assert_eq!(out[SECTOR..core.len()], core[SECTOR..]);
    }

    #[test]
    fn a_core_that_does_not_fit_or_is_not_one_is_refused() {
        let core = fake_core(20 * SECTOR);
        assert_eq!(
            patch_core(&core, 40, 19),
            Err(BiosError::TooLarge {
                sectors: 20,
                room: 19
            })
        );
        let big = fake_core((MAX_CORE_SECTORS as usize + 1) * SECTOR);
        assert!(matches!(
            patch_core(&big, 40, 4096),
            Err(BiosError::TooLarge { .. })
        ));
        assert!(patch_core(&fake_core(MAX_CORE_SECTORS as usize * SECTOR), 40, 4096).is_ok());
        let mut seg = core.clone();
        seg[0x1fe] = 0;
        let mut count = core.clone();
        count[0x1fc] = 3;
        let mut no_end = core.clone();
        no_end[0x1f0] = 1;
        for c in [seg, count, no_end, core[..SECTOR].to_vec()] {
            assert!(
                matches!(patch_core(&c, 40, 2008), Err(BiosError::CoreImage(..))),
                "{:?}",
                patch_core(&c, 40, 2008)
            );
        }
    }

    #[test]
    fn install_writes_core_then_the_boot_sector_over_the_protective_mbr() {
        if !missing(Arch::Amd64).is_empty() {
            panic!("{}", missing(Arch::Amd64).join("\n"));
        }
        let mut t = table();
        t.partitions.push(Partition {
            type_guid: types::BIOS_BOOT,
            guid: Guid::from_random([2; 16]),
            first_lba: 40,
            last_lba: 2047,
            attributes: 0,
            name: "bios-boot".into(),
        });
        let file = tempfile::tempfile().unwrap();
        file.set_len(t.disk_sectors * SECTOR as u64).unwrap();
        t.write_to(&mut &file).unwrap();
        let core = fake_core(64 * SECTOR + 3);
        let done = install(&file, &t.partitions[0], &core).unwrap();
        assert_eq!(
            done,
            Installed {
                core_sectors: 65,
                room: 2008
            }
        );
        let mut lba0 = [0u8; SECTOR];
        file.read_exact_at(&mut lba0, 0).unwrap();
        let boot = std::fs::read(modules_dir().join(BOOT_IMG)).unwrap();
        assert_eq!(lba0[..3], boot[..3]);
        assert_eq!(lba0[0x5c..0x64], 40u64.to_le_bytes());
        assert_eq!(lba0[MBR_CODE_END..], t.protective_mbr()[MBR_CODE_END..]);
        let mut first = [0u8; SECTOR];
        file.read_exact_at(&mut first, 40 * SECTOR as u64).unwrap();
        assert_eq!(first[0x1f4..0x1fc], 41u64.to_le_bytes());
        // The table still reads back, every CRC and the 0xEE entry intact.
        assert_eq!(Table::read_from(&mut &file, t.disk_sectors).unwrap(), t);
    }

    #[test]
    fn grub_mkimage_builds_a_core_image_that_patches() {
        if !missing(Arch::Amd64).is_empty() {
            panic!("{}", missing(Arch::Amd64).join("\n"));
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("core.img");
        mkimage(
            &early_config("1234-ABCD"),
            "set timeout=0\n",
            &out,
            dir.path(),
        )
        .unwrap();
        let core = std::fs::read(&out).unwrap();
        // grub-mkimage's diskboot counts the sectors after it; ours agrees.
        let patched = patch_core(&core, 40, 2008).unwrap();
        let sectors = patched.len() / SECTOR;
        assert!(sectors < 400, "core.img is {sectors} sectors");
        assert_eq!(patched[0x1f4..0x1fc], 41u64.to_le_bytes());
        assert_eq!(
            usize::from(u16::from_le_bytes([patched[0x1fc], patched[0x1fd]])),
            sectors - 1
        );
        // Past diskboot, the rest is GRUB's (LZMA-compressed) kernel.
        assert_eq!(patched[SECTOR..core.len()], core[SECTOR..]);
    }

    #[test]
    fn the_early_config_is_plain_commands_and_the_memdisk_whole_sectors() {
        let early = early_config("1234-ABCD");
        assert_eq!(
            early,
            "serial --unit=0 --speed=115200\nterminal_input serial console\n\
             terminal_output serial console\nsearch --no-floppy --fs-uuid --set=ze_dev 1234-ABCD\n"
        );
        for line in early.lines() {
            assert!(
                !line.starts_with('#') && !line.starts_with("if") && !line.contains(';'),
                "the rescue parser runs {line:?}"
            );
        }
        let m = memdisk("set timeout=0\n").unwrap();
        assert_eq!(m.len() % SECTOR, 0);
        assert!(m.starts_with(b"070701"));
        assert!(m.windows(8).any(|w| w == b"grub.cfg"));
        assert!(missing(Arch::Arm64).is_empty(), "arm64 boots by UEFI only");
    }

    #[test]
    fn missing_modules_name_the_package() {
        let none = Path::new("/nonexistent/grub/i386-pc");
        assert_eq!(
            missing_in(Arch::Amd64, none),
            [
                "GRUB modules for i386-pc (/nonexistent/grub/i386-pc; the BIOS boot loader of amd64 images): \
              not found; install them with `apt-get install grub-pc-bin`"
            ]
        );
        assert!(missing_in(Arch::Arm64, none).is_empty());
        assert!(
            missing(Arch::Amd64).is_empty(),
            "grub-pc-bin is a test prerequisite (make deps)"
        );
    }
}
