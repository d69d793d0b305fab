//! The block map the imageserver offers with its image (checklist W2):
//! served as `/install/image/<image>.bmap`, its sha256 passed to the
//! installer as `ze.bmap-sha256=` in the generated boot script.
//!
//! Where the map comes from, in order:
//!
//! 1. `<image-dir>/<image>.bmap` (what `ze appliance build` writes beside
//!    the image, or `bmaptool create` output). It is read with the
//!    installer's own parser, its `ImageSize` must be the image's length,
//!    and the startup pass that hashes the image also checks it: every
//!    range's sha256, and zeros everywhere outside the ranges. A map that
//!    fails any of this is refused with an error that names the file and
//!    what is wrong; the server does not start (it never swaps in a map
//!    of its own for one it was given).
//! 2. `<state-dir>/imageserver-<image>-<length>-<mtime>-<sha256>.bmap`: a
//!    map this server derived before for exactly these bytes, reused
//!    without reading the image again.
//! 3. Derived now ([`crate::bmap::derive`]) and kept as 2 when `state-dir`
//!    is set (without it, it lives in memory until the server stops).
//!
//! Long passes (hashing, deriving) report progress on standard error when
//! it is a terminal, once a second, so a 2 GiB image does not look hung.

use super::site::NAME;
use crate::{
    bmap::{self, BlockMap, MapError, Walk},
    fsutil,
    progress::Progress,
    provision::servefs::{OpenError, Root},
};
use anyhow::{Context as _, bail};
use std::{
    fs::File,
    io::{self, IsTerminal, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

/// Where a served map came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapSource {
    /// `<image-dir>/<image>.bmap`.
    ImageDir(PathBuf),
    /// Derived by an earlier start, kept in the state directory.
    Cached(PathBuf),
    /// Derived at this start; kept here when there is a state directory.
    Derived(Option<PathBuf>),
}

/// The map as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedMap {
    /// The file's bytes.
    pub text: Arc<Vec<u8>>,
    /// Their sha256, hex.
    pub sha256: String,
    /// The bytes the ranges cover.
    pub mapped_bytes: u64,
    /// How many ranges.
    pub range_count: usize,
    /// Where it came from.
    pub source: MapSource,
}

impl ServedMap {
    fn new(map: BlockMap, source: MapSource) -> ServedMap {
        ServedMap {
            sha256: map.sha256.clone(),
            mapped_bytes: map.mapped_bytes,
            range_count: map.range_count,
            text: Arc::new(map.into_text()),
            source,
        }
    }
}

/// Standard error when it is a terminal, else nowhere.
fn progress_out() -> Box<dyn Write> {
    if io::stderr().is_terminal() {
        Box::new(io::stderr())
    } else {
        Box::new(io::sink())
    }
}

/// A map found in the image directory beside its image.
#[derive(Debug)]
pub struct Beside {
    /// The map.
    pub map: BlockMap,
    /// Its file.
    pub path: PathBuf,
    /// The image's file.
    image_path: PathBuf,
}

/// Why a map given beside the image is not used, and what to do.
fn refusal(path: &Path, image_path: &Path, what: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is not a usable block map of {}: {what}; remake it (`bmaptool create -o {} {}`) or remove it (the server then derives one)",
        path.display(),
        image_path.display(),
        path.display(),
        image_path.display()
    )
}

/// The map in the image directory beside `image`, checked with the
/// installer's parser and against the image's length; `None` when there
/// is none.
pub fn beside(root: &Root, image: &str, len: u64) -> anyhow::Result<Option<Beside>> {
    let name = format!("{image}{}", bmap::SUFFIX);
    let path = root.path().join(&name);
    let image_path = root.path().join(image);
    let refuse = |what: &dyn std::fmt::Display| refusal(&path, &image_path, what);
    let file = match root.open_file(&name) {
        Ok((file, _)) => file,
        Err(OpenError::NotFound) => return Ok(None),
        Err(e) => return Err(refuse(&e)),
    };
    let mut text = Vec::new();
    file.take(ze_installer::bmap::MAX_BMAP as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|e| refuse(&e))?;
    let map = BlockMap::from_text(text).map_err(|e| refuse(&e))?;
    if map.image_size != len {
        return Err(refuse(&MapError::Size {
            map: map.image_size,
            image: len,
        }));
    }
    Ok(Some(Beside {
        map,
        path,
        image_path,
    }))
}

