//! `ze-qemu hw-test` (`make ze-install-hw-qemu-test`): the installer and
//! the appliance on the hardware-profile kernel, against the device models
//! of real machines (checklist H1, H2, H3). The image and its ISO carry
//! the hardware kernel (`ze appliance kernel --profile hardware`), and the
//! ISO is built with `--target /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_<serial>`.
//!
//! - the ISO written to a USB stick (`usb-storage` on `qemu-xhci`,
//!   removable) next to an NVMe and an AHCI SATA disk, under OVMF with a
//!   VGA display: the installer finds the stick, resolves the by-id target
//!   to `nvme0n1` (the stick and the SATA disk are left alone), writes the
//!   image and a `Boot####` entry first in `BootOrder`, and its lines reach
//!   the EFI framebuffer (two `screendump`s); then the first boot with the
//!   same NVRAM and no stick boots that entry, takes a lease over an
//!   `e1000e` and serves SSH;
//! - an HTTP install over an `e1000e` onto NVMe (with a SATA disk beside it:
//!   `nvme0n1` comes first), `/perm` at `nvme0n1p4`;
//! - an HTTP install onto an AHCI SATA disk alone: `/dev/sda`, `/perm` at
//!   `sda4`;
//! - the ISO as a file on a Ventoy-style USB disk (`ventoy.rs`).
//!
//! The HTTP installs boot the installer kernel directly (`-kernel`), not
//! through the PXE chain of `make demo`. Knobs: those of
//! `make ze-install-iso-qemu-test`, and `ZE_INSTALL_HW_KERNEL` (default: the
//! hardware kernel in the `ze appliance kernel` cache; missing is an error,
//! never a skip).

use crate::{
    iso::{self, Case, Ctx, Flavour, Machine},
    screen::Screen,
    suite,
    vm::{self, Bus, Drive},
};
use anyhow::{Context, ensure};
use std::{fs, path::Path, path::PathBuf};

/// The NVMe disk's serial number.
pub const NVME_SERIAL: &str = "ZENVME0001";
/// The by-id name udev gives it, and the ISO's `--target`.
pub const TARGET: &str = "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_ZENVME0001";
/// The NIC of real machines the hardware kernel drives.
pub const NIC: &str = "e1000e";

/// The hardware kernel: `ZE_INSTALL_HW_KERNEL`, else the `ze appliance
/// kernel --profile hardware` cache entry.
pub fn kernel() -> anyhow::Result<PathBuf> {
    use ze::appliance::{Arch, KernelProfile, artifacts};
    let path = match suite::env("ZE_INSTALL_HW_KERNEL") {
        Some(p) => PathBuf::from(p),
        None => artifacts::cache_candidate(Arch::Amd64, KernelProfile::Hardware).context(
            "no kernel source to find the hardware kernel's cache entry: run `make kernels`",
        )?,
    };
    ensure!(
        path.is_file(),
        "hardware kernel {} not found: run `make kernels` (or point ZE_INSTALL_HW_KERNEL at one)",
        path.display()
    );
    Ok(path)
}

/// The hardware flavour of the ISO cases' image and ISO.
pub fn flavour() -> anyhow::Result<Flavour> {
    Ok(Flavour {
        kernel: kernel()?,
        profile: "hardware",
        target: Some(TARGET.into()),
    })
}

/// What the VGA console showed during the install.
fn check_vga(dir: &Path, serial: &str) -> anyhow::Result<String> {
    ensure!(
        serial.contains("efifb: probing for efifb") && serial.contains("efifb: mode is "),
        "the kernel found no EFI framebuffer"
    );
    let early = Screen::load(&dir.join("vga-target.ppm"))?;
    let late = Screen::load(&dir.join("vga-written.ppm"))?;
    early.save_png(&dir.join("vga-target.png"))?;
    late.save_png(&dir.join("vga-written.png"))?;
    let (bands, lit, moved) = (
        late.text_bands(),
        late.lit_fraction(),
        late.difference(&early),
    );
    // A screen of console text: many lines, a small share of lit pixels.
    ensure!(
        bands >= 10 && (0.002..0.5).contains(&lit),
        "the framebuffer does not look like console text: {bands} text bands, {:.2}% lit",
        lit * 100.0
    );
    // Between the two dumps the installer printed its progress lines
    // (the kernel rarely prints then): its lines reach the framebuffer.
    ensure!(
        moved > 0.001,
        "the framebuffer did not change while the installer printed ({:.3}% of pixels)",
        moved * 100.0
    );
    Ok(format!(
        "VGA {}x{}: {bands} text bands, {:.1}% lit, {:.1}% changed while the installer printed",
        late.width,
        late.height,
        lit * 100.0,
        moved * 100.0
    ))
}

