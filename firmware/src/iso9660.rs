//! A read-only ISO 9660 (ECMA-119) reader for the installer media: find a
//! file by path and read it, with Rock Ridge names (SUSP, IEEE P1281, and
//! RRIP, IEEE P1282). No allocation; every loop is bounded by a named
//! constant, so a hostile or corrupt volume costs at most a fixed number of
//! sector reads and never panics.
//!
//! The installer uses it to recognise its own ISO before trusting it: the
//! builder (`ze appliance iso`) writes a random 32-hex media id to
//! [`MEDIA_ID_PATH`] and puts the same id on the kernel command line
//! (`ze.media-id=`); [`read_media_id`] reads it back from a candidate device.
//!
//! ```text
//! LBA 0..16   system area (the hybrid GPT/MBR lives here)
//! LBA 16..    volume descriptors, 2048 bytes each, until type 255
//!   primary volume descriptor (type 1, "CD001", version 1):
//!      8..40  system id          40..72  volume id
//!     80..88  volume space size (LE u32, BE u32)
//!    128..132 logical block size (LE u16, BE u16) = 2048
//!    156..190 root directory record
//! directory record (within one sector; a 0 length byte pads to the next):
//!      0  record length           1  extended attribute length
//!      2  extent LBA (LE u32, BE u32)
//!     10  data length (LE u32, BE u32)
//!     18  date (7 bytes)         25  flags: 0x02 directory, 0x80 multi-extent
//!     32  name length N          33  name ("FILE.EXT;1", or 0x00 ".", 0x01 "..")
//!  33+N  pad byte when N is even, then the System Use area (SUSP entries:
//!        2-byte signature, length, version, data; "NM" = Rock Ridge name,
//!        "CE" = continuation area, "ST" = stop)
//! ```

/// Bytes in a logical block (the only size this reader accepts).
pub const SECTOR_SIZE: usize = 2048;
/// Where the volume descriptor set starts.
pub const FIRST_DESCRIPTOR_LBA: u32 = 16;
/// The most volume descriptors read before giving up on a terminator.
pub const MAX_DESCRIPTORS: u32 = 32;
/// The largest directory read, in sectors (512 KiB).
pub const MAX_DIR_SECTORS: u32 = 256;
/// The most path components in a lookup.
pub const MAX_PATH_DEPTH: usize = 8;
/// The longest file name (Rock Ridge names are limited to 255 by POSIX).
pub const MAX_NAME: usize = 255;
/// The most extents of one multi-extent file (each up to 4 GiB − 2 KiB).
pub const MAX_EXTENTS: usize = 8;
/// The most SUSP continuation areas followed for one directory record.
pub const MAX_CONTINUATIONS: usize = 4;
/// Where `ze appliance iso` stores the media id.
pub const MEDIA_ID_PATH: &str = "ze/media-id";
/// Hex digits in a media id.
pub const MEDIA_ID_LEN: usize = 32;

/// Reads 2048-byte logical blocks of a volume.
pub trait SectorRead {
    /// The device's error.
    type Error;
    /// Fill `buf` with logical block `lba`.
    fn read_sector(&mut self, lba: u32, buf: &mut [u8; SECTOR_SIZE]) -> Result<(), Self::Error>;
}

/// A volume held in memory (tests, fuzzing, small images).
#[derive(Debug, Clone, Copy)]
pub struct SliceSectors<'a>(pub &'a [u8]);

/// A sector outside a [`SliceSectors`] volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange;

impl SectorRead for SliceSectors<'_> {
    type Error = OutOfRange;
    fn read_sector(&mut self, lba: u32, buf: &mut [u8; SECTOR_SIZE]) -> Result<(), OutOfRange> {
        let start = (lba as usize).checked_mul(SECTOR_SIZE).ok_or(OutOfRange)?;
        let bytes = self
            .0
            .get(start..start.checked_add(SECTOR_SIZE).ok_or(OutOfRange)?)
            .ok_or(OutOfRange)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// Why a volume or a file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The device failed to read `lba`.
    Io { lba: u32, error: E },
    /// No `CD001` descriptor at LBA 16: not an ISO 9660 volume.
    NotIso9660,
    /// The descriptor set has no primary volume descriptor.
    NoPrimaryDescriptor,
    /// The logical block size is not 2048.
    UnsupportedBlockSize(u16),
    /// A directory record at (`lba`, `offset`) is malformed.
    BadRecord { lba: u32, offset: u16 },
    /// An extent reaches past the end of the volume.
    OutOfVolume { lba: u32 },
    /// A directory is larger than [`MAX_DIR_SECTORS`].
    DirectoryTooLarge { lba: u32 },
    /// A file has more than [`MAX_EXTENTS`] extents.
    TooManyExtents,
    /// The path is empty, has more than [`MAX_PATH_DEPTH`] components, or a
    /// component longer than [`MAX_NAME`].
    BadPath,
    /// A path component does not exist.
    NotFound,
    /// A path component before the last is a file.
    NotADirectory,
    /// The file is a directory.
    IsADirectory,
    /// The file does not fit the buffer; it holds `size` bytes.
    BufferTooSmall { size: u64 },
    /// The media id file does not hold 32 lowercase hex digits.
    BadMediaId,
}

