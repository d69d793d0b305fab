//! The ISO install (spec "Appliance ISO Install", checklist O1–O5, W7):
//! find the installer media by its media id, choose the disk with the media
//! excluded and without guessing, then write the image through
//! [`target::write_guarded`], first MiB last: with `ze.bmap-sha256`, the
//! block map `/ze/<ze.image>.bmap` and only the mapped bytes,
//! `/ze/<ze.image>.data.gz`, each range checked against the map and the
//! holes zeroed on the disk; without it (older ISOs), the whole image
//! `/ze/<ze.image>.gz` checked against `ze.sha256`. Both are inflated by
//! [`crate::gunzip`] as they are read. No network, and no database
//! download: the image already carries `/perm/ze/database.zefs`. The
//! caller powers the machine off.
//!
//! The media is read straight from its block device with the installer's
//! own ISO 9660 reader ([`crate::iso9660`]) rather than mounted: no kernel
//! filesystem code runs over a volume before its media id matched, nothing
//! has to be unmounted on any path, and the compressed image is read once,
//! in order, in large reads. The installer kernel keeps `ISO9660_FS` for
//! people who want to look at the media from elsewhere; the installer does
//! not need it.
//!
//! Which devices are searched: every whole disk in `/sys/block` with a
//! medium, optical drives (`sr*`) and removable or read-only ones included
//! (a USB stick written with `dd` carries the volume on the whole disk),
//! except virtual devices (`loop`, `ram`, `zram`, `dm-`, `md`), floppies and
//! `mtdblock`. Every device carrying the media id is excluded from the
//! targets.

use super::{
    download::Sink,
    image::{self, MapWriter, Stream},
    isofile,
    target::{self, Buffers},
};
use crate::{
    bmap::{Bmap, BmapError},
    cmdline::{self, Config, Digest},
    console::say,
    disk::{self, Mode},
    gunzip::{self, Gunzip},
    install::{self, Fatal, Hex, IO_CHUNK, MEDIA_PATH},
    iso9660::{self, Entry, SECTOR_SIZE, SectorRead, Volume},
};
use core::time::Duration;
use heapless::{String, Vec};
use ze_hal::{
    Error,
    block::{self, BlockFacts, MAX_BLOCK_DEVICES, MAX_DEVICE_NAME},
    os::{BlockRead, Os},
};

/// How long the media may take to appear (USB enumeration, a CD drive
/// spinning up).
pub const MEDIA_WAIT: Duration = Duration::from_secs(20);
/// How often `/sys/block` is looked at again while waiting.
pub const MEDIA_POLL: Duration = Duration::from_millis(500);
/// The most devices carrying the media that are remembered (and excluded).
pub const MAX_MEDIA: usize = 4;
/// Kernel name prefixes never searched for the media.
pub const NOT_MEDIA: [&str; 7] = ["loop", "ram", "zram", "dm-", "md", "fd", "mtdblock"];
/// The largest `/ze/<image>.sha256` read.
pub const MAX_SHA256_FILE: usize = 512;

// The pipeline splits the I/O buffer into compressed input and the
// inflate window, which must be a power of two of at least 32 KiB.
const _: () = assert!(
    (install::IO_CHUNK / 2).is_power_of_two() && install::IO_CHUNK / 2 >= gunzip::MIN_WINDOW
);

/// What a block device holds, as far as the media search cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// An ISO 9660 volume with our media id.
    Ours,
    /// An ISO 9660 volume with another media id.
    OtherId([u8; iso9660::MEDIA_ID_LEN]),
    /// An ISO 9660 volume without a usable `/ze/media-id`.
    NoId,
    /// No ISO 9660 volume.
    NotIso,
    /// The device could not be read.
    Unreadable(Error),
}

/// 2048-byte blocks of a read-only block device, for [`iso9660`].
#[derive(Debug)]
pub struct Sectors<'a, M: BlockRead>(pub &'a mut M);

