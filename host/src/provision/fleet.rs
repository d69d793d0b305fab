//! How a server reaches the fleet: the three servers' shared view of the
//! machine records ([`Machines`]) and of the status table ([`Fleet`]),
//! read from the same three settings in each server's block:
//!
//! ```text
//! state-dir /srv/pxe/state;      # the status table is kept here (fleet.json)
//! machines /srv/pxe/machines;    # optional: the machine records
//! unknown ignore;                # optional: follow (default) | ignore
//! ```
//!
//! Servers of one process naming the same directories share one table and
//! one set of records ([`crate::provision::shared`]). A server without a
//! `state-dir` keeps no status; one without `machines` serves every
//! machine as its block says.

use crate::{
    config::schema::{Block, ConfigError},
    provision::{
        mac::Mac,
        machines::{
            Machines,
            boot::{NextBoot, Unknown, next_boot},
            record::Record,
        },
        status::{Event, Fleet},
    },
};
use std::{path::PathBuf, sync::Arc};

/// The fleet settings of one server block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetConfig {
    pub state_dir: Option<PathBuf>,
    pub machines: Option<PathBuf>,
    pub unknown: Unknown,
}

/// Read `machines` and `unknown` from `block`; `state_dir` is the
/// block's own `state-dir`, read by the caller with its other settings.
pub fn read_config(
    block: &Block<'_>,
    state_dir: Option<PathBuf>,
) -> Result<FleetConfig, ConfigError> {
    let machines = block.abs_path("machines")?;
    let unknown = block
        .parse::<Unknown>("unknown", "follow or ignore")?
        .unwrap_or_default();
    if unknown == Unknown::Ignore && machines.is_none() {
        return Err(block.error(
            block.pos(),
            "unknown",
            "`unknown ignore` needs `machines DIR`: without records every machine is unknown",
        ));
    }
    Ok(FleetConfig {
        state_dir,
        machines,
        unknown,
    })
}

/// One server's handles on the fleet.
#[derive(Debug, Clone, Default)]
pub struct FleetLink {
    /// The status table, when the server has a state directory.
    pub status: Option<Arc<Fleet>>,
    /// The machine records, when the server names a directory.
    pub machines: Option<Arc<Machines>>,
    /// What a machine without a record gets.
    pub unknown: Unknown,
}

impl FleetLink {
    /// Open (or join) the table and the records `config` names.
    pub fn open(config: &FleetConfig) -> FleetLink {
        FleetLink {
            status: config.state_dir.as_deref().map(Fleet::open),
            machines: config.machines.as_deref().map(Machines::open),
            unknown: config.unknown,
        }
    }

    /// The record of `mac`, if there are records and it has a valid one.
    pub fn record(&self, mac: Mac) -> Option<Record> {
        self.machines.as_ref()?.get(mac)
    }

    /// Whether any machine can be treated differently from the block's
    /// own settings: there are records, or machines without one are
    /// ignored. An empty records directory changes nothing.
    pub fn per_machine(&self) -> bool {
        self.machines
            .as_ref()
            .is_some_and(|m| self.unknown == Unknown::Ignore || m.count() > 0)
    }

    /// The next network boot of a machine with `record`.
    pub fn next_boot<'a>(&self, record: Option<&'a Record>) -> NextBoot<'a> {
        next_boot(record, self.unknown)
    }

    /// Tell the status table, if there is one. Refusals (a full table) are
    /// counted there; a server never fails for them.
    pub fn event(&self, mac: Mac, event: Event) {
        if let Some(status) = &self.status {
            let _ = status.event(mac, event);
        }
    }

    /// Reread the records now (SIGHUP).
    pub fn reload(&self) {
        if let Some(m) = &self.machines {
            m.reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::brace;

    fn read(text: &str) -> Result<FleetConfig, ConfigError> {
        let doc = brace::parse(text).unwrap();
        let b = Block::new(&doc.nodes[0], "imageserver").unwrap();
        read_config(&b, None)
    }

    #[test]
    fn f1_fleet_settings() {
        assert_eq!(read("imageserver { }").unwrap(), FleetConfig::default());
        let c = read("imageserver { machines /srv/m; unknown ignore; }").unwrap();
        assert_eq!(c.machines.as_deref(), Some(std::path::Path::new("/srv/m")));
        assert_eq!(c.unknown, Unknown::Ignore);
        assert_eq!(
            read("imageserver { unknown ignore; }")
                .unwrap_err()
                .to_string(),
            "1:1: imageserver.unknown: `unknown ignore` needs `machines DIR`: without records every machine is unknown"
        );
        assert!(
            read("imageserver { machines /m; unknown maybe; }")
                .unwrap_err()
                .to_string()
                .contains("imageserver.unknown")
        );
    }
}
