//! One row of the status table and the table itself: where a machine
//! stands, how it moves from stage to stage, and the bounds that hold
//! whatever the network sends.

use super::Refused;
use crate::provision::mac::Mac;
use serde::{Deserialize, Serialize};
use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::Ipv4Addr,
};

/// The most machines in the table.
pub const MAX_MACHINES: usize = 4096;
/// The most timeline steps kept for one machine (the oldest go first).
pub const MAX_TIMELINE: usize = 64;
/// The longest text field (a FATAL line, a detail, a host name), in characters.
pub const MAX_TEXT: usize = 256;

/// Where a machine stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    #[default]
    Dhcp,
    Pxe,
    Ipxe,
    Kernel,
    Initrd,
    Network,
    Disk,
    Image,
    Verified,
    Database,
    Complete,
    Up,
    Failed,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 13] = [
        Stage::Dhcp,
        Stage::Pxe,
        Stage::Ipxe,
        Stage::Kernel,
        Stage::Initrd,
        Stage::Network,
        Stage::Disk,
        Stage::Image,
        Stage::Verified,
        Stage::Database,
        Stage::Complete,
        Stage::Up,
        Stage::Failed,
    ];

    /// The stage's name in every view.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Dhcp => "dhcp",
            Stage::Pxe => "pxe",
            Stage::Ipxe => "ipxe",
            Stage::Kernel => "kernel",
            Stage::Initrd => "initrd",
            Stage::Network => "network",
            Stage::Disk => "disk",
            Stage::Image => "image",
            Stage::Verified => "verified",
            Stage::Database => "database",
            Stage::Complete => "complete",
            Stage::Up => "up",
            Stage::Failed => "failed",
        }
    }

    /// Whether the machine is done moving (until it boots again).
    pub fn is_final(self) -> bool {
        matches!(self, Stage::Complete | Stage::Up | Stage::Failed)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One step of a machine's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Milliseconds since the UNIX epoch.
    pub at: u64,
    pub stage: Stage,
    pub detail: String,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub mac: Mac,
    pub ip: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub stage: Stage,
    /// Image bytes written (mapped bytes for a block-map install).
    pub bytes: u64,
    /// Of this many.
    pub total: u64,
    /// `bytes`/`total` count a block map's mapped bytes.
    pub map: bool,
    /// Bytes a second between the last two progress reports.
    pub rate: u64,
    /// When this boot began, ms since the epoch.
    pub started: u64,
    /// The last event, ms since the epoch.
    pub updated: u64,
    /// The FATAL line that stopped it.
    pub error: Option<String>,
    pub timeline: VecDeque<Step>,
    /// An install completed and no new one began: a plain DHCP request
    /// is the appliance.
    pub completed: bool,
    /// It took a lease from our DHCP server: kept when the table is full.
    pub leased: bool,
    /// The last progress report (ms, bytes), for the rate.
    pub sample: Option<(u64, u64)>,
}

/// `text` as a table field: at most `max` characters, control characters
/// replaced by `?`, so no field can forge a terminal or log line.
pub fn clean(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// `n` bytes for a person: `512 B`, `11.2 MiB`, `2.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

impl Machine {
    pub(super) fn new(mac: Mac, now: u64) -> Machine {
        Machine {
            mac,
            ip: None,
            hostname: None,
            stage: Stage::Dhcp,
            bytes: 0,
            total: 0,
            map: false,
            rate: 0,
            started: now,
            updated: now,
            error: None,
            timeline: VecDeque::new(),
            completed: false,
            leased: false,
            sample: None,
        }
    }

    pub(super) fn restart(&mut self, now: u64) {
        self.started = now;
        self.bytes = 0;
        self.total = 0;
        self.map = false;
        self.rate = 0;
        self.sample = None;
        self.error = None;
    }

    pub(super) fn set(&mut self, now: u64, stage: Stage, detail: String) {
        self.stage = stage;
        if self.timeline.len() >= MAX_TIMELINE {
            self.timeline.pop_front();
        }
        self.timeline.push_back(Step {
            at: now,
            stage,
            detail: clean(&detail, MAX_TEXT),
        });
    }

    /// Move to `stage` by the rules of the module docs.
    pub(super) fn enter(&mut self, now: u64, stage: Stage, detail: String) {
        let first = self.timeline.is_empty();
        let starts_over = match stage {
            // The boot chain again after the machine got past it.
            Stage::Dhcp | Stage::Pxe | Stage::Ipxe | Stage::Kernel | Stage::Initrd => {
                self.stage > Stage::Initrd
            }
            // The installer's first report: a new install.
            Stage::Network => self.stage >= Stage::Network,
            _ => false,
        };
        if starts_over {
            self.restart(now);
            self.set(now, stage, detail);
        } else if first || stage > self.stage || stage == Stage::Failed {
            self.set(now, stage, detail);
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    pub machines: HashMap<Mac, Machine>,
    pub(super) by_ip: HashMap<Ipv4Addr, Mac>,
    /// Rows without a lease, oldest first: replaced when the table is full.
    pub(super) evictable: VecDeque<Mac>,
    pub dirty: bool,
}

impl Table {
    /// A table of `machines` (read from the state file), within bounds.
    pub fn from_rows(mut rows: Vec<Machine>) -> Table {
        rows.sort_by_key(|m| m.updated);
        let mut t = Table::default();
        for m in rows.into_iter().rev().take(MAX_MACHINES).rev() {
            t.insert(m);
        }
        t
    }

    pub(super) fn insert(&mut self, mut m: Machine) {
        m.hostname = m.hostname.map(|h| clean(&h, MAX_TEXT));
        m.error = m.error.map(|e| clean(&e, MAX_TEXT));
        while m.timeline.len() > MAX_TIMELINE {
            m.timeline.pop_front();
        }
        for s in &mut m.timeline {
            s.detail = clean(&s.detail, MAX_TEXT);
        }
        if let Some(ip) = m.ip {
            self.by_ip.insert(ip, m.mac);
        }
        if !m.leased {
            self.evictable.push_back(m.mac);
        }
        self.machines.insert(m.mac, m);
    }

    /// The row of `mac`, made when `create` and there is room.
    pub(super) fn row(
        &mut self,
        mac: Mac,
        now: u64,
        create: bool,
    ) -> Result<&mut Machine, Refused> {
        if !self.machines.contains_key(&mac) {
            if !create {
                return Err(Refused::NotFollowed);
            }
            if self.machines.len() >= MAX_MACHINES && !self.evict_one() {
                return Err(Refused::Full);
            }
            self.insert(Machine::new(mac, now));
        }
        Ok(self.machines.get_mut(&mac).expect("inserted above"))
    }

    pub(super) fn evict_one(&mut self) -> bool {
        while let Some(old) = self.evictable.pop_front() {
            if self.machines.get(&old).is_some_and(|m| !m.leased) {
                let gone = self.machines.remove(&old).expect("checked");
                if let Some(ip) = gone.ip
                    && self.by_ip.get(&ip) == Some(&old)
                {
                    self.by_ip.remove(&ip);
                }
                return true;
            }
        }
        false
    }

    pub(super) fn set_ip(&mut self, mac: Mac, ip: Ipv4Addr) {
        let Some(m) = self.machines.get_mut(&mac) else {
            return;
        };
        if let Some(old) = m.ip.replace(ip)
            && old != ip
            && self.by_ip.get(&old) == Some(&mac)
        {
            self.by_ip.remove(&old);
        }
        self.by_ip.insert(ip, mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1 << 29), "512.0 MiB");
        assert_eq!(human_bytes(11_744_051), "11.2 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }
}
