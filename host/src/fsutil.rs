//! File operations that never leave a half-written file behind.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The prefix of every name [`write_atomic`] stages `path` under: a hidden
/// name in the same directory (`.NAME.tmp-`), so the rename never crosses
/// filesystems.
fn staging_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// A staging name for `path` that no other write uses:
/// `.NAME.tmp-<pid>-<n>`, `n` from a counter of this process mixed with
/// the clock. A crashed process's leftover never blocks a later one with
/// the same pid (an appliance's `ze start` has the same pid at every
/// boot): the name differs, and an existing one is skipped anyway.
fn staging_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = (COUNTER.fetch_add(1, Ordering::Relaxed) << 32) | u64::from(nanos);
    path.with_file_name(format!(
        "{}{}-{n:x}",
        staging_prefix(path),
        std::process::id()
    ))
}

/// When this process started, by the wall clock (`/proc/self/stat` and
/// `/proc/stat`); `None` where /proc cannot tell.
fn process_start() -> Option<SystemTime> {
    static START: OnceLock<Option<SystemTime>> = OnceLock::new();
    *START.get_or_init(|| {
        let stat = fs::read_to_string("/proc/self/stat").ok()?;
        // Field 22, counted after the command name's closing parenthesis.
        let ticks: u64 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(19)?
            .parse()
            .ok()?;
        let boot: u64 = fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let hz = rustix::param::clock_ticks_per_second().max(1);
        Some(UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / hz))
    })
}

/// Remove what a crash left of earlier writes of `path`: files named
/// `.NAME.tmp-*` in its directory, last modified before this process
/// started (so no live writer's). Best effort; returns how many went.
pub fn remove_stale_staging(path: &Path) -> usize {
    let (Some(start), Some(dir)) = (process_start(), path.parent()) else {
        return 0;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = staging_prefix(path);
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix))
            && entry
                .metadata()
                .is_ok_and(|m| m.file_type().is_file() && m.modified().is_ok_and(|t| t < start));
        if stale && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Replace `path` with `bytes` atomically: write a temporary file in the
/// same directory with `mode`, fsync it, rename it over `path`, fsync the
/// directory. Readers see the old content or the new, never a mix; on any
/// error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_with(path, mode, |file| file.write_all(bytes))
}

/// Like [`write_atomic`], and give the new file to `owner` (uid, gid)
/// before it replaces the old one, so a service that could read the old
/// file can read the new.
pub fn write_atomic_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: (u32, u32),
) -> io::Result<()> {
    write_atomic_with(path, mode, |file| {
        std::os::unix::fs::fchown(&*file, Some(owner.0), Some(owner.1))?;
        file.write_all(bytes)
    })
}

/// Like [`write_atomic`], with the content produced by `fill` (e.g. a copy
/// from another file).
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    remove_stale_staging(path);
    let (tmp, mut file) = create_staging(path, mode)?;
    let result = (|| {
        fill(&mut file)?;
        // The umask may have narrowed the mode given to open().
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Create a fresh staging file for `path` (`O_EXCL`, a new name after a
/// clash).
fn create_staging(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = staging_path(path);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free staging name")))
}

/// fsync a directory, so a rename or unlink inside it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_content_with_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no staging file left"
        );
    }

    #[test]
    fn failure_leaves_the_old_file_and_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        fs::write(&path, b"old").unwrap();
        let err = write_atomic_with(&path, 0o600, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn touch(path: &Path, age: Duration) {
        let f = File::create(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    #[test]
    fn a_crashed_writes_leftover_never_blocks_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let hour = Duration::from_secs(3600);
        // What a crash left under the old fixed name, with our very pid
        // (as an appliance's `ze start` has at every boot), and under the
        // new form.
        let crashed = dir.path().join(format!(".db.tmp-{}", std::process::id()));
        touch(&crashed, hour * 24 * 365 * 60); // older than any process here
        let crashed2 = dir.path().join(".db.tmp-1-5");
        touch(&crashed2, hour * 24 * 365 * 60);
        // Not ours to remove: a live writer's (newer than us), another
        // file's, and a directory.
        let live = dir.path().join(".db.tmp-999999-1");
        touch(&live, Duration::ZERO);
        let other = dir.path().join(".other.tmp-1");
        touch(&other, hour * 24 * 365 * 60);
        fs::create_dir(dir.path().join(".db.tmp-dir")).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!crashed.exists() && !crashed2.exists());
        assert!(live.exists() && other.exists());
        assert!(dir.path().join(".db.tmp-dir").is_dir());
    }

    #[test]
    fn parallel_writes_of_one_path_never_clash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_atomic(path, &[i; 64], 0o600).unwrap();
                    }
                });
            }
        });
        let got = fs::read(&path).unwrap();
        assert!(got.len() == 64 && got.iter().all(|b| *b == got[0]));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn this_process_started_in_the_past() {
        let start = process_start().expect("/proc tells");
        assert!(start <= SystemTime::now());
        assert!(SystemTime::now().duration_since(start).unwrap() < Duration::from_secs(86_400));
    }
}
