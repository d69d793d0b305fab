//! Entry points shared by the fuzz targets (`fuzz/fuzz_targets/firmware_*`)
//! and the corpus replay test (`firmware/tests/fuzz_corpus.rs`): each feeds
//! arbitrary bytes to one parser and checks what must hold for any input.

use crate::{
    cmdline::Config,
    dhcp::{Client, Event},
    http::{Method, Response},
};
use core::fmt::Write;
use ze_hal::time::Instant;

/// A sink for `Display` output, to run the formatting code.
struct Discard;

impl Write for Discard {
    fn write_str(&mut self, _: &str) -> core::fmt::Result {
        Ok(())
    }
}

/// The kernel command line parser: never panics; an accepted line has a
/// server in HTTP mode and a port in range; errors display.
pub fn cmdline(data: &[u8]) {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(c) => {
            assert!(c.port != 0);
            assert!(c.source == crate::cmdline::Source::Iso || c.server.is_some());
            assert!(!c.image.is_empty() && !c.image.contains('/'));
        }
        Err(e) => {
            let _ = write!(Discard, "{e}");
        }
    }
}

/// The DHCP client fed an arbitrary reply after its DISCOVER (with the
/// transaction id patched in so the parser gets past the first check):
/// never panics; a lease, if any, has a usable address and prefix.
pub fn dhcp_offer(data: &[u8]) {
    let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let mut c = Client::new(mac, 0x5eed, Instant::from_millis(0));
    let mut buf = [0u8; crate::dhcp::MAX_MESSAGE];
    let _ = c.poll_transmit(Instant::from_millis(0), &mut buf);
    let mut copy = [0u8; 2048];
    let n = data.len().min(copy.len());
    copy[..n].copy_from_slice(&data[..n]);
    let msg = &mut copy[..n];
    if let Some(x) = msg.get_mut(4..8) {
        x.copy_from_slice(&c.xid().to_be_bytes());
    }
    c.handle(Instant::from_millis(1), msg);
    let _ = c.poll_transmit(Instant::from_millis(1), &mut buf);
    // The same bytes as the ACK.
    c.handle(Instant::from_millis(2), msg);
    if let Some(Event::Bound(lease)) = c.poll_event() {
        assert!(!lease.addr.is_unspecified());
        assert!(lease.prefix <= 32);
        assert!(lease.t1 <= lease.t2 && lease.t2 <= lease.duration);
    }
    // And the raw frame parser over the same bytes.
    let _ = crate::frame::unwrap(data);
}

/// The HTTP response parser fed the bytes in two pieces: never panics,
/// never returns more body than `Content-Length`, and success, head and
/// body do not depend on where the bytes were split.
pub fn http_head(data: &[u8]) {
    let split = data
        .first()
        .map(|&b| usize::from(b))
        .unwrap_or(0)
        .min(data.len());
    let (a, b) = data.split_at(split);
    let whole = run(&[data]);
    let pieces = run(&[a, b]);
    assert_eq!(whole.2, pieces.2, "success depends on how the bytes arrive");
    if whole.2.is_ok() {
        assert_eq!(whole.0, pieces.0, "head depends on how the bytes arrive");
        assert_eq!(whole.1, pieces.1);
    }
    if let Some(Some(len)) = whole.0.map(|h| h.content_length) {
        assert!(whole.1 as u64 <= len);
    }

    fn run(chunks: &[&[u8]]) -> (Option<crate::http::Head>, usize, Result<(), ()>) {
        let mut r = Response::new(Method::Get);
        let mut head = None;
        let mut body = 0usize;
        for c in chunks {
            match r.feed(c) {
                Ok(fed) => {
                    if fed.head.is_some() {
                        head = fed.head;
                    }
                    body += fed.body.len();
                }
                Err(_) => return (head, body, Err(())),
            }
        }
        (head, body, Ok(()))
    }
}

/// The gzip decoder of ISO installs (`gunzip`) over arbitrary bytes, fed
/// whole and in two pieces (split where the first byte says): never
/// panics, takes every byte it is given, the outcome does not depend on
/// how the bytes arrive, and neither do the output's length and CRC-32
/// when it succeeds (after an error, how much was handed out before it
/// depends on the chunking; the installer discards it all). Output is
/// capped at [`GUNZIP_CAP`] bytes so a "zip bomb" input stays fast.
pub fn gunzip(data: &[u8]) {
    let split = data
        .first()
        .map(|&b| usize::from(b) * 7)
        .unwrap_or(0)
        .min(data.len());
    let (a, b) = data.split_at(split);
    let whole = run(&[data]);
    let pieces = run(&[a, b]);
    assert_eq!(
        whole.0, pieces.0,
        "the result depends on how the bytes arrive"
    );
    if whole.0.is_ok() {
        assert_eq!(whole, pieces, "the output depends on how the bytes arrive");
    }

    fn run(chunks: &[&[u8]]) -> (Result<(), crate::gunzip::GzipError>, u64, u32) {
        let mut g = crate::gunzip::Gunzip::new();
        let mut window = [0u8; crate::gunzip::MIN_WINDOW];
        let mut crc = crc32fast::Hasher::new();
        let mut out = 0u64;
        for chunk in chunks {
            let mut at = 0;
            loop {
                let step = match g.step(chunk.get(at..).unwrap_or_default(), &mut window) {
                    Ok(s) => s,
                    Err(e) => return (Err(e), out, crc.finalize()),
                };
                at += step.consumed;
                let produced = window.get(step.produced.clone()).unwrap_or_default();
                crc.update(produced);
                out += produced.len() as u64;
                if out > GUNZIP_CAP {
                    return (Ok(()), GUNZIP_CAP, 0);
                }
                if step.is_idle() {
                    break;
                }
            }
            assert_eq!(at, chunk.len(), "input left untaken");
        }
        assert_eq!(g.output_bytes(), out);
        (g.finish(), out, crc.finalize())
    }
}

/// The most output [`gunzip`] inflates per input.
pub const GUNZIP_CAP: u64 = 16 << 20;

/// The block map parser: never panics; an accepted map hands out exactly
/// its range count, in order, inside the image, adding up to its mapped
/// blocks; and writing it again gives a map that parses to the same.
pub fn bmap(data: &[u8]) {
    let map = match crate::bmap::Bmap::parse(data) {
        Ok(m) => m,
        Err(e) => {
            let _ = write!(Discard, "{e}");
            return;
        }
    };
    let mut n = 0usize;
    let mut blocks = 0u64;
    let mut next = 0u64;
    for r in map.ranges() {
        assert!(r.first >= next && r.last >= r.first && r.last < map.blocks_count);
        next = r.last + 1;
        blocks += r.last - r.first + 1;
        n += 1;
    }
    assert_eq!(n, map.range_count);
    assert_eq!(blocks, map.mapped_blocks);
    let mut out = FixedText::default();
    if crate::bmap::write(&mut out, map.image_size, map.block_size, map.ranges()).is_ok() {
        let len = out.len;
        let text = &mut out.buf[..len];
        assert!(crate::bmap::seal(text));
        let again = crate::bmap::Bmap::parse(text).expect("a written map parses");
        assert_eq!(again.mapped_bytes, map.mapped_bytes);
        assert!(again.ranges().eq(map.ranges()));
    }
}

/// A fixed text buffer (the fuzz entry points run without a heap); a map
/// too long for it is simply not re-written.
struct FixedText {
    buf: [u8; 64 * 1024],
    len: usize,
}

impl Default for FixedText {
    fn default() -> Self {
        FixedText {
            buf: [0; 64 * 1024],
            len: 0,
        }
    }
}

impl Write for FixedText {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