impl<E: core::fmt::Display> core::fmt::Display for Error<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Io { lba, error } => write!(f, "read error at block {lba}: {error}"),
            Error::NotIso9660 => f.write_str("not an ISO 9660 volume"),
            Error::NoPrimaryDescriptor => f.write_str("no primary volume descriptor"),
            Error::UnsupportedBlockSize(n) => write!(f, "block size {n}, not 2048"),
            Error::BadRecord { lba, offset } => {
                write!(
                    f,
                    "malformed directory record at block {lba} offset {offset}"
                )
            }
            Error::OutOfVolume { lba } => write!(f, "extent at block {lba} runs past the volume"),
            Error::DirectoryTooLarge { lba } => write!(f, "directory at block {lba} too large"),
            Error::TooManyExtents => f.write_str("file has too many extents"),
            Error::BadPath => f.write_str("bad path"),
            Error::NotFound => f.write_str("not found"),
            Error::NotADirectory => f.write_str("a path component is a file"),
            Error::IsADirectory => f.write_str("is a directory"),
            Error::BufferTooSmall { size } => write!(f, "file of {size} bytes too large"),
            Error::BadMediaId => f.write_str("media id is not 32 lowercase hex digits"),
        }
    }
}

impl<E> Error<E> {
    fn io(lba: u32) -> impl FnOnce(E) -> Error<E> {
        move |error| Error::Io { lba, error }
    }
}

/// One contiguous run of sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// First logical block.
    pub lba: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Extent {
    fn sectors(&self) -> u32 {
        self.len.div_ceil(SECTOR_SIZE as u32)
    }
}

/// A file or directory found by [`Volume::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The data, in order.
    pub extents: heapless::Vec<Extent, MAX_EXTENTS>,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl Entry {
    /// Total size in bytes.
    pub fn size(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.len)).sum()
    }

    /// The logical block holding byte `offset` of the file, and how many
    /// bytes of the file that block holds from `offset` on.
    pub fn locate(&self, mut offset: u64) -> Option<(u32, usize)> {
        for extent in &self.extents {
            let len = u64::from(extent.len);
            if offset < len {
                let lba = extent
                    .lba
                    .checked_add((offset / SECTOR_SIZE as u64) as u32)?;
                let in_sector = (offset % SECTOR_SIZE as u64) as usize;
                let left = (len - offset).min((SECTOR_SIZE - in_sector) as u64) as usize;
                return Some((lba, left));
            }
            offset -= len;
        }
        None
    }
}

/// An opened volume: its primary descriptor's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The volume identifier, space-padded.
    pub volume_id: [u8; 32],
    /// The volume's size in logical blocks.
    pub blocks: u32,
    root: Extent,
    /// Bytes to skip at the start of each System Use area, when the root
    /// announces SUSP with an `SP` entry; `None` when there is no SUSP.
    susp_skip: Option<u8>,
}

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const MAGIC: Range<usize> = 1..6;
    pub const VERSION: usize = 6;
    pub const VOLUME_ID: Range<usize> = 40..72;
    pub const SPACE: usize = 80;
    pub const BLOCK_SIZE: usize = 128;
    pub const ROOT: Range<usize> = 156..190;

    pub const REC_LEN: usize = 0;
    pub const REC_EXTENT: usize = 2;
    pub const REC_SIZE: usize = 10;
    pub const REC_FLAGS: usize = 25;
    pub const REC_NAME_LEN: usize = 32;
    pub const REC_NAME: usize = 33;
    pub const REC_MIN: usize = 34;
}

const TYPE_PRIMARY: u8 = 1;
const TYPE_TERMINATOR: u8 = 255;
const FLAG_DIRECTORY: u8 = 0x02;
const FLAG_MULTI_EXTENT: u8 = 0x80;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A both-endian u32 (LE then BE); `None` when the halves disagree.
fn both32(b: &[u8], at: usize) -> Option<u32> {
    let v = le32(b, at);
    (v == be32(b, at + 4)).then_some(v)
}

/// A directory record parsed from a sector.
struct Record<'a> {
    extent: Extent,
    flags: u8,
    name: &'a [u8],
    system_use: &'a [u8],
}

