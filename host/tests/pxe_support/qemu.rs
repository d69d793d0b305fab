//! QEMU guests (TCG) that network-boot from a tap device in a bridge
//! inside a test namespace, their serial console kept in a file.
//!
//! - UEFI: OVMF with its own network stack (`romfile=` turns the NIC's
//!   iPXE ROM off, so EDK2's PXE base code runs).
//! - BIOS: SeaBIOS with QEMU's iPXE ROM on the NIC.

use super::{Logged, Netns, have, is_root, require, test_kernel};
use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// QEMU's iPXE ROM for virtio-net, which SeaBIOS runs.
pub const IPXE_VIRTIO_ROM: &str = "/usr/lib/ipxe/qemu/pxe-virtio.rom";
/// Upper bound for one network boot under TCG on a busy 2-core machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// The machine's boot firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// OVMF; its own PXE (EDK2) unless `rom` is set on the machine.
    Uefi,
    /// SeaBIOS, PXE from the NIC's iPXE ROM.
    Bios,
}

/// Check what a network-boot test needs: root, QEMU, Debian's iPXE
/// binaries, the firmware and the installer kernel.
pub fn prerequisites(test: &str, firmware: Firmware) -> bool {
    let kernel = test_kernel();
    let uefi = firmware == Firmware::Uefi;
    require(
        test,
        &[
            ("root", is_root()),
            (
                "qemu-system-x86_64 (qemu-system-x86)",
                have("qemu-system-x86_64"),
            ),
            (
                "/usr/lib/ipxe/ipxe.efi and ipxe.pxe (ipxe)",
                Path::new("/usr/lib/ipxe/ipxe.efi").is_file()
                    && Path::new("/usr/lib/ipxe/ipxe.pxe").is_file(),
            ),
            (
                "OVMF (ovmf)",
                !uefi || (Path::new(OVMF_CODE).is_file() && Path::new(OVMF_VARS).is_file()),
            ),
            (
                "QEMU's iPXE ROM (ipxe-qemu)",
                uefi || Path::new(IPXE_VIRTIO_ROM).is_file(),
            ),
            (
                &format!(
                    "kernel {} (`make kernel`, or set ZE_TEST_KERNEL)",
                    kernel.display()
                ),
                kernel.is_file(),
            ),
        ],
    )
}

/// Add bridge `bridge` (no address) with tap `tap` in it to `ns`.
pub fn add_bridge_with_tap(ns: &Netns, bridge: &str, tap: &str) {
    ns.ip(&["link", "add", bridge, "type", "bridge"]);
    ns.ip(&["tuntap", "add", "dev", tap, "mode", "tap"]);
    ns.ip(&["link", "set", tap, "master", bridge]);
    ns.ip(&["link", "set", tap, "up"]);
    ns.ip(&["link", "set", bridge, "up"]);
}

/// A namespace with bridge `br0` (no address: `ze install remote` adds
/// it) and `tap0` in the bridge.
pub fn bridge_ns(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    add_bridge_with_tap(&ns, "br0", "tap0");
    ns
}

/// One guest: its NIC on a tap device, optionally a disk.
#[derive(Debug, Clone)]
pub struct Machine {
    pub firmware: Firmware,
    /// Keep the NIC's iPXE ROM (the BIOS path; under OVMF it would replace
    /// EDK2's PXE).
    pub rom: bool,
    pub tap: String,
    pub mac: String,
    /// A raw disk, booted before the NIC once it holds a system.
    pub disk: Option<PathBuf>,
    pub memory_mib: u32,
}

impl Machine {
    /// A diskless machine on `tap0`.
    pub fn new(firmware: Firmware, mac: &str) -> Machine {
        Machine {
            firmware,
            rom: firmware == Firmware::Bios,
            tap: "tap0".into(),
            mac: mac.into(),
            disk: None,
            memory_mib: 512,
        }
    }

    /// Start it in `ns`; the serial console goes to `<dir>/<name>.serial.log`.
    pub fn spawn(&self, ns: &Netns, dir: &Path, name: &str) -> Guest {
        let serial = dir.join(format!("{name}.serial.log"));
        let _ = fs::remove_file(&serial);
        let mut cmd = ns.cmd("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-display", "none", "-no-reboot"])
            .args(["-m", &self.memory_mib.to_string()])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap),
            ]);
        let rom = if self.rom { "" } else { ",romfile=" };
        match &self.disk {
            Some(disk) => {
                // The disk first: blank, it is skipped and the NIC boots;
                // once written, the machine boots from it.
                cmd.arg("-drive")
                    .arg(format!("file={},format=raw,if=none,id=d0", disk.display()))
                    .args(["-device", "virtio-blk-pci,drive=d0,bootindex=0"])
                    .args([
                        "-device",
                        &format!("virtio-net-pci,netdev=n0,mac={}{rom},bootindex=1", self.mac),
                    ])
                    .args(["-device", "virtio-rng-pci"]);
            }
            None => {
                cmd.args(["-boot", "n"]).args([
                    "-device",
                    &format!("virtio-net-pci,netdev=n0,mac={}{rom}", self.mac),
                ]);
            }
        }
        if self.firmware == Firmware::Uefi {
            let vars = dir.join(format!("{name}.OVMF_VARS.fd"));
            fs::copy(OVMF_VARS, &vars).unwrap();
            cmd.arg("-drive")
                .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
        Guest {
            proc: Logged::spawn(cmd),
            serial,
        }
    }
}

/// A running guest.
pub struct Guest {
    pub proc: Logged,
    pub serial: PathBuf,
}

impl Guest {
    /// The serial console so far.
    pub fn console(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.serial).unwrap_or_default()).replace('\0', "")
    }

    /// Wait until the console shows `needle` at or after byte `from`;
    /// returns the offset past it. Panics with the console, `servers`'
    /// log and QEMU's output after [`BOOT_TIMEOUT`] or when QEMU exits.
    pub fn wait_for(&mut self, needle: &str, from: usize, servers: &Logged) -> usize {
        let start = Instant::now();
        while start.elapsed() < BOOT_TIMEOUT {
            let text = self.console();
            if let Some(i) = text.get(from..).and_then(|t| t.find(needle)) {
                return from + i + needle.len();
            }
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "the guest did not print {needle:?} within {BOOT_TIMEOUT:?}\n--- serial ---\n{}\n--- servers ---\n{}\n--- qemu ---\n{}",
            self.console(),
            servers.text(),
            self.proc.text()
        );
    }

    /// Wait up to `timeout` for QEMU to exit (`-no-reboot` ends it when
    /// the guest reboots or powers off); returns whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// The console lines holding any of `marks`, trimmed, for a report.
    pub fn excerpt(&self, marks: &[&str]) -> String {
        self.console()
            .lines()
            .filter(|l| marks.iter().any(|m| l.contains(m)))
            .map(|l| format!("{}\n", l.trim_end()))
            .collect()
    }
}

/// Panic unless `log` holds every line of `lines`, in that order.
pub fn assert_in_order(log: &str, lines: &[&str]) {
    let mut at = 0;
    for want in lines {
        match log[at..].find(want) {
            Some(i) => at += i + want.len(),
            None => panic!("log lacks {want:?} (in order) — log:\n{log}"),
        }
    }
}
