//! What the imageserver serves: the image and boot roots, what is known
//! about the image to install (hashed and mapped once per name, length
//! and mtime), the credential database, and how a request path resolves
//! to a body.

use super::{
    bootscript::{self, BootScript},
    imagemap::{self, ServedMap},
};
use crate::{
    bmap,
    manifest::Manifest,
    provision::servefs::{OpenError, Root},
    wire::http,
};
use anyhow::Context as _;
use std::{
    fs::File,
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// The plugin's name: its config block and log target.
pub const NAME: &str = "imageserver";
/// The file name of the database route.
pub const DATABASE_NAME: &str = "database.zefs";

/// The image the server offers and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub sha256: String,
    pub built: Option<String>,
    pub ze_version: Option<String>,
    /// Its block map (`/install/image/<name>.bmap`).
    pub map: Arc<ServedMap>,
}

/// The lexicographically last `.img` file (plain name, regular file) in `dir`.
pub fn latest_image(dir: &Path) -> io::Result<Option<String>> {
    let mut best: Option<String> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.ends_with(".img") || !bootscript::is_plain_name(&name) {
            continue;
        }
        if !entry.file_type()?.is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|b| name > *b) {
            best = Some(name);
        }
    }
    Ok(best)
}

/// The `database.zefs` served to installers: one admin user with the
/// given bcrypt hash, plus creation time and version (as `ze init` writes).
pub fn build_database(username: &str, password_hash: &str, now: i64) -> anyhow::Result<Vec<u8>> {
    Ok(crate::zefs::new_database_with_hash(username, password_hash, now)?.to_bytes())
}

#[derive(Debug)]

/// What the request handlers share.
pub(crate) struct Site {
    pub image_root: Root,
    pub boot_root: Root,
    pub configured_image: Option<String>,
    /// Where derived block maps are kept.
    pub state_dir: Option<PathBuf>,
    pub database: Option<Arc<Vec<u8>>>,
    pub port: u16,
    pub idle: Duration,
    /// The image last hashed, by (name, length, mtime).
    pub image_cache: Mutex<Option<ImageInfo>>,
}

impl Site {
    pub fn image_info(&self, name: &str) -> anyhow::Result<ImageInfo> {
        let (mut file, meta) = self.image_root.open_file(name).map_err(|e| {
            anyhow::anyhow!("image {name} in {}: {e}", self.image_root.path().display())
        })?;
        let modified = meta.modified().ok();
        if let Some(info) = self
            .image_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && info.name == name
            && info.len == meta.len()
            && info.modified == modified
        {
            return Ok(info.clone());
        }
        let beside = imagemap::beside(&self.image_root, name, meta.len())?;
        let sha256 = imagemap::hash_image(&mut file, name, meta.len(), beside.as_ref())?;
        let map = match beside {
            Some(b) => imagemap::served_beside(b),
            None => imagemap::cached_or_derived(
                self.state_dir.as_deref(),
                &file,
                name,
                modified,
                &sha256,
            )?,
        };
        let manifest_path = self.image_root.path().join("build.json");
        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => match Manifest::parse(&text) {
                Ok(m) if m.image == name => {
                    if let Some(sum) = &m.sha256
                        && !sum.eq_ignore_ascii_case(&sha256)
                    {
                        tracing::warn!(
                            target: NAME,
                            image = name,
                            manifest = %manifest_path.display(),
                            "build.json names another sha256 than the image has: the image changed after it was built"
                        );
                    }
                    Some(m)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(target: NAME, manifest = %manifest_path.display(), "build.json is not valid: {e}");
                    None
                }
            },
            Err(_) => None,
        };
        let info = ImageInfo {
            name: name.to_string(),
            len: meta.len(),
            modified,
            sha256,
            built: manifest.as_ref().map(|m| m.built.clone()),
            ze_version: manifest.as_ref().map(|m| m.ze_version.clone()),
            map: Arc::new(map),
        };
        *self.image_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.clone());
        Ok(info)
    }

    /// The image `ze.image` names: the configured one, else the last `.img`.
    pub fn current_image(&self) -> anyhow::Result<String> {
        match &self.configured_image {
            Some(n) => Ok(n.clone()),
            None => latest_image(self.image_root.path())?
                .with_context(|| format!("no .img file in {}", self.image_root.path().display())),
        }
    }
}