/// Parse the record at `at` in `sector`; `Ok(None)` for the zero padding
/// that ends a sector's records.
fn record(sector: &[u8], at: usize) -> Result<Option<(Record<'_>, usize)>, u16> {
    let bad = at as u16;
    let len = usize::from(*sector.get(at + field::REC_LEN).ok_or(bad)?);
    if len == 0 {
        return Ok(None);
    }
    if len < field::REC_MIN || at + len > sector.len() {
        return Err(bad);
    }
    let rec = &sector[at..at + len];
    let name_len = usize::from(rec[field::REC_NAME_LEN]);
    let name_end = field::REC_NAME + name_len;
    if name_len == 0 || name_end > len {
        return Err(bad);
    }
    let lba = both32(rec, field::REC_EXTENT).ok_or(bad)?;
    let size = both32(rec, field::REC_SIZE).ok_or(bad)?;
    let su_start = name_end + usize::from(name_len.is_multiple_of(2));
    let system_use = rec.get(su_start..).unwrap_or(&[]);
    Ok(Some((
        Record {
            extent: Extent { lba, len: size },
            flags: rec[field::REC_FLAGS],
            name: &rec[field::REC_NAME..name_end],
            system_use,
        },
        at + len,
    )))
}

/// The ISO 9660 name without its `;version` and a trailing `.`.
fn plain_name(raw: &[u8]) -> &[u8] {
    let raw = match raw.iter().position(|&b| b == b';') {
        Some(i) => &raw[..i],
        None => raw,
    };
    raw.strip_suffix(b".").unwrap_or(raw)
}

/// A Rock Ridge name being assembled from `NM` entries.
type NameBuf = heapless::Vec<u8, MAX_NAME>;

/// What a System Use area says: the Rock Ridge name (possibly partial,
/// with `more` set) and a continuation area to follow.
#[derive(Default)]
struct SuspScan {
    name: Option<NameBuf>,
    /// The last NM entry had its CONTINUE flag.
    more: bool,
    continuation: Option<(u32, u32, u32)>,
    stopped: bool,
}

/// Read SUSP entries from `area`, appending NM data to `scan`. Malformed
/// entries end the area (they are not ours to repair); an overlong name is
/// an error.
fn scan_susp(area: &[u8], scan: &mut SuspScan) -> Result<(), ()> {
    let mut at = 0;
    while at + 4 <= area.len() {
        let sig = [area[at], area[at + 1]];
        let len = usize::from(area[at + 2]);
        if len < 4 || at + len > area.len() {
            break;
        }
        let data = &area[at + 4..at + len];
        match &sig {
            b"NM" if !data.is_empty() => {
                let flags = data[0];
                // CURRENT (0x02) and PARENT (0x04) name "." and "..".
                if flags & 0x06 == 0 {
                    let name = scan.name.get_or_insert_with(NameBuf::new);
                    name.extend_from_slice(&data[1..]).map_err(|_| ())?;
                    scan.more = flags & 0x01 != 0;
                }
            }
            b"CE" if data.len() >= 24 => {
                if let (Some(lba), Some(offset), Some(len)) =
                    (both32(data, 0), both32(data, 8), both32(data, 16))
                {
                    scan.continuation = Some((lba, offset, len));
                }
            }
            b"ST" => {
                scan.stopped = true;
                return Ok(());
            }
            _ => {}
        }
        at += len;
    }
    Ok(())
}

impl Volume {
    /// Read the volume descriptors and the root directory's SUSP marker.
    pub fn open<S: SectorRead>(src: &mut S) -> Result<Volume, Error<S::Error>> {
        let mut buf = [0u8; SECTOR_SIZE];
        let mut primary = None;
        for i in 0..MAX_DESCRIPTORS {
            let lba = FIRST_DESCRIPTOR_LBA + i;
            src.read_sector(lba, &mut buf).map_err(Error::io(lba))?;
            if &buf[field::MAGIC] != b"CD001" || buf[field::VERSION] != 1 {
                return Err(if i == 0 {
                    Error::NotIso9660
                } else {
                    Error::NoPrimaryDescriptor
                });
            }
            match buf[field::TYPE] {
                TYPE_PRIMARY if primary.is_none() => {
                    let block = le16(&buf, field::BLOCK_SIZE);
                    if block as usize != SECTOR_SIZE || be16(&buf, field::BLOCK_SIZE + 2) != block {
                        return Err(Error::UnsupportedBlockSize(block));
                    }
                    let blocks = both32(&buf, field::SPACE).ok_or(Error::NoPrimaryDescriptor)?;
                    let root_bytes = &buf[field::ROOT];
                    let bad = || Error::BadRecord {
                        lba,
                        offset: field::ROOT.start as u16,
                    };
                    let (root, _) = record(root_bytes, 0).map_err(|_| bad())?.ok_or_else(bad)?;
                    if root.flags & FLAG_DIRECTORY == 0 {
                        return Err(bad());
                    }
                    let mut volume_id = [0u8; 32];
                    volume_id.copy_from_slice(&buf[field::VOLUME_ID]);
                    primary = Some((volume_id, blocks, root.extent));
                }
                TYPE_TERMINATOR => break,
                _ => {}
            }
        }
        let (volume_id, blocks, root) = primary.ok_or(Error::NoPrimaryDescriptor)?;
        let mut volume = Volume {
            volume_id,
            blocks,
            root,
            susp_skip: None,
        };
        volume.check_extent(root)?;
        // SUSP is in use when the root's "." record starts its System Use
        // area with SP (check bytes BE EF); LEN_SKP applies to every record.
        src.read_sector(root.lba, &mut buf)
            .map_err(Error::io(root.lba))?;
        if let Ok(Some((dot, _))) = record(&buf, 0) {
            let su = dot.system_use;
            if su.len() >= 7 && &su[..2] == b"SP" && su[2] >= 7 && su[4] == 0xBE && su[5] == 0xEF {
                volume.susp_skip = Some(su[6]);
            }
        }
        Ok(volume)
    }

