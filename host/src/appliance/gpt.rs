//! GUID Partition Tables (UEFI 2.10 §5.2–5.3): build one in memory, write
//! it (protective MBR, primary header and entries, backup entries and
//! header), and read one back with every checksum verified.
//!
//! ```text
//! LBA 0            protective MBR: one partition, type 0xEE, LBA 1 .. end
//! LBA 1            primary header (92 bytes, little-endian):
//!                    0 "EFI PART"  8 revision 1.0  12 header size 92
//!                   16 header CRC32 (over 92 bytes, this field zero)
//!                   24 my LBA  32 alternate LBA  40 first usable  48 last usable
//!                   56 disk GUID  72 entries LBA  80 entry count  84 entry size
//!                   88 entries CRC32
//! LBA 2..34        128 entries of 128 bytes:
//!                    0 type GUID  16 unique GUID  32 first LBA  40 last LBA (inclusive)
//!                   48 attributes  56 name (36 UTF-16LE code units)
//! LBA N-33..N-1    backup entries
//! LBA N-1          backup header (my LBA N-1, alternate 1, entries at N-33)
//! ```
//!
//! GUIDs are stored "mixed-endian": the first three fields little-endian,
//! the last two as bytes.

use std::{
    fmt,
    io::{self, Read, Seek, SeekFrom, Write},
    str::FromStr,
};
use thiserror::Error;

/// Bytes per logical sector (the only size written here).
pub const SECTOR: u64 = 512;
/// Partition entries in each array.
pub const ENTRY_COUNT: u32 = 128;
/// Bytes per partition entry.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors holding one entry array.
pub const ENTRY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR;
/// Bytes of the header that its CRC covers.
pub const HEADER_SIZE: u32 = 92;
/// The first LBA a partition may use (MBR, header, entries).
pub const FIRST_USABLE_LBA: u64 = 2 + ENTRY_SECTORS;
/// UTF-16 code units in a partition name.
pub const NAME_UNITS: usize = 36;
/// Attribute bit 60: the partition is read-only (Discoverable Partitions
/// Specification; Linux ignores it, tools honour it).
pub const ATTR_READ_ONLY: u64 = 1 << 60;
const SIGNATURE: &[u8; 8] = b"EFI PART";
const REVISION: u32 = 0x0001_0000;

/// A GUID, held in its textual byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Guid(pub [u8; 16]);

/// Well-known partition type GUIDs.
pub mod types {
    use super::Guid;
    /// EFI system partition.
    pub const ESP: Guid = Guid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
    /// Linux filesystem data.
    pub const LINUX_DATA: Guid = Guid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
    /// Linux root (x86-64), Discoverable Partitions Specification.
    pub const ROOT_X86_64: Guid = Guid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);
    /// Linux root (AArch64), Discoverable Partitions Specification.
    pub const ROOT_ARM64: Guid = Guid::from_u128(0xB921B045_1DF0_41C3_AF44_4C6F280D3FAE);
    /// BIOS boot partition: raw GRUB core image for BIOS firmware
    /// (`sgdisk` code `EF02`).
    pub const BIOS_BOOT: Guid = Guid::from_u128(0x21686148_6449_6E6F_744E_656564454649);
}

impl Guid {
    /// A GUID from its 128-bit textual value (`0xC12A7328_F81F_…`).
    pub const fn from_u128(v: u128) -> Guid {
        Guid(v.to_be_bytes())
    }

    /// A random (version 4) GUID from 16 random bytes.
    pub fn from_random(mut bytes: [u8; 16]) -> Guid {
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid(bytes)
    }

    /// The on-disk (mixed-endian) bytes.
    pub fn to_disk(self) -> [u8; 16] {
        let b = self.0;
        [
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15],
        ]
    }

    /// From on-disk bytes.
    pub fn from_disk(d: &[u8]) -> Guid {
        Guid([
            d[3], d[2], d[1], d[0], d[5], d[4], d[7], d[6], d[8], d[9], d[10], d[11], d[12], d[13],
            d[14], d[15],
        ])
    }
}

impl fmt::Display for Guid {
    /// Lowercase `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Guid {
    type Err = String;
    fn from_str(s: &str) -> Result<Guid, String> {
        let hex: String = s.chars().filter(|&c| c != '-').collect();
        let dashes_ok = s.len() == 36
            && s.char_indices()
                .all(|(i, c)| (c == '-') == matches!(i, 8 | 13 | 18 | 23));
        if !dashes_ok || hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
            ));
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Guid(out))
    }
}

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// What it holds.
    pub type_guid: Guid,
    /// Its own identity (`PARTUUID=`).
    pub guid: Guid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector, inclusive.
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// Its name (`PARTNAME=`), at most 36 UTF-16 code units.
    pub name: String,
}