/// H1, H2, H3: the ISO on a USB stick, installed onto NVMe by its by-id
/// name, then the first boot with the same NVRAM.
fn h1_h2_h3_usb_stick_iso_to_nvme_then_first_boot(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    fs::create_dir_all(dir)?;
    let stick = dir.join("usb-stick.img");
    fs::copy(&ctx.iso, &stick)?;
    let nvme = iso::blank(dir, "nvme.img", ctx.disk_size)?;
    let sata = iso::blank(dir, "sata.img", ctx.disk_size)?;
    let vars = dir.join("nvram.fd");
    let monitor = dir.join("monitor.sock");
    let m = Machine {
        drives: vec![
            Drive::new(&stick, Bus::Usb, "ZEUSB0001"),
            Drive::new(&nvme, Bus::Nvme, NVME_SERIAL),
            Drive::new(&sata, Bus::Sata, "ZESATA0001"),
        ],
        vars: Some(vars.clone()),
        vga: true,
        monitor: Some(monitor.clone()),
        ..Machine::default()
    };
    let cmd = iso::ovmf(ctx, dir, "install", &m)?;
    let mut s = vm::spawn(cmd, ctx.echo, Some(monitor))?;
    let t = ctx.boot_timeout;
    let steps = (|| {
        let at = s.wait_for("[ze-install] target disk /dev/nvme0n1", 0, t)?;
        s.screendump(&dir.join("vga-target.ppm"))?;
        s.wait_for("[ze-install] image written: ", at, t)?;
        s.screendump(&dir.join("vga-written.ppm"))
    })();
    let e = s.wait(t);
    iso::save(dir, "install", &e);
    steps?;
    iso::ended_powered_off(&e)?;
    let id = &ctx.meta.media_id;
    suite::in_order(
        &e.serial,
        &[
            &format!("ze.target={TARGET} console=tty0"),
            &format!("[ze-install] installer media: /dev/sdb (ISO 9660, media id {id})"),
            &format!("[ze-install] ze.target={TARGET} is /dev/nvme0n1"),
            &format!(
                "[ze-install] target disk /dev/nvme0n1 ({} bytes)",
                ctx.disk_size
            ),
            "[ze-install] /dev/nvme0n1: partition table and boot code written last; the disk is complete",
            "[ze-install] boot entry: Boot",
            " \"ze appliance (nvme0n1)\" = HD(1,GPT,",
            "[ze-install] boot entry: BootOrder ",
            "[ze-install] install complete; powering off",
            "reboot: Power down",
        ],
    )?;
    ensure!(
        !e.serial.contains("FATAL"),
        "a FATAL line during the install"
    );
    let entry = e
        .serial
        .lines()
        .find(|l| l.contains("boot entry: BootOrder"))
        .unwrap_or_default()
        .trim_start_matches("[ze-install] boot entry: ")
        .to_string();
    let checked = iso::disk_is_the_image(ctx, &nvme, dir)?;
    let iso_len = fs::metadata(&ctx.iso)?.len();
    ensure!(
        iso::first_difference(&ctx.iso, &stick, iso_len)?.is_none(),
        "the USB stick (the installer media) was modified"
    );
    ensure!(
        iso::all_zero(&sata, 0, ctx.disk_size)?,
        "the SATA disk (not the target) was written"
    );
    let vga = check_vga(dir, &e.serial)?;

    // First boot: the same NVRAM, the stick pulled, an e1000e.
    let m = Machine {
        drives: vec![
            Drive::new(&nvme, Bus::Nvme, NVME_SERIAL),
            Drive::new(&sata, Bus::Sata, "ZESATA0001"),
        ],
        vars: Some(vars),
        nic: Some(NIC),
        ..Machine::default()
    };
    let boot = iso::first_boot_on(ctx, dir, m, "/dev/nvme0n1p4")?;
    let ready = boot.ready_after;
    let started = boot
        .session
        .serial()
        .lines()
        .find(|l| l.contains("BdsDxe: starting Boot"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    ensure!(
        started.contains("\"ze appliance (nvme0n1)\" from HD(1,GPT,"),
        "the first boot did not start the installer's entry: {started:?}"
    );
    let (login, ended) = iso::login_on_first_boot(ctx, dir, boot, "template")?;
    ensure!(
        ended.serial.contains("dhcpclient: lease interface=eth0"),
        "no DHCP lease over the e1000e on the first boot"
    );
    Ok(format!(
        "ISO from the USB stick onto /dev/nvme0n1 by {TARGET}; {checked}; {entry}; {vga}; first boot: {started}, ready in {ready:.1} s; {login}"
    ))
}

/// H1: an HTTP install over an e1000e onto NVMe, a SATA disk beside it.
fn h1_http_install_over_e1000e_to_nvme(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let nvme = iso::blank(dir, "nvme.img", ctx.disk_size)?;
    let sata = iso::blank(dir, "sata.img", ctx.disk_size)?;
    let drives = vec![
        Drive::new(&sata, Bus::Sata, "ZESATA0001"),
        Drive::new(&nvme, Bus::Nvme, NVME_SERIAL),
    ];
    let e = iso::http_install(ctx, dir, drives, NIC, (1, "nvme0n1"))?;
    ensure!(
        iso::all_zero(&sata, 0, ctx.disk_size)?,
        "the SATA disk was written: nvme0n1 comes first in name order"
    );
    Ok(format!(
        "installed onto /dev/nvme0n1 over e1000e, /perm at nvme0n1p4, in {:.1} s",
        e.elapsed.as_secs_f64()
    ))
}

/// H1: an HTTP install onto an AHCI SATA disk.
fn h1_http_install_to_ahci_sata(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let sata = iso::blank(dir, "sata.img", ctx.disk_size)?;
    let drives = vec![Drive::new(&sata, Bus::Sata, "ZESATA0001")];
    let e = iso::http_install(ctx, dir, drives, NIC, (0, "sda"))?;
    Ok(format!(
        "installed onto /dev/sda (AHCI), /perm at sda4, in {:.1} s",
        e.elapsed.as_secs_f64()
    ))
}

/// Every case, longest first.
pub const CASES: &[Case] = &[
    Case {
        name: "h1_h2_h3_usb_stick_iso_to_nvme_then_first_boot",
        run: h1_h2_h3_usb_stick_iso_to_nvme_then_first_boot,
    },
    Case {
        name: "o6_ventoy_iso_file_on_exfat_usb_disk",
        run: crate::ventoy::o6_ventoy_iso_file_on_exfat_usb_disk,
    },
    Case {
        name: "h1_http_install_over_e1000e_to_nvme",
        run: h1_http_install_over_e1000e_to_nvme,
    },
    Case {
        name: "h1_http_install_to_ahci_sata",
        run: h1_http_install_to_ahci_sata,
    },
];