    /// Whether the volume uses Rock Ridge (SUSP) names.
    pub fn rock_ridge(&self) -> bool {
        self.susp_skip.is_some()
    }

    fn check_extent<E>(&self, extent: Extent) -> Result<(), Error<E>> {
        let end = u64::from(extent.lba) + u64::from(extent.sectors());
        if end > u64::from(self.blocks) {
            return Err(Error::OutOfVolume { lba: extent.lba });
        }
        Ok(())
    }

    /// The entry at `path` (`/`-separated, leading `/` optional). Names
    /// match the Rock Ridge name exactly when the volume has one, else the
    /// ISO 9660 name without its version, ignoring ASCII case.
    pub fn lookup<S: SectorRead>(&self, src: &mut S, path: &str) -> Result<Entry, Error<S::Error>> {
        let count = path.split('/').filter(|c| !c.is_empty()).count();
        if count == 0 || count > MAX_PATH_DEPTH {
            return Err(Error::BadPath);
        }
        let mut dir = self.root;
        for (i, name) in path.split('/').filter(|c| !c.is_empty()).enumerate() {
            if name.len() > MAX_NAME {
                return Err(Error::BadPath);
            }
            let entry = self.find(src, dir, name.as_bytes())?;
            if i + 1 == count {
                return Ok(entry);
            }
            dir = match (entry.is_dir, entry.extents.first()) {
                (true, Some(extent)) => *extent,
                _ => return Err(Error::NotADirectory),
            };
        }
        Err(Error::NotFound)
    }

    /// Find `name` in the directory at `dir`.
    fn find<S: SectorRead>(
        &self,
        src: &mut S,
        dir: Extent,
        name: &[u8],
    ) -> Result<Entry, Error<S::Error>> {
        if dir.sectors() > MAX_DIR_SECTORS {
            return Err(Error::DirectoryTooLarge { lba: dir.lba });
        }
        self.check_extent(dir)?;
        let mut buf = [0u8; SECTOR_SIZE];
        // A multi-extent file being collected.
        let mut pending: Option<Entry> = None;
        for i in 0..dir.sectors() {
            let lba = dir.lba + i;
            src.read_sector(lba, &mut buf).map_err(Error::io(lba))?;
            let used = (dir.len - i * SECTOR_SIZE as u32).min(SECTOR_SIZE as u32) as usize;
            let mut next = 0;
            while next < used {
                let at = next;
                let (rec, after) = match record(&buf[..used], at) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(offset) => return Err(Error::BadRecord { lba, offset }),
                };
                next = after;
                if rec.name == [0] || rec.name == [1] {
                    continue;
                }
                let is_match = match &pending {
                    // The extents after the first need not repeat the name
                    // in Rock Ridge; they follow the first immediately.
                    Some(_) => true,
                    None => self.name_matches(src, &rec, name, lba, at)?,
                };
                if !is_match {
                    continue;
                }
                self.check_extent(rec.extent)?;
                let entry = pending.get_or_insert_with(|| Entry {
                    extents: heapless::Vec::new(),
                    is_dir: rec.flags & FLAG_DIRECTORY != 0,
                });
                entry
                    .extents
                    .push(rec.extent)
                    .map_err(|_| Error::TooManyExtents)?;
                if rec.flags & FLAG_MULTI_EXTENT == 0 {
                    return Ok(pending.take().unwrap_or(Entry {
                        extents: heapless::Vec::new(),
                        is_dir: false,
                    }));
                }
            }
        }
        match pending {
            // The directory ended inside a multi-extent run.
            Some(_) => Err(Error::BadRecord {
                lba: dir.lba + dir.sectors().saturating_sub(1),
                offset: 0,
            }),
            None => Err(Error::NotFound),
        }
    }

    fn name_matches<S: SectorRead>(
        &self,
        src: &mut S,
        rec: &Record<'_>,
        wanted: &[u8],
        lba: u32,
        at: usize,
    ) -> Result<bool, Error<S::Error>> {
        if let Some(skip) = self.susp_skip {
            let area = rec.system_use.get(usize::from(skip)..).unwrap_or(&[]);
            let mut scan = SuspScan::default();
            let bad = || Error::BadRecord {
                lba,
                offset: at as u16,
            };
            scan_susp(area, &mut scan).map_err(|_| bad())?;
            let mut hops = 0;
            while let Some((ce_lba, offset, len)) = scan.continuation.take() {
                if scan.stopped || hops == MAX_CONTINUATIONS {
                    break;
                }
                hops += 1;
                let (offset, len) = (offset as usize, len as usize);
                if offset.checked_add(len).is_none_or(|end| end > SECTOR_SIZE) {
                    return Err(bad());
                }
                self.check_extent(Extent {
                    lba: ce_lba,
                    len: 1,
                })?;
                let mut ce = [0u8; SECTOR_SIZE];
                src.read_sector(ce_lba, &mut ce)
                    .map_err(Error::io(ce_lba))?;
                scan_susp(&ce[offset..offset + len], &mut scan).map_err(|_| bad())?;
            }
            if let Some(rr) = scan.name {
                return Ok(rr.as_slice() == wanted);
            }
        }
        let iso = plain_name(rec.name);
        Ok(iso.eq_ignore_ascii_case(wanted))
    }

    /// Read a whole file into `buf`; returns its size.
    pub fn read<S: SectorRead>(
        &self,
        src: &mut S,
        entry: &Entry,
        buf: &mut [u8],
    ) -> Result<usize, Error<S::Error>> {
        if entry.is_dir {
            return Err(Error::IsADirectory);
        }
        let size = entry.size();
        if size > buf.len() as u64 {
            return Err(Error::BufferTooSmall { size });
        }
        let mut sector = [0u8; SECTOR_SIZE];
        let mut done = 0usize;
        for extent in &entry.extents {
            self.check_extent(*extent)?;
            let mut left = extent.len as usize;
            for i in 0..extent.sectors() {
                let lba = extent.lba + i;
                src.read_sector(lba, &mut sector).map_err(Error::io(lba))?;
                let n = left.min(SECTOR_SIZE);
                buf[done..done + n].copy_from_slice(&sector[..n]);
                done += n;
                left -= n;
            }
        }
        Ok(done)
    }
}