/// A response body.
pub(crate) enum Body {
    File(File, u64),
    Bytes(Arc<Vec<u8>>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::File(_, n) => *n,
            Body::Bytes(b) => b.len() as u64,
        }
    }
}

/// What a request resolved to.
pub(crate) enum Resolved {
    Body {
        body: Body,
        content_type: &'static str,
    },
    Error(u16, String),
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".ipxe") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

fn open_error(e: OpenError) -> Resolved {
    match e {
        OpenError::NotFound | OpenError::NotAFile => Resolved::Error(404, "not found\n".into()),
        OpenError::Forbidden => Resolved::Error(403, "forbidden\n".into()),
        OpenError::Io(e) => Resolved::Error(500, format!("{e}\n")),
    }
}

pub(crate) fn resolve(site: &Site, target: &str, local: Ipv4Addr) -> Resolved {
    let segments = match http::path_segments(target) {
        Ok(s) => s,
        Err(e) => return Resolved::Error(400, format!("{e}\n")),
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["install", "image", name] if name.ends_with(bmap::SUFFIX) => {
            match current_map(site, &name[..name.len() - bmap::SUFFIX.len()]) {
                Ok(Some(map)) => Resolved::Body {
                    body: Body::Bytes(map.text.clone()),
                    content_type: "application/xml",
                },
                Ok(None) => Resolved::Error(404, "not found\n".into()),
                Err(e) => {
                    tracing::warn!(target: NAME, "cannot serve the block map: {e:#}");
                    Resolved::Error(500, format!("cannot serve the block map: {e:#}\n"))
                }
            }
        }
        ["install", "image", name] => {
            let allowed = match &site.configured_image {
                Some(c) => c == name,
                None => name.ends_with(".img"),
            };
            if !allowed {
                return Resolved::Error(404, "not found\n".into());
            }
            match site.image_root.open_file(name) {
                Ok((f, m)) => Resolved::Body {
                    body: Body::File(f, m.len()),
                    content_type: "application/octet-stream",
                },
                Err(e) => open_error(e),
            }
        }
        ["install", "boot", name] => match site.boot_root.open_file(name) {
            Ok((f, m)) => Resolved::Body {
                body: Body::File(f, m.len()),
                content_type: content_type(name),
            },
            Err(OpenError::NotFound) if *name == "boot.ipxe" => match generated_script(site, local)
            {
                Ok(text) => Resolved::Body {
                    body: Body::Bytes(Arc::new(text.into_bytes())),
                    content_type: "text/plain; charset=utf-8",
                },
                Err(e) => {
                    tracing::warn!(target: NAME, "cannot generate boot.ipxe: {e:#}");
                    Resolved::Error(500, format!("cannot generate boot.ipxe: {e:#}\n"))
                }
            },
            Err(e) => open_error(e),
        },
        ["install", db] if *db == DATABASE_NAME => match &site.database {
            Some(bytes) => Resolved::Body {
                body: Body::Bytes(bytes.clone()),
                content_type: "application/octet-stream",
            },
            None => Resolved::Error(
                404,
                "no credentials configured (ssh-username, ssh-password-hash)\n".into(),
            ),
        },
        _ => Resolved::Error(404, "not found\n".into()),
    }
}

/// The map of `image` when it is the image the server offers.
fn current_map(site: &Site, image: &str) -> anyhow::Result<Option<Arc<ServedMap>>> {
    if site.current_image()? != image {
        return Ok(None);
    }
    Ok(Some(site.image_info(image)?.map))
}

fn generated_script(site: &Site, local: Ipv4Addr) -> anyhow::Result<String> {
    let name = site.current_image()?;
    let info = site.image_info(&name)?;
    Ok(BootScript {
        server: local,
        port: site.port,
        image: &info.name,
        sha256: Some(&info.sha256),
        bmap_sha256: Some(&info.map.sha256),
    }
    .render())
}