/// Hash the whole image (`ze.sha256`), checking it on the way against
/// the map given beside it, when there is one.
pub fn hash_image(
    file: &mut File,
    image: &str,
    len: u64,
    beside: Option<&Beside>,
) -> anyhow::Result<String> {
    let mut out = progress_out();
    let mut progress = Progress::new(&mut out, &format!("{NAME}: hashing {image}"), len);
    let parsed = beside.map(|b| b.map.parsed());
    let mut walk = parsed.as_ref().map(Walk::new);
    let mut done = 0u64;
    let mut mismatch: Option<MapError> = None;
    let (read, sha256) = crate::digest::sha256_stream(file, &mut |chunk| {
        done += chunk.len() as u64;
        progress.update(done);
        if let Some(w) = &mut walk
            && mismatch.is_none()
            && let Err(e) = w.feed(chunk, &mut |_| Ok(()))
        {
            mismatch = Some(e);
        }
        Ok(())
    })
    .with_context(|| format!("cannot read image {image}"))?;
    if read != len {
        bail!("image {image} changed size while it was hashed ({len} bytes, then {read})");
    }
    if let (Some(w), None) = (walk, &mismatch) {
        mismatch = w.finish().err();
    }
    if let (Some(e), Some(b)) = (mismatch, beside) {
        return Err(refusal(&b.path, &b.image_path, &e));
    }
    Ok(sha256)
}

/// The map given beside the image, as served.
pub fn served_beside(b: Beside) -> ServedMap {
    ServedMap::new(b.map, MapSource::ImageDir(b.path))
}

/// The state directory's file for a map of these exact bytes.
pub fn cache_path(
    state_dir: &Path,
    image: &str,
    len: u64,
    modified: Option<SystemTime>,
    sha256: &str,
) -> PathBuf {
    let mtime = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or_else(
            || "0".to_string(),
            |d| format!("{}.{:09}", d.as_secs(), d.subsec_nanos()),
        );
    state_dir.join(format!(
        "{NAME}-{image}-{len}-{mtime}-{sha256}{}",
        bmap::SUFFIX
    ))
}

/// A map derived before, if it is there and intact.
fn cached(path: &Path, len: u64) -> Option<BlockMap> {
    let text = std::fs::read(path).ok()?;
    match BlockMap::from_text(text) {
        Ok(m) if m.image_size == len => Some(m),
        Ok(_) | Err(_) => {
            tracing::warn!(target: NAME, file = %path.display(), "a cached block map is damaged: deriving it again");
            None
        }
    }
}

/// The map of an image that has none beside it: cached, else derived.
pub fn cached_or_derived(
    state_dir: Option<&Path>,
    file: &File,
    image: &str,
    modified: Option<SystemTime>,
    sha256: &str,
) -> anyhow::Result<ServedMap> {
    let len = file.metadata()?.len();
    let path = state_dir.map(|d| cache_path(d, image, len, modified, sha256));
    if let Some(p) = &path
        && let Some(m) = cached(p, len)
    {
        return Ok(ServedMap::new(m, MapSource::Cached(p.clone())));
    }
    let started = Instant::now();
    let mut out = progress_out();
    let mut progress = Progress::new(&mut out, &format!("{NAME}: mapping {image}"), len);
    let map = bmap::derive(file, &mut |done, _| progress.update(done))
        .with_context(|| format!("cannot derive the block map of image {image}"))?;
    let keep = |p: &Path| {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        fsutil::write_atomic(p, map.text(), 0o644)
    };
    let kept = path.filter(|p| match keep(p) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(target: NAME, file = %p.display(), "cannot keep the derived block map (it is derived again at the next start): {e}");
            false
        }
    });
    tracing::debug!(
        target: NAME,
        image,
        ranges = map.range_count,
        ms = started.elapsed().as_millis() as u64,
        "derived the block map"
    );
    Ok(ServedMap::new(map, MapSource::Derived(kept)))
}
