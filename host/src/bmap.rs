//! The block map of an image file (checklist W1, W2, W7): which 4 KiB
//! blocks hold data, in bmaptool's bmap 2.0 format (`ze_installer::bmap`).
//!
//! [`derive`] asks the filesystem where the data is (`SEEK_DATA` /
//! `SEEK_HOLE`) and reads only those extents, once; inside them every
//! 4 KiB block that is all zeros counts as a hole too. (bmaptool maps
//! whole extents; ze also drops zero blocks, so a non-sparse copy of an
//! image maps as small as the sparse original.) The map is therefore a
//! function of the image's bytes alone: the mapped blocks are exactly
//! the non-zero ones, adjacent ones merged into one range, each range
//! with the sha256 of its bytes. The last block may be short.
//!
//! [`Walk`] goes the other way: fed an image's bytes in order, it checks
//! them against a map (every range's sha256, and zeros everywhere else)
//! and hands on the mapped bytes, for the imageserver's startup check of
//! a map it did not make and for the ISO's data stream.

use crate::digest::{self, CHUNK};
use rustix::{
    fs::{SeekFrom, seek},
    io::Errno,
};
use sha2::{Digest as _, Sha256};
use std::{fs::File, io, os::unix::fs::FileExt};
use ze_installer::bmap::{self as format, Bmap, BmapError, HumanSize, Range};

/// A map's file name is its image's with this appended (`ze-….img.bmap`,
/// where `bmaptool copy` looks for it too).
pub const SUFFIX: &str = ".bmap";
/// The block size of every map ze makes.
pub const BLOCK_SIZE: u32 = 4096;
/// [`BLOCK_SIZE`] as a byte count.
const BLOCK: u64 = BLOCK_SIZE as u64;
/// All zeros, one block: blocks compare against it with `memcmp`.
static ZEROS: [u8; BLOCK_SIZE as usize] = [0; BLOCK_SIZE as usize];

/// Why a map could not be made, or does not describe an image.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// Reading the image failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A map cannot describe an empty file.
    #[error("the image is empty (0 bytes): there is nothing to map")]
    Empty,
    /// The image ended early or grew while it was read.
    #[error(
        "the image changed size while it was read ({said} bytes, then {now}): is it still being written?"
    )]
    Changed {
        /// The length it had when the pass began.
        said: u64,
        /// The length seen later.
        now: u64,
    },
    /// The map would be larger than the installer accepts.
    #[error(
        "the image has {ranges} separate data ranges; their map ({bytes} bytes) is over the {limit}-byte limit (make the image less fragmented, e.g. zero the free space and copy it sparsely)",
        limit = format::MAX_BMAP
    )]
    TooLarge {
        /// Ranges found.
        ranges: usize,
        /// Size of the map text.
        bytes: usize,
    },
    /// The map text does not parse (from a file; or a bug when it is ours).
    #[error("{0}")]
    Format(BmapError),
    /// A range's bytes have another sha256 than the map says.
    #[error(
        "range {number} (blocks {first}-{last}) has another sha256 than the map says: the image changed after the map was made"
    )]
    RangeDigest {
        /// 1-based, as the parser's messages count.
        number: usize,
        /// First block.
        first: u64,
        /// Last block.
        last: u64,
    },
    /// A block outside every range holds data.
    #[error(
        "block {block} holds data but is in no range of the map: the map leaves out part of the image"
    )]
    Unmapped {
        /// The block.
        block: u64,
    },
    /// The image is not as long as the map's `ImageSize`.
    #[error("the map is for an image of {map} bytes; this one has {image}")]
    Size {
        /// `ImageSize`.
        map: u64,
        /// The image's length.
        image: u64,
    },
}

/// A checked block map: its sealed text and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockMap {
    text: Vec<u8>,
    /// The sha256 of the text, hex (`ze.bmap-sha256=`).
    pub sha256: String,
    /// `ImageSize`.
    pub image_size: u64,
    /// The bytes the ranges cover.
    pub mapped_bytes: u64,
    /// How many ranges there are.
    pub range_count: usize,
}

impl BlockMap {
    /// Check a map file's text with the installer's parser.
    pub fn from_text(text: Vec<u8>) -> Result<BlockMap, MapError> {
        let (image_size, mapped_bytes, range_count) = {
            let m = Bmap::parse(&text).map_err(MapError::Format)?;
            (m.image_size, m.mapped_bytes, m.range_count)
        };
        Ok(BlockMap {
            sha256: digest::sha256_hex(&text),
            text,
            image_size,
            mapped_bytes,
            range_count,
        })
    }

