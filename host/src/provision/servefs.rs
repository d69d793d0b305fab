//! Opening files a network client names, never outside a root directory.
//!
//! The kernel resolves the path with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` relative to the root's descriptor: `..` above
//! the root, absolute symlinks and symlinks leading out are refused by the
//! kernel itself, with no window between a check and the open. Only
//! regular files are served.

use rustix::{
    fs::{Mode, OFlags, ResolveFlags, openat2},
    io::Errno,
};
use std::{
    fmt,
    fs::{File, Metadata},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

/// A directory files are served from.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why a file cannot be served.
#[derive(Debug)]
pub enum OpenError {
    /// No such file.
    NotFound,
    /// The path leaves the root, or permission is denied.
    Forbidden,
    /// A directory, device, FIFO or socket.
    NotAFile,
    /// Anything else.
    Io(std::io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::NotFound => f.write_str("file not found"),
            OpenError::Forbidden => f.write_str("access denied"),
            OpenError::NotAFile => f.write_str("not a regular file"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl Root {
    /// Open `path`, which must be a directory.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            std::io::Error::new(
                std::io::Error::from(e).kind(),
                format!("cannot open directory {}: {e}", path.display()),
            )
        })?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Open `relative` (no leading `/`) for reading, with its metadata.
    pub fn open_file(&self, relative: &str) -> Result<(File, Metadata), OpenError> {
        if relative.is_empty() || relative.starts_with('/') || relative.contains('\0') {
            return Err(OpenError::NotFound);
        }
        let fd = openat2(
            &self.fd,
            relative,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG => OpenError::NotFound,
            Errno::XDEV | Errno::LOOP | Errno::ACCESS | Errno::PERM => OpenError::Forbidden,
            other => OpenError::Io(other.into()),
        })?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::NotAFile);
        }
        Ok((file, meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn path_escapes_are_refused_and_the_canary_is_never_read() {
        let outer = tempfile::tempdir().unwrap();
        let root_dir = outer.path().join("root");
        std::fs::create_dir_all(root_dir.join("sub")).unwrap();
        std::fs::write(outer.path().join("canary"), "secret").unwrap();
        std::fs::write(root_dir.join("ok.txt"), "fine").unwrap();
        std::fs::write(root_dir.join("sub/inner"), "inner").unwrap();
        symlink("../canary", root_dir.join("out")).unwrap();
        symlink("/etc/passwd", root_dir.join("abs")).unwrap();
        symlink("sub/inner", root_dir.join("in")).unwrap();
        std::fs::create_dir(root_dir.join("dir")).unwrap();
        let root = Root::open(&root_dir).unwrap();

        let read = |p: &str| {
            root.open_file(p).map(|(mut f, _)| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s).unwrap();
                s
            })
        };
        assert_eq!(read("ok.txt").unwrap(), "fine");
        assert_eq!(read("sub/../ok.txt").unwrap(), "fine");
        assert_eq!(
            read("in").unwrap(),
            "inner",
            "symlinks inside the root work"
        );
        for bad in [
            "../canary",
            "sub/../../canary",
            "out",
            "abs",
            "/etc/passwd",
            "..\\canary",
        ] {
            match read(bad) {
                Ok(text) => panic!("{bad} was served: {text}"),
                Err(OpenError::Forbidden | OpenError::NotFound) => {}
                Err(e) => panic!("{bad}: {e}"),
            }
        }
        assert!(matches!(read("dir"), Err(OpenError::NotAFile)));
        assert!(matches!(read(""), Err(OpenError::NotFound)));
        assert!(matches!(read("missing"), Err(OpenError::NotFound)));
    }
}
