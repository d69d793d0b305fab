//! A window onto part of a file (a partition inside a disk image) that the
//! filesystem writers see as a whole device: offsets are relative to the
//! window, and nothing can be read or written outside it.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
};

/// `len` bytes of `file` from `start`.
#[derive(Debug)]
pub struct Region<'f> {
    file: &'f File,
    start: u64,
    len: u64,
    pos: u64,
    what: &'static str,
}

impl<'f> Region<'f> {
    /// The window `start..start + len` of `file`, named `what` in errors
    /// (e.g. `"the ESP"`).
    pub fn new(file: &'f File, start: u64, len: u64, what: &'static str) -> Region<'f> {
        Region {
            file,
            start,
            len,
            pos: 0,
            what,
        }
    }

    /// The window's size.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let left = self.len.saturating_sub(self.pos);
        if left < buf.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "{} is full: writing {} bytes at offset {} of its {} bytes",
                    self.what,
                    buf.len(),
                    self.pos,
                    self.len
                ),
            ));
        }
        let n = self.file.write_at(buf, self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek before the start of {}", self.what),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_inside_its_window() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(100).unwrap();
        let mut r = Region::new(&file, 10, 20, "the test partition");
        r.write_all(b"0123456789").unwrap();
        r.seek(SeekFrom::End(-5)).unwrap();
        r.write_all(b"abcde").unwrap();
        let err = r.write(b"x").unwrap_err();
        assert!(
            err.to_string().contains("the test partition is full"),
            "{err}"
        );
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 20);
        assert_eq!(&all[15..], b"abcde");
        let mut whole = vec![0u8; 100];
        file.read_exact_at(&mut whole, 0).unwrap();
        assert_eq!(&whole[10..20], b"0123456789");
        assert!(whole[..10].iter().chain(&whole[30..]).all(|&b| b == 0));
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
    }
}
