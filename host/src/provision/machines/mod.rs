//! Machine records (checklist F1): a directory of one brace file per
//! machine, named by its MAC with dashes (`52-54-00-12-34-56.conf`),
//! saying what that machine gets: its image, disk, host name, SSH
//! credentials and whether it installs once, always or never
//! ([`record`]); and what its next network boot does ([`boot`]).
//!
//! The servers share one [`Machines`] per directory ([`Machines::open`]).
//! It notices changes by polling: at most once a second, when asked for
//! a record, it reads the directory and the `stat` of each `.conf` file,
//! and reads the records again only when a name, size, inode or mtime
//! changed. Polling was chosen over inotify because it needs no thread
//! and no descriptor in the three servers' own loops, has no watch limit,
//! and sees a file edited in place as well as one renamed into place;
//! its cost is one `stat` per record per second while machines boot.
//! [`Machines::reload`] reads them at once (SIGHUP).
//!
//! A bad record is logged with `file:line:column` and what is wrong, and
//! left out; the other machines keep being served. Every write (`ze
//! machines`, the installed mark) is atomic and made under an exclusive
//! lock on `<dir>/.lock`, so a record read, changed and written back is
//! never a mix of two writers.

pub mod boot;
pub mod record;

pub use record::{Install, Installed, Record, Ssh};

use crate::{config::schema::ConfigError, fsutil, provision::mac::Mac, provision::shared::PerDir};
use std::{
    collections::BTreeMap,
    fs, io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

/// The log target of record loading.
pub const TARGET: &str = "machines";
/// The records' file name suffix.
pub const SUFFIX: &str = ".conf";
/// The most records read from one directory.
pub const MAX_RECORDS: usize = 4096;
/// The largest record file read.
pub const MAX_RECORD_BYTES: u64 = 64 << 10;
/// How often the directory is checked for changes, at most.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// The lock file serialising writers.
pub const LOCK_FILE: &str = ".lock";

/// A record that could not be used, or a write that failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The text is not a valid record.
    #[error("{}:{source}", file.display())]
    Invalid { file: PathBuf, source: ConfigError },
    /// A `.conf` file whose name is not a MAC.
    #[error(
        "{}: not a machine record name: name records <mac with dashes>.conf, e.g. 52-54-00-12-34-56.conf",
        file.display()
    )]
    BadName { file: PathBuf },
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("{}: {len} bytes: a record is at most {MAX_RECORD_BYTES} bytes", file.display())]
    TooLarge { file: PathBuf, len: u64 },
    /// More than [`MAX_RECORDS`] in the directory.
    #[error("{}: more than {MAX_RECORDS} records: the rest are not read", dir.display())]
    TooMany { dir: PathBuf },
    /// Reading or writing failed.
    #[error("{}: {source}", file.display())]
    Io { file: PathBuf, source: io::Error },
    /// A change that was not made, and why.
    #[error("{}: {why}", file.display())]
    Refused { file: PathBuf, why: String },
}

fn io_error(file: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        file: file.to_path_buf(),
        source,
    }
}

/// The record file of `mac` in `dir`.
pub fn record_path(dir: &Path, mac: Mac) -> PathBuf {
    dir.join(format!("{}{SUFFIX}", mac.dashed()))
}

/// What one read of a directory found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The valid records.
    pub records: BTreeMap<Mac, Record>,
    /// The files left out, and why.
    pub errors: Vec<RecordError>,
}

/// What identifies a version of one file.
type Stamp = (String, u64, u64, Option<SystemTime>);

/// The `.conf` entries of `dir` (names in order) with their stamps; a
/// missing directory has none.
fn stamps(dir: &Path) -> io::Result<Vec<Stamp>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(SUFFIX) {
            continue;
        }
        // A file removed between the listing and the stat is simply gone.
        let Ok(meta) = fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_file() {
            out.push((name, meta.ino(), meta.len(), meta.modified().ok()));
        }
        if out.len() > MAX_RECORDS {
            break;
        }
    }
    out.sort();
    Ok(out)
}

/// Read one record file.
pub fn read_record(file: &Path) -> Result<Record, RecordError> {
    let meta = fs::metadata(file).map_err(io_error(file))?;
    if meta.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            file: file.into(),
            len: meta.len(),
        });
    }
    let text = fs::read_to_string(file).map_err(io_error(file))?;
    record::parse(&text).map_err(|source| RecordError::Invalid {
        file: file.into(),
        source,
    })
}