impl Partition {
    /// Byte offset of the first sector.
    pub fn offset(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }
}

/// A whole table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The disk's identity.
    pub disk_guid: Guid,
    /// The disk's size in sectors.
    pub disk_sectors: u64,
    /// The partitions, in entry order (entry 1 first).
    pub partitions: Vec<Partition>,
}

/// Why a table cannot be written, or a disk's table cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum GptError {
    /// The disk cannot hold two tables.
    #[error("a disk of {0} sectors is too small for a GPT (at least {min} needed)", min = 2 * FIRST_USABLE_LBA + 1)]
    DiskTooSmall(u64),
    /// More partitions than entries.
    #[error("{0} partitions do not fit the {ENTRY_COUNT} entries")]
    TooManyPartitions(usize),
    /// A partition outside the usable sectors, or ending before it starts.
    #[error(
        "partition {index} ({name}) spans sectors {first}..={last}, outside the usable {usable_first}..={usable_last}"
    )]
    OutOfRange {
        index: usize,
        name: String,
        first: u64,
        last: u64,
        usable_first: u64,
        usable_last: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions {0} and {1} overlap")]
    Overlap(usize, usize),
    /// A name longer than 36 UTF-16 code units.
    #[error("partition name {0:?} is longer than {NAME_UNITS} UTF-16 code units")]
    NameTooLong(String),
    /// A header or entry array that does not check out.
    #[error("{which} GPT: {what}")]
    Corrupt { which: &'static str, what: String },
    /// The primary and backup tables disagree.
    #[error("the primary and backup GPT disagree: {0}")]
    Mismatch(String),
}

impl Table {
    /// The last sector a partition may use.
    pub fn last_usable_lba(&self) -> u64 {
        self.disk_sectors - 1 - ENTRY_SECTORS - 1
    }

    /// Check the table: size, count, ranges, overlaps, names.
    pub fn validate(&self) -> Result<(), GptError> {
        if self.disk_sectors < 2 * FIRST_USABLE_LBA + 1 {
            return Err(GptError::DiskTooSmall(self.disk_sectors));
        }
        if self.partitions.len() > ENTRY_COUNT as usize {
            return Err(GptError::TooManyPartitions(self.partitions.len()));
        }
        let last_usable = self.last_usable_lba();
        for (i, p) in self.partitions.iter().enumerate() {
            if p.first_lba < FIRST_USABLE_LBA
                || p.last_lba > last_usable
                || p.last_lba < p.first_lba
            {
                return Err(GptError::OutOfRange {
                    index: i + 1,
                    name: p.name.clone(),
                    first: p.first_lba,
                    last: p.last_lba,
                    usable_first: FIRST_USABLE_LBA,
                    usable_last: last_usable,
                });
            }
            if p.name.encode_utf16().count() > NAME_UNITS {
                return Err(GptError::NameTooLong(p.name.clone()));
            }
            for (j, q) in self.partitions.iter().enumerate().take(i) {
                if p.first_lba <= q.last_lba && q.first_lba <= p.last_lba {
                    return Err(GptError::Overlap(j + 1, i + 1));
                }
            }
        }
        Ok(())
    }

    /// LBA 0: the protective MBR.
    pub fn protective_mbr(&self) -> [u8; SECTOR as usize] {
        let mut mbr = [0u8; SECTOR as usize];
        let size = (self.disk_sectors - 1).min(u64::from(u32::MAX)) as u32;
        let entry = &mut mbr[446..462];
        entry[0] = 0x00; // not bootable
        entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
        entry[4] = 0xEE; // GPT protective
        entry[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]); // CHS beyond reach
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        entry[12..16].copy_from_slice(&size.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        mbr
    }

    /// The entry array (128 × 128 bytes).
    pub fn entries(&self) -> Vec<u8> {
        let mut out = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (p, e) in self
            .partitions
            .iter()
            .zip(out.chunks_exact_mut(ENTRY_SIZE as usize))
        {
            e[0..16].copy_from_slice(&p.type_guid.to_disk());
            e[16..32].copy_from_slice(&p.guid.to_disk());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (i, unit) in p.name.encode_utf16().take(NAME_UNITS).enumerate() {
                e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
            }
        }
        out
    }

    /// The primary (`primary = true`, at LBA 1) or backup header sector.
    pub fn header(&self, primary: bool, entries_crc: u32) -> [u8; SECTOR as usize] {
        let last = self.disk_sectors - 1;
        let (my, alternate, entries_lba) = if primary {
            (1, last, 2)
        } else {
            (last, 1, last - ENTRY_SECTORS)
        };
        let mut h = [0u8; SECTOR as usize];
        h[0..8].copy_from_slice(SIGNATURE);
        h[8..12].copy_from_slice(&REVISION.to_le_bytes());
        h[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alternate.to_le_bytes());
        h[40..48].copy_from_slice(&FIRST_USABLE_LBA.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_disk());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..HEADER_SIZE as usize]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Write both tables into `disk`, which must be `disk_sectors` long.
    /// Only the table sectors are written; partition contents are not
    /// touched.
    pub fn write_to<W: Write + Seek>(&self, disk: &mut W) -> io::Result<()> {
        self.validate().map_err(io::Error::other)?;
        let entries = self.entries();
        let crc = crc32fast::hash(&entries);
        let last = self.disk_sectors - 1;
        disk.seek(SeekFrom::Start(0))?;
        disk.write_all(&self.protective_mbr())?;
        disk.write_all(&self.header(true, crc))?;
        disk.write_all(&entries)?;
        disk.seek(SeekFrom::Start((last - ENTRY_SECTORS) * SECTOR))?;
        disk.write_all(&entries)?;
        disk.write_all(&self.header(false, crc))?;
        Ok(())
    }

    /// Read and verify both tables of a disk of `disk_sectors` sectors:
    /// signatures, header and entry CRCs, self and alternate LBAs, and that
    /// the two copies agree.
    pub fn read_from<R: Read + Seek>(disk: &mut R, disk_sectors: u64) -> io::Result<Table> {
        let corrupt = |e: GptError| io::Error::new(io::ErrorKind::InvalidData, e);
        if disk_sectors < 2 * FIRST_USABLE_LBA + 1 {
            return Err(corrupt(GptError::DiskTooSmall(disk_sectors)));
        }
        let mut mbr = [0u8; SECTOR as usize];
        disk.seek(SeekFrom::Start(0))?;
        disk.read_exact(&mut mbr)?;
        if mbr[510..512] != [0x55, 0xAA] || mbr[446 + 4] != 0xEE {
            return Err(corrupt(GptError::Corrupt {
                which: "protective MBR",
                what: "no 0x55AA signature or no type 0xEE partition".into(),
            }));
        }
        let read_table = |disk: &mut R, lba: u64, which: &'static str| -> io::Result<Table> {
            let mut h = [0u8; SECTOR as usize];
            disk.seek(SeekFrom::Start(lba * SECTOR))?;
            disk.read_exact(&mut h)?;
            let table = parse_header(&h, lba, disk_sectors, which).map_err(corrupt)?;
            let entries_lba = u64::from_le_bytes(h[72..80].try_into().unwrap());
            let mut entries = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
            disk.seek(SeekFrom::Start(entries_lba * SECTOR))?;
            disk.read_exact(&mut entries)?;
            let want = u32::from_le_bytes(h[88..92].try_into().unwrap());
            if crc32fast::hash(&entries) != want {
                return Err(corrupt(GptError::Corrupt {
                    which,
                    what: format!("entry array at LBA {entries_lba} fails its CRC32"),
                }));
            }
            Ok(Table {
                partitions: parse_entries(&entries),
                ..table
            })
        };
        let primary = read_table(disk, 1, "primary")?;
        let backup = read_table(disk, disk_sectors - 1, "backup")?;
        if primary != backup {
            return Err(corrupt(GptError::Mismatch(format!(
                "primary {primary:?}, backup {backup:?}"
            ))));
        }
        primary.validate().map_err(corrupt)?;
        Ok(primary)
    }
}

