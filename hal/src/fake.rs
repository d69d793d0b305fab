//! In-memory stand-ins for the hal, for tests (feature `fake`).
//!
//! [`FakeSys`] is a tree of small files, as captured from a real machine's
//! `/sys` and `/proc`; [`FakeClock`] is a clock the test moves by hand.

use crate::{
    Error,
    sysfs::SysFs,
    time::{Clock, Instant},
};
use std::{cell::Cell, collections::BTreeMap, string::String, vec::Vec};

/// A read-only tree of files held in memory. Directories exist implicitly
/// when some file lies below them.
#[derive(Debug, Default, Clone)]
pub struct FakeSys {
    files: BTreeMap<String, Vec<u8>>,
}

impl FakeSys {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the file at the absolute `path`.
    pub fn file(&mut self, path: &str, content: &str) -> &mut Self {
        self.bytes(path, content.as_bytes())
    }

    /// Add (or replace) a file with binary content.
    pub fn bytes(&mut self, path: &str, content: &[u8]) -> &mut Self {
        assert!(path.starts_with('/'), "fake paths are absolute: {path}");
        self.files.insert(path.into(), content.to_vec());
        self
    }

    /// Remove a file; returns whether it was there.
    pub fn remove(&mut self, path: &str) -> bool {
        self.files.remove(path).is_some()
    }
}

impl SysFs for FakeSys {
    fn read(&self, path: &str, buf: &mut [u8]) -> Result<usize, Error> {
        let content = self.files.get(path).ok_or(Error::NotFound)?;
        let dst = buf.get_mut(..content.len()).ok_or(Error::TooLarge)?;
        dst.copy_from_slice(content);
        Ok(content.len())
    }

    fn list(&self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Error> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut seen: Vec<&str> = Vec::new();
        for key in self.files.keys() {
            if let Some(rest) = key.strip_prefix(&prefix) {
                let child = rest.split('/').next().unwrap_or(rest);
                if !child.is_empty() && seen.last() != Some(&child) && !seen.contains(&child) {
                    seen.push(child);
                }
            }
        }
        if seen.is_empty() {
            return Err(Error::NotFound);
        }
        for child in seen {
            each(child);
        }
        Ok(())
    }
}

/// A monotonic clock that only moves when the test says so.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Cell<u64>,
}

impl FakeClock {
    /// A clock reading `millis`.
    pub fn at(millis: u64) -> Self {
        FakeClock {
            now: Cell::new(millis),
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, by: core::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now.set(self.now.get().saturating_add(ms));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.now.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_direct_children_once() {
        let mut sys = FakeSys::new();
        sys.file("/sys/block/sda/size", "1\n")
            .file("/sys/block/sda/ro", "0\n")
            .file("/sys/block/vda/size", "1\n");
        let mut names = Vec::new();
        sys.list("/sys/block", &mut |n| names.push(n.to_string()))
            .unwrap();
        assert_eq!(names, ["sda", "vda"]);
        assert!(sys.exists("/sys/block/sda"));
        assert!(!sys.exists("/sys/block/sdb"));
    }

    #[test]
    fn read_reports_too_large() {
        let mut sys = FakeSys::new();
        sys.file("/proc/cmdline", "ze.server=192.0.2.1\n");
        let mut small = [0u8; 4];
        assert_eq!(sys.read("/proc/cmdline", &mut small), Err(Error::TooLarge));
    }

    #[test]
    fn clock_moves_only_when_told() {
        let clock = FakeClock::at(5);
        assert_eq!(clock.now().as_millis(), 5);
        clock.advance(core::time::Duration::from_secs(1));
        assert_eq!(clock.now().as_millis(), 1_005);
    }
}
