//! The image's bytes onto a [`Target`], in one of two shapes:
//!
//! - [`Stream`]: every byte of the image in order (the HTTP full stream,
//!   the gzip'd image of an old ISO), hashed as a whole against
//!   `ze.sha256` (checklist I17);
//! - [`MapWriter`]: only the mapped ranges of a block map, in order (the
//!   HTTP block-map transfer, the mapped data of an ISO), each range
//!   checked against its own sha256 as soon as its last byte arrived;
//!   [`zero_holes`] makes every byte outside the ranges zero on the disk,
//!   so the disk equals the image whatever it held before (W4, W5, W7).

use super::{download::Sink, report::Reporter, target::Target};
use crate::{
    bmap::{Bmap, Range, Ranges},
    cmdline::Config,
    console::{Mib, Progress, say},
    install::{self, Fatal, Hex},
};
use sha2::{Digest as _, Sha256};
use ze_hal::os::{BlockDev, Os};

/// The whole image, byte after byte.
pub struct Stream<'t, 'h, 'r, D: BlockDev> {
    target: &'t mut Target<'h, D>,
    sha: Sha256,
    /// `ze.size`, checked as soon as the size is announced.
    expected_size: Option<u64>,
    progress: Option<Progress>,
    /// Where progress is reported (HTTP installs).
    report: Option<&'r mut Reporter>,
    total: Option<u64>,
}

impl<D: BlockDev> core::fmt::Debug for Stream<'_, '_, '_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stream")
            .field("expected_size", &self.expected_size)
            .finish_non_exhaustive()
    }
}

impl<'t, 'h, 'r, D: BlockDev> Stream<'t, 'h, 'r, D> {
    /// A stream onto `target`; `ze.size` is `expected_size`; progress is
    /// reported to `report` when there is one.
    pub fn new(
        target: &'t mut Target<'h, D>,
        expected_size: Option<u64>,
        report: Option<&'r mut Reporter>,
    ) -> Self {
        Stream {
            target,
            sha: Sha256::new(),
            expected_size,
            progress: None,
            report,
            total: None,
        }
    }

    /// The last progress line; the size and digest checked against
    /// `ze.size` and `ze.sha256`. Returns the digest.
    pub fn finish<O: Os>(
        self,
        os: &mut O,
        total: u64,
        expected_digest: Option<[u8; 32]>,
    ) -> Result<[u8; 32], Fatal> {
        if let Some(p) = &self.progress {
            let mut line = p.line(os.now(), total);
            os.consoles_write(line.finish());
        }
        let digest: [u8; 32] = self.sha.finalize().into();
        install::verify(self.expected_size, expected_digest, total, digest)?;
        Ok(digest)
    }
}

impl<O: Os, D: BlockDev> Sink<O> for Stream<'_, '_, '_, D> {
    fn restart(&mut self, _os: &mut O) -> Result<(), Fatal> {
        self.sha = Sha256::new();
        self.progress = None;
        Ok(())
    }

    fn total(&mut self, os: &mut O, total: u64) -> Result<(), Fatal> {
        if total > self.target.size {
            return Err(Fatal::TooLarge {
                image: total,
                disk: self.target.size,
            });
        }
        if let Some(expected) = self.expected_size
            && expected != total
        {
            return Err(Fatal::SizeMismatch {
                expected,
                got: total,
            });
        }
        if self.progress.is_none() {
            self.progress = Some(Progress::new("image", os.now(), 0, Some(total)));
        }
        self.total = Some(total);
        Ok(())
    }

    fn write(&mut self, os: &mut O, offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        self.sha.update(bytes);
        self.target.write(offset, bytes)?;
        let now = os.now();
        let p = self
            .progress
            .get_or_insert_with(|| Progress::new("image", now, offset, None));
        let done = offset + bytes.len() as u64;
        if let Some(mut line) = p.update(now, done) {
            os.consoles_write(line.finish());
        }
        if let (Some(r), Some(total)) = (self.report.as_deref_mut(), self.total) {
            r.progress(os, done, total, false);
        }
        Ok(())
    }
}

