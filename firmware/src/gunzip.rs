//! gzip decoding for ISO installs (RFC 1952 over RFC 1951 deflate): the
//! image on the installer media is `/ze/<image>.gz`, and this decoder turns
//! its bytes, as they are read, into the image's bytes, with no allocation.
//!
//! Sans-IO: [`Gunzip::step`] is given compressed bytes and a window (the
//! output ring the inflater also reads its 32 KiB history from) and answers
//! how much input it took and which part of the window holds new output.
//! [`Gunzip::finish`] is told the input ended and says whether the stream
//! was complete. Inflating is `miniz_oxide`'s core; the member
//! framing, the header fields and the trailer's CRC-32 and ISIZE checks are
//! ours.
//!
//! ```text
//! member:  1f 8b 08 FLG | MTIME(4) XFL OS | [XLEN(2) extra] [name NUL]
//!          [comment NUL] [CRC16(2)] | deflate data | CRC32(4) ISIZE(4)
//! FLG:     0x02 FHCRC, 0x04 FEXTRA, 0x08 FNAME, 0x10 FCOMMENT;
//!          0xe0 reserved (must be 0)
//! ```
//!
//! Several members in a row decode as one stream (as `gzip -d` does);
//! zero bytes after the last member (block padding) are ignored; anything
//! else after it is an error.

use core::{fmt, ops::Range};
use miniz_oxide::inflate::{
    TINFLStatus,
    core::{DecompressorOxide, decompress, inflate_flags::TINFL_FLAG_HAS_MORE_INPUT},
};

/// The smallest output window: deflate matches reach 32 KiB back.
pub const MIN_WINDOW: usize = 32 * 1024;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const METHOD_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;
/// Bytes of the fixed part of a member header.
const FIXED: usize = 10;
/// Bytes of a member trailer.
const TRAILER: usize = 8;

/// Why a gzip stream cannot be decoded. `at` is the offset in the
/// compressed input where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipError {
    /// The stream does not start with `1f 8b`.
    NotGzip {
        /// Offset of the member.
        at: u64,
    },
    /// The compression method is not deflate (8).
    Method {
        /// The method byte.
        method: u8,
    },
    /// Reserved header flag bits are set.
    ReservedFlags {
        /// The flag byte.
        flags: u8,
    },
    /// The header's CRC-16 (FHCRC) does not match.
    HeaderCrc,
    /// The deflate data is invalid.
    Corrupt {
        /// Offset where the inflater stopped.
        at: u64,
    },
    /// A member's CRC-32 of the uncompressed data does not match.
    Crc {
        /// From the trailer.
        expected: u32,
        /// Computed.
        got: u32,
    },
    /// A member's ISIZE (uncompressed length mod 2^32) does not match.
    Length {
        /// From the trailer.
        expected: u32,
        /// Computed (mod 2^32).
        got: u32,
    },
    /// The input ended inside a member.
    Truncated {
        /// How many bytes there were.
        at: u64,
    },
    /// The input holds no member at all.
    Empty,
    /// Non-zero bytes after the last member that do not start another.
    TrailingData {
        /// Offset of the first such byte.
        at: u64,
    },
    /// The window is not a power of two of at least [`MIN_WINDOW`] bytes.
    Window,
}

impl fmt::Display for GzipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GzipError::NotGzip { at } => write!(f, "no gzip header (1f 8b) at byte {at}"),
            GzipError::Method { method } => {
                write!(f, "compression method {method}, only deflate (8) is used")
            }
            GzipError::ReservedFlags { flags } => {
                write!(f, "reserved gzip header flags set ({flags:#04x})")
            }
            GzipError::HeaderCrc => f.write_str("gzip header CRC-16 mismatch"),
            GzipError::Corrupt { at } => write!(f, "invalid deflate data near byte {at}"),
            GzipError::Crc { expected, got } => write!(
                f,
                "CRC-32 of the inflated data is {got:08x}, the gzip trailer says {expected:08x}"
            ),
            GzipError::Length { expected, got } => write!(
                f,
                "inflated length mod 2^32 is {got}, the gzip trailer says {expected}"
            ),
            GzipError::Truncated { at } => write!(
                f,
                "truncated: the file ends at byte {at}, inside the gzip stream"
            ),
            GzipError::Empty => f.write_str("empty file, no gzip stream"),
            GzipError::TrailingData { at } => {
                write!(f, "unexpected data after the gzip stream at byte {at}")
            }
            GzipError::Window => f.write_str("inflate window is not a power of two >= 32 KiB"),
        }
    }
}

