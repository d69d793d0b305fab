//! The status table on disk: `<state-dir>/fleet.json`, replaced
//! atomically at most every [`SAVE_EVERY`] while rows change (never once
//! per progress report) and when the table is let go, and read when it
//! is opened, so a restart of the servers loses nothing.

use super::{Fleet, Machine, Table};
use crate::fsutil;
use serde::{Deserialize, Serialize};
use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::Duration,
};

/// The file name in the state directory.
pub const FILE: &str = "fleet.json";
/// How often changed rows are saved, at most.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// The largest state file read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// The format's version.
pub const VERSION: u32 = 1;
/// The log target.
pub const TARGET: &str = "fleet";

/// Why the state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: more than {MAX_FILE_BYTES} bytes: not a status file ze wrote", file.display())]
    TooLarge { file: PathBuf },
    #[error("{}: not a status file: {source}", file.display())]
    Bad {
        file: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: version {version}; this ze reads version {VERSION}", file.display())]
    Version { file: PathBuf, version: u32 },
}

#[derive(Serialize)]
struct Out<'a> {
    version: u32,
    machines: Vec<&'a Machine>,
}

#[derive(Deserialize)]
struct In {
    version: u32,
    machines: Vec<Machine>,
}

/// The state file of `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The rows saved in `state_dir` (none when there is no file yet).
pub fn read(state_dir: &Path) -> Result<Vec<Machine>, PersistError> {
    let file = path(state_dir);
    let io = |source| PersistError::Io {
        file: file.clone(),
        source,
    };
    let f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(PersistError::TooLarge { file });
    }
    let state: In = serde_json::from_slice(&bytes).map_err(|source| PersistError::Bad {
        file: file.clone(),
        source,
    })?;
    if state.version != VERSION {
        return Err(PersistError::Version {
            file,
            version: state.version,
        });
    }
    Ok(state.machines)
}

/// The table saved in `state_dir`; a file that cannot be read is logged
/// and the table starts empty (the next save replaces the file).
pub(super) fn load(state_dir: &Path) -> Table {
    match read(state_dir) {
        Ok(rows) => {
            if !rows.is_empty() {
                tracing::info!(target: TARGET, file = %path(state_dir).display(), machines = rows.len(), "status restored");
            }
            Table::from_rows(rows)
        }
        Err(e) => {
            tracing::warn!(target: TARGET, "{e}; starting with an empty status table");
            Table::default()
        }
    }
}

/// Write the table if it changed since the last write.
pub(super) fn save_if_dirty(fleet: &Fleet) {
    let bytes = {
        let mut table = fleet.table();
        if !table.dirty {
            return;
        }
        table.dirty = false;
        let mut machines: Vec<&Machine> = table.machines.values().collect();
        machines.sort_by_key(|m| m.mac);
        serde_json::to_vec(&Out {
            version: VERSION,
            machines,
        })
    };
    let file = path(fleet.state_dir());
    let written = bytes.map_err(std::io::Error::other).and_then(|b| {
        std::fs::create_dir_all(fleet.state_dir())?;
        fsutil::write_atomic(&file, &b, 0o644)
    });
    if let Err(e) = written {
        fleet.table().dirty = true;
        tracing::warn!(target: TARGET, file = %file.display(), "cannot save the status table: {e}; trying again in {}s", SAVE_EVERY.as_secs());
    }
}

/// Save `fleet` every [`SAVE_EVERY`] from a background thread, once per
/// table, until the table is let go (the thread holds it only weakly).
pub(super) fn keep_saving(fleet: &Arc<Fleet>) {
    fleet.saver.call_once(|| {
        let weak: Weak<Fleet> = Arc::downgrade(fleet);
        let spawned = std::thread::Builder::new()
            .name("fleet-save".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(SAVE_EVERY);
                    let Some(fleet) = weak.upgrade() else {
                        break;
                    };
                    save_if_dirty(&fleet);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(target: TARGET, "cannot start the status saver: {e}; the table is saved only when the servers stop");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::{tests::*, *};
    use super::*;

    #[test]
    fn f5_the_table_and_timeline_survive_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("state");
        let (a, b) = (mac(1), mac(2));
        {
            let f = Fleet::open(&state);
            f.event_at(
                a,
                dhcp(DhcpMessage::Ack, "192.0.2.2", DhcpClient::Firmware),
                1_000,
            )
            .unwrap();
            f.event_at(a, Event::Fetch(Fetch::Kernel), 2_000).unwrap();
            f.report_at(
                b,
                Report::Fatal {
                    line: "FATAL: no disk".into(),
                },
                "192.0.2.3".parse().unwrap(),
                3_000,
            )
            .unwrap();
        }
        // Let go: saved at once.
        let rows = read(&state).unwrap();
        assert_eq!(rows.len(), 2);
        let f = Fleet::open(&state);
        let row = f.machine(a).unwrap();
        assert_eq!(row.stage, Stage::Kernel);
        assert_eq!(row.timeline.len(), 2);
        assert_eq!(f.mac_of("192.0.2.2".parse().unwrap()), Some(a));
        assert_eq!(
            f.machine(b).unwrap().error.as_deref(),
            Some("FATAL: no disk")
        );
        // Saved in the background while in use, within a second or two.
        f.event_at(a, Event::Fetch(Fetch::Initrd), 4_000).unwrap();
        let deadline = std::time::Instant::now() + SAVE_EVERY * 4;
        loop {
            let saved = read(&state).unwrap();
            if saved.iter().any(|m| m.mac == a && m.stage == Stage::Initrd) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not saved in the background"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn f5_a_bad_state_file_starts_an_empty_table() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            path(d.path()),
            b"{\"version\":1,\"machines\":[{\"mac\":\"zz\"}]}",
        )
        .unwrap();
        assert!(matches!(read(d.path()), Err(PersistError::Bad { .. })));
        std::fs::write(path(d.path()), b"{\"version\":9,\"machines\":[]}").unwrap();
        assert_eq!(
            read(d.path()).unwrap_err().to_string(),
            format!(
                "{}: version 9; this ze reads version 1",
                path(d.path()).display()
            )
        );
        let f = Fleet::open(d.path());
        assert!(f.machines().is_empty());
        assert!(read(&d.path().join("none")).unwrap().is_empty());
    }

    #[test]
    fn f5_rows_read_back_are_bounded() {
        let mut row = Machine::new(mac(1), 1_000_000);
        row.hostname = Some("h\u{7}".repeat(400));
        row.timeline = (0..200)
            .map(|i| Step {
                at: i,
                stage: Stage::Dhcp,
                detail: "d".into(),
            })
            .collect();
        let rows: Vec<Machine> = (0..MAX_MACHINES as u32 + 10)
            .map(|i| Machine::new(mac(i + 10), u64::from(i)))
            .chain([row])
            .collect();
        let t = Table::from_rows(rows);
        assert_eq!(t.machines.len(), MAX_MACHINES);
        let back = &t.machines[&mac(1)];
        assert_eq!(back.timeline.len(), MAX_TIMELINE);
        assert_eq!(back.hostname.as_ref().unwrap().chars().count(), MAX_TEXT);
        assert!(!back.hostname.as_ref().unwrap().contains('\u{7}'));
        assert!(
            !t.machines.contains_key(&mac(10)),
            "the oldest are left out"
        );
    }
}