impl<M: BlockRead> SectorRead for Sectors<'_, M> {
    type Error = Error;
    fn read_sector(&mut self, lba: u32, buf: &mut [u8; SECTOR_SIZE]) -> Result<(), Error> {
        let n = self.0.read_at(u64::from(lba) * SECTOR_SIZE as u64, buf)?;
        if n < SECTOR_SIZE {
            return Err(Error::EndOfDevice);
        }
        Ok(())
    }
}

/// `ze.media-id` as the 32 lowercase hex digits stored on the volume.
pub fn media_id_hex(id: &[u8; 16]) -> [u8; iso9660::MEDIA_ID_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; iso9660::MEDIA_ID_LEN];
    for (pair, b) in out.chunks_exact_mut(2).zip(id) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// Whether `media` carries the ISO with media id `want`.
pub fn probe<M: BlockRead>(media: &mut M, want: &[u8; iso9660::MEDIA_ID_LEN]) -> Probe {
    match iso9660::read_media_id(&mut Sectors(media)) {
        Ok(id) if id == *want => Probe::Ours,
        Ok(id) => Probe::OtherId(id),
        Err(iso9660::Error::NotIso9660)
        | Err(iso9660::Error::Io {
            error: Error::EndOfDevice,
            ..
        }) => Probe::NotIso,
        Err(iso9660::Error::Io { error, .. }) => Probe::Unreadable(error),
        Err(_) => Probe::NoId,
    }
}

/// Whether `facts` may hold the media.
pub fn searched(facts: &BlockFacts) -> bool {
    facts.sectors > 0 && !NOT_MEDIA.iter().any(|p| facts.name.starts_with(p))
}

fn text(bytes: &[u8]) -> &str {
    core::str::from_utf8(bytes).unwrap_or("?")
}

pub(crate) fn say_probe<O: Os>(
    os: &mut O,
    path: &str,
    p: &Probe,
    want: &[u8; iso9660::MEDIA_ID_LEN],
) {
    match p {
        Probe::Ours => say!(
            os,
            "installer media: {path} (ISO 9660, media id {})",
            text(want)
        ),
        Probe::OtherId(id) => say!(
            os,
            "media: {path}: an ISO with media id {}, not ze.media-id={}; ignored",
            text(id),
            text(want)
        ),
        Probe::NoId => say!(
            os,
            "media: {path}: an ISO 9660 volume without a ze media id; ignored"
        ),
        Probe::NotIso => say!(os, "media: {path}: not an ISO 9660 volume"),
        Probe::Unreadable(e) => say!(os, "media: {path}: cannot read: {e}"),
    }
}

/// Where the installer media was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// The kernel names of every whole disk carrying it: never a target.
    pub sources: Vec<String<MAX_DEVICE_NAME>, MAX_MEDIA>,
    /// What to read: a device (`/dev/sr0`) or an ISO file on a mounted
    /// data partition (`/run/ze-media/ze.iso`, [`isofile`]).
    pub path: isofile::FilePath,
    /// The path is a file on [`isofile::MOUNT`], to unmount at the end.
    pub mounted: bool,
}

