//! Read-only access to small pseudo-files (`/sys`, `/proc`).
//!
//! The installer decides from facts it reads here (block devices, consoles,
//! interface state). Putting the reads behind a trait lets every decision run
//! under `cargo test` against trees captured from real machines (see `fake`).

use crate::Error;

/// The longest name a [`SysFs::list`] entry may have (Linux `NAME_MAX`).
pub const MAX_NAME: usize = 255;

/// Read-only access to a tree of small files.
pub trait SysFs {
    /// Read the whole file at `path` into `buf` and return its length.
    /// Fails with [`Error::TooLarge`] when the file does not fit.
    fn read(&self, path: &str, buf: &mut [u8]) -> Result<usize, Error>;

    /// Call `each` with the name of every entry of the directory `path`,
    /// in the order the filesystem returns them, skipping `.` and `..`.
    fn list(&self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Error>;

    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool {
        let mut one = [0u8; 1];
        match self.read(path, &mut one) {
            Ok(_) | Err(Error::TooLarge) => true,
            // A directory cannot be read as a file; try listing it.
            Err(_) => self.list(path, &mut |_| {}).is_ok(),
        }
    }
}

/// Read `path` and return its content without the trailing newline.
pub fn read_trimmed<'b, S: SysFs + ?Sized>(
    fs: &S,
    path: &str,
    buf: &'b mut [u8],
) -> Result<&'b str, Error> {
    let n = fs.read(path, buf)?;
    let text = core::str::from_utf8(&buf[..n]).map_err(|_| Error::Malformed)?;
    Ok(text.trim_end_matches(['\n', '\r', ' ', '\t']))
}

/// Read `path` as an unsigned decimal number (sysfs `size`, `removable`, `ro`).
pub fn read_u64<S: SysFs + ?Sized>(fs: &S, path: &str) -> Result<u64, Error> {
    let mut buf = [0u8; 32];
    let text = read_trimmed(fs, path, &mut buf)?;
    parse_u64(text).ok_or(Error::Malformed)
}

/// Parse a non-empty string of ASCII digits without overflow.
pub fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0u64, |acc, b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u64_accepts_digits_only() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("41943040"), Some(41_943_040));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("12a"), None);
        assert_eq!(parse_u64("-1"), None);
        assert_eq!(parse_u64(" 1"), None);
    }
}
