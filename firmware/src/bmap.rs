//! The block map of an image, in bmaptool's own format (bmap 2.0), so
//! that ze's images work with `bmaptool copy` and ze's installer works
//! with maps made by `bmaptool create` (checklist W1, W3, W6).
//!
//! ```text
//! <?xml version="1.0" ?>
//! <!-- comments anywhere between elements -->
//! <bmap version="2.0">
//!     <ImageSize> 2147483648 </ImageSize>         bytes
//!     <BlockSize> 4096 </BlockSize>               bytes, a power of two
//!     <BlocksCount> 524288 </BlocksCount>         ceil(ImageSize / BlockSize)
//!     <MappedBlocksCount> 2875 </MappedBlocksCount>
//!     <ChecksumType> sha256 </ChecksumType>
//!     <BmapFileChecksum> 64 hex </BmapFileChecksum>   sha256 of this file with
//!                                                      these 64 digits as '0'
//!     <BlockMap>
//!         <Range chksum="64 hex"> 0-255 </Range>  blocks first-last, inclusive
//!         <Range chksum="64 hex"> 1024 </Range>   a single block
//!     </BlockMap>
//! </bmap>
//! ```
//!
//! A range's `chksum` is the sha256 of its bytes; the last block of the
//! image may be short, and its range then ends at `ImageSize`.
//!
//! [`Bmap::parse`] is strict: the whole file is checked before any range
//! is handed out, and every way a map can lie is an error naming what is
//! wrong — not XML, truncated, too large, an unknown or repeated element,
//! a checksum type other than sha256, counts that disagree, ranges out of
//! order, overlapping or past the image, a range without its `chksum`,
//! and a `BmapFileChecksum` that does not match the file. The parser keeps
//! no copy of the ranges: [`Bmap::ranges`] reads them again from the
//! verified text, so a map of any length needs no memory beyond its text.
//!
//! [`write`] emits the same layout bmaptool does, comments included.

use core::fmt::{self, Write};
use sha2::{Digest as _, Sha256};

/// The largest map accepted: about 20,000 ranges.
pub const MAX_BMAP: usize = 2 << 20;
/// The smallest block size accepted (a sector).
pub const MIN_BLOCK_SIZE: u32 = 512;
/// The largest block size accepted.
pub const MAX_BLOCK_SIZE: u32 = 1 << 20;
/// The format version [`write`] emits.
pub const VERSION: &str = "2.0";
/// Hex digits of a sha256.
const HEX_LEN: usize = 64;

/// One mapped range: blocks `first..=last` and the sha256 of their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First block.
    pub first: u64,
    /// Last block, inclusive.
    pub last: u64,
    /// sha256 of the range's bytes.
    pub sha256: [u8; 32],
}

impl Range {
    /// Byte offset of the range in the image.
    pub fn start(&self, block_size: u32) -> u64 {
        self.first * u64::from(block_size)
    }

    /// Byte offset just past the range (the image's end for its last block).
    pub fn end(&self, block_size: u32, image_size: u64) -> u64 {
        (self.last + 1)
            .saturating_mul(u64::from(block_size))
            .min(image_size)
    }
}

