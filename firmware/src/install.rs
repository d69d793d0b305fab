//! The install's stages, constants and failures, and the rules that make
//! it impossible to leave a disk that boots but is incomplete (spec
//! "Installer Initrd", checklist I17, W8).
//!
//! ```text
//! HTTP (ze.source=http):
//! network → probe → disk → block map (ze.bmap-sha256) → disarm (zero the
//!   first MiB) → the mapped ranges (holes zeroed) or the whole stream,
//!   first MiB held back → verify → fsync → partition 4 from the held-back
//!   table (BLKPG) → mount /perm (ext4) → ze/database.zefs (tmp + fsync +
//!   rename + fsync dir) → unmount → sync → write the first MiB → fsync
//!   → reboot
//!
//! ISO (ze.source=iso):
//! find the media by ze.media-id → block map and mapped data (or the
//!   whole gzip'd image) → disk (media excluded, no guessing) → disarm
//!   → inflate onto the disk, first MiB held back → verify → fsync
//!   → write the first MiB → fsync → power off (the image already carries
//!   /perm/ze/database.zefs)
//! ```
//!
//! Any failure after the disk was opened zeroes the first MiB again, so the
//! disk carries no partition table and never boots a partial image. The
//! writing itself is `run::target::write_guarded`, the only code that
//! opens a target disk. [`Fatal`] is every way the install can stop,
//! worded for the one-line `[ze-install] FATAL: <why>`.

use crate::{
    cmdline::{CmdlineError, MAX_IMAGE_NAME},
    disk::{DiskError, MAX_PATH},
    gunzip::GzipError,
    http::FetchError,
    iso9660,
    net::ProbeResult,
};
use core::{fmt, ops::Range, time::Duration};
use ze_hal::Error;

/// The bytes at the start of the disk held back until the image is
/// verified: GPT header and partition entries, boot code.
pub const HEAD_LEN: usize = 1 << 20;
/// Read/write chunk of the download pipeline.
pub const IO_CHUNK: usize = 256 * 1024;
/// How long to wait for the partition-4 device node.
pub const PARTITION_WAIT: Duration = Duration::from_secs(10);
/// How often the node is looked for.
pub const PARTITION_POLL: Duration = Duration::from_millis(100);
/// How long disks may take to appear after boot.
pub const DISK_WAIT: Duration = Duration::from_secs(5);
/// The partition holding `/perm`.
pub const PERM_PARTITION: u8 = 4;
/// Where `/perm` is mounted.
pub const PERM: &str = "/perm";
/// The database's directory on `/perm`.
pub const ZE_DIR: &str = "/perm/ze";
/// The database's final path.
pub const ZEFS_PATH: &str = "/perm/ze/database.zefs";
/// The temporary file it is written to first.
pub const ZEFS_TMP: &str = "/perm/ze/.database.zefs.tmp";
/// The largest database accepted.
pub const MAX_ZEFS: u64 = 64 << 20;
/// URL path of the database.
pub const ZEFS_URL: &str = "/install/database.zefs";
/// URL directory of images.
pub const IMAGE_URL: &str = "/install/image/";

/// The longest path of a file on the installer media (`ze/<image>.gz`).
pub const MEDIA_PATH: usize = MAX_IMAGE_NAME + 8;