fn parse_header(
    h: &[u8],
    lba: u64,
    disk_sectors: u64,
    which: &'static str,
) -> Result<Table, GptError> {
    let bad = |what: String| GptError::Corrupt { which, what };
    let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().unwrap());
    if &h[0..8] != SIGNATURE {
        return Err(bad(format!("no \"EFI PART\" signature at LBA {lba}")));
    }
    if u32_at(12) != HEADER_SIZE {
        return Err(bad(format!(
            "header size {} is not {HEADER_SIZE}",
            u32_at(12)
        )));
    }
    let mut copy = h[..HEADER_SIZE as usize].to_vec();
    copy[16..20].fill(0);
    if crc32fast::hash(&copy) != u32_at(16) {
        return Err(bad(format!("header at LBA {lba} fails its CRC32")));
    }
    let last = disk_sectors - 1;
    let alternate = if lba == 1 { last } else { 1 };
    if u64_at(24) != lba || u64_at(32) != alternate {
        return Err(bad(format!(
            "header says it is at LBA {} with its twin at {}; expected {lba} and {alternate}",
            u64_at(24),
            u64_at(32)
        )));
    }
    if u32_at(80) != ENTRY_COUNT || u32_at(84) != ENTRY_SIZE {
        return Err(bad(format!(
            "{} entries of {} bytes; this reader handles {ENTRY_COUNT} of {ENTRY_SIZE}",
            u32_at(80),
            u32_at(84)
        )));
    }
    let entries_lba = u64_at(72);
    let expected_entries = if lba == 1 { 2 } else { last - ENTRY_SECTORS };
    if entries_lba != expected_entries {
        return Err(bad(format!(
            "entries at LBA {entries_lba}, expected {expected_entries}"
        )));
    }
    if u64_at(40) != FIRST_USABLE_LBA || u64_at(48) != last - ENTRY_SECTORS - 1 {
        return Err(bad(format!(
            "usable sectors {}..={} do not match a disk of {disk_sectors} sectors",
            u64_at(40),
            u64_at(48)
        )));
    }
    Ok(Table {
        disk_guid: Guid::from_disk(&h[56..72]),
        disk_sectors,
        partitions: Vec::new(),
    })
}

