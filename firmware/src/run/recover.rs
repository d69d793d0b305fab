//! The runner's side of the recovery console ([`crate::recovery`] holds the
//! menu and the policy): show it on every console, read whichever console
//! types first, run the diagnostics, and return the operator's choice.

use super::network;
use crate::{
    console::say,
    disk,
    recovery::{self, Action, Choice, Menu, Policy},
};
use core::time::Duration;
use heapless::Vec;
use ze_hal::{
    block,
    os::{Os, PowerAction},
};

/// Recovery when the command line itself is unusable: retrying cannot
/// help, so that choice only says so.
pub fn without_config<O: Os>(os: &mut O, policy: Policy, cmdline: &str) -> PowerAction {
    loop {
        match choice(os, policy, cmdline) {
            Choice::RetryNetwork => {
                say!(
                    os,
                    "nothing to retry: fix the kernel command line and boot again"
                );
            }
            Choice::PowerOff => return PowerAction::PowerOff,
            Choice::Reboot | Choice::Diagnostics => return PowerAction::Reboot,
        }
    }
}

/// Run the recovery console and return the operator's final choice
/// (never `Diagnostics`, which is handled inside).
pub fn choice<O: Os>(os: &mut O, policy: Policy, cmdline: &str) -> Choice {
    let Some(mut menu) = Menu::new(policy) else {
        let Policy::RebootAfter(wait) = policy else {
            return Choice::Reboot;
        };
        say!(
            os,
            "no recovery password (ze.shell-auth) on this network install: rebooting in {} s",
            wait.as_secs()
        );
        let mut left = wait;
        while left > Duration::ZERO {
            let step = left.min(recovery::COUNTDOWN_EVERY);
            os.sleep(step);
            left = left.saturating_sub(step);
            if left > Duration::ZERO {
                say!(os, "rebooting in {} s", left.as_secs());
            }
        }
        return Choice::Reboot;
    };
    os.consoles_raw(true);
    os.consoles_write(menu.prompt().as_bytes());
    let mut buf = [0u8; 64];
    loop {
        let Some(input) = os.consoles_read(&mut buf, Duration::from_secs(1)) else {
            continue;
        };
        let typed = buf.get(..input.len).unwrap_or_default();
        let mut out: Vec<u8, 512> = Vec::new();
        let action = menu.feed(typed, &mut |b| {
            let _ = out.extend_from_slice(b);
        });
        os.consoles_write(&out);
        match action {
            None => {}
            Some(Action::Delay(d)) => {
                os.sleep(d);
                os.consoles_write(menu.prompt().as_bytes());
            }
            Some(Action::Run(Choice::Diagnostics)) => {
                diagnostics(os, cmdline);
                os.consoles_write(menu.prompt().as_bytes());
            }
            Some(Action::Run(choice)) => {
                os.consoles_raw(false);
                let what = match choice {
                    Choice::RetryNetwork => "retrying the install",
                    Choice::Reboot => "rebooting",
                    Choice::PowerOff => "powering off",
                    Choice::Diagnostics => "",
                };
                say!(os, "{what}");
                return choice;
            }
        }
    }
}

/// Print the command line, interfaces, addresses, routes and disks.
pub fn diagnostics<O: Os>(os: &mut O, cmdline: &str) {
    say!(os, "cmdline: {}", cmdline.trim());
    network::log_network(os);
    match block::scan(os.sys()) {
        Ok(scan) => {
            for d in &scan.devices {
                let why = disk::skip_reason(d);
                say!(
                    os,
                    "disk {} {} bytes{}{}",
                    d.name,
                    d.size_bytes(),
                    if why.is_some() {
                        ", skipped: "
                    } else {
                        ", candidate"
                    },
                    match why {
                        Some(disk::Skip::Kind) => "virtual/optical/flash",
                        Some(disk::Skip::Removable) => "removable",
                        Some(disk::Skip::ReadOnly) => "read-only",
                        Some(disk::Skip::Empty) => "no medium",
                        Some(disk::Skip::Source) => "source media",
                        None => "",
                    }
                );
            }
        }
        Err(e) => say!(os, "disks: cannot read /sys/block: {e}"),
    }
}