/// Why the install stopped.
#[derive(Debug, Clone)]
pub enum Fatal {
    /// The kernel command line is invalid.
    Cmdline(CmdlineError),
    /// `/proc/cmdline` could not be read.
    NoCmdline(Error),
    /// No block device carries the ISO named by `ze.media-id`.
    NoMedia {
        /// `ze.media-id`, as 32 hex digits.
        media_id: [u8; 32],
        /// Block devices looked at.
        checked: usize,
        /// How long they were looked for.
        waited: Duration,
    },
    /// A file on the installer media cannot be used.
    MediaFile {
        /// The media, `/dev/...`.
        device: heapless::String<MAX_PATH>,
        /// The file, `ze/<image>.gz`.
        path: heapless::String<MEDIA_PATH>,
        /// Why.
        error: iso9660::Error<Error>,
    },
    /// Reading the installer media failed.
    MediaRead {
        /// The media, `/dev/...`.
        device: heapless::String<MAX_PATH>,
        /// Byte offset on the device.
        at: u64,
        /// The error.
        error: Error,
    },
    /// The compressed image on the media is damaged.
    Gzip {
        /// The file, `ze/<image>.gz`.
        path: heapless::String<MEDIA_PATH>,
        /// Why.
        error: GzipError,
    },
    /// The image inflates to more than `limit` bytes.
    ImageTooLong {
        /// The limit.
        limit: u64,
        /// `ze.size` or the disk.
        what: &'static str,
    },
    /// No interface reached the server.
    Unreachable {
        /// The server.
        server: core::net::Ipv4Addr,
        /// Its port.
        port: u16,
        /// Probe attempts made.
        attempts: u32,
        /// What the last probe found.
        last: Option<ProbeResult>,
    },
    /// No interface got a DHCP lease and the kernel configured none.
    NoLease {
        /// Interfaces tried.
        tried: usize,
    },
    /// No disk could be chosen.
    Disk(DiskError),
    /// A disk operation failed.
    DiskIo {
        /// What was being done.
        what: &'static str,
        /// The error.
        error: Error,
    },
    /// The image does not fit the disk.
    TooLarge {
        /// Image bytes.
        image: u64,
        /// Disk bytes.
        disk: u64,
    },
    /// Downloading a file failed.
    Download {
        /// `image` or `database`.
        what: &'static str,
        /// Why.
        error: FetchError,
    },
    /// The image's size differs from `ze.size`.
    SizeMismatch {
        /// `ze.size`.
        expected: u64,
        /// What the server sent.
        got: u64,
    },
    /// The image's sha256 differs from `ze.sha256`.
    DigestMismatch {
        /// `ze.sha256`.
        expected: [u8; 32],
        /// What was computed.
        got: [u8; 32],
    },
    /// The partition-4 node never appeared.
    NoPartition {
        /// The node waited for.
        node: heapless::String<48>,
    },
    /// A filesystem operation on /perm failed.
    Perm {
        /// What was being done.
        what: &'static str,
        /// The error.
        error: Error,
    },
    /// The database is larger than [`MAX_ZEFS`].
    ZefsTooLarge(u64),
    /// The block map cannot be used: it lies or is not a bmap.
    Bmap(crate::bmap::BmapError),
    /// The block map's sha256 differs from `ze.bmap-sha256`.
    BmapDigest {
        /// `ze.bmap-sha256`.
        expected: [u8; 32],
        /// What was computed.
        got: [u8; 32],
    },
    /// A mapped range's bytes differ from the sha256 the map gives.
    RangeDigest {
        /// The range, 0-based.
        index: usize,
        /// Its first byte in the image.
        start: u64,
        /// Its end (exclusive).
        end: u64,
        /// The map's sha256.
        expected: [u8; 32],
        /// What arrived.
        got: [u8; 32],
    },
    /// The mapped data does not fit its block map.
    MapData {
        /// What is wrong.
        problem: &'static str,
        /// The image offset where it was noticed.
        at: u64,
    },
    /// The image's partition table cannot be used.
    Gpt(crate::gpt::GptError),
}

impl Fatal {
    /// A required kernel parameter is not there.
    pub fn missing(key: &'static str) -> Self {
        Fatal::Cmdline(CmdlineError {
            key,
            value: heapless::String::new(),
            problem: crate::cmdline::Problem::Missing,
        })
    }
}

/// Lower-case hex of a digest.
#[derive(Debug, Clone, Copy)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Cmdline(e) => write!(f, "{e}"),
            Fatal::NoCmdline(e) => write!(f, "cannot read /proc/cmdline: {e}"),
            Fatal::NoMedia {
                media_id,
                checked,
                waited,
            } => write!(
                f,
                "installer media not found: none of {checked} block devices holds the ISO with ze.media-id={} (looked for {} s); is the ISO attached?",
                core::str::from_utf8(media_id).unwrap_or("?"),
                waited.as_secs()
            ),
            Fatal::MediaFile {
                device,
                path,
                error,
            } => write!(
                f,
                "installer media {device}: /{path}: {error} (does ze.image match the ISO?)"
            ),
            Fatal::MediaRead { device, at, error } => write!(
                f,
                "installer media {device}: read failed at byte {at}: {error}; disk left unbootable"
            ),
            Fatal::Gzip { path, error } => write!(
                f,
                "/{path} on the installer media is damaged: {error}; disk left unbootable"
            ),
            Fatal::ImageTooLong { limit, what } => write!(
                f,
                "the image inflates to more than {limit} bytes ({what}); disk left unbootable"
            ),
            Fatal::Unreachable {
                server,
                port,
                attempts,
                last,
            } => {
                write!(
                    f,
                    "ze.server {server}:{port} unreachable after {attempts} attempts"
                )?;
                if let Some(last) = last {
                    write!(f, " ({last})")?;
                }
                f.write_str("; check ze.server/ze.port and the network")
            }
            Fatal::NoLease { tried } => write!(
                f,
                "no network: the kernel configured no route and DHCP got no lease on {tried} interface(s)"
            ),
            Fatal::Disk(e) => write!(f, "{e}"),
            Fatal::DiskIo { what, error } => write!(f, "disk: {what}: {error}"),
            Fatal::TooLarge { image, disk } => write!(
                f,
                "image is {image} bytes but the disk holds only {disk} bytes"
            ),
            Fatal::Download { what, error } => write!(f, "download of the {what} failed: {error}"),
            Fatal::SizeMismatch { expected, got } => write!(
                f,
                "image size {got} bytes differs from ze.size={expected}; disk left unbootable"
            ),
            Fatal::DigestMismatch { expected, got } => write!(
                f,
                "image sha256 {} differs from ze.sha256={}; disk left unbootable",
                Hex(got),
                Hex(expected)
            ),
            Fatal::NoPartition { node } => write!(
                f,
                "{node} did not appear within {} s after the kernel was told about partition 4 (BLKPG)",
                PARTITION_WAIT.as_secs()
            ),
            Fatal::Perm { what, error } => write!(f, "/perm: {what}: {error}"),
            Fatal::Bmap(e) => write!(f, "{e}; the disk was not touched"),
            Fatal::BmapDigest { expected, got } => write!(
                f,
                "block map sha256 {} differs from ze.bmap-sha256={}; the disk was not touched",
                Hex(got),
                Hex(expected)
            ),
            Fatal::RangeDigest {
                index,
                start,
                end,
                expected,
                got,
            } => write!(
                f,
                "image range {} (bytes {start}..{end}) has sha256 {}, the block map says {}; disk left unbootable",
                index + 1,
                Hex(got),
                Hex(expected)
            ),
            Fatal::MapData { problem, at } => {
                write!(
                    f,
                    "block map transfer: {problem} (at byte {at}); disk left unbootable"
                )
            }
            Fatal::Gpt(e) => write!(f, "{e}; disk left unbootable"),
            Fatal::ZefsTooLarge(n) => {
                write!(
                    f,
                    "database.zefs is {n} bytes, over the {MAX_ZEFS}-byte limit"
                )
            }
        }
    }
}