/// What one [`Gunzip::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Input bytes taken.
    pub consumed: usize,
    /// The part of the window holding new output.
    pub produced: Range<usize>,
}

impl Step {
    /// Nothing was taken and nothing produced: more input is needed.
    pub fn is_idle(&self) -> bool {
        self.consumed == 0 && self.produced.is_empty()
    }
}

/// Where a member header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Fixed,
    ExtraLen,
    Extra(u16),
    Name,
    Comment,
    Crc16,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Reading a member header; `have` bytes of the current field.
    Header { field: Field, have: usize },
    /// Inflating.
    Deflate,
    /// Reading the 8-byte trailer.
    Trailer { have: usize },
    /// After a complete member: another may start, or zero padding.
    Between,
    /// Only zero bytes may follow.
    Padding,
}

/// A gzip decoder (see the module documentation).
pub struct Gunzip {
    state: State,
    inflater: DecompressorOxide,
    /// Header bytes kept while parsing (fixed part, or XLEN / CRC16).
    scratch: [u8; FIXED],
    flags: u8,
    header_crc: crc32fast::Hasher,
    crc: crc32fast::Hasher,
    member_out: u64,
    /// Where the next output goes in the window.
    pos: usize,
    /// Compressed bytes taken so far.
    input: u64,
    /// Bytes produced so far.
    output: u64,
    members: u32,
}

impl fmt::Debug for Gunzip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gunzip")
            .field("state", &self.state)
            .field("input", &self.input)
            .field("output", &self.output)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

impl Default for Gunzip {
    fn default() -> Self {
        Gunzip::new()
    }
}