/// Look for the media until it is found or [`MEDIA_WAIT`] has passed:
/// an ISO 9660 volume on a whole disk (a CD, a `dd`-written stick), else
/// an ISO file on a removable disk's data partition ([`isofile`]). Each
/// device's finding is logged once (again when it changes).
pub fn find_media<O: Os>(os: &mut O, want: &[u8; iso9660::MEDIA_ID_LEN]) -> Result<Media, Fatal> {
    let start = os.now();
    let mut seen: Vec<(String<MAX_DEVICE_NAME>, Probe), MAX_BLOCK_DEVICES> = Vec::new();
    let mut looked = isofile::Looked::new();
    let mut waiting = false;
    loop {
        let scan = block::scan(os.sys()).unwrap_or_default();
        let mut found: Vec<String<MAX_DEVICE_NAME>, MAX_MEDIA> = Vec::new();
        let mut checked = 0;
        for d in scan.devices.iter().filter(|d| searched(d)) {
            checked += 1;
            let path = disk::disk_path(&d.name);
            let p = match os.media_open(&path) {
                Ok(mut m) => probe(&mut m, want),
                Err(e) => Probe::Unreadable(e),
            };
            match seen.iter_mut().find(|(n, _)| *n == d.name) {
                Some((_, old)) if *old == p => {}
                Some((_, old)) => {
                    *old = p;
                    say_probe(os, &path, &p, want);
                }
                None => {
                    let _ = seen.push((d.name.clone(), p));
                    say_probe(os, &path, &p, want);
                }
            }
            if p == Probe::Ours {
                let _ = found.push(d.name.clone());
            }
        }
        if let Some(first) = found.first() {
            let mut path = isofile::FilePath::new();
            let _ = path.push_str(&disk::disk_path(first));
            return Ok(Media {
                sources: found,
                path,
                mounted: false,
            });
        }
        if let Some(f) = isofile::search(os, &scan.devices, want, &mut looked) {
            say!(
                os,
                "installer media: {} on /dev/{} ({}; ISO 9660, media id {})",
                f.path,
                f.partition,
                f.fstype,
                text(want)
            );
            let mut sources = Vec::new();
            let _ = sources.push(f.disk);
            return Ok(Media {
                sources,
                path: f.path,
                mounted: true,
            });
        }
        let waited = os.now().saturating_since(start);
        if waited >= MEDIA_WAIT {
            return Err(Fatal::NoMedia {
                media_id: *want,
                checked,
                waited,
            });
        }
        if !waiting {
            waiting = true;
            say!(
                os,
                "waiting up to {} s for the installer media",
                MEDIA_WAIT.as_secs()
            );
        }
        os.sleep(MEDIA_POLL);
    }
}

/// `ze/<image><suffix>`.
fn media_path(image: &str, suffix: &str) -> String<MEDIA_PATH> {
    let mut p = String::new();
    let _ = p.push_str("ze/");
    let _ = p.push_str(image);
    let _ = p.push_str(suffix);
    p
}