/// What is wrong with a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmapError {
    /// Larger than [`MAX_BMAP`].
    TooLarge(usize),
    /// Not UTF-8, or not the XML subset bmap files are written in.
    NotXml {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// The file ends inside the document.
    Truncated,
    /// The root is not `<bmap version="…">`, or the version is not 2.x.
    Version,
    /// An element bmap 2.0 does not have.
    UnknownElement {
        /// Byte offset of the element.
        at: usize,
    },
    /// An element that appears more than once.
    Repeated(&'static str),
    /// A required element is missing.
    Missing(&'static str),
    /// An element's text is not a number (or out of range).
    BadNumber(&'static str),
    /// `ChecksumType` is not `sha256`.
    ChecksumType,
    /// `BlockSize` is not a power of two within the accepted bounds.
    BlockSize(u32),
    /// `BlocksCount` is not `ceil(ImageSize / BlockSize)`.
    BlocksCount {
        /// What the file says.
        said: u64,
        /// What the image size gives.
        computed: u64,
    },
    /// `MappedBlocksCount` differs from the blocks in the ranges.
    MappedCount {
        /// What the file says.
        said: u64,
        /// What the ranges add up to.
        counted: u64,
    },
    /// Range `index` (0-based) is not of the form `N` or `N-M` with N ≤ M.
    BadRange(usize),
    /// Range `index` starts before or inside the previous one.
    Unordered(usize),
    /// Range `index` ends past the image.
    PastEnd(usize),
    /// Range `index` has no `chksum`, or it is not 64 hex digits.
    RangeChecksum(usize),
    /// The `BmapFileChecksum` does not match the file.
    FileChecksum {
        /// The value in the file.
        said: [u8; 32],
        /// The sha256 of the file with that value zeroed.
        computed: [u8; 32],
    },
}

impl fmt::Display for BmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = crate::install::Hex;
        match self {
            BmapError::TooLarge(n) => {
                write!(f, "block map is {n} bytes, over the {MAX_BMAP}-byte limit")
            }
            BmapError::NotXml { at, expected } => {
                write!(f, "block map is not XML: at byte {at}: expected {expected}")
            }
            BmapError::Truncated => f.write_str("block map is truncated"),
            BmapError::Version => {
                f.write_str("block map is not <bmap version=\"2.x\"> (bmaptool's format 2.0)")
            }
            BmapError::UnknownElement { at } => {
                write!(f, "block map has an unknown element at byte {at}")
            }
            BmapError::Repeated(e) => write!(f, "block map has <{e}> more than once"),
            BmapError::Missing(e) => write!(f, "block map has no <{e}>"),
            BmapError::BadNumber(e) => write!(f, "block map: <{e}> is not a valid number"),
            BmapError::ChecksumType => {
                f.write_str("block map: <ChecksumType> is not sha256 (make it with bmaptool 3.x)")
            }
            BmapError::BlockSize(n) => write!(
                f,
                "block map: <BlockSize> {n} is not a power of two from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            ),
            BmapError::BlocksCount { said, computed } => write!(
                f,
                "block map: <BlocksCount> {said} does not fit <ImageSize> ({computed} blocks)"
            ),
            BmapError::MappedCount { said, counted } => write!(
                f,
                "block map: <MappedBlocksCount> {said} but the ranges hold {counted} blocks"
            ),
            BmapError::BadRange(i) => write!(f, "block map: range {} is malformed", i + 1),
            BmapError::Unordered(i) => write!(
                f,
                "block map: range {} starts before the end of the one before (ranges overlap or are out of order)",
                i + 1
            ),
            BmapError::PastEnd(i) => {
                write!(f, "block map: range {} ends past the image", i + 1)
            }
            BmapError::RangeChecksum(i) => write!(
                f,
                "block map: range {} has no sha256 chksum (64 hex digits)",
                i + 1
            ),
            BmapError::FileChecksum { said, computed } => write!(
                f,
                "block map: <BmapFileChecksum> {} does not match the file ({})",
                hex(said),
                hex(computed)
            ),
        }
    }
}

/// A parsed, fully checked block map over its text.
#[derive(Debug, Clone, Copy)]
pub struct Bmap<'a> {
    text: &'a str,
    /// `ImageSize`, bytes.
    pub image_size: u64,
    /// `BlockSize`, bytes.
    pub block_size: u32,
    /// `BlocksCount`.
    pub blocks_count: u64,
    /// `MappedBlocksCount`.
    pub mapped_blocks: u64,
    /// How many ranges there are.
    pub range_count: usize,
    /// The mapped bytes (the sum of the ranges, the short last block
    /// counted short).
    pub mapped_bytes: u64,
    /// Byte offset of the `<BlockMap>` content in the text.
    block_map_at: usize,
}

/// Tokens of the XML subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// `<Name attrs>`; `attrs` is the raw text after the name.
    Open { name: &'a str, attrs: &'a str },
    /// `</Name>`.
    Close(&'a str),
    /// Text between tags, untrimmed.
    Text(&'a str),
    /// End of input.
    End,
}

/// A cursor over the text that skips the declaration, comments and
/// whitespace-only text.
#[derive(Debug, Clone)]
struct Lexer<'a> {
    text: &'a str,
    at: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || b == b':'
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or("")
    }

    fn not_xml(&self, expected: &'static str) -> BmapError {
        BmapError::NotXml {
            at: self.at,
            expected,
        }
    }

    /// The next token: comments and the declaration are skipped.
    fn next(&mut self) -> Result<Token<'a>, BmapError> {
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return Ok(Token::End);
            }
            if !rest.starts_with('<') {
                let end = rest.find('<').unwrap_or(rest.len());
                let text = rest.get(..end).unwrap_or("");
                self.at += end;
                if text.contains('&') || text.contains('>') {
                    return Err(BmapError::NotXml {
                        at: self.at - end,
                        expected: "text without '&' or '>'",
                    });
                }
                return Ok(Token::Text(text));
            }
            if let Some(body) = rest.strip_prefix("<!--") {
                let end = body.find("-->").ok_or(BmapError::Truncated)?;
                if body.get(..end).is_some_and(|c| c.contains("--")) {
                    return Err(self.not_xml("a comment without '--' inside"));
                }
                self.at += 4 + end + 3;
                continue;
            }
            if let Some(body) = rest.strip_prefix("<?") {
                if self.at != 0 {
                    return Err(self.not_xml("the XML declaration only at the start"));
                }
                let end = body.find("?>").ok_or(BmapError::Truncated)?;
                self.at += 2 + end + 2;
                continue;
            }
            let close = rest.find('>').ok_or(BmapError::Truncated)?;
            let inner = rest.get(1..close).unwrap_or("");
            if let Some(name) = inner.strip_prefix('/') {
                let name = name.trim_end();
                if name.is_empty() || !name.bytes().all(is_name_byte) {
                    return Err(self.not_xml("a closing tag name"));
                }
                self.at += close + 1;
                return Ok(Token::Close(name));
            }
            if inner.ends_with('/') || inner.contains('<') {
                return Err(self.not_xml("an element tag"));
            }
            let name_len = inner.bytes().take_while(|&b| is_name_byte(b)).count();
            let (name, attrs) = inner.split_at(name_len);
            if name.is_empty() || !(attrs.is_empty() || attrs.starts_with([' ', '\t', '\r', '\n']))
            {
                return Err(self.not_xml("an element name"));
            }
            self.at += close + 1;
            return Ok(Token::Open { name, attrs });
        }
    }

    /// The next token that is not whitespace-only text.
    fn next_markup(&mut self) -> Result<Token<'a>, BmapError> {
        loop {
            match self.next()? {
                Token::Text(t) if t.trim().is_empty() => {}
                t => return Ok(t),
            }
        }
    }

    /// Text up to `</name>`; the element must hold nothing else.
    fn text_of(&mut self, name: &'a str) -> Result<&'a str, BmapError> {
        let mut text = "";
        loop {
            match self.next()? {
                Token::Text(t) => text = t,
                Token::Close(n) if n == name => return Ok(text),
                Token::End => return Err(BmapError::Truncated),
                _ => return Err(self.not_xml("the end of a text element")),
            }
        }
    }
}