impl Gunzip {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Gunzip {
            state: State::Header {
                field: Field::Fixed,
                have: 0,
            },
            inflater: DecompressorOxide::new(),
            scratch: [0; FIXED],
            flags: 0,
            header_crc: crc32fast::Hasher::new(),
            crc: crc32fast::Hasher::new(),
            member_out: 0,
            pos: 0,
            input: 0,
            output: 0,
            members: 0,
        }
    }

    /// Compressed bytes taken so far.
    pub fn input_bytes(&self) -> u64 {
        self.input
    }

    /// Bytes produced so far.
    pub fn output_bytes(&self) -> u64 {
        self.output
    }

    /// Complete members so far.
    pub fn members(&self) -> u32 {
        self.members
    }

    /// Take what it can of `input`, writing output into `window` (the same
    /// buffer on every call, a power of two of at least [`MIN_WINDOW`]
    /// bytes, untouched by the caller between calls except for reading the
    /// produced range). Call again with the rest of the input until the
    /// step [`is_idle`](Step::is_idle).
    pub fn step(&mut self, input: &[u8], window: &mut [u8]) -> Result<Step, GzipError> {
        if window.len() < MIN_WINDOW || !window.len().is_power_of_two() {
            return Err(GzipError::Window);
        }
        let mut taken = 0usize;
        loop {
            let rest = input.get(taken..).unwrap_or_default();
            match self.state {
                State::Deflate => {
                    if self.pos >= window.len() {
                        self.pos = 0;
                    }
                    let start = self.pos;
                    let (status, used, made) = decompress(
                        &mut self.inflater,
                        rest,
                        window,
                        start,
                        TINFL_FLAG_HAS_MORE_INPUT,
                    );
                    taken += used;
                    self.input += used as u64;
                    let produced = start..start + made;
                    if let Some(out) = window.get(produced.clone()) {
                        self.crc.update(out);
                    }
                    self.member_out += made as u64;
                    self.output += made as u64;
                    self.pos = start + made;
                    match status {
                        TINFLStatus::Done => {
                            self.state = State::Trailer { have: 0 };
                            if made > 0 {
                                return Ok(Step {
                                    consumed: taken,
                                    produced,
                                });
                            }
                        }
                        TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput => {
                            return Ok(Step {
                                consumed: taken,
                                produced,
                            });
                        }
                        _ => return Err(GzipError::Corrupt { at: self.input }),
                    }
                }
                _ if rest.is_empty() => {
                    return Ok(Step {
                        consumed: taken,
                        produced: 0..0,
                    });
                }
                _ => {
                    let n = self.framing(rest)?;
                    taken += n;
                }
            }
        }
    }

    /// The input ended: `Ok` when it held at least one complete member and
    /// nothing unfinished after the last.
    pub fn finish(&self) -> Result<(), GzipError> {
        match self.state {
            State::Between | State::Padding => Ok(()),
            State::Header {
                field: Field::Fixed,
                have: 0,
            } if self.members == 0 && self.input == 0 => Err(GzipError::Empty),
            _ => Err(GzipError::Truncated { at: self.input }),
        }
    }

    /// Parse header, trailer or inter-member bytes from `rest` (not empty);
    /// returns how many were taken.
    fn framing(&mut self, rest: &[u8]) -> Result<usize, GzipError> {
        let mut n = 0;
        while let Some(&b) = rest.get(n) {
            match self.state {
                State::Deflate => break,
                State::Between if b == 0 => self.state = State::Padding,
                State::Between => {
                    self.state = State::Header {
                        field: Field::Fixed,
                        have: 0,
                    };
                    continue;
                }
                State::Padding if b == 0 => {}
                State::Padding => return Err(GzipError::TrailingData { at: self.input }),
                State::Trailer { have } => {
                    self.scratch[have] = b;
                    if have + 1 < TRAILER {
                        self.state = State::Trailer { have: have + 1 };
                    } else {
                        self.end_member()?;
                    }
                }
                State::Header { field, have } => {
                    if field != Field::Crc16 {
                        self.header_crc.update(&[b]);
                    }
                    self.header_byte(field, have, b)?;
                }
            }
            n += 1;
            self.input += 1;
        }
        Ok(n)
    }

    fn header_byte(&mut self, field: Field, have: usize, b: u8) -> Result<(), GzipError> {
        let at = |field| State::Header { field, have: 0 };
        match field {
            Field::Fixed => {
                self.scratch[have] = b;
                match have {
                    1 if self.scratch[..2] != MAGIC => {
                        return Err(GzipError::NotGzip { at: self.input - 1 });
                    }
                    2 if b != METHOD_DEFLATE => return Err(GzipError::Method { method: b }),
                    3 if b & RESERVED != 0 => return Err(GzipError::ReservedFlags { flags: b }),
                    3 => self.flags = b,
                    _ => {}
                }
                self.state = if have + 1 < FIXED {
                    State::Header {
                        field,
                        have: have + 1,
                    }
                } else {
                    self.next_field(Field::Fixed)
                };
            }
            Field::ExtraLen => {
                self.scratch[have] = b;
                self.state = if have == 0 {
                    State::Header { field, have: 1 }
                } else {
                    match u16::from_le_bytes([self.scratch[0], self.scratch[1]]) {
                        0 => self.next_field(Field::Extra(0)),
                        len => at(Field::Extra(len)),
                    }
                };
            }
            Field::Extra(left) => {
                self.state = if left > 1 {
                    at(Field::Extra(left - 1))
                } else {
                    self.next_field(field)
                };
            }
            Field::Name | Field::Comment => {
                if b == 0 {
                    self.state = self.next_field(field);
                }
            }
            Field::Crc16 => {
                self.scratch[have] = b;
                if have == 0 {
                    self.state = State::Header { field, have: 1 };
                } else {
                    let want = u16::from_le_bytes([self.scratch[0], self.scratch[1]]);
                    let got = (self.header_crc.clone().finalize() & 0xffff) as u16;
                    if want != got {
                        return Err(GzipError::HeaderCrc);
                    }
                    self.state = self.next_field(field);
                }
            }
        }
        Ok(())
    }

    /// The header field after `done`, or the deflate data.
    fn next_field(&mut self, done: Field) -> State {
        let order = [
            (Field::ExtraLen, FEXTRA),
            (Field::Name, FNAME),
            (Field::Comment, FCOMMENT),
            (Field::Crc16, FHCRC),
        ];
        let rank = |f: Field| match f {
            Field::Fixed => 0,
            Field::ExtraLen | Field::Extra(_) => 1,
            Field::Name => 2,
            Field::Comment => 3,
            Field::Crc16 => 4,
        };
        for (field, flag) in order {
            if rank(field) > rank(done) && self.flags & flag != 0 {
                return State::Header { field, have: 0 };
            }
        }
        self.inflater.init();
        self.crc = crc32fast::Hasher::new();
        self.member_out = 0;
        State::Deflate
    }

    fn end_member(&mut self) -> Result<(), GzipError> {
        let t = self.scratch;
        let expected = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let got = self.crc.clone().finalize();
        if expected != got {
            return Err(GzipError::Crc { expected, got });
        }
        let expected = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        let got = self.member_out as u32;
        if expected != got {
            return Err(GzipError::Length { expected, got });
        }
        self.members += 1;
        self.header_crc = crc32fast::Hasher::new();
        self.flags = 0;
        self.state = State::Between;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write as _, vec, vec::Vec};

    fn gzip_cli(data: &[u8], args: &[&str]) -> Vec<u8> {
        let mut child = std::process::Command::new("gzip")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("gzip (Debian package gzip) is needed");
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    /// Pseudo-random bytes with long zero runs, like a disk image.
    fn sample(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|i| {
                if (i / 50_000) % 3 == 1 {
                    return 0;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 7) as u8
            })
            .collect()
    }

    /// Decode `gz` feeding `chunk` bytes at a time into a `window`-byte ring.
    fn decode(gz: &[u8], chunk: usize, window: usize) -> Result<Vec<u8>, GzipError> {
        let mut g = Gunzip::new();
        let mut win = vec![0u8; window];
        let mut out = Vec::new();
        for piece in gz.chunks(chunk.max(1)) {
            let mut at = 0;
            loop {
                let s = g.step(&piece[at..], &mut win)?;
                out.extend_from_slice(&win[s.produced.clone()]);
                at += s.consumed;
                if s.is_idle() {
                    break;
                }
            }
            assert_eq!(at, piece.len(), "input left over");
        }
        g.finish()?;
        assert_eq!(g.output_bytes(), out.len() as u64);
        assert_eq!(g.input_bytes(), gz.len() as u64);
        Ok(out)
    }

    #[test]
    fn o1_inflates_what_gzip_and_flate2_write_in_any_chunking() {
        let data = sample(700_000);
        let by_cli = gzip_cli(&data, &["-c", "-6", "-n"]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(&data).unwrap();
        let by_flate2 = enc.finish().unwrap();
        for gz in [&by_cli, &by_flate2] {
            for (chunk, window) in [
                (1, 32 << 10),
                (777, 32 << 10),
                (4096, 64 << 10),
                (1 << 20, 128 << 10),
            ] {
                assert!(decode(gz, chunk, window).unwrap() == data, "chunk {chunk}");
            }
        }
    }

    #[test]
    fn header_fields_name_comment_extra_and_header_crc() {
        let data = sample(100_000);
        // gzip(1) stores the name (FNAME); build the rest by hand from a
        // raw member: FEXTRA, FCOMMENT and FHCRC.
        let plain = gzip_cli(&data, &["-c", "-n"]);
        let deflate_and_trailer = &plain[10..];
        let mut header = vec![
            0x1f,
            0x8b,
            8,
            FEXTRA | FNAME | FCOMMENT | FHCRC,
            0,
            0,
            0,
            0,
            0,
            3,
        ];
        header.extend_from_slice(&[5, 0, b'Z', b'E', 2, 0, 0xaa]);
        header.extend_from_slice(b"ze-20260101-000000.img\0");
        header.extend_from_slice(b"a comment\0");
        let crc = (crc32fast::hash(&header) & 0xffff) as u16;
        let mut gz = header.clone();
        gz.extend_from_slice(&crc.to_le_bytes());
        gz.extend_from_slice(deflate_and_trailer);
        for chunk in [1, 3, 64, 100_000] {
            assert!(decode(&gz, chunk, 32 << 10).unwrap() == data);
        }
        let mut bad = header;
        bad.extend_from_slice(&(crc ^ 1).to_le_bytes());
        bad.extend_from_slice(deflate_and_trailer);
        assert_eq!(decode(&bad, 4096, 32 << 10), Err(GzipError::HeaderCrc));
        let named = gzip_cli(&data, &["-c"]);
        assert!(decode(&named, 999, 32 << 10).unwrap() == data);
    }

    #[test]
    fn members_in_a_row_and_zero_padding() {
        let a = sample(60_000);
        let b: Vec<u8> = sample(90_000).into_iter().rev().collect();
        let mut gz = gzip_cli(&a, &["-c", "-n"]);
        gz.extend(gzip_cli(&b, &["-c", "-n"]));
        let mut both = a.clone();
        both.extend_from_slice(&b);
        assert!(decode(&gz, 5000, 32 << 10).unwrap() == both);
        gz.extend_from_slice(&[0; 2048]);
        assert!(decode(&gz, 5000, 32 << 10).unwrap() == both);
        gz.push(7);
        let len = gz.len() as u64;
        assert_eq!(
            decode(&gz, 5000, 32 << 10),
            Err(GzipError::TrailingData { at: len - 1 })
        );
    }

    #[test]
    fn o1_truncation_anywhere_is_an_error() {
        let data = sample(200_000);
        let gz = gzip_cli(&data, &["-c", "-n"]);
        for cut in [1, 5, 10, 11, 100, gz.len() / 2, gz.len() - 8, gz.len() - 1] {
            assert_eq!(
                decode(&gz[..cut], 4096, 32 << 10),
                Err(GzipError::Truncated { at: cut as u64 }),
                "cut at {cut}"
            );
        }
        assert_eq!(decode(&[], 4096, 32 << 10), Err(GzipError::Empty));
    }

    #[test]
    fn damage_is_named() {
        let data = sample(200_000);
        let gz = gzip_cli(&data, &["-c", "-n"]);
        let n = gz.len();
        let mut crc = gz.clone();
        crc[n - 8] ^= 0xff;
        assert!(matches!(
            decode(&crc, 4096, 32 << 10),
            Err(GzipError::Crc { .. })
        ));
        let mut len = gz.clone();
        len[n - 4] ^= 1;
        assert!(matches!(
            decode(&len, 4096, 32 << 10),
            Err(GzipError::Length { .. })
        ));
        let mut magic = gz.clone();
        magic[1] = 0x8c;
        assert_eq!(
            decode(&magic, 4096, 32 << 10),
            Err(GzipError::NotGzip { at: 0 })
        );
        let mut method = gz.clone();
        method[2] = 7;
        assert_eq!(
            decode(&method, 4096, 32 << 10),
            Err(GzipError::Method { method: 7 })
        );
        let mut flags = gz.clone();
        flags[3] = 0x20;
        assert_eq!(
            decode(&flags, 4096, 32 << 10),
            Err(GzipError::ReservedFlags { flags: 0x20 })
        );
        // Flipped bits in the deflate data: an error, never a panic, and
        // never a silent success.
        for i in (10..n - 8).step_by(97) {
            let mut d = gz.clone();
            d[i] ^= 0x5a;
            assert!(decode(&d, 4096, 32 << 10).is_err(), "flip at {i}");
        }
        let mut g = Gunzip::new();
        assert_eq!(g.step(&gz, &mut [0u8; 1000]), Err(GzipError::Window));
        assert_eq!(
            g.step(&gz, &mut vec![0u8; 48 << 10]),
            Err(GzipError::Window)
        );
    }

    #[test]
    fn long_zero_runs_fill_the_window_many_times() {
        // A disk image is mostly zeros: a tiny input expands to many windows.
        let data = vec![0u8; 5 << 20];
        let gz = gzip_cli(&data, &["-c", "-9", "-n"]);
        assert!(gz.len() < 10_000);
        assert!(decode(&gz, 1 << 20, 32 << 10).unwrap() == data);
    }
}