    /// The file's bytes.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The file's bytes, owned.
    pub fn into_text(self) -> Vec<u8> {
        self.text
    }

    /// The parsed map (its ranges, block size).
    pub fn parsed(&self) -> Bmap<'_> {
        Bmap::parse(&self.text).expect("checked when the BlockMap was made")
    }

    /// `11.2 MiB mapped of 2.0 GiB (0.5%)`, the share rounded.
    pub fn summary(&self) -> String {
        let size = u128::from(self.image_size);
        let permille = (u128::from(self.mapped_bytes) * 1000 + size / 2)
            .checked_div(size)
            .unwrap_or(0);
        format!(
            "{} mapped of {} ({}.{}%)",
            HumanSize(self.mapped_bytes),
            HumanSize(self.image_size),
            permille / 10,
            permille % 10
        )
    }
}

/// Whether `bytes` are all zero (one `memcmp` per block, fast in debug
/// builds too).
fn is_zero(bytes: &[u8]) -> bool {
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// The offset of the first non-zero byte of `bytes`.
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    for c in bytes.chunks(ZEROS.len()) {
        if c != &ZEROS[..c.len()] {
            return c.iter().position(|&b| b != 0).map(|i| at + i);
        }
        at += c.len();
    }
    None
}

/// The next data extent at or after `pos`, as `(data, hole)` offsets;
/// `None` past the last one. A filesystem that cannot tell is all data.
fn next_extent(file: &File, pos: u64, len: u64) -> io::Result<Option<(u64, u64)>> {
    let data = match seek(file, SeekFrom::Data(pos)) {
        Ok(d) => d,
        Err(Errno::NXIO) => return Ok(None),
        Err(Errno::INVAL) => return Ok(Some((pos, len))),
        Err(e) => return Err(e.into()),
    };
    let hole = match seek(file, SeekFrom::Hole(data)) {
        Ok(h) => h,
        Err(Errno::NXIO) => len,
        Err(e) => return Err(e.into()),
    };
    Ok(Some((data, hole)))
}

/// The range being built: its blocks so far and the hash of their bytes.
struct Open {
    first: u64,
    last: u64,
    hash: Sha256,
}

impl Open {
    fn close(self) -> Range {
        Range {
            first: self.first,
            last: self.last,
            sha256: self.hash.finalize().into(),
        }
    }
}

/// Derive the map of `file`: its non-zero 4 KiB blocks, found by reading
/// only its data extents. `progress(done, total)` is told the bytes
/// passed so far (holes count as passed when skipped).
pub fn derive(file: &File, progress: &mut dyn FnMut(u64, u64)) -> Result<BlockMap, MapError> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(MapError::Empty);
    }
    let mut ranges: Vec<Range> = Vec::new();
    let mut open: Option<Open> = None;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < len {
        let Some((data, hole)) = next_extent(file, pos, len)? else {
            break;
        };
        // Whole blocks: the extent's edges rounded outwards, never
        // before what was already read.
        let start = (data / BLOCK * BLOCK).max(pos);
        if start >= len {
            break;
        }
        let end = hole.div_ceil(BLOCK).saturating_mul(BLOCK).min(len);
        // A filesystem that reports an empty extent still moves us on.
        let end = if end > start {
            end
        } else {
            (start + BLOCK).min(len)
        };
        progress(start, len);
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            let chunk = &mut buf[..n];
            file.read_exact_at(chunk, off).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    MapError::Changed {
                        said: len,
                        now: file.metadata().map_or(0, |m| m.len()),
                    }
                } else {
                    MapError::Io(e)
                }
            })?;
            for (i, block) in chunk.chunks(BLOCK_SIZE as usize).enumerate() {
                let number = off / BLOCK + i as u64;
                if is_zero(block) {
                    if let Some(r) = open.take() {
                        ranges.push(r.close());
                    }
                    continue;
                }
                match &mut open {
                    Some(r) if r.last + 1 == number => {
                        r.last = number;
                        r.hash.update(block);
                    }
                    _ => {
                        if let Some(r) = open.take() {
                            ranges.push(r.close());
                        }
                        let mut hash = Sha256::new();
                        hash.update(block);
                        open = Some(Open {
                            first: number,
                            last: number,
                            hash,
                        });
                    }
                }
            }
            off += n as u64;
            progress(off, len);
        }
        pos = end;
    }
    if let Some(r) = open.take() {
        ranges.push(r.close());
    }
    let now = file.metadata()?.len();
    if now != len {
        return Err(MapError::Changed { said: len, now });
    }
    progress(len, len);
    let mut text = String::new();
    format::write(&mut text, len, BLOCK_SIZE, ranges.iter().copied())
        .map_err(|_| io::Error::other("formatting the block map failed"))?;
    let mut text = text.into_bytes();
    if text.len() > format::MAX_BMAP {
        return Err(MapError::TooLarge {
            ranges: ranges.len(),
            bytes: text.len(),
        });
    }
    if !format::seal(&mut text) {
        return Err(io::Error::other("the block map has no BmapFileChecksum to fill in").into());
    }
    BlockMap::from_text(text)
}

