//! Reading a GUID partition table (UEFI 2.10 §5.3) out of the image's
//! held-back first MiB: the installer needs partition 4 (`/perm`) before
//! the table is on the disk, so it tells the kernel where the partition is
//! (`BLKPG_ADD_PARTITION`) from this copy.
//!
//! ```text
//! LBA 1, the header:            an entry (entry_size bytes, ≥ 128):
//!   0  "EFI PART"                 0  type GUID (zero: unused)
//!  12  header size (≥ 92)        16  unique partition GUID
//!  16  header CRC-32             32  first LBA
//!  72  entries' first LBA        40  last LBA (inclusive)
//!  80  number of entries         48  attributes
//!  84  entry size                56  name, UTF-16LE
//!  88  entries' CRC-32
//! ```
//!
//! Both CRCs are checked, so a damaged table is an error, never a guess.
//! The logical block size is found where the header is: at byte 512 for
//! 512-byte sectors, at 4096 for 4 KiB-sector (4Kn) images.

use core::fmt;

/// Where the header is looked for, by logical block size.
pub const BLOCK_SIZES: [u32; 2] = [512, 4096];
const SIGNATURE: &[u8; 8] = b"EFI PART";
const MIN_HEADER: usize = 92;
const MIN_ENTRY: usize = 128;

/// One partition of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// Its number (1-based, the entry's index + 1).
    pub number: u8,
    /// The logical block size of the table.
    pub block_size: u32,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// The unique partition GUID, as stored (mixed-endian).
    pub guid: [u8; 16],
}

impl Partition {
    /// Start, in bytes.
    pub fn start(&self) -> u64 {
        self.first_lba * u64::from(self.block_size)
    }

    /// Length, in bytes.
    pub fn len(&self) -> u64 {
        (self.last_lba - self.first_lba + 1) * u64::from(self.block_size)
    }

    /// Whether the partition is empty (never: `last_lba ≥ first_lba`).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Why the table cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptError {
    /// No `EFI PART` header at LBA 1 for either block size.
    NoHeader,
    /// The header's CRC-32 does not match.
    HeaderCrc,
    /// The header's sizes are out of range or the entries lie outside the
    /// bytes held.
    Layout,
    /// The entries' CRC-32 does not match.
    EntriesCrc,
    /// The partition asked for is unused or out of range.
    NoPartition(u8),
}

