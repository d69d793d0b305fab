//! The "newc" cpio format (`070701`), as the kernel's initramfs unpacker
//! reads it (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! ```text
//! entry:   header (110 ASCII bytes) ‖ name ‖ NUL ‖ pad to 4 ‖ data ‖ pad to 4
//! header:  "070701" then 13 fields of 8 upper-case hex digits:
//!          ino mode uid gid nlink mtime filesize devmajor devminor
//!          rdevmajor rdevminor namesize(with NUL) check(0)
//! archive: entries ‖ the entry "TRAILER!!!" (all fields 0, nlink 1)
//! ```
//!
//! Padding is counted from the start of the archive; every header starts
//! on a 4-byte boundary.

use std::io::{self, Write};

/// The magic of the newc format without checksums.
pub const MAGIC: &[u8; 6] = b"070701";
/// Bytes in an entry header.
pub const HEADER_LEN: usize = 110;
/// The name of the last entry.
pub const TRAILER: &str = "TRAILER!!!";
/// `S_IFREG`.
pub const S_IFREG: u32 = 0o100_000;
/// The largest file newc can describe (8 hex digits).
pub const MAX_FILE: u64 = u32::MAX as u64;

/// Why an entry cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// A name that the kernel would mis-read.
    #[error("cpio entry name {0:?} must be non-empty, relative, without NUL or \"..\" components")]
    BadName(String),
    /// Data larger than newc can describe.
    #[error("cpio entry {name:?} is {len} bytes; newc holds at most {MAX_FILE}")]
    TooLarge {
        /// The entry.
        name: String,
        /// Its size.
        len: u64,
    },
    /// The writer failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes a newc archive to `W`, tracking the offset for padding.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    offset: u64,
    next_ino: u32,
}

fn pad_len(offset: u64) -> usize {
    ((4 - (offset % 4)) % 4) as usize
}

impl<W: Write> Writer<W> {
    /// Start an archive.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            offset: 0,
            next_ino: 1,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = pad_len(self.offset);
        self.put(&[0u8; 3][..n])
    }

    fn header(&mut self, ino: u32, mode: u32, nlink: u32, size: u32, name: &str) -> io::Result<()> {
        let namesize = u32::try_from(name.len() + 1).unwrap_or(u32::MAX);
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        for f in fields {
            h.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        debug_assert_eq!(h.len(), HEADER_LEN);
        self.put(&h)?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// Add a regular file `name` with permission bits `perm` (e.g. 0o755).
    /// mtime, uid and gid are 0 so the archive is reproducible.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        let bad = name.is_empty()
            || name.starts_with('/')
            || name.contains('\0')
            || name == TRAILER
            || name.split('/').any(|c| c == ".." || c.is_empty());
        if bad {
            return Err(CpioError::BadName(name.into()));
        }
        let len = data.len() as u64;
        let size = u32::try_from(len).map_err(|_| CpioError::TooLarge {
            name: name.into(),
            len,
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(ino, S_IFREG | (perm & 0o7777), 1, size, name)?;
        self.put(data)?;
        self.pad()?;
        Ok(())
    }

    /// Write the trailer and return the inner writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header(0, 0, 1, 0, TRAILER)?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        for (n, p, d) in files {
            w.file(n, *p, d).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn a6_layout_follows_the_kernel_rules() {
        let a = archive(&[("init", 0o755, b"12345")]);
        // Header, "init\0" (5) padded to 116, data 5 padded to 124.
        assert_eq!(&a[..6], MAGIC);
        let field = |entry: usize, i: usize| {
            let at = entry + 6 + i * 8;
            u32::from_str_radix(std::str::from_utf8(&a[at..at + 8]).unwrap(), 16).unwrap()
        };
        assert_eq!(field(0, 1), S_IFREG | 0o755);
        assert_eq!(field(0, 4), 1);
        assert_eq!(field(0, 6), 5);
        assert_eq!(field(0, 11), 5);
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"12345");
        let trailer = 124;
        assert_eq!(trailer % 4, 0);
        assert_eq!(&a[trailer..trailer + 6], MAGIC);
        assert_eq!(&a[trailer + 110..trailer + 121], b"TRAILER!!!\0");
        assert_eq!(a.len() % 4, 0);
        // Every header starts on a 4-byte boundary whatever the lengths.
        for name_len in 1..9 {
            for data_len in 0..9 {
                let name = "n".repeat(name_len);
                let data = vec![7u8; data_len];
                let a = archive(&[(&name, 0o644, &data), ("x", 0o644, b"y")]);
                let second = HEADER_LEN + name_len + 1;
                let second = second + pad_len(second as u64);
                let second = second + data_len + pad_len((second + data_len) as u64);
                assert_eq!(&a[second..second + 6], MAGIC, "{name_len}/{data_len}");
            }
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let mut w = Writer::new(Vec::new());
        for n in ["", "/init", "a/../b", "a\0b", "TRAILER!!!", "a//b"] {
            assert!(
                matches!(w.file(n, 0o755, b""), Err(CpioError::BadName(_))),
                "{n:?}"
            );
        }
    }

    /// The system's `cpio` reads our archive back: names, modes, content.
    #[test]
    fn a6_gnu_cpio_lists_and_extracts_it() {
        let a = archive(&[("init", 0o755, b"#!/bin/true\n"), ("etc/x", 0o600, b"")]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cpio");
        std::fs::write(&path, &a).unwrap();
        let list = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "-F"])
            .arg(&path)
            .output()
            .expect("run cpio (the Debian package cpio; `make deps` installs it)");
        assert!(list.status.success(), "{list:?}");
        let text = String::from_utf8_lossy(&list.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with("-rwxr-xr-x") && lines[0].ends_with(" init"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("-rw-------") && lines[1].ends_with(" etc/x"),
            "{text}"
        );
        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let st = Command::new("cpio")
            .args(["-i", "-d", "--quiet", "-F"])
            .arg(&path)
            .current_dir(&out)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(out.join("init")).unwrap(), b"#!/bin/true\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("init"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