/// Where the bytes of one received chunk go: `head` is the part that
/// lands in the held-back first MiB (as a range of the chunk and the
/// offset inside the head buffer), `tail` the part written through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Chunk range copied into the head buffer, and its offset there.
    pub head: Option<(Range<usize>, usize)>,
    /// Chunk range written to the disk, and its disk offset.
    pub tail: Option<(Range<usize>, u64)>,
}

/// Split a chunk of `len` bytes that starts at image offset `offset`.
pub fn place(offset: u64, len: usize) -> Placement {
    let head_len = HEAD_LEN as u64;
    let end = offset.saturating_add(len as u64);
    let head = (offset < head_len).then(|| {
        let n = (head_len.min(end) - offset) as usize;
        (0..n, offset as usize)
    });
    let tail = (end > head_len).then(|| {
        let skip = head_len.saturating_sub(offset) as usize;
        (skip..len, offset.max(head_len))
    });
    Placement { head, tail }
}

/// Check the received image against `ze.size` and `ze.sha256`.
pub fn verify(
    expected_size: Option<u64>,
    expected_digest: Option<[u8; 32]>,
    got_size: u64,
    got_digest: [u8; 32],
) -> Result<(), Fatal> {
    if let Some(expected) = expected_size
        && expected != got_size
    {
        return Err(Fatal::SizeMismatch {
            expected,
            got: got_size,
        });
    }
    if let Some(expected) = expected_digest
        && !crate::recovery::digests_match(&expected, &got_digest)
    {
        return Err(Fatal::DigestMismatch {
            expected,
            got: got_digest,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    const M: u64 = HEAD_LEN as u64;

    #[test]
    fn i17_chunks_inside_the_first_mib_are_held_back() {
        assert_eq!(
            place(0, 4096),
            Placement {
                head: Some((0..4096, 0)),
                tail: None
            }
        );
        assert_eq!(
            place(M - 100, 300),
            Placement {
                head: Some((0..100, HEAD_LEN - 100)),
                tail: Some((100..300, M))
            }
        );
        assert_eq!(
            place(M, 10),
            Placement {
                head: None,
                tail: Some((0..10, M))
            }
        );
        assert_eq!(
            place(5 * M, 10),
            Placement {
                head: None,
                tail: Some((0..10, 5 * M))
            }
        );
        // A chunk exactly filling the head.
        assert_eq!(
            place(0, HEAD_LEN),
            Placement {
                head: Some((0..HEAD_LEN, 0)),
                tail: None
            }
        );
    }

    #[test]
    fn i17_every_byte_is_placed_exactly_once() {
        // Random-ish chunk sizes across the boundary.
        let mut offset = 0u64;
        let mut covered_head = 0usize;
        let mut covered_tail = 0u64;
        for i in 0..200u64 {
            let len = ((i * 7919) % 20_000 + 1) as usize;
            let p = place(offset, len);
            let h = p.head.as_ref().map(|(r, _)| r.len()).unwrap_or(0);
            let t = p.tail.as_ref().map(|(r, _)| r.len()).unwrap_or(0);
            assert_eq!(h + t, len);
            if let Some((r, at)) = &p.head {
                assert_eq!(*at, covered_head);
                covered_head += r.len();
            }
            if let Some((_, at)) = &p.tail {
                assert_eq!(*at, M + covered_tail);
                covered_tail += t as u64;
            }
            offset += len as u64;
        }
        assert_eq!(covered_head as u64 + covered_tail, offset);
    }

    #[test]
    fn i17_verify_size_and_digest() {
        let d = [7u8; 32];
        assert!(verify(None, None, 10, d).is_ok());
        assert!(verify(Some(10), Some(d), 10, d).is_ok());
        let e = verify(Some(11), None, 10, d).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image size 10 bytes differs from ze.size=11; disk left unbootable"
        );
        let mut other = d;
        other[0] = 8;
        let e = verify(None, Some(other), 10, d).unwrap_err();
        assert!(e.to_string().starts_with("image sha256 0707"));
        assert!(e.to_string().ends_with("; disk left unbootable"));
    }
}
