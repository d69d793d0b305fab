//! The fleet's status table (checklist F5): one row per machine — where
//! it stands, its address and host name, the bytes of its image written,
//! the error that stopped it, and a bounded timeline — fed by events from
//! the three servers and the installer's reports, and read by the views
//! (`provision::views`).
//!
//! [`Fleet::open`] returns the one table of a state directory in this
//! process, so the dhcpserver, the tftpserver and the imageserver,
//! configured separately, feed the same rows. It is saved to
//! `<state-dir>/fleet.json` at most once a second by a background thread
//! and when the last user lets go of it, and read back on open
//! ([`persist`]).
//!
//! Stages, in order: `dhcp`, `pxe` (bootfile over TFTP), `ipxe`
//! (boot.ipxe), `kernel`, `initrd`, `network`, `disk`, `image`,
//! `verified`, `database`, `complete`, `up` — and `failed`. A machine
//! moves forward only; it starts over when its boot chain (DHCP from its
//! firmware or iPXE, the bootfile, boot.ipxe, the kernel) or the
//! installer's first report (`network`) comes again after it got further.
//! `up` is the appliance itself: after an install completed, a DHCP
//! request that is neither PXE firmware nor iPXE (the appliance's own
//! client), or the appliance telling so.
//!
//! Bounded whatever the network sends: at most [`MAX_MACHINES`] rows (a
//! newcomer replaces the oldest row that never took a lease from us, else
//! it is dropped and counted), [`MAX_TIMELINE`] steps a row, text fields
//! cut to [`MAX_TEXT`] characters with control characters replaced.

pub mod persist;
pub mod report;
pub mod row;

pub use report::Report;
pub use row::{MAX_MACHINES, MAX_TEXT, MAX_TIMELINE, Machine, Stage, Step, clean, human_bytes};

use crate::provision::{mac::Mac, shared::PerDir};
use row::Table;
use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// A DHCP message the dhcpserver saw or sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMessage {
    Discover,
    Offer,
    Request,
    Ack,
    Nak,
}

/// Who sent a DHCP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpClient {
    /// The firmware's PXE client (option 60 `PXEClient…`).
    Firmware,
    /// iPXE (option 77 `iPXE`).
    Ipxe,
    /// Anything else: the installer kernel's `ip=dhcp`, the appliance.
    Other,
}

/// A file the imageserver served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    BootScript,
    Kernel,
    Initrd,
    Image,
    Map,
    Database,
    /// The boot script that sends an installed machine to its disk.
    LocalDisk,
}

/// Something that happened to a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The dhcpserver saw or sent `message`; `hostname` is the record's
    /// or, without one, the client's option 12.
    Dhcp {
        message: DhcpMessage,
        ip: Option<Ipv4Addr>,
        client: DhcpClient,
        hostname: Option<String>,
    },
    /// The tftpserver started sending `file`.
    Bootfile { file: String },
    /// The imageserver served a file.
    Fetch(Fetch),
    /// The installer reported.
    Report(Report),
    /// The appliance said it is up.
    Up,
}

/// Counters and gauges of the servers, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes the imageserver sent.
    pub http_bytes: AtomicU64,
    /// Bytes the tftpserver sent.
    pub tftp_bytes: AtomicU64,
    /// TFTP transfers started.
    pub tftp_transfers: AtomicU64,
    /// DHCP leases bound now (a gauge the dhcpserver sets).
    pub leases_in_use: AtomicU64,
    /// Installs that reported `complete`.
    pub installs_completed: AtomicU64,
    /// Installs that reported `fatal`.
    pub installs_failed: AtomicU64,
    /// Events dropped because the table was full.
    pub dropped: AtomicU64,
    /// Installer reports refused (malformed, forged).
    pub rejected_reports: AtomicU64,
}

impl Counters {
    /// Count `n` more of `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Why an event changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A new machine and the table is full of machines with leases.
    #[error("the status table is full ({MAX_MACHINES} machines): dropped")]
    Full,
    /// A report for a machine known at another address.
    #[error("{mac} is at {known}, not at {from}: a report from another address is refused")]
    Forged {
        mac: Mac,
        known: Ipv4Addr,
        from: Ipv4Addr,
    },
    /// A `network` report naming another address than it came from.
    #[error("network: ip {ip} is not the address the report came from ({from})")]
    NotItsAddress { ip: Ipv4Addr, from: Ipv4Addr },
    /// Not a machine the table follows (a plain DHCP client it never saw boot).
    #[error("not a machine being provisioned")]
    NotFollowed,
}