/// Read every record of `dir` (a missing directory holds none).
pub fn load(dir: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let list = match stamps(dir) {
        Ok(l) => l,
        Err(source) => {
            loaded.errors.push(RecordError::Io {
                file: dir.into(),
                source,
            });
            return loaded;
        }
    };
    for (i, (name, ..)) in list.iter().enumerate() {
        let file = dir.join(name);
        if i == MAX_RECORDS {
            loaded.errors.push(RecordError::TooMany { dir: dir.into() });
            break;
        }
        let Ok(mac) = name.trim_end_matches(SUFFIX).parse::<Mac>() else {
            loaded.errors.push(RecordError::BadName { file });
            continue;
        };
        // One spelling per machine: the file `ze machines` writes.
        if record_path(dir, mac) != file {
            loaded.errors.push(RecordError::BadName { file });
            continue;
        }
        match read_record(&file) {
            Ok(r) => {
                loaded.records.insert(mac, r);
            }
            Err(e) => loaded.errors.push(e),
        }
    }
    loaded
}

/// An exclusive lock on a records directory, released on drop.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] fs::File);

/// Lock `dir` for a read-modify-write (creating the directory).
pub fn lock(dir: &Path) -> Result<DirLock, RecordError> {
    fs::create_dir_all(dir).map_err(io_error(dir))?;
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_error(&path)(e.into()))?;
    Ok(DirLock(file))
}

/// What an edit does with the record it is shown.
#[derive(Debug)]
pub enum Edit {
    /// Leave the file as it is.
    Keep,
    /// Write this record.
    Write(Record),
    /// Remove the file.
    Remove,
    /// Change nothing, and fail with this reason.
    Refuse(String),
}

/// What an edit found and left.
#[derive(Debug)]
pub struct Edited {
    pub file: PathBuf,
    /// The record before (`None`: there was no file).
    pub before: Option<Record>,
    /// What the edit decided.
    pub edit: Edit,
}

/// Read-modify-write the record of `mac` under the directory's lock:
/// `decide` sees the current record (`None` when there is no file, an
/// error for a bad one) and says what to do. With `dry_run` nothing is
/// written (and no lock file is created).
pub fn edit(
    dir: &Path,
    mac: Mac,
    dry_run: bool,
    decide: impl FnOnce(Option<Result<&Record, &RecordError>>) -> Edit,
) -> Result<Edited, RecordError> {
    let _lock = if dry_run { None } else { Some(lock(dir)?) };
    let file = record_path(dir, mac);
    let current = match fs::symlink_metadata(&file) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&file)(e)),
        Ok(_) => Some(read_record(&file)),
    };
    let edit = decide(current.as_ref().map(|r| r.as_ref()));
    let before = current.and_then(Result::ok);
    match &edit {
        Edit::Refuse(why) => {
            return Err(RecordError::Refused {
                file,
                why: why.clone(),
            });
        }
        _ if dry_run => {}
        Edit::Keep => {}
        Edit::Write(r) => {
            // A record with a password hash is for root's eyes only.
            let mode = if r.ssh.is_some() { 0o600 } else { 0o644 };
            fsutil::write_atomic(&file, record::render(mac, r).as_bytes(), mode)
                .map_err(io_error(&file))?;
        }
        Edit::Remove => {
            fs::remove_file(&file).map_err(io_error(&file))?;
            fsutil::sync_dir(dir).map_err(io_error(dir))?;
        }
    }
    Ok(Edited { file, before, edit })
}

/// The records of one directory as the servers see them.
#[derive(Debug)]
pub struct Machines {
    dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    records: BTreeMap<Mac, Record>,
    stamps: Option<Vec<Stamp>>,
    checked: Option<Instant>,
    /// The daemon's SIGHUP count when the records were last read.
    reloads: u64,
}

static OPEN: PerDir<Machines> = PerDir::new();