impl fmt::Display for GptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GptError::NoHeader => f.write_str("the image has no GPT header at LBA 1"),
            GptError::HeaderCrc => f.write_str("the image's GPT header fails its CRC-32"),
            GptError::Layout => f.write_str("the image's GPT entries are not within its first MiB"),
            GptError::EntriesCrc => f.write_str("the image's GPT entries fail their CRC-32"),
            GptError::NoPartition(n) => write!(f, "the image's GPT has no partition {n}"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Find partition `number` (1-based) in the table at the start of `head`.
pub fn partition(head: &[u8], number: u8) -> Result<Partition, GptError> {
    let (bs, hdr) = BLOCK_SIZES
        .iter()
        .find_map(|&bs| {
            let at = bs as usize;
            let h = head.get(at..at + MIN_HEADER)?;
            (h.get(..8)? == SIGNATURE).then_some((bs, at))
        })
        .ok_or(GptError::NoHeader)?;
    let header_size = u32_at(head, hdr + 12).ok_or(GptError::Layout)? as usize;
    if !(MIN_HEADER..=bs as usize).contains(&header_size) {
        return Err(GptError::Layout);
    }
    let header = head.get(hdr..hdr + header_size).ok_or(GptError::Layout)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(header.get(..16).ok_or(GptError::Layout)?);
    crc.update(&[0; 4]);
    crc.update(header.get(20..).ok_or(GptError::Layout)?);
    if crc.finalize() != u32_at(header, 16).ok_or(GptError::Layout)? {
        return Err(GptError::HeaderCrc);
    }
    let entries_lba = u64_at(header, 72).ok_or(GptError::Layout)?;
    let count = u32_at(header, 80).ok_or(GptError::Layout)? as usize;
    let entry_size = u32_at(header, 84).ok_or(GptError::Layout)? as usize;
    if entry_size < MIN_ENTRY || !entry_size.is_power_of_two() || count == 0 {
        return Err(GptError::Layout);
    }
    let start = usize::try_from(entries_lba)
        .ok()
        .and_then(|l| l.checked_mul(bs as usize))
        .ok_or(GptError::Layout)?;
    let len = count.checked_mul(entry_size).ok_or(GptError::Layout)?;
    let entries = head
        .get(start..start.checked_add(len).ok_or(GptError::Layout)?)
        .ok_or(GptError::Layout)?;
    if crc32fast::hash(entries) != u32_at(header, 88).ok_or(GptError::Layout)? {
        return Err(GptError::EntriesCrc);
    }
    let index = usize::from(number)
        .checked_sub(1)
        .filter(|&i| i < count)
        .ok_or(GptError::NoPartition(number))?;
    let e = entries
        .get(index * entry_size..(index + 1) * entry_size)
        .ok_or(GptError::NoPartition(number))?;
    if e.get(..16).is_none_or(|t| t.iter().all(|&b| b == 0)) {
        return Err(GptError::NoPartition(number));
    }
    let first_lba = u64_at(e, 32).ok_or(GptError::Layout)?;
    let last_lba = u64_at(e, 40).ok_or(GptError::Layout)?;
    if last_lba < first_lba || first_lba == 0 {
        return Err(GptError::NoPartition(number));
    }
    let mut guid = [0u8; 16];
    guid.copy_from_slice(e.get(16..32).ok_or(GptError::Layout)?);
    Ok(Partition {
        number,
        block_size: bs,
        first_lba,
        last_lba,
        guid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A table like the appliance image's: 512-byte sectors, 128 entries
    /// of 128 bytes at LBA 2, partitions 1 and 4 used.
    fn table(bs: usize) -> Vec<u8> {
        let mut head = std::vec![0u8; 1 << 20];
        let entries_at = 2 * bs;
        let mut put = |i: usize, first: u64, last: u64, tag: u8| {
            let e = entries_at + i * 128;
            head[e..e + 16].fill(0x11);
            head[e + 16..e + 32].fill(tag);
            head[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
            head[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
        };
        put(0, 2048, 133_119, 0xa1);
        put(3, 657_408, 784_383, 0xa4);
        let ecrc = crc32fast::hash(&head[entries_at..entries_at + 128 * 128]);
        let h = bs;
        head[h..h + 8].copy_from_slice(SIGNATURE);
        head[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        head[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
        head[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
        head[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        head[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
        head[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        head[h + 88..h + 92].copy_from_slice(&ecrc.to_le_bytes());
        let hcrc = crc32fast::hash(&head[h..h + 92]);
        head[h + 16..h + 20].copy_from_slice(&hcrc.to_le_bytes());
        head
    }

    #[test]
    fn w8_partition_4_of_the_held_back_table() {
        let p = partition(&table(512), 4).unwrap();
        assert_eq!(
            (p.block_size, p.first_lba, p.last_lba),
            (512, 657_408, 784_383)
        );
        assert_eq!(p.start(), 657_408 * 512);
        assert_eq!(p.len(), 62 << 20);
        assert_eq!(p.guid, [0xa4; 16]);
        assert_eq!(partition(&table(512), 1).unwrap().start(), 1 << 20);
        let p = partition(&table(4096), 4).unwrap();
        assert_eq!(p.block_size, 4096);
    }

    #[test]
    fn damaged_or_missing_tables_are_errors() {
        assert_eq!(partition(&[0u8; 4096], 4), Err(GptError::NoHeader));
        assert_eq!(partition(&table(512), 2), Err(GptError::NoPartition(2)));
        assert_eq!(partition(&table(512), 0), Err(GptError::NoPartition(0)));
        assert_eq!(partition(&table(512), 200), Err(GptError::NoPartition(200)));
        let mut t = table(512);
        t[512 + 40] ^= 1;
        assert_eq!(partition(&t, 4), Err(GptError::HeaderCrc));
        let mut t = table(512);
        t[1024 + 3 * 128 + 33] ^= 1;
        assert_eq!(partition(&t, 4), Err(GptError::EntriesCrc));
        // Entries beyond the bytes held.
        assert_eq!(partition(&table(512)[..2048], 4), Err(GptError::Layout));
    }
}