fn parse_entries(entries: &[u8]) -> Vec<Partition> {
    entries
        .chunks_exact(ENTRY_SIZE as usize)
        .filter(|e| e[0..16].iter().any(|&b| b != 0))
        .map(|e| {
            let units: Vec<u16> = e[56..128]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            Partition {
                type_guid: Guid::from_disk(&e[0..16]),
                guid: Guid::from_disk(&e[16..32]),
                first_lba: u64::from_le_bytes(e[32..40].try_into().unwrap()),
                last_lba: u64::from_le_bytes(e[40..48].try_into().unwrap()),
                attributes: u64::from_le_bytes(e[48..56].try_into().unwrap()),
                name: String::from_utf16_lossy(&units),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs::File, process::Command};

    const MIB: u64 = 1 << 20;

    fn guid(n: u8) -> Guid {
        Guid::from_random([n; 16])
    }

    fn sample(disk_bytes: u64) -> Table {
        let s = |mib: u64| mib * MIB / SECTOR;
        Table {
            disk_guid: guid(1),
            disk_sectors: disk_bytes / SECTOR,
            partitions: vec![
                Partition {
                    type_guid: types::ESP,
                    guid: guid(2),
                    first_lba: s(1),
                    last_lba: s(65) - 1,
                    attributes: 0,
                    name: "ESP".into(),
                },
                Partition {
                    type_guid: types::ROOT_X86_64,
                    guid: guid(3),
                    first_lba: s(65),
                    last_lba: s(193) - 1,
                    attributes: ATTR_READ_ONLY,
                    name: "root-a".into(),
                },
                Partition {
                    type_guid: types::LINUX_DATA,
                    guid: guid(4),
                    first_lba: s(193),
                    last_lba: disk_bytes / SECTOR - 34,
                    attributes: 0,
                    name: "perm".into(),
                },
            ],
        }
    }

    fn written(table: &Table) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(table.disk_sectors * SECTOR).unwrap();
        table.write_to(&mut file.as_file()).unwrap();
        file
    }

    fn sgdisk(args: &[&str], file: &tempfile::NamedTempFile) -> String {
        let out = Command::new("sgdisk")
            .args(args)
            .arg(file.path())
            .output()
            .expect("sgdisk (package gdisk) is needed by the GPT tests: apt-get install gdisk");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "sgdisk {args:?}: {text}");
        text
    }

    #[test]
    fn guids_are_mixed_endian_on_disk() {
        assert_eq!(
            types::ESP.to_disk(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(Guid::from_disk(&types::ESP.to_disk()), types::ESP);
        let text = types::ESP.to_string();
        assert_eq!(text, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        assert_eq!(text.to_uppercase().parse::<Guid>().unwrap(), types::ESP);
        for bad in [
            "",
            "c12a7328f81f11d2ba4b00a0c93ec93b",
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93g",
        ] {
            assert!(bad.parse::<Guid>().is_err(), "{bad:?}");
        }
        let g = Guid::from_random([0xff; 16]);
        assert_eq!(g.0[6] >> 4, 4, "version 4");
        assert_eq!(g.0[8] >> 6, 0b10, "RFC 4122 variant");
    }

    #[test]
    fn sgdisk_verifies_and_lists_what_we_write() {
        let table = sample(384 * MIB);
        let file = written(&table);
        let verify = sgdisk(&["-v"], &file);
        assert!(verify.contains("No problems found"), "{verify}");
        let listing = sgdisk(&["-p"], &file);
        assert!(
            listing.contains(&format!(
                "Disk identifier (GUID): {}",
                table.disk_guid.to_string().to_uppercase()
            )),
            "{listing}"
        );
        for line in [
            "   1            2048          133119   64.0 MiB    EF00  ESP",
            "   2          133120          395263   128.0 MiB   8304  root-a",
            "   3          395264          786398   191.0 MiB   8300  perm",
        ] {
            assert!(listing.contains(line), "{line:?} missing from\n{listing}");
        }
        let info = sgdisk(&["-i", "2"], &file);
        assert!(
            info.contains(&format!(
                "Partition unique GUID: {}",
                guid(3).to_string().to_uppercase()
            )),
            "{info}"
        );
        assert!(info.contains("Attribute flags: 1000000000000000"), "{info}");
        // The protective MBR covers the disk after LBA 0.
        let mbr = table.protective_mbr();
        assert_eq!(
            u32::from_le_bytes(mbr[458..462].try_into().unwrap()) as u64,
            table.disk_sectors - 1
        );
    }

    #[test]
    fn reads_back_what_it_wrote_and_rejects_damage() {
        let table = sample(384 * MIB);
        let file = written(&table);
        let back = Table::read_from(&mut file.as_file(), table.disk_sectors).unwrap();
        assert_eq!(back, table);

        let damage = |at: u64, which: &str| {
            let copy = tempfile::NamedTempFile::new().unwrap();
            std::fs::copy(file.path(), copy.path()).unwrap();
            let mut f = File::options()
                .read(true)
                .write(true)
                .open(copy.path())
                .unwrap();
            let mut byte = [0u8];
            f.seek(SeekFrom::Start(at)).unwrap();
            f.read_exact(&mut byte).unwrap();
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&[byte[0] ^ 0x10]).unwrap();
            let err = Table::read_from(&mut f, table.disk_sectors)
                .unwrap_err()
                .to_string();
            assert!(err.contains(which), "damage at {at}: {err}");
        };
        let last = table.disk_sectors - 1;
        damage(510, "protective MBR");
        damage(SECTOR, "primary GPT: no \"EFI PART\"");
        damage(SECTOR + 56, "primary GPT: header at LBA 1 fails its CRC32");
        damage(2 * SECTOR + 130, "primary GPT: entry array at LBA 2 fails");
        damage(last * SECTOR + 60, "backup GPT: header at LBA");
        damage((last - 1) * SECTOR, "backup GPT: entry array");
    }

    #[test]
    fn a_disagreeing_backup_is_reported() {
        let table = sample(384 * MIB);
        let file = written(&table);
        let mut other = table.clone();
        other.partitions[2].name = "data".into();
        let entries = other.entries();
        let mut f = file.reopen().unwrap();
        f.seek(SeekFrom::Start(
            (table.disk_sectors - 1 - ENTRY_SECTORS) * SECTOR,
        ))
        .unwrap();
        f.write_all(&entries).unwrap();
        f.write_all(&other.header(false, crc32fast::hash(&entries)))
            .unwrap();
        let err = Table::read_from(&mut f, table.disk_sectors)
            .unwrap_err()
            .to_string();
        assert!(err.contains("disagree"), "{err}");
        // sgdisk sees the same problem.
        let verify = sgdisk(&["-v"], &file);
        assert!(!verify.contains("No problems found"), "{verify}");
    }

    #[test]
    fn invalid_tables_are_refused() {
        let mut t = sample(384 * MIB);
        t.partitions[1].first_lba = t.partitions[0].last_lba;
        assert_eq!(t.validate(), Err(GptError::Overlap(1, 2)));

        let mut t = sample(384 * MIB);
        t.partitions[2].last_lba = t.disk_sectors - 1;
        assert!(matches!(
            t.validate(),
            Err(GptError::OutOfRange { index: 3, .. })
        ));

        let mut t = sample(384 * MIB);
        t.partitions[0].first_lba = 33;
        assert!(matches!(t.validate(), Err(GptError::OutOfRange { .. })));

        let mut t = sample(384 * MIB);
        t.partitions[0].name = "x".repeat(37);
        assert!(matches!(t.validate(), Err(GptError::NameTooLong(_))));

        let t = Table {
            disk_sectors: 60,
            partitions: vec![],
            ..sample(384 * MIB)
        };
        assert_eq!(t.validate(), Err(GptError::DiskTooSmall(60)));
        assert!(
            t.write_to(&mut io::Cursor::new(vec![0u8; 60 * 512]))
                .is_err()
        );
    }
}
