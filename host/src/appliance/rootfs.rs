//! The appliance's read-only root filesystem (partitions 2 and 3): a
//! gzip-compressed squashfs written with `backhand`.
//!
//! ```text
//! /usr/bin/ze          the static ze for the image's architecture (0755)
//! /sbin/init -> ../usr/bin/ze   the kernel runs it as PID 1
//! /bin -> usr/bin
//! /etc/os-release      NAME=ze, VERSION_ID, IMAGE_ID (appliance), IMAGE_VERSION
//! /etc/ze -> /perm/ze  so `ze` finds database.zefs where it lives
//! /dev /proc /sys /run /perm   mount points (0755)
//! /tmp                 mount point (1777)
//! /root                root's home (0700)
//! ```
//!
//! Everything belongs to root; every time stamp is the build time.

use backhand::{FilesystemCompressor, FilesystemWriter, NodeHeader, compression::Compressor};
use std::{
    io::{Seek, Write},
    path::Path,
};
use thiserror::Error;

/// Where the binary lives in the root.
pub const ZE_PATH: &str = "/usr/bin/ze";
/// What the kernel runs.
pub const INIT_PATH: &str = "/sbin/init";
/// The squashfs block size (128 KiB, mksquashfs's default).
pub const BLOCK_SIZE: u32 = 128 << 10;

/// Why the root could not be written.
#[derive(Debug, Error)]
pub enum RootError {
    /// The ze binary cannot be read.
    #[error("cannot read the ze binary {path}: {source}")]
    Binary {
        path: String,
        source: std::io::Error,
    },
    /// backhand failed (most often: the partition is full).
    #[error("cannot write the squashfs root: {0}")]
    Squashfs(#[from] backhand::BackhandError),
}

/// What goes into the root.
#[derive(Debug, Clone)]
pub struct RootInputs<'a> {
    /// The static ze.
    pub ze: &'a Path,
    /// The appliance name.
    pub appliance: &'a str,
    /// The image file name.
    pub image: &'a str,
    /// The ze version.
    pub version: &'a str,
    /// Build time, seconds since the epoch.
    pub mtime: u32,
}

/// `/etc/os-release` (os-release(5)).
pub fn os_release(inputs: &RootInputs<'_>) -> String {
    format!(
        "NAME=ze\nID=ze\nVERSION_ID={v}\nPRETTY_NAME=\"ze {v}\"\nIMAGE_ID={a}\nIMAGE_VERSION={i}\n",
        v = inputs.version,
        a = inputs.appliance,
        i = inputs.image.trim_end_matches(".img"),
    )
}

/// Write the root into `out`; returns the bytes written.
pub fn write<W: Write + Seek>(out: W, inputs: &RootInputs<'_>) -> Result<u64, RootError> {
    let binary = std::fs::read(inputs.ze).map_err(|source| RootError::Binary {
        path: inputs.ze.display().to_string(),
        source,
    })?;
    let os_release = os_release(inputs);
    let h = |mode: u16| NodeHeader::new(mode, 0, 0, inputs.mtime);
    let mut fs = FilesystemWriter::default();
    fs.set_time(inputs.mtime);
    fs.set_block_size(BLOCK_SIZE);
    fs.set_compressor(FilesystemCompressor::new(Compressor::Gzip, None)?);
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    for dir in [
        "dev", "etc", "perm", "proc", "run", "sbin", "sys", "usr", "usr/bin",
    ] {
        fs.push_dir(dir, h(0o755))?;
    }
    fs.push_dir("tmp", h(0o1777))?;
    fs.push_dir("root", h(0o700))?;
    fs.push_file(std::io::Cursor::new(binary), &ZE_PATH[1..], h(0o755))?;
    fs.push_symlink("../usr/bin/ze", &INIT_PATH[1..], h(0o777))?;
    fs.push_symlink("usr/bin", "bin", h(0o777))?;
    fs.push_symlink("/perm/ze", "etc/ze", h(0o777))?;
    fs.push_file(
        std::io::Cursor::new(os_release.into_bytes()),
        "etc/os-release",
        h(0o644),
    )?;
    let (_, written) = fs.write(out)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn unsquashfs_lists_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let ze = dir.path().join("ze");
        std::fs::write(&ze, vec![0x7f; 200_000]).unwrap();
        let inputs = RootInputs {
            ze: &ze,
            appliance: "prod",
            image: "ze-20260617-160000.img",
            version: "0.1.0",
            mtime: 1_781_712_000,
        };
        let image = dir.path().join("root.sqfs");
        let file = std::fs::File::create(&image).unwrap();
        let written = write(&file, &inputs).unwrap();
        assert_eq!(std::fs::metadata(&image).unwrap().len(), written);
        let out = Command::new("unsquashfs")
            .args(["-lln", "-UTC"])
            .arg(&image)
            .output()
            .expect(
                "unsquashfs (package squashfs-tools) is needed: apt-get install squashfs-tools",
            );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{listing}");
        for line in [
            "-rwxr-xr-x 0/0 200000 2026-06-17 16:00 squashfs-root/usr/bin/ze",
            "lrwxrwxrwx 0/0 13 2026-06-17 16:00 squashfs-root/sbin/init -> ../usr/bin/ze",
            "lrwxrwxrwx 0/0 8 2026-06-17 16:00 squashfs-root/etc/ze -> /perm/ze",
            "drwxrwxrwt 0/0",
            "squashfs-root/perm",
            "squashfs-root/proc",
        ] {
            let squeezed: String = listing
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(squeezed.contains(line), "{line:?} not in\n{listing}");
        }
        let extract = dir.path().join("x");
        let out = Command::new("unsquashfs")
            .arg("-d")
            .arg(&extract)
            .arg(&image)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            std::fs::read(extract.join("usr/bin/ze")).unwrap(),
            vec![0x7f; 200_000]
        );
        let release = std::fs::read_to_string(extract.join("etc/os-release")).unwrap();
        assert!(release.contains("IMAGE_ID=prod\nIMAGE_VERSION=ze-20260617-160000\n"));
    }

    #[test]
    fn a_missing_binary_is_named() {
        let inputs = RootInputs {
            ze: Path::new("/nonexistent/ze"),
            appliance: "prod",
            image: "x.img",
            version: "0",
            mtime: 0,
        };
        let err = write(std::io::Cursor::new(Vec::new()), &inputs).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ze"), "{err}");
    }
}