/// The value of attribute `key` in an element's raw attribute text.
fn attribute<'a>(attrs: &'a str, key: &str) -> Result<Option<&'a str>, ()> {
    let mut rest = attrs.trim_start();
    let mut found = None;
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(())?;
        let name = rest.get(..eq).unwrap_or("").trim_end();
        let after = rest.get(eq + 1..).unwrap_or("").trim_start();
        let quote = after.chars().next().ok_or(())?;
        if quote != '"' && quote != '\'' {
            return Err(());
        }
        let value_and_rest = after.get(1..).unwrap_or("");
        let end = value_and_rest.find(quote).ok_or(())?;
        let value = value_and_rest.get(..end).unwrap_or("");
        if name.is_empty() || !name.bytes().all(is_name_byte) || value.contains(['<', '&']) {
            return Err(());
        }
        if name == key {
            if found.is_some() {
                return Err(());
            }
            found = Some(value);
        }
        rest = value_and_rest.get(end + 1..).unwrap_or("").trim_start();
    }
    Ok(found)
}

fn number(text: &str, what: &'static str) -> Result<u64, BmapError> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BmapError::BadNumber(what));
    }
    t.parse().map_err(|_| BmapError::BadNumber(what))
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    if t.len() != HEX_LEN {
        return None;
    }
    crate::cmdline::parse_hex::<32>(t)
}

/// One `<Range>` read from the lexer positioned just after its open tag.
fn range_body<'a>(lex: &mut Lexer<'a>, attrs: &'a str, index: usize) -> Result<Range, BmapError> {
    let text = lex.text_of("Range")?;
    let sha = attribute(attrs, "chksum")
        .map_err(|()| BmapError::BadRange(index))?
        .and_then(hex32)
        .ok_or(BmapError::RangeChecksum(index))?;
    let t = text.trim();
    let (a, b) = match t.split_once('-') {
        Some((a, b)) => (a, b),
        None => (t, t),
    };
    let first = number(a, "Range").map_err(|_| BmapError::BadRange(index))?;
    let last = number(b, "Range").map_err(|_| BmapError::BadRange(index))?;
    if last < first {
        return Err(BmapError::BadRange(index));
    }
    Ok(Range {
        first,
        last,
        sha256: sha,
    })
}

