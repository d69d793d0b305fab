//! Every system path ze touches goes through one [`Sysroot`].
//!
//! On a real host the sysroot is `/`. Tests (and image builds) point it at
//! a directory with `ZE_SYSROOT`, so `ze install local`, `ze install
//! systemd` and the uninstallers run for real without touching the host.
//! Paths shown to the user are the *logical* ones (`/etc/ze`), as they are
//! on the installed system.

use anyhow::{Context, bail};
use std::path::{Component, Path, PathBuf};

/// The environment variable that moves the sysroot.
pub const ENV: &str = "ZE_SYSROOT";

/// The root under which system paths are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysroot {
    root: PathBuf,
}

impl Default for Sysroot {
    fn default() -> Self {
        Sysroot::host()
    }
}

impl Sysroot {
    /// The real machine.
    pub fn host() -> Self {
        Sysroot {
            root: PathBuf::from("/"),
        }
    }

    /// A sysroot at `root`, which must be an existing absolute directory.
    pub fn at(root: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root = root.into();
        if !root.is_absolute() {
            bail!("{ENV}={} must be an absolute path", root.display());
        }
        let root = root
            .canonicalize()
            .with_context(|| format!("{ENV}={} is not usable", root.display()))?;
        if !root.is_dir() {
            bail!("{ENV}={} is not a directory", root.display());
        }
        Ok(Sysroot { root })
    }

    /// `ZE_SYSROOT` if set, else the host.
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var_os(ENV) {
            Some(v) if !v.is_empty() => Sysroot::at(PathBuf::from(v)),
            _ => Ok(Sysroot::host()),
        }
    }

    /// Whether this is the real machine's root.
    pub fn is_host(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The root directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The real path of the logical (absolute) path `logical`.
    pub fn path(&self, logical: impl AsRef<Path>) -> PathBuf {
        let logical = logical.as_ref();
        let rel: PathBuf = logical
            .components()
            .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
            .collect();
        self.root.join(rel)
    }

    /// The logical path of the real path `real`, if it lies under the root.
    pub fn logical(&self, real: &Path) -> Option<PathBuf> {
        let rest = real.strip_prefix(&self.root).ok()?;
        Some(Path::new("/").join(rest))
    }
}

/// Lexically normalise an absolute path: drop `.`, resolve `..`, remove
/// duplicate and trailing slashes. `None` for a relative path.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_logical_paths_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::at(dir.path()).unwrap();
        let real = root.path("/etc/ze/database.zefs");
        assert_eq!(
            real,
            dir.path()
                .canonicalize()
                .unwrap()
                .join("etc/ze/database.zefs")
        );
        assert_eq!(
            root.logical(&real).unwrap(),
            Path::new("/etc/ze/database.zefs")
        );
        assert!(!root.is_host());
        assert_eq!(Sysroot::host().path("/etc/ze"), Path::new("/etc/ze"));
    }

    #[test]
    fn rejects_relative_and_missing_roots() {
        assert!(Sysroot::at("relative").is_err());
        assert!(Sysroot::at("/does/not/exist/ze").is_err());
    }

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize(Path::new("/opt//ze/./bin/../")).unwrap(),
            Path::new("/opt/ze")
        );
        assert_eq!(normalize(Path::new("/..")).unwrap(), Path::new("/"));
        assert!(normalize(Path::new("opt/ze")).is_none());
    }
}