/// Check a media id: 32 lowercase hex digits, optionally followed by one
/// newline.
pub fn parse_media_id(bytes: &[u8]) -> Option<[u8; MEDIA_ID_LEN]> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.len() != MEDIA_ID_LEN || !bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut id = [0u8; MEDIA_ID_LEN];
    id.copy_from_slice(bytes);
    Some(id)
}

/// Read the media id that `ze appliance iso` stored on the volume.
pub fn read_media_id<S: SectorRead>(src: &mut S) -> Result<[u8; MEDIA_ID_LEN], Error<S::Error>> {
    let volume = Volume::open(src)?;
    let entry = volume.lookup(src, MEDIA_ID_PATH)?;
    let mut buf = [0u8; MEDIA_ID_LEN + 1];
    let n = match volume.read(src, &entry, &mut buf) {
        Err(Error::BufferTooSmall { .. }) => return Err(Error::BadMediaId),
        other => other?,
    };
    parse_media_id(&buf[..n]).ok_or(Error::BadMediaId)
}

/// Whether the volume carries the media id `expected` (compared in
/// constant time, though the id is not a secret).
pub fn media_id_matches<S: SectorRead>(
    src: &mut S,
    expected: &[u8],
) -> Result<bool, Error<S::Error>> {
    let found = read_media_id(src)?;
    if expected.len() != MEDIA_ID_LEN {
        return Ok(false);
    }
    Ok(found
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0)
}