/// The sha256 of `text` with the `BmapFileChecksum` digits at `at..at+64`
/// read as `'0'`s.
fn file_digest(text: &[u8], at: usize) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(text.get(..at).unwrap_or_default());
    h.update([b'0'; HEX_LEN]);
    h.update(text.get(at + HEX_LEN..).unwrap_or_default());
    h.finalize().into()
}

impl<'a> Bmap<'a> {
    /// Parse and check a whole map.
    pub fn parse(bytes: &'a [u8]) -> Result<Bmap<'a>, BmapError> {
        if bytes.len() > MAX_BMAP {
            return Err(BmapError::TooLarge(bytes.len()));
        }
        let text = core::str::from_utf8(bytes).map_err(|e| BmapError::NotXml {
            at: e.valid_up_to(),
            expected: "UTF-8 text",
        })?;
        let mut lex = Lexer { text, at: 0 };
        match lex.next_markup()? {
            Token::Open {
                name: "bmap",
                attrs,
            } => {
                let v = attribute(attrs, "version")
                    .map_err(|()| BmapError::Version)?
                    .ok_or(BmapError::Version)?;
                let (major, minor) = v.split_once('.').ok_or(BmapError::Version)?;
                let ok = (major == "2" && number(minor, "version").is_ok())
                    || (major == "1" && minor == "4");
                if !ok {
                    return Err(BmapError::Version);
                }
            }
            Token::End => return Err(BmapError::Truncated),
            _ => return Err(BmapError::Version),
        }
        let mut image_size = None;
        let mut block_size = None;
        let mut blocks_count = None;
        let mut mapped = None;
        let mut checksum_type = None;
        let mut file_sum: Option<(usize, [u8; 32])> = None;
        let mut block_map: Option<(usize, usize, u64, u64)> = None;
        loop {
            let at = lex.at;
            let (name, attrs) = match lex.next_markup()? {
                Token::Open { name, attrs } => (name, attrs),
                Token::Close("bmap") => break,
                Token::End => return Err(BmapError::Truncated),
                _ => return Err(lex.not_xml("an element or </bmap>")),
            };
            let slot: &'static str = match name {
                "ImageSize" => "ImageSize",
                "BlockSize" => "BlockSize",
                "BlocksCount" => "BlocksCount",
                "MappedBlocksCount" => "MappedBlocksCount",
                "ChecksumType" => "ChecksumType",
                "BmapFileChecksum" => "BmapFileChecksum",
                "BlockMap" => "BlockMap",
                _ => return Err(BmapError::UnknownElement { at }),
            };
            if !attrs.trim().is_empty() {
                return Err(BmapError::NotXml {
                    at,
                    expected: "an element without attributes",
                });
            }
            let seen = match slot {
                "ImageSize" => image_size.is_some(),
                "BlockSize" => block_size.is_some(),
                "BlocksCount" => blocks_count.is_some(),
                "MappedBlocksCount" => mapped.is_some(),
                "ChecksumType" => checksum_type.is_some(),
                "BmapFileChecksum" => file_sum.is_some(),
                _ => block_map.is_some(),
            };
            if seen {
                return Err(BmapError::Repeated(slot));
            }
            if slot == "BlockMap" {
                let start = lex.at;
                let (count, blocks) = Self::scan_ranges(&mut lex)?;
                block_map = Some((start, count, blocks, 0));
                continue;
            }
            let value_at = lex.at;
            let value = lex.text_of(name)?;
            match slot {
                "ImageSize" => image_size = Some(number(value, slot)?),
                "BlockSize" => {
                    let n = number(value, slot)?;
                    block_size = Some(u32::try_from(n).map_err(|_| BmapError::BadNumber(slot))?);
                }
                "BlocksCount" => blocks_count = Some(number(value, slot)?),
                "MappedBlocksCount" => mapped = Some(number(value, slot)?),
                "ChecksumType" => checksum_type = Some(value.trim()),
                _ => {
                    let lead = value.len() - value.trim_start().len();
                    let sum = hex32(value).ok_or(BmapError::BadNumber(slot))?;
                    file_sum = Some((value_at + lead, sum));
                }
            }
        }
        // Nothing but comments and whitespace may follow the root.
        match lex.next_markup()? {
            Token::End => {}
            _ => return Err(lex.not_xml("nothing after </bmap>")),
        }
        let image_size = image_size.ok_or(BmapError::Missing("ImageSize"))?;
        let block_size = block_size.ok_or(BmapError::Missing("BlockSize"))?;
        let blocks_count = blocks_count.ok_or(BmapError::Missing("BlocksCount"))?;
        let mapped_blocks = mapped.ok_or(BmapError::Missing("MappedBlocksCount"))?;
        let checksum_type = checksum_type.ok_or(BmapError::Missing("ChecksumType"))?;
        let (sum_at, said) = file_sum.ok_or(BmapError::Missing("BmapFileChecksum"))?;
        let (block_map_at, range_count, counted, _) =
            block_map.ok_or(BmapError::Missing("BlockMap"))?;
        if !checksum_type.eq_ignore_ascii_case("sha256") {
            return Err(BmapError::ChecksumType);
        }
        if !block_size.is_power_of_two() || !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
        {
            return Err(BmapError::BlockSize(block_size));
        }
        if image_size == 0 {
            return Err(BmapError::BadNumber("ImageSize"));
        }
        let computed = image_size.div_ceil(u64::from(block_size));
        if blocks_count != computed {
            return Err(BmapError::BlocksCount {
                said: blocks_count,
                computed,
            });
        }
        if counted != mapped_blocks {
            return Err(BmapError::MappedCount {
                said: mapped_blocks,
                counted,
            });
        }
        let computed = file_digest(bytes, sum_at);
        if !crate::recovery::digests_match(&said, &computed) {
            return Err(BmapError::FileChecksum { said, computed });
        }
        let mut map = Bmap {
            text,
            image_size,
            block_size,
            blocks_count,
            mapped_blocks,
            range_count,
            mapped_bytes: 0,
            block_map_at,
        };
        // Ranges were checked for order; now against the image's end.
        let mut bytes_mapped = 0u64;
        for (i, r) in map.ranges().enumerate() {
            if r.last >= blocks_count {
                return Err(BmapError::PastEnd(i));
            }
            bytes_mapped += r.end(block_size, image_size) - r.start(block_size);
        }
        map.mapped_bytes = bytes_mapped;
        Ok(map)
    }