fn dhcp_detail(message: DhcpMessage, ip: Option<Ipv4Addr>, client: DhcpClient) -> String {
    let message = match message {
        DhcpMessage::Discover => "DISCOVER",
        DhcpMessage::Offer => "OFFER",
        DhcpMessage::Request => "REQUEST",
        DhcpMessage::Ack => "ACK",
        DhcpMessage::Nak => "NAK",
    };
    let who = match client {
        DhcpClient::Firmware => "PXE firmware",
        DhcpClient::Ipxe => "iPXE",
        DhcpClient::Other => "DHCP client",
    };
    match ip {
        Some(ip) => format!("{message} {ip} ({who})"),
        None => format!("{message} ({who})"),
    }
}

/// The status table of one state directory.
#[derive(Debug)]
pub struct Fleet {
    state_dir: PathBuf,
    table: Mutex<Table>,
    counters: Counters,
    /// Starts the background saver once.
    saver: std::sync::Once,
}

static OPEN: PerDir<Fleet> = PerDir::new();

impl Fleet {
    /// The table of `state_dir` in this process: read from its state
    /// file the first time, saved in the background while it is used.
    pub fn open(state_dir: &Path) -> Arc<Fleet> {
        let fleet = OPEN.get(state_dir, |dir| Fleet {
            table: Mutex::new(persist::load(&dir)),
            state_dir: dir,
            counters: Counters::default(),
            saver: std::sync::Once::new(),
        });
        persist::keep_saving(&fleet);
        fleet
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The servers' counters and gauges.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every row, by MAC.
    pub fn machines(&self) -> Vec<Machine> {
        let mut rows: Vec<Machine> = self.table().machines.values().cloned().collect();
        rows.sort_by_key(|m| m.mac);
        rows
    }

    /// One row.
    pub fn machine(&self, mac: Mac) -> Option<Machine> {
        self.table().machines.get(&mac).cloned()
    }

    /// The machine last seen at `ip` (for the servers that see addresses,
    /// not MACs: TFTP and HTTP).
    pub fn mac_of(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.table().by_ip.get(&ip).copied()
    }

    /// Record `event` for `mac`, now.
    pub fn event(&self, mac: Mac, event: Event) -> Result<(), Refused> {
        self.event_at(mac, event, crate::timefmt::now_ms())
    }

    /// Record `event` for `mac` at `now` (ms since the epoch).
    pub fn event_at(&self, mac: Mac, event: Event, now: u64) -> Result<(), Refused> {
        let mut table = self.table();
        let create = !matches!(
            event,
            Event::Dhcp {
                client: DhcpClient::Other,
                ..
            }
        );
        let result = Self::apply(&mut table, &self.counters, mac, event, now, create);
        match result {
            Ok(()) => table.dirty = true,
            Err(Refused::Full) => Counters::add(&self.counters.dropped, 1),
            Err(_) => {}
        }
        result
    }

    /// Record the installer's `report` for `mac`, sent from `from`: taken
    /// only from the address the machine is known at, except `network`,
    /// whose `ip` must be `from` and which moves it there.
    pub fn report_at(
        &self,
        mac: Mac,
        report: Report,
        from: Ipv4Addr,
        now: u64,
    ) -> Result<(), Refused> {
        let refused = match &report {
            Report::Network { ip, .. } if *ip != from => {
                Some(Refused::NotItsAddress { ip: *ip, from })
            }
            Report::Network { .. } => None,
            _ => self
                .table()
                .machines
                .get(&mac)
                .and_then(|m| m.ip)
                .filter(|known| *known != from)
                .map(|known| Refused::Forged { mac, known, from }),
        };
        if let Some(why) = refused {
            Counters::add(&self.counters.rejected_reports, 1);
            return Err(why);
        }
        self.event_at(mac, Event::Report(report), now)?;
        self.table().set_ip(mac, from);
        Ok(())
    }

    fn apply(
        table: &mut Table,
        counters: &Counters,
        mac: Mac,
        event: Event,
        now: u64,
        create: bool,
    ) -> Result<(), Refused> {
        let m = table.row(mac, now, create)?;
        m.updated = now;
        let mut new_ip = None;
        match event {
            Event::Dhcp {
                message,
                ip,
                client,
                hostname,
            } => {
                if let Some(h) = hostname {
                    m.hostname = Some(clean(&h, MAX_TEXT));
                }
                if matches!(message, DhcpMessage::Offer | DhcpMessage::Ack) {
                    m.leased = true;
                    new_ip = ip;
                }
                let detail = dhcp_detail(message, ip, client);
                match client {
                    DhcpClient::Other if m.completed && message == DhcpMessage::Ack => {
                        m.enter(now, Stage::Up, format!("the appliance's lease: {detail}"));
                    }
                    DhcpClient::Other => {}
                    _ => m.enter(now, Stage::Dhcp, detail),
                }
            }
            Event::Bootfile { file } => {
                m.enter(now, Stage::Pxe, format!("{} over TFTP", clean(&file, 64)));
            }
            Event::Fetch(what) => {
                let (stage, detail) = match what {
                    Fetch::BootScript => (Stage::Ipxe, "boot.ipxe"),
                    Fetch::Kernel => (Stage::Kernel, "the installer kernel"),
                    Fetch::Initrd => (Stage::Initrd, "the installer initrd"),
                    Fetch::Image => (Stage::Image, "image download"),
                    Fetch::Map => (Stage::Image, "block map"),
                    Fetch::Database => (Stage::Database, "database download"),
                    Fetch::LocalDisk => (Stage::Ipxe, "boot.ipxe: boot the local disk (installed)"),
                };
                if what == Fetch::Kernel {
                    m.completed = false;
                }
                m.enter(now, stage, detail.into());
                if what == Fetch::LocalDisk {
                    // What boots next is the installed appliance: its
                    // lease marks the machine up.
                    m.completed = true;
                }
            }
            Event::Report(r) => report::apply(m, counters, r, now),
            Event::Up => m.enter(now, Stage::Up, "the appliance reported".into()),
        }
        if let Some(ip) = new_ip {
            table.set_ip(mac, ip);
        }
        Ok(())
    }

    /// Save now if anything changed since the last save.
    pub fn flush(&self) {
        persist::save_if_dirty(self);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn mac(n: u32) -> Mac {
        let b = n.to_be_bytes();
        Mac([0x52, 0x54, b[0], b[1], b[2], b[3]])
    }

    pub fn dhcp(message: DhcpMessage, ip: &str, client: DhcpClient) -> Event {
        Event::Dhcp {
            message,
            ip: Some(ip.parse().unwrap()),
            client,
            hostname: None,
        }
    }

    fn stages(f: &Fleet, m: Mac) -> Vec<&'static str> {
        let row = f.machine(m).unwrap();
        row.timeline.iter().map(|s| s.stage.as_str()).collect()
    }

    #[test]
    fn f5_a_whole_install_in_order_then_up() {
        let d = tempfile::tempdir().unwrap();
        let f = Fleet::open(d.path());
        let m = mac(1);
        let ip: Ipv4Addr = "192.0.2.2".parse().unwrap();
        let t = std::cell::Cell::new(1_000_000u64);
        let tick = |ms: u64| {
            t.set(t.get() + ms);
            t.get()
        };
        let ev = |e: Event| f.event_at(m, e, tick(1000)).unwrap();
        use DhcpClient::*;
        use DhcpMessage::*;
        ev(dhcp(Discover, "192.0.2.2", Firmware));
        ev(dhcp(Offer, "192.0.2.2", Firmware));
        ev(dhcp(Ack, "192.0.2.2", Firmware));
        assert_eq!(f.mac_of(ip), Some(m));
        ev(Event::Bootfile {
            file: "ipxe.efi".into(),
        });
        ev(dhcp(Ack, "192.0.2.2", Ipxe));
        ev(Event::Fetch(Fetch::BootScript));
        ev(Event::Fetch(Fetch::Kernel));
        ev(Event::Fetch(Fetch::Initrd));
        // The installer kernel's own DHCP is no stage.
        ev(dhcp(Ack, "192.0.2.2", Other));
        let report = |r: Report, ms: u64| f.report_at(m, r, ip, tick(ms)).unwrap();
        report(
            Report::Network {
                iface: "eth0".into(),
                ip,
                prefix: 24,
            },
            1000,
        );
        report(
            Report::Disk {
                name: "vda".into(),
                size: 1 << 29,
            },
            1000,
        );
        for bytes in [0u64, 100 << 20, 300 << 20] {
            report(
                Report::Progress {
                    bytes,
                    total: 400 << 20,
                    map: true,
                },
                2000,
            );
        }
        let row = f.machine(m).unwrap();
        assert_eq!(
            (row.stage, row.bytes, row.total, row.map),
            (Stage::Image, 300 << 20, 400 << 20, true)
        );
        assert_eq!(row.rate, 100 << 20, "200 MiB in 2 s");
        report(Report::Verified { bytes: 400 << 20 }, 8000);
        report(Report::Database { bytes: 4096 }, 1000);
        report(Report::Complete, 1000);
        report(Report::Complete, 1000);
        assert_eq!(Counters::get(&f.counters().installs_completed), 1);
        // Reboot: firmware PXE again (install once: boot.ipxe says local
        // disk), then the appliance's own DHCP.
        ev(dhcp(Discover, "192.0.2.2", Firmware));
        ev(dhcp(Ack, "192.0.2.2", Ipxe));
        ev(Event::Fetch(Fetch::BootScript));
        ev(dhcp(Discover, "192.0.2.2", Other));
        assert_eq!(
            f.machine(m).unwrap().stage,
            Stage::Ipxe,
            "DISCOVER is not yet a lease"
        );
        ev(dhcp(Ack, "192.0.2.2", Other));
        let row = f.machine(m).unwrap();
        assert_eq!(row.stage, Stage::Up);
        assert_eq!(
            stages(&f, m),
            [
                "dhcp", "pxe", "ipxe", "kernel", "initrd", "network", "disk", "image", "verified",
                "database", "complete", "dhcp", "ipxe", "up"
            ]
        );
        assert_eq!(row.timeline[0].detail, "DISCOVER 192.0.2.2 (PXE firmware)");
        assert_eq!(row.timeline[1].detail, "ipxe.efi over TFTP");
        assert_eq!(
            row.timeline.back().unwrap().detail,
            "the appliance's lease: ACK 192.0.2.2 (DHCP client)"
        );
    }

    #[test]
    fn f5_stages_move_forward_and_start_over_on_a_new_boot() {
        let d = tempfile::tempdir().unwrap();
        let f = Fleet::open(d.path());
        let m = mac(2);
        let ip: Ipv4Addr = "192.0.2.3".parse().unwrap();
        f.event_at(m, Event::Fetch(Fetch::Image), 10).unwrap();
        // Late or repeated events do not move it back.
        f.event_at(m, Event::Fetch(Fetch::Initrd).clone(), 20).ok();
        f.event_at(
            m,
            dhcp(DhcpMessage::Ack, "192.0.2.3", DhcpClient::Other),
            30,
        )
        .unwrap();
        assert_eq!(
            f.machine(m).unwrap().stage,
            Stage::Initrd,
            "the boot chain again: a new boot"
        );
        f.report_at(
            m,
            Report::Fatal {
                line: "FATAL: disk on\u{1b}[2J fire".into(),
            },
            ip,
            40,
        )
        .unwrap();
        let row = f.machine(m).unwrap();
        assert_eq!(row.stage, Stage::Failed);
        assert_eq!(row.error.as_deref(), Some("FATAL: disk on?[2J fire"));
        assert_eq!(Counters::get(&f.counters().installs_failed), 1);
        // Nothing after a failure moves it but a new boot or install.
        f.report_at(m, Report::Verified { bytes: 1 }, ip, 50)
            .unwrap();
        assert_eq!(f.machine(m).unwrap().stage, Stage::Failed);
        f.report_at(
            m,
            Report::Network {
                iface: "eth0".into(),
                ip,
                prefix: 24,
            },
            ip,
            60,
        )
        .unwrap();
        let row = f.machine(m).unwrap();
        assert_eq!(
            (row.stage, row.started, row.error.clone()),
            (Stage::Network, 60, None)
        );
        // A plain DHCP client never seen boot is not followed.
        assert_eq!(
            f.event_at(
                mac(3),
                dhcp(DhcpMessage::Ack, "192.0.2.9", DhcpClient::Other),
                70
            ),
            Err(Refused::NotFollowed)
        );
        assert!(f.machine(mac(3)).is_none());
        // Without a completed install, a plain lease is not `up`.
        f.event_at(
            m,
            dhcp(DhcpMessage::Ack, "192.0.2.3", DhcpClient::Other),
            80,
        )
        .unwrap();
        assert_eq!(f.machine(m).unwrap().stage, Stage::Network);
    }

    #[test]
    fn f5_reports_from_another_address_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let f = Fleet::open(d.path());
        let m = mac(4);
        let (ip, other): (Ipv4Addr, Ipv4Addr) =
            ("192.0.2.4".parse().unwrap(), "192.0.2.66".parse().unwrap());
        f.event_at(
            m,
            dhcp(DhcpMessage::Ack, "192.0.2.4", DhcpClient::Firmware),
            1,
        )
        .unwrap();
        assert_eq!(
            f.report_at(m, Report::Complete, other, 2),
            Err(Refused::Forged {
                mac: m,
                known: ip,
                from: other
            })
        );
        assert_eq!(f.machine(m).unwrap().stage, Stage::Dhcp);
        assert_eq!(Counters::get(&f.counters().rejected_reports), 1);
        assert_eq!(
            f.report_at(
                m,
                Report::Network {
                    iface: "eth1".into(),
                    ip,
                    prefix: 24
                },
                other,
                3
            )
            .unwrap_err()
            .to_string(),
            "network: ip 192.0.2.4 is not the address the report came from (192.0.2.66)"
        );
        // The installer's network report moves it.
        f.report_at(
            m,
            Report::Network {
                iface: "eth1".into(),
                ip: other,
                prefix: 24,
            },
            other,
            3,
        )
        .unwrap();
        assert_eq!(f.mac_of(other), Some(m));
        assert_eq!(f.mac_of(ip), None);
        f.report_at(m, Report::Complete, other, 4).unwrap();
    }

