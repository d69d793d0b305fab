//! One instance per directory in this process: the dhcpserver, the
//! tftpserver and the imageserver are configured separately but must
//! share the fleet's status table and its machine records, so
//! `open(dir)` hands every caller naming the same directory the same
//! `Arc`. The registry holds only weak references: when the last user
//! is gone (the daemon stopped), the next `open` starts afresh from disk.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
};

/// A registry of `T` by directory.
#[derive(Debug)]
pub struct PerDir<T> {
    open: Mutex<Vec<(PathBuf, Weak<T>)>>,
}

impl<T> Default for PerDir<T> {
    fn default() -> Self {
        PerDir::new()
    }
}

impl<T> PerDir<T> {
    /// An empty registry (for a `static`).
    pub const fn new() -> Self {
        PerDir {
            open: Mutex::new(Vec::new()),
        }
    }

    /// The instance for `dir`, made by `make` (with the absolute,
    /// normalised path) when there is none yet.
    pub fn get(&self, dir: &Path, make: impl FnOnce(PathBuf) -> T) -> Arc<T> {
        let key = key(dir);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|(_, w)| w.strong_count() > 0);
        if let Some(found) = open
            .iter()
            .find(|(p, _)| *p == key)
            .and_then(|(_, w)| w.upgrade())
        {
            return found;
        }
        let made = Arc::new(make(key.clone()));
        open.push((key, Arc::downgrade(&made)));
        made
    }
}

/// `dir` made absolute (against the working directory) and without `.`
/// or `..`, so two spellings of one directory share one instance.
fn key(dir: &Path) -> PathBuf {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    crate::sysroot::normalize(&abs).unwrap_or(abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f5_one_instance_per_directory_while_it_is_used() {
        let reg: PerDir<String> = PerDir::new();
        let a = reg.get(Path::new("/srv/pxe/state"), |p| p.display().to_string());
        let b = reg.get(Path::new("/srv/pxe/x/../state/."), |_| "second".into());
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, "/srv/pxe/state");
        let other = reg.get(Path::new("/srv/other"), |_| "other".into());
        assert!(!Arc::ptr_eq(&a, &other));
        drop((a, b));
        let again = reg.get(Path::new("/srv/pxe/state"), |_| "fresh".into());
        assert_eq!(*again, "fresh", "the last user gone: made anew");
    }
}