    /// Read every range of `<BlockMap>` up to `</BlockMap>`, checking
    /// form and order; returns how many there are and their blocks.
    fn scan_ranges(lex: &mut Lexer<'a>) -> Result<(usize, u64), BmapError> {
        let mut count = 0usize;
        let mut blocks = 0u64;
        let mut next_free: Option<u64> = None;
        loop {
            match lex.next_markup()? {
                Token::Open {
                    name: "Range",
                    attrs,
                } => {
                    let r = range_body(lex, attrs, count)?;
                    if next_free.is_some_and(|n| r.first < n) {
                        return Err(BmapError::Unordered(count));
                    }
                    next_free = Some(r.last.saturating_add(1));
                    blocks = blocks.saturating_add(r.last - r.first + 1);
                    count += 1;
                }
                Token::Close("BlockMap") => return Ok((count, blocks)),
                Token::End => return Err(BmapError::Truncated),
                Token::Open { .. } => return Err(BmapError::UnknownElement { at: lex.at }),
                _ => return Err(lex.not_xml("<Range> or </BlockMap>")),
            }
        }
    }

    /// The ranges, in order. The text was checked by [`Bmap::parse`], so
    /// this yields exactly [`Bmap::range_count`] ranges.
    pub fn ranges(&self) -> Ranges<'a> {
        Ranges {
            lex: Lexer {
                text: self.text,
                at: self.block_map_at,
            },
            index: 0,
        }
    }

    /// The bytes of the map's text (what `ze.bmap-sha256` is taken over).
    pub fn text(&self) -> &'a str {
        self.text
    }
}

/// The ranges of a checked [`Bmap`].
#[derive(Debug, Clone)]
pub struct Ranges<'a> {
    lex: Lexer<'a>,
    index: usize,
}