impl Machines {
    /// The records of `dir`, shared by every server of this process
    /// that names the same directory; read now, and logged.
    pub fn open(dir: &Path) -> Arc<Machines> {
        OPEN.get(dir, |dir| {
            let m = Machines {
                dir,
                state: Mutex::new(State {
                    records: BTreeMap::new(),
                    stamps: None,
                    checked: None,
                    reloads: crate::daemon::reload_generation(),
                }),
            };
            m.reload();
            m
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record of `mac`, if it has a valid one (the directory is
    /// checked for changes first, at most every [`POLL_EVERY`]).
    pub fn get(&self, mac: Mac) -> Option<Record> {
        self.fresh().records.get(&mac).cloned()
    }

    /// How many valid records there are now (checked for changes first,
    /// like [`Machines::get`]).
    pub fn count(&self) -> usize {
        self.fresh().records.len()
    }

    /// The state, read again first when a SIGHUP came or the poll is due.
    fn fresh(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let reloads = crate::daemon::reload_generation();
        if reloads != state.reloads {
            state.reloads = reloads;
            self.refresh(&mut state, true);
        } else if state.checked.is_none_or(|t| t.elapsed() >= POLL_EVERY) {
            self.refresh(&mut state, false);
        }
        state
    }

    /// How many valid records there are.
    pub fn len(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Read the records again now, changed or not (SIGHUP).
    pub fn reload(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut state, true);
    }

    fn refresh(&self, state: &mut State, always: bool) {
        state.checked = Some(Instant::now());
        let now = match stamps(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: TARGET, dir = %self.dir.display(), "cannot read the machine records: {e}; keeping the ones read before");
                return;
            }
        };
        if !always && state.stamps.as_ref() == Some(&now) {
            return;
        }
        let loaded = load(&self.dir);
        for e in &loaded.errors {
            tracing::warn!(target: TARGET, "{e}; this record is ignored");
        }
        tracing::info!(target: TARGET, dir = %self.dir.display(), records = loaded.records.len(), ignored = loaded.errors.len(), "machine records read");
        state.records = loaded.records;
        state.stamps = Some(now);
    }

    /// Mark `mac` installed with `image` at `at` (UNIX seconds) when its
    /// record says `install once` (checklist F4); returns whether it did.
    /// Written atomically by the same writer as `ze machines`.
    pub fn mark_installed(&self, mac: Mac, image: &str, at: i64) -> Result<bool, RecordError> {
        let done = edit(&self.dir, mac, false, |current| match current {
            Some(Ok(r)) if r.install == Install::Once => Edit::Write(Record {
                installed: Some(Installed {
                    at,
                    image: image.into(),
                }),
                ..r.clone()
            }),
            _ => Edit::Keep,
        })?;
        let marked = matches!(done.edit, Edit::Write(_));
        if marked {
            tracing::info!(target: TARGET, mac = %mac, image, file = %done.file.display(), "installed: the next network boot boots the local disk");
            self.reload();
        }
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[test]
    fn f1_a_directory_of_records_with_bad_ones_left_out() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        fs::write(
            dir.join("52-54-00-00-00-01.conf"),
            "image a.img;\ninstall once;\n",
        )
        .unwrap();
        fs::write(
            dir.join("52-54-00-00-00-02.conf"),
            "image a.img;\n\ninstall twice;\n",
        )
        .unwrap();
        fs::write(dir.join("52:54:00:00:00:03.conf"), "image a.img;").unwrap();
        fs::write(dir.join("52-54-00-00-00-0A.conf"), "image a.img;").unwrap();
        fs::write(dir.join("notes.conf"), "image a.img;").unwrap();
        fs::write(dir.join("52-54-00-00-00-04.conf.bak"), "garbage").unwrap();
        fs::write(dir.join(".52-54-00-00-00-05.conf.tmp-1"), "garbage").unwrap();
        fs::write(
            dir.join("52-54-00-00-00-06.conf"),
            vec![b'#'; MAX_RECORD_BYTES as usize + 1],
        )
        .unwrap();
        let loaded = load(dir);
        assert_eq!(
            loaded.records.keys().copied().collect::<Vec<_>>(),
            [mac("52:54:00:00:00:01")]
        );
        let errors: Vec<String> = loaded.errors.iter().map(|e| e.to_string()).collect();
        let f = |n: &str| dir.join(n).display().to_string();
        assert_eq!(
            errors,
            [
                format!(
                    "{}:3:1: machine.install: \"twice\": expected once, always or never",
                    f("52-54-00-00-00-02.conf")
                ),
                format!(
                    "{}: {} bytes: a record is at most 65536 bytes",
                    f("52-54-00-00-00-06.conf"),
                    MAX_RECORD_BYTES + 1
                ),
                format!(
                    "{}: not a machine record name: name records <mac with dashes>.conf, e.g. 52-54-00-12-34-56.conf",
                    f("52-54-00-00-00-0A.conf")
                ),
                format!(
                    "{}: not a machine record name: name records <mac with dashes>.conf, e.g. 52-54-00-12-34-56.conf",
                    f("52:54:00:00:00:03.conf")
                ),
                format!(
                    "{}: not a machine record name: name records <mac with dashes>.conf, e.g. 52-54-00-12-34-56.conf",
                    f("notes.conf")
                ),
            ]
        );
        assert!(load(&dir.join("missing")).records.is_empty());
    }

    #[test]
    fn f1_changes_are_seen_by_polling_and_reload() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("machines");
        let m = Machines::open(&dir);
        assert!(Arc::ptr_eq(
            &m,
            &Machines::open(&d.path().join("./machines"))
        ));
        let a = mac("52:54:00:00:00:01");
        assert_eq!(m.get(a), None);
        edit(&dir, a, false, |_| Edit::Write(Record::new("one.img"))).unwrap();
        m.reload();
        assert_eq!(m.get(a).unwrap().image, "one.img");
        // Edited in place (same inode, new length): seen within a poll.
        fs::write(record_path(&dir, a), "image second.img;\n").unwrap();
        let deadline = Instant::now() + POLL_EVERY * 3;
        while m.get(a).unwrap().image != "second.img" {
            assert!(Instant::now() < deadline, "the change was not seen");
            std::thread::sleep(Duration::from_millis(50));
        }
        // A bad edit: that record is left out, the others stay.
        let b = mac("52:54:00:00:00:02");
        edit(&dir, b, false, |_| Edit::Write(Record::new("b.img"))).unwrap();
        fs::write(record_path(&dir, a), "image second.img\n").unwrap();
        m.reload();
        assert_eq!(m.get(a), None);
        assert_eq!(m.get(b).unwrap().image, "b.img");
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn f4_installed_mark_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let m = Machines::open(dir);
        let (once, always) = (mac("52:54:00:00:00:01"), mac("52:54:00:00:00:02"));
        let mut r = Record::new("ze-1.img");
        r.install = Install::Once;
        r.hostname = Some("n1".into());
        edit(dir, once, false, |_| Edit::Write(r.clone())).unwrap();
        edit(dir, always, false, |_| Edit::Write(Record::new("ze-1.img"))).unwrap();
        assert!(m.mark_installed(once, "ze-1.img", 1_781_712_000).unwrap());
        assert!(!m.mark_installed(always, "ze-1.img", 1_781_712_000).unwrap());
        assert!(
            !m.mark_installed(mac("52:54:00:00:00:03"), "ze-1.img", 1)
                .unwrap()
        );
        assert!(!record_path(dir, mac("52:54:00:00:00:03")).exists());
        let got = m.get(once).unwrap();
        assert_eq!(
            got.installed,
            Some(Installed {
                at: 1_781_712_000,
                image: "ze-1.img".into()
            })
        );
        assert_eq!(got.hostname.as_deref(), Some("n1"), "the rest is kept");
        assert_eq!(read_record(&record_path(dir, once)).unwrap(), got);
        assert_eq!(m.get(always).unwrap().installed, None);
        let text = fs::read_to_string(record_path(dir, once)).unwrap();
        assert!(
            text.contains("installed {\n    at 2026-06-17T16:00:00Z;\n    image ze-1.img;\n}\n"),
            "{text}"
        );
        // No staging file is left; only the records and the lock.
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".lock", "52-54-00-00-00-01.conf", "52-54-00-00-00-02.conf"]
        );
    }

    #[test]
    fn f2_edits_refuse_remove_and_dry_run() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("m");
        let a = mac("52:54:00:00:00:01");
        let e = edit(&dir, a, true, |_| Edit::Write(Record::new("x.img"))).unwrap();
        assert!(e.before.is_none());
        assert!(!dir.exists(), "a dry run creates nothing");
        edit(&dir, a, false, |_| Edit::Write(Record::new("x.img"))).unwrap();
        let err = edit(&dir, a, false, |cur| match cur {
            Some(Ok(_)) => Edit::Refuse("exists".into()),
            _ => Edit::Keep,
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: exists", record_path(&dir, a).display())
        );
        fs::write(record_path(&dir, a), "image x.img; bogus;").unwrap();
        let seen = edit(&dir, a, false, |cur| {
            assert!(matches!(cur, Some(Err(RecordError::Invalid { .. }))));
            Edit::Remove
        })
        .unwrap();
        assert!(seen.before.is_none());
        assert!(!record_path(&dir, a).exists());
    }
}
