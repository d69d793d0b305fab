//! The runner: the only code that reads the clock and acts on the machine,
//! through [`ze_hal::Os`]. It feeds what happens to the sans-IO pieces
//! (`cmdline`, `net`, `dhcp`, `http`, `disk`, `install`, `console`,
//! `recovery`) and carries out what they decide.
//!
//! The same code runs as PID 1 over `ze_hal::linux::LinuxOs`, on the host
//! for benchmarks, and under `cargo test` over `ze_hal::fake::FakeOs`.
//!
//! The rooms, each using only the ones below it:
//!
//! ```text
//! mod (boot: cmdline → install → recovery → power)
//!  ├─ http_install   network → target disk → image → database → arm → boot entry
//!  ├─ iso_install    media by id → target disk → image → arm → boot entry
//!  │    └─ isofile   the ISO as a file on a data partition (Ventoy)
//!  │    ├─ image     the image's bytes: whole stream, or block-map ranges
//!  │    ├─ target    the one guarded disk-write path (first MiB last)
//!  │    ├─ bootentry the UEFI Boot#### entry and BootOrder (efivarfs)
//!  │    ├─ download  HTTP transfers with resume, retries, keep-alive
//!  │    ├─ report    best-effort stage reports to the server
//!  │    └─ network   route trust, probes, per-interface DHCP
//!  └─ recover        the recovery console and diagnostics
//! ```

pub mod bootentry;
pub mod download;
pub mod http_install;
pub mod image;
pub mod iso_install;
pub mod isofile;
pub mod network;
pub mod recover;
pub mod report;
pub mod target;

pub use target::Buffers;

use crate::{
    VERSION,
    cmdline::{self, Config, Source},
    console::{Line, say},
    install::Fatal,
    recovery::{self, Choice},
};
use core::fmt::Write;
use heapless::Vec;
use ze_hal::{
    os::{Os, PowerAction},
    sysfs::SysFs,
};

/// Where the kernel command line is read from.
pub const PROC_CMDLINE: &str = "/proc/cmdline";
/// The largest command line read (the kernel's limit is 2048 on x86).
pub const MAX_CMDLINE: usize = 4096;

fn fatal_line<O: Os>(os: &mut O, fatal: &Fatal) {
    let mut line = Line::fatal();
    let _ = write!(line, "{fatal}");
    os.consoles_write(line.finish());
}

/// PID 1's whole life: mount, open consoles, install, recover; returns
/// what to do with the machine at the end.
pub fn boot<O: Os>(os: &mut O, bufs: &mut Buffers<'_>) -> PowerAction {
    let mounted = os.mount_kernel_filesystems();
    let names = ze_hal::console::active(os.sys()).unwrap_or_default();
    let list: Vec<&str, { ze_hal::console::MAX_CONSOLES }> =
        names.iter().map(|n| n.as_str()).collect();
    let opened = os.consoles_open(&list);
    say!(os, "ze-installer {VERSION} starting");
    if let Err(e) = mounted {
        say!(os, "warning: mounting /proc, /sys, /dev: {e}");
    }
    if opened < list.len() {
        say!(
            os,
            "warning: {} of {} consoles could not be opened",
            list.len() - opened,
            list.len()
        );
    }
    let mut text = [0u8; MAX_CMDLINE];
    let cmdline = match os.sys().read(PROC_CMDLINE, &mut text) {
        Ok(n) => core::str::from_utf8(text.get(..n).unwrap_or_default()).unwrap_or(""),
        Err(e) => {
            fatal_line(os, &Fatal::NoCmdline(e));
            return recover::without_config(os, recovery::policy(Source::Http, None), "");
        }
    };
    let cfg = match Config::parse(cmdline) {
        Ok(cfg) => cfg,
        Err(e) => {
            fatal_line(os, &Fatal::Cmdline(e));
            // The credential and the source may still be readable on their
            // own: on installer media the menu stays open (no reboot loop
            // back into the same bad command line).
            let auth = cmdline::words(cmdline)
                .find_map(|w| w.strip_prefix("ze.shell-auth="))
                .and_then(cmdline::parse_hex::<32>);
            let source = cmdline::source_alone(cmdline);
            return recover::without_config(os, recovery::policy(source, auth), cmdline);
        }
    };
    for key in &cfg.unknown {
        say!(os, "warning: unknown kernel parameter {key} ignored");
    }
    loop {
        match install(os, &cfg, bufs) {
            Ok(()) if cfg.source == Source::Iso => {
                // Never reboot into the installer again while the media is
                // still in (spec: "Appliance ISO Install").
                say!(
                    os,
                    "install complete; powering off: remove the installer media before the next boot"
                );
                return PowerAction::PowerOff;
            }
            Ok(()) => {
                say!(os, "install complete; rebooting");
                return PowerAction::Reboot;
            }
            Err(fatal) => {
                fatal_line(os, &fatal);
                let policy = recovery::policy(cfg.source, cfg.shell_auth);
                match recover::choice(os, policy, cmdline) {
                    Choice::RetryNetwork => continue,
                    Choice::PowerOff => return PowerAction::PowerOff,
                    Choice::Reboot | Choice::Diagnostics => return PowerAction::Reboot,
                }
            }
        }
    }
}

/// The whole install: over HTTP from the network to the unmount
/// ([`http_install`]), or from the ISO media ([`iso_install`]).
pub fn install<O: Os>(os: &mut O, cfg: &Config, bufs: &mut Buffers<'_>) -> Result<(), Fatal> {
    match cfg.source {
        Source::Iso => iso_install::install(os, cfg, bufs),
        Source::Http => http_install::install(os, cfg, bufs),
    }
}