impl Iterator for Ranges<'_> {
    type Item = Range;

    fn next(&mut self) -> Option<Range> {
        match self.lex.next_markup().ok()? {
            Token::Open {
                name: "Range",
                attrs,
            } => {
                let r = range_body(&mut self.lex, attrs, self.index).ok()?;
                self.index += 1;
                Some(r)
            }
            _ => None,
        }
    }
}

/// `2.0 GiB`: bmaptool's human-readable size, for the comments.
#[derive(Debug, Clone, Copy)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n == 1 {
            return f.write_str("1 byte");
        }
        if n < 512 {
            return write!(f, "{n} bytes");
        }
        // One decimal, rounded, as Python's "%.1f".
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut div = 1024u128;
        for unit in units {
            let tenths = (u128::from(n) * 10 + div / 2) / div;
            if u128::from(n) < div * 1024 || unit == "PiB" {
                return write!(f, "{}.{} {unit}", tenths / 10, tenths % 10);
            }
            div *= 1024;
        }
        Ok(())
    }
}

/// Write a map for an image of `image_size` bytes in `block_size` blocks
/// with `ranges` (in order, not overlapping), in bmaptool's layout, with
/// its `BmapFileChecksum` as 64 `'0'`s; [`seal`] fills it in.
pub fn write<W: Write>(
    out: &mut W,
    image_size: u64,
    block_size: u32,
    ranges: impl Iterator<Item = Range> + Clone,
) -> fmt::Result {
    let blocks = image_size.div_ceil(u64::from(block_size));
    let mapped: u64 = ranges.clone().map(|r| r.last - r.first + 1).sum();
    let mapped_bytes: u64 = ranges
        .clone()
        .map(|r| r.end(block_size, image_size) - r.start(block_size))
        .sum();
    // Tenths of a percent, rounded as bmaptool's "%.1f" does.
    let tenths = (u128::from(mapped) * 2000 + u128::from(blocks))
        .checked_div(2 * u128::from(blocks))
        .unwrap_or(0);
    out.write_str(concat!(
        "<?xml version=\"1.0\" ?>\n",
        "<!-- This file contains the block map for an image file: the blocks\n",
        "     that hold data (partition tables, file-system metadata, files).\n",
        "     Only these have to be copied to the target device; the others are\n",
        "     holes. It is in the format of bmaptool (bmap-tools), so\n",
        "     `bmaptool copy` can use it, and ze's installer reads it.\n",
        "\n",
        "     The 'version' attribute is the block map file format version in the\n",
        "     'major.minor' format. -->\n",
        "\n"
    ))?;
    write!(
        out,
        "<bmap version=\"{VERSION}\">\n    <!-- Image size in bytes: {} -->\n    <ImageSize> {image_size} </ImageSize>\n\n",
        HumanSize(image_size)
    )?;
    write!(
        out,
        "    <!-- Size of a block in bytes -->\n    <BlockSize> {block_size} </BlockSize>\n\n"
    )?;
    write!(
        out,
        "    <!-- Count of blocks in the image file -->\n    <BlocksCount> {blocks} </BlocksCount>\n\n"
    )?;
    write!(
        out,
        "    <!-- Count of mapped blocks: {} or {}.{}% -->\n    <MappedBlocksCount> {mapped} </MappedBlocksCount>\n\n",
        HumanSize(mapped_bytes),
        tenths / 10,
        tenths % 10
    )?;
    out.write_str("    <!-- Type of checksum used in this file -->\n    <ChecksumType> sha256 </ChecksumType>\n\n")?;
    out.write_str(concat!(
        "    <!-- The checksum of this bmap file. When it is calculated, the value of\n",
        "         the checksum has be zero (all ASCII \"0\" symbols).  -->\n",
        "    <BmapFileChecksum> "
    ))?;
    out.write_str(core::str::from_utf8(&[b'0'; HEX_LEN]).unwrap_or_default())?;
    out.write_str(concat!(
        " </BmapFileChecksum>\n\n",
        "    <!-- The block map which consists of elements which may either be a\n",
        "         range of blocks or a single block. The 'chksum' attribute\n",
        "         (if present) is the checksum of this blocks range. -->\n",
        "    <BlockMap>\n"
    ))?;
    for r in ranges {
        write!(
            out,
            "        <Range chksum=\"{}\"> ",
            crate::install::Hex(&r.sha256)
        )?;
        if r.first == r.last {
            writeln!(out, "{} </Range>", r.first)?;
        } else {
            writeln!(out, "{}-{} </Range>", r.first, r.last)?;
        }
    }
    out.write_str("    </BlockMap>\n</bmap>\n")
}