/// Checks an image's bytes, fed in order, against a map, and hands on
/// the mapped ones.
#[allow(missing_debug_implementations)]
pub struct Walk<'a> {
    ranges: format::Ranges<'a>,
    block_size: u32,
    image_size: u64,
    /// Bytes fed so far.
    pos: u64,
    /// The next (or current) range, its index and the hash so far.
    next: Option<(usize, Range, Sha256)>,
}

impl<'a> Walk<'a> {
    /// Start at the image's first byte.
    pub fn new(map: &Bmap<'a>) -> Walk<'a> {
        let mut ranges = map.ranges();
        let next = ranges.next().map(|r| (0, r, Sha256::new()));
        Walk {
            ranges,
            block_size: map.block_size,
            image_size: map.image_size,
            pos: 0,
            next,
        }
    }

    /// The next bytes of the image; `mapped` gets the parts inside ranges.
    pub fn feed(
        &mut self,
        mut chunk: &[u8],
        mapped: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), MapError> {
        while !chunk.is_empty() {
            if self.pos >= self.image_size {
                return Err(MapError::Size {
                    map: self.image_size,
                    image: self.pos + chunk.len() as u64,
                });
            }
            let (bs, size) = (self.block_size, self.image_size);
            let Some((index, range, hash)) = &mut self.next else {
                let n = ((size - self.pos) as usize).min(chunk.len());
                self.zeros(&chunk[..n])?;
                chunk = &chunk[n..];
                continue;
            };
            let (start, end) = (range.start(bs), range.end(bs, size));
            if self.pos < start {
                let n = ((start - self.pos) as usize).min(chunk.len());
                self.zeros(&chunk[..n])?;
                chunk = &chunk[n..];
                continue;
            }
            let n = ((end - self.pos) as usize).min(chunk.len());
            hash.update(&chunk[..n]);
            mapped(&chunk[..n])?;
            self.pos += n as u64;
            chunk = &chunk[n..];
            if self.pos == end {
                let (index, range) = (*index, *range);
                let (_, _, hash) = self.next.take().expect("just matched");
                if <[u8; 32]>::from(hash.finalize()) != range.sha256 {
                    return Err(MapError::RangeDigest {
                        number: index + 1,
                        first: range.first,
                        last: range.last,
                    });
                }
                self.next = self.ranges.next().map(|r| (index + 1, r, Sha256::new()));
            }
        }
        Ok(())
    }

    /// Bytes outside every range: they must be zeros.
    fn zeros(&mut self, gap: &[u8]) -> Result<(), MapError> {
        if let Some(i) = first_nonzero(gap) {
            return Err(MapError::Unmapped {
                block: (self.pos + i as u64) / u64::from(self.block_size),
            });
        }
        self.pos += gap.len() as u64;
        Ok(())
    }

    /// The image ended: it must have been exactly `ImageSize` bytes.
    pub fn finish(self) -> Result<(), MapError> {
        if self.pos != self.image_size {
            return Err(MapError::Size {
                map: self.image_size,
                image: self.pos,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    const MIB: u64 = 1 << 20;

    /// A sparse file of `len` bytes with `writes` (offset, bytes) in it.
    fn sparse(len: u64, writes: &[(u64, &[u8])]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(len).unwrap();
        for (at, bytes) in writes {
            f.seek(io::SeekFrom::Start(*at)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f.sync_all().unwrap();
        f
    }

    fn whole(f: &File) -> Vec<u8> {
        let mut v = vec![0u8; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    /// The non-zero blocks of `bytes`, merged when adjacent: what every
    /// map must say, computed the slow way.
    fn expected(bytes: &[u8]) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (i, b) in bytes.chunks(BLOCK as usize).enumerate() {
            let i = i as u64;
            if b.iter().any(|&x| x != 0) {
                match out.last_mut() {
                    Some((_, last)) if *last + 1 == i => *last = i,
                    _ => out.push((i, i)),
                }
            }
        }
        out
    }

    /// Derive, check the text with the installer's parser, and compare
    /// the ranges and their digests with the slow computation.
    fn check(f: &File) -> BlockMap {
        let bytes = whole(f);
        let mut calls = Vec::new();
        let map = derive(f, &mut |done, total| calls.push((done, total))).unwrap();
        let parsed = Bmap::parse(map.text()).unwrap();
        assert_eq!(parsed.image_size, bytes.len() as u64);
        assert_eq!(parsed.block_size, BLOCK_SIZE);
        let got: Vec<Range> = parsed.ranges().collect();
        assert_eq!(
            got.iter().map(|r| (r.first, r.last)).collect::<Vec<_>>(),
            expected(&bytes)
        );
        for r in &got {
            let (s, e) = (
                r.start(BLOCK_SIZE) as usize,
                r.end(BLOCK_SIZE, bytes.len() as u64) as usize,
            );
            assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(&bytes[s..e])));
        }
        assert_eq!(map.sha256, digest::sha256_hex(map.text()));
        assert_eq!(map.range_count, got.len());
        // Progress only grows and ends at the total.
        assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "{calls:?}");
        assert_eq!(
            calls.last(),
            Some(&(bytes.len() as u64, bytes.len() as u64))
        );
        // The walk agrees: every range checks out, and the bytes it hands
        // on are exactly the mapped ones, in order.
        let mut walk = Walk::new(&parsed);
        let mut handed = Vec::new();
        for c in bytes.chunks(3000) {
            walk.feed(c, &mut |m| {
                handed.extend_from_slice(m);
                Ok(())
            })
            .unwrap();
        }
        walk.finish().unwrap();
        let mut want = Vec::new();
        for r in &got {
            want.extend_from_slice(
                &bytes
                    [r.start(BLOCK_SIZE) as usize..r.end(BLOCK_SIZE, bytes.len() as u64) as usize],
            );
        }
        assert!(handed == want);
        assert_eq!(handed.len() as u64, map.mapped_bytes);
        map
    }

    #[test]
    fn w1_a_sparse_file_maps_its_data_blocks_only() {
        let f = sparse(
            8 * MIB,
            &[
                (0, &[1u8; 4096]),
                (3 * MIB, &[2u8; 10_000]),
                (5 * MIB + 100, b"x"),
            ],
        );
        let map = check(&f);
        let ranges: Vec<(u64, u64)> = map.parsed().ranges().map(|r| (r.first, r.last)).collect();
        assert_eq!(ranges, [(0, 0), (768, 770), (1280, 1280)]);
        assert_eq!(map.mapped_bytes, 5 * 4096);
        assert_eq!(map.summary(), "20.0 KiB mapped of 8.0 MiB (0.2%)");
        // The holes were skipped, not read: progress jumps over them.
        let mut calls = Vec::new();
        derive(&f, &mut |done, _| calls.push(done)).unwrap();
        assert!(
            !calls.iter().any(|&d| d > MIB && d < 3 * MIB),
            "read through a hole: {calls:?}"
        );
    }

    #[test]
    fn w1_zero_blocks_inside_data_extents_are_holes_too() {
        // Written, not sparse: a data extent of 64 blocks with zero blocks
        // at its start, in its middle and at its end.
        let mut data = vec![0u8; 64 * 4096];
        for b in [1usize, 2, 3, 10, 11, 40] {
            data[b * 4096 + 7] = 0xff;
        }
        // One non-zero byte at the very end of a block.
        data[20 * 4096 + 4095] = 1;
        let f = sparse(MIB, &[(0, &data)]);
        let map = check(&f);
        let ranges: Vec<(u64, u64)> = map.parsed().ranges().map(|r| (r.first, r.last)).collect();
        assert_eq!(ranges, [(1, 3), (10, 11), (20, 20), (40, 40)]);
        // The same bytes in a fully written copy map the same: the map is
        // a function of the content, not of the extents.
        let copy = sparse(MIB, &[(0, &whole(&f))]);
        assert_eq!(check(&copy), map);
    }

    #[test]
    fn w1_a_short_last_block_ends_its_range_at_the_image_size() {
        let len = 3 * 4096 + 100;
        let f = sparse(len, &[(2 * 4096 + 5, &[9u8; 4096 + 95])]);
        let map = check(&f);
        let parsed = map.parsed();
        let r: Vec<Range> = parsed.ranges().collect();
        assert_eq!((r[0].first, r[0].last), (2, 3));
        assert_eq!(r[0].end(BLOCK_SIZE, len), len);
        assert_eq!(map.mapped_bytes, 4096 + 100);
        assert_eq!(parsed.blocks_count, 4);
        // A last block of zeros, short, is a hole.
        let f = sparse(4096 + 10, &[(0, &[1u8; 4096])]);
        assert_eq!(check(&f).mapped_bytes, 4096);
    }

    #[test]
    fn w1_an_all_hole_file_maps_nothing_and_an_all_data_file_everything() {
        let f = sparse(16 * MIB, &[]);
        let map = check(&f);
        assert_eq!((map.range_count, map.mapped_bytes), (0, 0));
        assert_eq!(map.summary(), "0 bytes mapped of 16.0 MiB (0.0%)");
        // Written zeros are holes as well.
        let f = sparse(MIB, &[(0, &vec![0u8; MIB as usize])]);
        assert_eq!(check(&f).range_count, 0);

        let bytes: Vec<u8> = (0..3 * MIB + 17).map(|i| (i % 251) as u8 | 1).collect();
        let f = sparse(bytes.len() as u64, &[(0, &bytes)]);
        let map = check(&f);
        assert_eq!(map.range_count, 1);
        assert_eq!(map.mapped_bytes, bytes.len() as u64);
        assert_eq!(map.summary(), "3.0 MiB mapped of 3.0 MiB (100.0%)");

        let empty = sparse(0, &[]);
        assert!(matches!(
            derive(&empty, &mut |_, _| {}),
            Err(MapError::Empty)
        ));
    }

    #[test]
    fn w2_a_walk_names_what_does_not_match_and_the_bytes_are_unchanged() {
        let f = sparse(MIB, &[(4096, &[5u8; 8192]), (512 * 1024, &[6u8; 10])]);
        let map = check(&f);
        let parsed = map.parsed();
        let bytes = whole(&f);
        let walk = |bytes: &[u8]| {
            let mut w = Walk::new(&parsed);
            w.feed(bytes, &mut |_| Ok(()))?;
            w.finish()
        };
        let mut changed = bytes.clone();
        changed[4096 + 8191] = 0;
        assert_eq!(
            walk(&changed).unwrap_err().to_string(),
            "range 1 (blocks 1-2) has another sha256 than the map says: the image changed after the map was made"
        );
        let mut extra = bytes.clone();
        extra[100 * 4096 + 1] = 1;
        assert_eq!(
            walk(&extra).unwrap_err().to_string(),
            "block 100 holds data but is in no range of the map: the map leaves out part of the image"
        );
        let mut tail = bytes.clone();
        *tail.last_mut().unwrap() = 1;
        assert!(matches!(
            walk(&tail),
            Err(MapError::Unmapped { block: 255 })
        ));
        assert_eq!(
            walk(&bytes[..bytes.len() - 1]).unwrap_err().to_string(),
            "the map is for an image of 1048576 bytes; this one has 1048575"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(walk(&longer), Err(MapError::Size { .. })));
        walk(&bytes).unwrap();
    }

    #[test]
    fn a_map_too_large_for_the_installer_is_refused_with_its_range_count() {
        // Every other block holds a byte: 22,000 ranges, ~2.3 MB of map.
        let f = tempfile::tempfile().unwrap();
        f.set_len(44_000 * BLOCK).unwrap();
        for i in 0..22_000u64 {
            f.write_all_at(b"x", 2 * i * BLOCK).unwrap();
        }
        let e = derive(&f, &mut |_, _| {}).unwrap_err();
        assert!(
            matches!(e, MapError::TooLarge { ranges: 22_000, bytes } if bytes > format::MAX_BMAP),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("the image has 22000 separate data ranges")
        );
    }

    #[test]
    fn map_files_are_checked_with_the_installers_parser() {
        let e = BlockMap::from_text(b"<bmap version=\"2.0\">".to_vec()).unwrap_err();
        assert_eq!(e.to_string(), "block map is truncated");
        let f = sparse(MIB, &[(0, b"data")]);
        let map = derive(&f, &mut |_, _| {}).unwrap();
        let again = BlockMap::from_text(map.text().to_vec()).unwrap();
        assert_eq!(again, map);
    }
}