fn short<const N: usize>(s: &str) -> String<N> {
    let mut out = String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// The digest in `/ze/<image>.sha256` (`<64 hex>  <image>`), if readable.
fn sidecar_digest<M: BlockRead>(media: &mut M, volume: &Volume, path: &str) -> Option<Digest> {
    let mut src = Sectors(media);
    let entry = volume.lookup(&mut src, path).ok()?;
    let mut buf = [0u8; MAX_SHA256_FILE];
    let n = volume.read(&mut src, &entry, &mut buf).ok()?;
    let text = core::str::from_utf8(buf.get(..n)?).ok()?;
    cmdline::parse_hex::<32>(text.split_ascii_whitespace().next()?)
}

/// What the media carries for `ze.image`.
enum Content<'b> {
    /// `/ze/<image>.bmap` and `/ze/<image>.data.gz`: the block map and
    /// only the mapped bytes, gzip'd (what `ze appliance iso` writes).
    Map { map: Bmap<'b>, data: Entry },
    /// `/ze/<image>.gz`: the whole image, gzip'd (older ISOs).
    Stream { gz: Entry, digest: Option<Digest> },
}

/// The whole ISO install, up to (not including) the power-off.
pub fn install<O: Os>(os: &mut O, cfg: &Config, bufs: &mut Buffers<'_>) -> Result<(), Fatal> {
    let Some(id) = cfg.media_id else {
        return Err(Fatal::missing("ze.media-id"));
    };
    let want = media_id_hex(&id);
    say!(
        os,
        "installing {} from the installer media (ze.media-id={})",
        cfg.image,
        text(&want)
    );
    let media = find_media(os, &want)?;
    let result = install_from(os, cfg, bufs, &media);
    if media.mounted {
        isofile::release(os);
    }
    result
}

/// [`install`] from the `media` found.
fn install_from<O: Os>(
    os: &mut O,
    cfg: &Config,
    bufs: &mut Buffers<'_>,
    media: &Media,
) -> Result<(), Fatal> {
    let sources = &media.sources;
    let device = &media.path;
    let mut media = os.media_open(device).map_err(|error| Fatal::MediaRead {
        device: short(device),
        at: 0,
        error,
    })?;
    let Buffers { head, io, bmap } = bufs;
    let file_err = |path: &String<MEDIA_PATH>| {
        let path = path.clone();
        let device = short(device);
        move |error| Fatal::MediaFile {
            device: device.clone(),
            path: path.clone(),
            error,
        }
    };
    let gz_path = media_path(&cfg.image, ".gz");
    let volume = Volume::open(&mut Sectors(&mut media)).map_err(file_err(&gz_path))?;
    let lookup = |media: &mut O::Media, path: &String<MEDIA_PATH>| {
        let entry = volume
            .lookup(&mut Sectors(media), path)
            .map_err(file_err(path))?;
        if entry.is_dir {
            return Err(file_err(path)(iso9660::Error::IsADirectory));
        }
        Ok(entry)
    };
    let (content, data_path) = if cfg.bmap_sha256.is_some() {
        let map_path = media_path(&cfg.image, ".bmap");
        let data_path = media_path(&cfg.image, ".data.gz");
        let map_entry = lookup(&mut media, &map_path)?;
        let n = match volume.read(&mut Sectors(&mut media), &map_entry, &mut bmap[..]) {
            Ok(n) => n,
            Err(iso9660::Error::BufferTooSmall { size }) => {
                return Err(Fatal::Bmap(BmapError::TooLarge(
                    usize::try_from(size).unwrap_or(usize::MAX),
                )));
            }
            Err(e) => return Err(file_err(&map_path)(e)),
        };
        let map = image::trust_map(os, cfg, bmap.get(..n).unwrap_or_default())?;
        let data = lookup(&mut media, &data_path)?;
        say!(
            os,
            "image: /{data_path} on {device} ({} bytes gzip'd, {} bytes mapped)",
            data.size(),
            map.mapped_bytes
        );
        (Content::Map { map, data }, data_path)
    } else {
        let gz = lookup(&mut media, &gz_path)?;
        let digest = match cfg.sha256 {
            Some(d) => Some(d),
            None => {
                let path = media_path(&cfg.image, ".sha256");
                let d = sidecar_digest(&mut media, &volume, &path);
                match &d {
                    Some(d) => say!(
                        os,
                        "no ze.sha256: using /{path} from the media ({})",
                        Hex(d)
                    ),
                    None => say!(
                        os,
                        "warning: no ze.sha256 and no readable /{path}: only the gzip CRC-32 checks the image"
                    ),
                }
                d
            }
        };
        match cfg.size {
            Some(n) => say!(
                os,
                "image: /{gz_path} on {device} ({} bytes gzip'd, {n} bytes inflated)",
                gz.size()
            ),
            None => say!(
                os,
                "image: /{gz_path} on {device} ({} bytes gzip'd)",
                gz.size()
            ),
        }
        (Content::Stream { gz, digest }, gz_path)
    };
    let names: Vec<&str, MAX_MEDIA> = sources.iter().map(|s| s.as_str()).collect();
    let device = device.as_str();
    let image_size = match &content {
        Content::Map { map, .. } => Some(map.image_size),
        Content::Stream { .. } => cfg.size,
    };
    let facts = target::choose_disk(os, cfg, Mode::Iso { sources: &names })?;
    let path = disk::disk_path(&facts.name);
    let target_device = target::Device {
        name: &facts.name,
        path: &path,
    };
    target::write_guarded(
        os,
        target_device,
        image_size,
        head,
        io,
        |os, target, io| {
            let (input, window) = io.split_at_mut(IO_CHUNK / 2);
            match &content {
                Content::Map { map, data } => {
                    let holes = image::zero_holes(os, target, map, input)?;
                    let mut writer = MapWriter::new(map, os.now());
                    let src = Source {
                        media: &mut media,
                        device,
                        entry: data,
                        path: &data_path,
                    };
                    inflate(
                        os,
                        src,
                        input,
                        window,
                        map.mapped_bytes,
                        "the block map",
                        &mut |os, _, bytes| writer.feed(os, target, bytes),
                    )?;
                    writer.finish(os)?;
                    say!(
                        os,
                        "image written: {} bytes in {} ranges, each sha256 verified; {holes} bytes of holes zeroed",
                        writer.done,
                        map.range_count
                    );
                    Ok(map.image_size)
                }
                Content::Stream { gz, digest } => {
                    let (limit, what) = match cfg.size {
                        Some(n) => (n, "ze.size"),
                        None => (target.size, "the size of the disk"),
                    };
                    let mut stream = Stream::new(target, cfg.size, None);
                    if let Some(n) = cfg.size {
                        Sink::<O>::total(&mut stream, os, n)?;
                    }
                    let src = Source {
                        media: &mut media,
                        device,
                        entry: gz,
                        path: &data_path,
                    };
                    let total =
                        inflate(os, src, input, window, limit, what, &mut |os, at, bytes| {
                            Sink::<O>::write(&mut stream, os, at, bytes)
                        })?;
                    let digest = stream.finish(os, total, *digest)?;
                    say!(os, "image written: {total} bytes, sha256 {}", Hex(&digest));
                    Ok(total)
                }
            }
        },
        |os, _target, _io| {
            say!(
                os,
                "{} comes with the image (ISO install: no database download)",
                install::ZEFS_PATH
            );
            Ok(())
        },
    )?;
    os.sync_all();
    super::bootentry::register(os, &facts.name, head, crate::efiboot::Place::First);
    Ok(())
}

/// A gzip'd file on the media.
#[derive(Debug)]
pub struct Source<'a, M: BlockRead> {
    /// The media.
    pub media: &'a mut M,
    /// Its `/dev/...` path, for messages.
    pub device: &'a str,
    /// The file.
    pub entry: &'a Entry,
    /// Its path on the volume, for messages.
    pub path: &'a str,
}