/// Fill in the `BmapFileChecksum` of a map [`write`] produced; returns
/// `false` when the placeholder is not there.
pub fn seal(text: &mut [u8]) -> bool {
    const TAG: &[u8] = b"<BmapFileChecksum> ";
    let Some(at) = text
        .windows(TAG.len())
        .position(|w| w == TAG)
        .map(|p| p + TAG.len())
    else {
        return false;
    };
    if text.get(at..at + HEX_LEN) != Some(&[b'0'; HEX_LEN][..]) {
        return false;
    }
    let digest = file_digest(text, at);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in digest.iter().enumerate() {
        if let Some(pair) = text.get_mut(at + 2 * i..at + 2 * i + 2) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0xf)];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{string::String, vec::Vec};

    /// `bmaptool create` (bmap-tools 3.6, Debian 12) of a 1 MiB + 100 byte
    /// file with data in blocks 0, 2-3 and the short last block.
    const BMAPTOOL: &[u8] = include_bytes!("../tests/data/bmaptool-3.6.bmap");

    fn ours(ranges: &[(u64, u64)], image_size: u64) -> Vec<u8> {
        let list: Vec<Range> = ranges
            .iter()
            .map(|&(first, last)| Range {
                first,
                last,
                sha256: [0xab; 32],
            })
            .collect();
        let mut s = String::new();
        write(&mut s, image_size, 4096, list.iter().copied()).unwrap();
        let mut b = s.into_bytes();
        assert!(seal(&mut b));
        b
    }

    /// Replace `from` by `to` in a map and fix its file checksum, so the
    /// edit is the only lie.
    fn edited(map: &[u8], from: &str, to: &str) -> Vec<u8> {
        let text = core::str::from_utf8(map).unwrap();
        assert!(text.contains(from), "{from}");
        let mut t = text.replacen(from, to, 1);
        let at = t.find("<BmapFileChecksum> ").unwrap() + 19;
        t.replace_range(at..at + 64, &"0".repeat(64));
        let mut b = t.into_bytes();
        assert!(seal(&mut b));
        b
    }

    #[test]
    fn w3_bmaptools_own_output_parses() {
        let m = Bmap::parse(BMAPTOOL).unwrap();
        assert_eq!(m.block_size, 4096);
        assert_eq!(m.image_size, 1_048_676);
        assert_eq!(m.blocks_count, 257);
        let r: Vec<Range> = m.ranges().collect();
        assert_eq!(r.len(), m.range_count);
        assert_eq!(
            r.iter().map(|r| (r.first, r.last)).collect::<Vec<_>>(),
            [(0, 0), (2, 3), (256, 256)]
        );
        assert_eq!(m.mapped_blocks, 4);
        // The last block holds 100 bytes of the image.
        assert_eq!(m.mapped_bytes, 3 * 4096 + 100);
        assert_eq!(r[2].end(m.block_size, m.image_size), 1_048_676);
    }

    #[test]
    fn w1_our_output_round_trips() {
        let b = ours(&[(0, 255), (300, 300), (1000, 1023)], 4 << 20);
        let m = Bmap::parse(&b).unwrap();
        assert_eq!(m.mapped_blocks, 256 + 1 + 24);
        assert_eq!(m.mapped_bytes, (256 + 1 + 24) * 4096);
        assert_eq!(
            m.ranges().map(|r| (r.first, r.last)).collect::<Vec<_>>(),
            [(0, 255), (300, 300), (1000, 1023)]
        );
        let text = core::str::from_utf8(&b).unwrap();
        assert!(text.contains("<!-- Image size in bytes: 4.0 MiB -->"));
        assert!(text.contains("<!-- Count of mapped blocks: 1.1 MiB or 27.4% -->"));
        // bmaptool rounds the percentage: 844 of 98304 blocks is 0.9%.
        let many: Vec<(u64, u64)> = vec![(0, 843)];
        let t = String::from_utf8(ours(&many, 402_653_184)).unwrap();
        assert!(t.contains(" or 0.9% -->"), "{t}");
        // No ranges at all is a valid (empty) image map.
        assert_eq!(Bmap::parse(&ours(&[], 8192)).unwrap().mapped_bytes, 0);
    }

    #[test]
    fn w6_every_lie_is_an_error_that_says_what() {
        let good = ours(&[(0, 1), (10, 20)], 1 << 20);
        let cases: &[(&str, &str, BmapError)] = &[
            ("> 10-20 <", "> 1-20 <", BmapError::Unordered(1)),
            ("> 10-20 <", "> 0-0 <", BmapError::Unordered(1)),
            ("> 10-20 <", "> 250-260 <", BmapError::PastEnd(1)),
            ("> 10-20 <", "> 20-10 <", BmapError::BadRange(1)),
            ("> 10-20 <", "> x <", BmapError::BadRange(1)),
            (
                "<MappedBlocksCount> 13 <",
                "<MappedBlocksCount> 14 <",
                BmapError::MappedCount {
                    said: 14,
                    counted: 13,
                },
            ),
            (
                "<BlocksCount> 256 <",
                "<BlocksCount> 255 <",
                BmapError::BlocksCount {
                    said: 255,
                    computed: 256,
                },
            ),
            ("> sha256 <", "> sha1 <", BmapError::ChecksumType),
            (
                "<BlockSize> 4096 <",
                "<BlockSize> 4000 <",
                BmapError::BlockSize(4000),
            ),
            ("version=\"2.0\"", "version=\"3.0\"", BmapError::Version),
            (
                "chksum=\"abab",
                "chksum=\"zzab",
                BmapError::RangeChecksum(0),
            ),
            (
                "<Range chksum=\"",
                "<Range x=\"1\" sum=\"",
                BmapError::RangeChecksum(0),
            ),
            (
                "<ImageSize>",
                "<ImageSize>x",
                BmapError::BadNumber("ImageSize"),
            ),
        ];
        for (from, to, want) in cases {
            let bad = edited(&good, from, to);
            assert_eq!(Bmap::parse(&bad).unwrap_err(), *want, "{from} → {to}");
        }
        // A changed byte anywhere without a new file checksum.
        let mut tampered = good.clone();
        let at = tampered.windows(8).position(|w| w == b"chksum=\"").unwrap();
        tampered[at + 8] = b'c';
        assert!(matches!(
            Bmap::parse(&tampered),
            Err(BmapError::FileChecksum { .. })
        ));
        // Truncated anywhere.
        for n in [0, 10, good.len() / 2, good.len() - 8] {
            let e = Bmap::parse(&good[..n]).unwrap_err();
            assert!(
                matches!(
                    e,
                    BmapError::Truncated | BmapError::NotXml { .. } | BmapError::Version
                ),
                "{n}: {e:?}"
            );
        }
        // Not XML at all, and too large.
        assert!(Bmap::parse(b"\x89PNG\r\n").is_err());
        assert_eq!(
            Bmap::parse(&std::vec![b' '; MAX_BMAP + 1]).unwrap_err(),
            BmapError::TooLarge(MAX_BMAP + 1)
        );
        // Repeated and unknown elements, and junk after the root.
        let twice = edited(
            &good,
            "<ImageSize>",
            "<ImageSize> 1 </ImageSize><ImageSize>",
        );
        assert!(matches!(
            Bmap::parse(&twice),
            Err(BmapError::Repeated("ImageSize") | BmapError::BadNumber(_))
        ));
        let unknown = edited(&good, "<BlockMap>", "<Extra> 1 </Extra><BlockMap>");
        assert!(matches!(
            Bmap::parse(&unknown),
            Err(BmapError::UnknownElement { .. })
        ));
        let after = edited(&good, "</bmap>", "</bmap><bmap>");
        assert!(matches!(Bmap::parse(&after), Err(BmapError::NotXml { .. })));
        let entity = edited(&good, "> 10-20 <", "> 10&#45;20 <");
        assert!(matches!(
            Bmap::parse(&entity),
            Err(BmapError::NotXml { .. })
        ));
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            std::format!("{}", BmapError::Unordered(4)),
            "block map: range 5 starts before the end of the one before (ranges overlap or are out of order)"
        );
        assert_eq!(
            std::format!("{}", BmapError::PastEnd(0)),
            "block map: range 1 ends past the image"
        );
    }

    #[test]
    fn human_sizes_as_bmaptool_prints_them() {
        let h = |n| std::format!("{}", HumanSize(n));
        assert_eq!(h(1), "1 byte");
        assert_eq!(h(511), "511 bytes");
        assert_eq!(h(512), "0.5 KiB");
        assert_eq!(h(2 << 30), "2.0 GiB");
        assert_eq!(h(11_700_000), "11.2 MiB");
    }
}