/// Check a block map against `ze.bmap-sha256`, parse it, and
/// check it against `ze.size`: a map that fails any of these is fatal,
/// never a fallback to unverified bytes.
pub fn trust_map<'b, O: Os>(os: &mut O, cfg: &Config, text: &'b [u8]) -> Result<Bmap<'b>, Fatal> {
    let got: [u8; 32] = Sha256::digest(text).into();
    if let Some(expected) = cfg.bmap_sha256
        && !crate::recovery::digests_match(&expected, &got)
    {
        return Err(Fatal::BmapDigest { expected, got });
    }
    let map = Bmap::parse(text).map_err(Fatal::Bmap)?;
    if let Some(expected) = cfg.size
        && expected != map.image_size
    {
        return Err(Fatal::SizeMismatch {
            expected,
            got: map.image_size,
        });
    }
    say!(
        os,
        "block map: {} ranges, {} MiB mapped of {} MiB, sha256 {} matches ze.bmap-sha256",
        map.range_count,
        Mib(map.mapped_bytes),
        map.image_size.div_ceil(1 << 20),
        Hex(&got)
    );
    Ok(map)
}

/// Make every byte of the image that no range of `map` covers zero on
/// the target; returns how many bytes that was.
pub fn zero_holes<O: Os, D: BlockDev>(
    os: &mut O,
    target: &mut Target<'_, D>,
    map: &Bmap<'_>,
    zeros: &mut [u8],
) -> Result<u64, Fatal> {
    let holes = map.image_size - map.mapped_bytes;
    say!(
        os,
        "zeroing the {} MiB of holes on {} (BLKZEROOUT)",
        Mib(holes),
        target.path
    );
    let mut at = 0u64;
    for r in map.ranges() {
        target.zero(at, r.start(map.block_size), zeros)?;
        at = r.end(map.block_size, map.image_size);
    }
    target.zero(at, map.image_size, zeros)?;
    if target.zeroed_by_writes > 0 {
        say!(
            os,
            "{}: the device refused BLKZEROOUT for {} MiB; wrote those zeros instead",
            target.path,
            Mib(target.zeroed_by_writes)
        );
    }
    Ok(holes)
}

/// The current range of a [`MapWriter`].
#[derive(Debug, Clone, Copy)]
struct Current {
    index: usize,
    range: Range,
    end: u64,
}

/// The mapped bytes of an image, fed in range order; each range's
/// sha256 is checked when its last byte arrives.
pub struct MapWriter<'m> {
    block_size: u32,
    image_size: u64,
    ranges: Ranges<'m>,
    current: Option<Current>,
    next_index: usize,
    /// The image offset the next byte belongs at.
    pos: u64,
    sha: Sha256,
    /// Mapped bytes written.
    pub done: u64,
    progress: Progress,
}