/// Where [`inflate`] hands each inflated chunk: its offset in the
/// inflated stream and its bytes.
pub type Inflated<'f, O> = dyn FnMut(&mut O, u64, &[u8]) -> Result<(), Fatal> + 'f;

/// Read a gzip'd file from the media in large reads and inflate it,
/// handing every inflated chunk to `each` with its offset in the
/// inflated stream; more than `limit` bytes (named `what`) is fatal.
/// Returns the inflated size.
pub fn inflate<O: Os, M: BlockRead>(
    os: &mut O,
    src: Source<'_, M>,
    input: &mut [u8],
    window: &mut [u8],
    limit: u64,
    what: &'static str,
    each: &mut Inflated<'_, O>,
) -> Result<u64, Fatal> {
    let device = || short(src.device);
    let gzip_err = |error| Fatal::Gzip {
        path: short(src.path),
        error,
    };
    let mut gz = Gunzip::new();
    let mut out = 0u64;
    for extent in &src.entry.extents {
        let base = u64::from(extent.lba) * SECTOR_SIZE as u64;
        let len = u64::from(extent.len);
        let mut pos = 0u64;
        while pos < len {
            let n = (len - pos).min(input.len() as u64) as usize;
            let at = base + pos;
            let got = src
                .media
                .read_at(at, input.get_mut(..n).unwrap_or_default())
                .map_err(|error| Fatal::MediaRead {
                    device: device(),
                    at,
                    error,
                })?;
            if got < n {
                return Err(Fatal::MediaRead {
                    device: device(),
                    at: at + got as u64,
                    error: Error::EndOfDevice,
                });
            }
            pos += n as u64;
            let mut taken = 0;
            loop {
                let step = gz
                    .step(input.get(taken..n).unwrap_or_default(), window)
                    .map_err(gzip_err)?;
                taken += step.consumed;
                let produced = window.get(step.produced.clone()).unwrap_or_default();
                if !produced.is_empty() {
                    let end = out + produced.len() as u64;
                    if end > limit {
                        return Err(Fatal::ImageTooLong { limit, what });
                    }
                    each(os, out, produced)?;
                    out = end;
                }
                if step.is_idle() {
                    break;
                }
            }
        }
    }
    gz.finish().map_err(gzip_err)?;
    Ok(out)
}