    #[test]
    fn f5_the_table_is_bounded_and_leased_machines_stay() {
        let d = tempfile::tempdir().unwrap();
        let f = Fleet::open(d.path());
        let real = mac(0xffff_0000);
        f.event_at(
            real,
            dhcp(DhcpMessage::Ack, "192.0.2.5", DhcpClient::Firmware),
            1,
        )
        .unwrap();
        let from: Ipv4Addr = "192.0.2.77".parse().unwrap();
        for i in 0..(MAX_MACHINES as u32 + 500) {
            f.report_at(mac(i), Report::Complete, from, 2 + u64::from(i))
                .unwrap();
        }
        assert_eq!(f.machines().len(), MAX_MACHINES);
        assert!(
            f.machine(real).is_some(),
            "a leased machine is never replaced"
        );
        assert!(
            f.machine(mac(0)).is_none(),
            "the oldest unleased one went first"
        );
        assert!(f.machine(mac(MAX_MACHINES as u32 + 499)).is_some());
        // Full of leased machines: a newcomer is dropped and counted.
        for i in 0..MAX_MACHINES as u32 {
            f.event_at(
                mac(i + 10_000),
                dhcp(DhcpMessage::Offer, "192.0.2.6", DhcpClient::Firmware),
                9,
            )
            .ok();
        }
        let before = Counters::get(&f.counters().dropped);
        assert_eq!(
            f.event_at(
                mac(99_999),
                dhcp(DhcpMessage::Discover, "192.0.2.7", DhcpClient::Firmware),
                10
            ),
            Err(Refused::Full)
        );
        assert_eq!(Counters::get(&f.counters().dropped), before + 1);
        assert_eq!(f.machines().len(), MAX_MACHINES);
        // The timeline is bounded too.
        for i in 0..(MAX_TIMELINE as u64 * 3) {
            f.event_at(real, Event::Fetch(Fetch::Kernel), 100 + 2 * i)
                .unwrap();
            f.report_at(
                real,
                Report::Fatal {
                    line: "x".repeat(10_000),
                },
                "192.0.2.5".parse().unwrap(),
                101 + 2 * i,
            )
            .unwrap();
        }
        let row = f.machine(real).unwrap();
        assert_eq!(row.timeline.len(), MAX_TIMELINE);
        assert_eq!(row.error.unwrap().chars().count(), MAX_TEXT);
    }
}