impl core::fmt::Debug for MapWriter<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MapWriter")
            .field("pos", &self.pos)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'m> MapWriter<'m> {
    /// A writer for the ranges of `map`, its progress starting `now`.
    pub fn new(map: &Bmap<'m>, now: ze_hal::time::Instant) -> Self {
        let mut w = MapWriter {
            block_size: map.block_size,
            image_size: map.image_size,
            ranges: map.ranges(),
            current: None,
            next_index: 0,
            pos: 0,
            sha: Sha256::new(),
            done: 0,
            progress: Progress::map("image", now, map.mapped_bytes, map.image_size),
        };
        w.advance();
        w
    }

    fn advance(&mut self) {
        self.current = self.ranges.next().map(|range| Current {
            index: self.next_index,
            range,
            end: range.end(self.block_size, self.image_size),
        });
        if let Some(c) = &self.current {
            self.pos = c.range.start(self.block_size);
        }
        self.next_index += 1;
        self.sha = Sha256::new();
    }

    /// The byte window of the range the writer waits for.
    pub fn window(&self) -> Option<(u64, u64)> {
        self.current.map(|c| (self.pos, c.end))
    }

    /// The next mapped bytes, which belong at image offset `offset`
    /// (always the writer's position: ranges arrive in order).
    pub fn write<O: Os, D: BlockDev>(
        &mut self,
        os: &mut O,
        target: &mut Target<'_, D>,
        offset: u64,
        mut bytes: &[u8],
    ) -> Result<(), Fatal> {
        if offset != self.pos {
            return Err(Fatal::MapData {
                problem: "bytes arrived out of range order",
                at: offset,
            });
        }
        while !bytes.is_empty() {
            let Some(c) = self.current else {
                return Err(Fatal::MapData {
                    problem: "there is more mapped data than the block map holds",
                    at: self.pos,
                });
            };
            let take = (c.end - self.pos).min(bytes.len() as u64) as usize;
            let (now, rest) = bytes.split_at(take);
            target.write(self.pos, now)?;
            self.sha.update(now);
            self.pos += take as u64;
            self.done += take as u64;
            bytes = rest;
            if self.pos == c.end {
                let got: [u8; 32] = core::mem::take(&mut self.sha).finalize().into();
                if !crate::recovery::digests_match(&got, &c.range.sha256) {
                    return Err(Fatal::RangeDigest {
                        index: c.index,
                        start: c.range.start(self.block_size),
                        end: c.end,
                        expected: c.range.sha256,
                        got,
                    });
                }
                self.advance();
            }
        }
        if let Some(mut line) = self.progress.update(os.now(), self.done) {
            os.consoles_write(line.finish());
        }
        Ok(())
    }

    /// The next mapped bytes, in range order (a stream of the mapped data).
    pub fn feed<O: Os, D: BlockDev>(
        &mut self,
        os: &mut O,
        target: &mut Target<'_, D>,
        bytes: &[u8],
    ) -> Result<(), Fatal> {
        self.write(os, target, self.pos, bytes)
    }

    /// Every range arrived and matched; prints the last progress line.
    pub fn finish<O: Os>(&mut self, os: &mut O) -> Result<(), Fatal> {
        if self.current.is_some() {
            return Err(Fatal::MapData {
                problem: "the mapped data ended before the block map did",
                at: self.pos,
            });
        }
        let mut line = self.progress.line(os.now(), self.done);
        os.consoles_write(line.finish());
        Ok(())
    }
}

/// A [`MapWriter`] and its target, as the sink of one range's download.
pub struct MapSink<'w, 'm, 't, 'h, 'r, D: BlockDev> {
    /// The writer.
    pub writer: &'w mut MapWriter<'m>,
    /// The target.
    pub target: &'t mut Target<'h, D>,
    /// Where progress is reported.
    pub report: &'r mut Reporter,
    /// The mapped bytes in all.
    pub mapped: u64,
}

impl<D: BlockDev> core::fmt::Debug for MapSink<'_, '_, '_, '_, '_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MapSink").finish_non_exhaustive()
    }
}

impl<O: Os, D: BlockDev> Sink<O> for MapSink<'_, '_, '_, '_, '_, D> {
    fn restart(&mut self, _os: &mut O) -> Result<(), Fatal> {
        // A window is never restarted: a 200 for a range is refused.
        Err(Fatal::MapData {
            problem: "the server restarted a range",
            at: self.writer.pos,
        })
    }

    fn total(&mut self, _os: &mut O, total: u64) -> Result<(), Fatal> {
        if total != self.writer.image_size {
            return Err(Fatal::MapData {
                problem: "the server's image size differs from the block map's",
                at: total,
            });
        }
        Ok(())
    }

    fn write(&mut self, os: &mut O, offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        self.writer.write(os, self.target, offset, bytes)?;
        self.report
            .progress(os, self.writer.done, self.mapped, true);
        Ok(())
    }
}