/// The fuzz entry point (`fuzz/fuzz_targets/iso9660.rs`), also replayed
/// over the committed corpus by `cargo test`: open `data` as a volume, look
/// up a few paths and read what is found. It must never panic.
#[doc(hidden)]
pub fn fuzz_volume(data: &[u8]) {
    let mut src = SliceSectors(data);
    let _ = read_media_id(&mut src);
    if let Ok(volume) = Volume::open(&mut src) {
        let mut buf = [0u8; 4096];
        for path in [
            "ze",
            "ze/install.json",
            "EFI/BOOT/BOOTX64.EFI",
            "a/b/c/d/e/f/g/h/i",
        ] {
            if let Ok(entry) = volume.lookup(&mut src, path) {
                let _ = entry.locate(entry.size().saturating_sub(1));
                let _ = volume.read(&mut src, &entry, &mut buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{vec, vec::Vec};

    /// An ISO made by `xorriso -as mkisofs -R -J -iso-level 3` (Rock Ridge).
    const ROCK_RIDGE: &[u8] = include_bytes!("../../fuzz/corpus/iso9660/xorriso-rock-ridge.iso");
    /// The same tree made with Rock Ridge and Joliet off (ISO names only).
    const PLAIN: &[u8] = include_bytes!("../../fuzz/corpus/iso9660/xorriso-plain.iso");
    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn read_path(iso: &[u8], path: &str) -> Result<Vec<u8>, Error<OutOfRange>> {
        let mut src = SliceSectors(iso);
        let volume = Volume::open(&mut src)?;
        let entry = volume.lookup(&mut src, path)?;
        let mut buf = vec![0u8; entry.size() as usize];
        let n = volume.read(&mut src, &entry, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn o3_reads_the_media_id_of_a_xorriso_volume() {
        let mut src = SliceSectors(ROCK_RIDGE);
        let volume = Volume::open(&mut src).unwrap();
        assert!(volume.rock_ridge());
        assert!(volume.volume_id.starts_with(b"ZE_TEST "));
        assert_eq!(volume.blocks as usize * SECTOR_SIZE, ROCK_RIDGE.len());
        assert_eq!(read_media_id(&mut src).unwrap(), ID.as_bytes());
        assert!(media_id_matches(&mut src, ID.as_bytes()).unwrap());
        assert!(!media_id_matches(&mut src, b"0123456789abcdef0123456789abcdee").unwrap());
        assert!(!media_id_matches(&mut src, b"0123").unwrap());
        assert_eq!(
            read_path(ROCK_RIDGE, "/ze/install.json").unwrap(),
            br#"{"media-id":"0123456789abcdef0123456789abcdef","image":"ze-20260617-160000.img"}
"#
        );
        assert_eq!(
            read_path(
                ROCK_RIDGE,
                "deep/a/b/a-rather-long-file-name-that-needs-rock-ridge-to-survive.txt"
            )
            .unwrap(),
            b"x\n"
        );
    }

    #[test]
    fn lookups_name_their_failure() {
        let mut src = SliceSectors(ROCK_RIDGE);
        let volume = Volume::open(&mut src).unwrap();
        let err = |p: &str| volume.lookup(&mut SliceSectors(ROCK_RIDGE), p).unwrap_err();
        assert_eq!(
            err("ze/MEDIA-ID"),
            Error::NotFound,
            "Rock Ridge names are exact"
        );
        assert_eq!(err("nope"), Error::NotFound);
        assert_eq!(err("ze/media-id/x"), Error::NotADirectory);
        assert_eq!(err(""), Error::BadPath);
        assert_eq!(err("///"), Error::BadPath);
        assert_eq!(err("a/b/c/d/e/f/g/h/i"), Error::BadPath);
        assert_eq!(err(&"x".repeat(MAX_NAME + 1)), Error::BadPath);
        let dir = volume.lookup(&mut src, "ze/").unwrap();
        assert!(dir.is_dir);
        assert_eq!(
            volume.read(&mut src, &dir, &mut [0u8; 8]),
            Err(Error::IsADirectory)
        );
        let file = volume.lookup(&mut src, "ze/install.json").unwrap();
        assert_eq!(
            volume.read(&mut src, &file, &mut [0u8; 8]),
            Err(Error::BufferTooSmall { size: 81 })
        );
    }

    #[test]
    fn plain_iso_names_match_without_version_ignoring_case() {
        let mut src = SliceSectors(PLAIN);
        let volume = Volume::open(&mut src).unwrap();
        assert!(!volume.rock_ridge());
        assert!(read_path(PLAIN, "ZE/INSTALL.JSON").is_ok());
        assert_eq!(
            read_path(PLAIN, "ze/media_id").unwrap(),
            format!("{ID}\n").as_bytes()
        );
        // Without Rock Ridge the '-' of media-id is lost: the id is not
        // found, so such a volume is never trusted.
        assert_eq!(read_media_id(&mut src), Err(Error::NotFound));
    }

    #[test]
    fn other_data_is_not_an_iso() {
        assert_eq!(
            Volume::open(&mut SliceSectors(&[0u8; 40 * SECTOR_SIZE])),
            Err(Error::NotIso9660)
        );
        assert_eq!(
            Volume::open(&mut SliceSectors(&[0u8; 100])),
            Err(Error::Io {
                lba: 16,
                error: OutOfRange
            })
        );
    }

    #[test]
    fn truncated_volumes_fail_cleanly() {
        for sectors in 0..ROCK_RIDGE.len() / SECTOR_SIZE {
            let cut = &ROCK_RIDGE[..sectors * SECTOR_SIZE];
            assert!(read_media_id(&mut SliceSectors(cut)).is_err(), "{sectors}");
        }
    }

    #[test]
    fn bit_flips_in_metadata_never_panic() {
        // The descriptors and the first directory sectors: where a flip
        // changes how the reader walks.
        let mut iso = ROCK_RIDGE.to_vec();
        for at in (16 * SECTOR_SIZE..26 * SECTOR_SIZE).step_by(3) {
            for bit in [0x01, 0x80] {
                iso[at] ^= bit;
                fuzz_volume(&iso);
                iso[at] ^= bit;
            }
        }
    }

    #[test]
    fn corpus_replays_without_panics() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/iso9660");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            fuzz_volume(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 2, "the corpus lost its seeds");
    }

    /// A hand-made volume: PVD at 16, terminator at 17, root at 18.
    struct Synth {
        data: Vec<u8>,
    }

    fn both32(v: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&v.to_le_bytes());
        b[4..].copy_from_slice(&v.to_be_bytes());
        b
    }

    fn rec(name: &[u8], lba: u32, len: u32, flags: u8, su: &[u8]) -> Vec<u8> {
        let pad = usize::from(name.len().is_multiple_of(2));
        let total = 33 + name.len() + pad + su.len();
        let mut r = vec![0u8; total];
        r[0] = total as u8;
        r[2..10].copy_from_slice(&both32(lba));
        r[10..18].copy_from_slice(&both32(len));
        r[25] = flags;
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r[33 + name.len() + pad..].copy_from_slice(su);
        r
    }

    fn nm(flags: u8, name: &[u8]) -> Vec<u8> {
        let mut e = vec![b'N', b'M', (5 + name.len()) as u8, 1, flags];
        e.extend_from_slice(name);
        e
    }

    const SP: [u8; 7] = [b'S', b'P', 7, 1, 0xBE, 0xEF, 0];

    impl Synth {
        fn new(blocks: u32) -> Synth {
            let mut data = vec![0u8; blocks as usize * SECTOR_SIZE];
            let pvd = &mut data[16 * SECTOR_SIZE..17 * SECTOR_SIZE];
            pvd[0] = 1;
            pvd[1..6].copy_from_slice(b"CD001");
            pvd[6] = 1;
            pvd[40..48].copy_from_slice(b"SYNTH   ");
            pvd[80..88].copy_from_slice(&both32(blocks));
            pvd[128..130].copy_from_slice(&2048u16.to_le_bytes());
            pvd[130..132].copy_from_slice(&2048u16.to_be_bytes());
            let root = rec(&[0], 18, 2048, FLAG_DIRECTORY, &[]);
            pvd[156..156 + root.len()].copy_from_slice(&root);
            let term = &mut data[17 * SECTOR_SIZE..18 * SECTOR_SIZE];
            term[0] = 255;
            term[1..6].copy_from_slice(b"CD001");
            term[6] = 1;
            Synth { data }
        }

        /// Write records one after another into directory sector `lba`,
        /// starting with "." (carrying `dot_su`) and "..".
        fn dir(&mut self, lba: u32, dot_su: &[u8], records: &[Vec<u8>]) -> &mut Self {
            let mut at = lba as usize * SECTOR_SIZE;
            let mut all = vec![rec(&[0], lba, 2048, FLAG_DIRECTORY, dot_su)];
            all.push(rec(&[1], 18, 2048, FLAG_DIRECTORY, &[]));
            all.extend_from_slice(records);
            for r in all {
                self.data[at..at + r.len()].copy_from_slice(&r);
                at += r.len();
            }
            self
        }

        fn put(&mut self, lba: u32, bytes: &[u8]) -> &mut Self {
            let at = lba as usize * SECTOR_SIZE;
            self.data[at..at + bytes.len()].copy_from_slice(bytes);
            self
        }
    }

    #[test]
    fn multi_extent_files_are_joined_in_order() {
        let mut s = Synth::new(30);
        s.dir(
            18,
            &[],
            &[
                rec(b"BIG.GZ;1", 20, 2048, FLAG_MULTI_EXTENT, &[]),
                rec(b"BIG.GZ;1", 25, 3, 0, &[]),
            ],
        )
        .put(20, &[b'a'; 2048])
        .put(25, b"xyz");
        let entry = Volume::open(&mut SliceSectors(&s.data))
            .unwrap()
            .lookup(&mut SliceSectors(&s.data), "big.gz")
            .unwrap();
        assert_eq!(entry.size(), 2051);
        assert_eq!(entry.locate(0), Some((20, 2048)));
        assert_eq!(entry.locate(2049), Some((25, 2)));
        assert_eq!(entry.locate(2051), None);
        let data = read_path(&s.data, "big.gz").unwrap();
        assert_eq!(&data[2046..], b"aaxyz");
    }

    #[test]
    fn rock_ridge_names_split_and_continued() {
        let mut s = Synth::new(30);
        // "media-id" as NM "med" (CONTINUE) + NM "ia-" (CONTINUE) in the
        // record, then NM "id" in a continuation area at LBA 22 offset 100.
        let mut su = nm(0x01, b"med");
        su.extend(nm(0x01, b"ia-"));
        let mut ce = vec![b'C', b'E', 28, 1];
        ce.extend_from_slice(&both32(22));
        ce.extend_from_slice(&both32(100));
        ce.extend_from_slice(&both32(7));
        su.extend(ce);
        s.dir(
            18,
            &SP,
            &[rec(b"ZE;1", 19, 2048, FLAG_DIRECTORY, &nm(0, b"ze"))],
        )
        .dir(19, &[], &[rec(b"MEDIA_ID.;1", 21, 33, 0, &su)])
        .put(21, format!("{ID}\n").as_bytes());
        s.data[22 * SECTOR_SIZE + 100..22 * SECTOR_SIZE + 107].copy_from_slice(&nm(0, b"id"));
        assert_eq!(
            read_media_id(&mut SliceSectors(&s.data)).unwrap(),
            ID.as_bytes()
        );

        // A continuation area that points outside its sector is an error.
        let mut bad = s.data.clone();
        let at = bad.windows(2).position(|w| w == b"CE").unwrap();
        bad[at + 12..at + 20].copy_from_slice(&both32(2045));
        let got = read_media_id(&mut SliceSectors(&bad));
        assert!(
            matches!(got, Err(Error::BadRecord { lba: 19, .. })),
            "{got:?}"
        );
    }

    #[test]
    fn malformed_volumes_are_named() {
        let good = {
            let mut s = Synth::new(24);
            s.dir(18, &[], &[rec(b"F;1", 20, 5, 0, &[])])
                .put(20, b"hello");
            s
        };
        assert_eq!(read_path(&good.data, "f").unwrap(), b"hello");

        let mut s = Synth {
            data: good.data.clone(),
        };
        s.data[16 * SECTOR_SIZE + 128..16 * SECTOR_SIZE + 132].copy_from_slice(&[0, 2, 2, 0]);
        assert_eq!(
            Volume::open(&mut SliceSectors(&s.data)),
            Err(Error::UnsupportedBlockSize(512))
        );

        // Both-endian halves that disagree.
        let mut s = Synth {
            data: good.data.clone(),
        };
        let rec_at = 18 * SECTOR_SIZE + 34 + 34;
        s.data[rec_at + 6] ^= 1;
        assert_eq!(
            read_path(&s.data, "f"),
            Err(Error::BadRecord {
                lba: 18,
                offset: 68
            })
        );

        // A record running past its sector.
        let mut s = Synth {
            data: good.data.clone(),
        };
        s.data[18 * SECTOR_SIZE + 2047] = 40;
        s.dir(18, &[], &[]);
        let mut filler = 68;
        while filler + 40 < 2047 {
            let r = rec(b"PAD;1", 20, 0, 0, &[0; 5]);
            s.data[18 * SECTOR_SIZE + filler..18 * SECTOR_SIZE + filler + r.len()]
                .copy_from_slice(&r);
            filler += r.len();
        }
        s.data[18 * SECTOR_SIZE + filler] = 200;
        assert!(matches!(
            read_path(&s.data, "f"),
            Err(Error::BadRecord { lba: 18, .. })
        ));

        // A file whose extent leaves the volume.
        let mut s = Synth::new(24);
        s.dir(18, &[], &[rec(b"F;1", 23, 4096, 0, &[])]);
        assert_eq!(read_path(&s.data, "f"), Err(Error::OutOfVolume { lba: 23 }));

        // A directory too large to read.
        let mut s = Synth::new(MAX_DIR_SECTORS + 24);
        s.dir(
            18,
            &[],
            &[rec(
                b"D;1",
                19,
                (MAX_DIR_SECTORS + 1) * 2048,
                FLAG_DIRECTORY,
                &[],
            )],
        );
        assert_eq!(
            read_path(&s.data, "d/x"),
            Err(Error::DirectoryTooLarge { lba: 19 })
        );

        // Too many extents.
        let mut s = Synth::new(24);
        let many: Vec<Vec<u8>> = (0..=MAX_EXTENTS)
            .map(|_| rec(b"F;1", 20, 1, FLAG_MULTI_EXTENT, &[]))
            .collect();
        s.dir(18, &[], &many);
        assert_eq!(read_path(&s.data, "f"), Err(Error::TooManyExtents));

        // A multi-extent run cut off by the directory's end.
        let mut s = Synth::new(24);
        s.dir(18, &[], &[rec(b"F;1", 20, 1, FLAG_MULTI_EXTENT, &[])]);
        assert!(matches!(
            read_path(&s.data, "f"),
            Err(Error::BadRecord { .. })
        ));

        // Descriptors without a primary one.
        let mut s = Synth {
            data: good.data.clone(),
        };
        s.data[16 * SECTOR_SIZE] = 2;
        assert_eq!(
            Volume::open(&mut SliceSectors(&s.data)),
            Err(Error::NoPrimaryDescriptor)
        );
    }

    #[test]
    fn media_id_content_is_checked() {
        for (content, ok) in [
            (format!("{ID}\n"), true),
            (ID.to_string(), true),
            (ID.to_uppercase(), false),
            (format!("{ID}\n\n"), false),
            (ID[..31].to_string(), false),
            ("g".repeat(32), false),
        ] {
            assert_eq!(
                parse_media_id(content.as_bytes()).is_some(),
                ok,
                "{content:?}"
            );
            let mut s = Synth::new(24);
            s.dir(18, &[], &[rec(b"ZE;1", 19, 2048, FLAG_DIRECTORY, &[])])
                .dir(
                    19,
                    &[],
                    &[rec(b"MEDIA-ID;1", 20, content.len() as u32, 0, &[])],
                )
                .put(20, content.as_bytes());
            let got = read_media_id(&mut SliceSectors(&s.data));
            assert_eq!(got.is_ok(), ok, "{content:?}: {got:?}");
            if !ok {
                assert_eq!(got, Err(Error::BadMediaId));
            }
        }
    }
}
