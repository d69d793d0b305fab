//! After the disk is complete: make the firmware boot it next (checklist
//! H3). On a UEFI machine (`/sys/firmware/efi` exists) the installer
//! mounts efivarfs, writes a `Boot####` load option for the installed
//! ESP's `\EFI\BOOT\BOOTX64.EFI` and puts it in `BootOrder`
//! ([`crate::efiboot`] builds the bytes and the order). Its earlier
//! entries (marked `ze-installer` in their optional data) are removed.
//! Every change is logged; nothing here is fatal: a firmware that refuses
//! a write still has a complete disk, and its own boot order decides.

use crate::{
    console::say,
    efiboot::{self, EFIVARS, GLOBAL, MAX_OPTION, Order, Place},
    gpt,
    install::HEAD_LEN,
};
use core::fmt::{self, Write};
use heapless::{String, Vec};
use ze_hal::{Error, os::Os, sysfs::SysFs};

/// `EBUSY`: efivarfs is mounted already.
const EBUSY: i32 = 16;

/// `/sys/firmware/efi/efivars/<name>-<global guid>`.
fn var_path(name: &str) -> String<96> {
    let mut p = String::new();
    let _ = write!(p, "{EFIVARS}/{name}-{GLOBAL}");
    p
}

/// A `BootOrder` for people: `0003,0001,0000`.
struct Shown<'a>(&'a [u16]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("empty");
        }
        for (i, n) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{n:04X}")?;
        }
        Ok(())
    }
}

/// What the existing `Boot####` variables are.
#[derive(Debug, Default)]
struct Existing {
    /// Every option number.
    all: Order,
    /// The installer's own (stale) ones.
    ours: Order,
    /// The network ones.
    network: Order,
}

fn existing<O: Os>(os: &O) -> Existing {
    let mut numbers = Order::new();
    let _ = os.sys().list(EFIVARS, &mut |name| {
        if let Some(n) = efiboot::option_number(name) {
            let _ = numbers.push(n);
        }
    });
    numbers.sort_unstable();
    let mut found = Existing::default();
    let mut buf = [0u8; MAX_OPTION];
    for n in numbers {
        let _ = found.all.push(n);
        let Ok(len) = os.sys().read(&var_path(&efiboot::option_name(n)), &mut buf) else {
            continue;
        };
        let Some(opt) = efiboot::parse_option(buf.get(..len).unwrap_or_default()) else {
            continue;
        };
        if opt.is_ours() {
            let _ = found.ours.push(n);
        } else if opt.is_network() {
            let _ = found.network.push(n);
        }
    }
    found
}

/// Register the complete disk `disk`, whose first MiB is `head`, with the
/// UEFI boot manager, at `place` in `BootOrder`. Logs what it changed.
pub fn register<O: Os>(os: &mut O, disk: &str, head: &[u8; HEAD_LEN], place: Place) {
    if !os.sys().exists(efiboot::EFI_SYSFS) {
        say!(
            os,
            "boot entry: not booted by UEFI ({} missing): the firmware's own disk order decides",
            efiboot::EFI_SYSFS
        );
        return;
    }
    if let Err(e) = os.mount_fs("efivarfs", EFIVARS, "efivarfs", false)
        && e != Error::Os(EBUSY)
    {
        say!(
            os,
            "boot entry: cannot mount efivarfs on {EFIVARS}: {e}; BootOrder left alone"
        );
        return;
    }
    if let Err(e) = add(os, disk, head, place) {
        say!(
            os,
            "boot entry: the firmware refused: {e}; BootOrder left alone (the disk is complete; choose it in the firmware's boot menu)"
        );
    }
}

fn add<O: Os>(os: &mut O, disk: &str, head: &[u8; HEAD_LEN], place: Place) -> Result<(), Error> {
    let esp = match gpt::partition(head, 1) {
        Ok(p) => p,
        Err(e) => {
            say!(
                os,
                "boot entry: the image's partition 1 cannot be read ({e}); no entry written"
            );
            return Ok(());
        }
    };
    let mut order_buf = [0u8; efiboot::MAX_ORDER_FILE];
    let old = match os.sys().read(&var_path("BootOrder"), &mut order_buf) {
        Ok(n) => efiboot::parse_order(order_buf.get(..n).unwrap_or_default()),
        Err(_) => Order::new(),
    };
    // The entry that booted the installer, for an HTTP install.
    let place = match place {
        Place::AfterNetwork { current: None } => {
            let mut buf = [0u8; 8];
            let current = os
                .sys()
                .read(&var_path("BootCurrent"), &mut buf)
                .ok()
                .and_then(|n| {
                    efiboot::parse_order(buf.get(..n).unwrap_or_default())
                        .first()
                        .copied()
                });
            Place::AfterNetwork { current }
        }
        p => p,
    };
    let found = existing(os);
    let others: Vec<u16, { efiboot::MAX_ORDER }> = found
        .all
        .iter()
        .copied()
        .filter(|n| !found.ours.contains(n))
        .collect();
    let Some(number) = efiboot::free_number(&others) else {
        return Err(Error::TooLarge);
    };
    let mut description: String<64> = String::new();
    let _ = write!(description, "ze appliance ({disk})");
    let option = efiboot::load_option_file(&description, &esp, efiboot::LOADER)
        .map_err(|_| Error::TooLarge)?;
    let name = efiboot::option_name(number);
    os.efivar_write(&var_path(&name), &option)?;
    say!(
        os,
        "boot entry: {name} \"{description}\" = HD({},GPT,{},{:#x},{:#x})/{}",
        esp.number,
        Guid(&esp.guid),
        esp.first_lba,
        esp.last_lba - esp.first_lba + 1,
        efiboot::LOADER
    );
    for stale in found.ours.iter().filter(|n| **n != number) {
        let stale_name = efiboot::option_name(*stale);
        match os.efivar_remove(&var_path(&stale_name)) {
            Ok(()) => say!(
                os,
                "boot entry: removed {stale_name}, left by an earlier install"
            ),
            Err(e) => say!(os, "boot entry: removing {stale_name} failed: {e}"),
        }
    }
    let network = |n: u16| found.network.contains(&n);
    let order = efiboot::new_order(&old, number, &found.ours, place, &network);
    os.efivar_write(&var_path("BootOrder"), &efiboot::order_file(&order))?;
    say!(
        os,
        "boot entry: BootOrder {} (was {})",
        Shown(&order),
        Shown(&old)
    );
    Ok(())
}

/// A GUID as stored in a GPT (mixed-endian), printed the usual way.
struct Guid<'a>(&'a [u8; 16]);

impl fmt::Display for Guid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-",
            u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
            u16::from_le_bytes([g[4], g[5]]),
            u16::from_le_bytes([g[6], g[7]])
        )?;
        for (i, b) in g[8..].iter().enumerate() {
            if i == 2 {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
