//! The fleet in QEMU (checklist F4): machines whose boot order puts the
//! network first, as data-centre firmware usually does, served by `ze
//! install remote` from their own records.
//!
//! `f4_install_once_<firmware>_network_first_boots_its_disk`: a blank
//! machine with `install once` installs, reboots, network-boots again —
//! and is sent to its disk (iPXE `exit` on UEFI, `sanboot` on BIOS), which
//! boots the appliance; its record is marked installed and the status
//! table has it `up`. `ze machines reinstall` then gives it the install
//! script again.
//!
//! [`Target`] and [`Rig`] are shared with `make demo`, which provisions
//! two such machines, one UEFI and one BIOS.

use crate::{
    iso::{self, Ctx, OVMF_CODE, OVMF_VARS},
    provision::{InstallRemote, Network, Server},
    suite,
    vm::{self, Session},
};
use anyhow::{Context, ensure};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// The provisioning network (RFC 5737).
pub const NETWORK: &str = "192.0.2.0/24";
/// The server's address on it.
pub const SERVER: &str = "192.0.2.1";

/// The machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// OVMF, its NVRAM kept in a file of its own across boots.
    Uefi,
    /// SeaBIOS with the NIC's iPXE option ROM.
    Bios,
}

impl Firmware {
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "BIOS",
        }
    }

    /// The time an installed machine's network boot entries take to give
    /// up before its disk boots, on top of a boot's own time. OVMF under
    /// QEMU sorts its boot order by the devices' `bootindex` at every boot,
    /// so all four of the NIC's entries run before the disk: PXE and HTTP
    /// boot over IPv4 and over IPv6, each through its DHCP or DHCPv6
    /// retries (60–64 s each under TCG, 247 s in all measured). SeaBIOS's
    /// iPXE ROM is told at once (its script leaves for the disk).
    pub fn network_entries_give_up(self) -> Duration {
        match self {
            Firmware::Uefi => Duration::from_secs(4 * 75),
            Firmware::Bios => Duration::ZERO,
        }
    }
}

/// A machine on the provisioning network.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub mac: String,
    pub firmware: Firmware,
    /// Its tap on the bridge.
    pub tap: String,
    /// Its disk (blank at first).
    pub disk: PathBuf,
}

impl Target {
    /// A blank disk of `size` bytes in `dir`, and for UEFI a fresh NVRAM.
    pub fn new(
        dir: &Path,
        name: &str,
        mac: &str,
        firmware: Firmware,
        tap: &str,
        size: u64,
    ) -> anyhow::Result<Target> {
        std::fs::create_dir_all(dir)?;
        let disk = iso::blank(dir, &format!("{name}-disk.img"), size)?;
        if firmware == Firmware::Uefi {
            std::fs::copy(OVMF_VARS, dir.join(format!("{name}-VARS.fd")))?;
        }
        Ok(Target {
            name: name.into(),
            mac: mac.into(),
            firmware,
            tap: tap.into(),
            disk,
        })
    }

    /// The QEMU command (inside `net`): the NIC first in the boot order,
    /// then the disk.
    pub fn command(&self, net: &Network) -> Command {
        let mut q = net.command("qemu-system-x86_64");
        q.args([
            "-accel", "tcg", "-smp", "1", "-m", "512", "-display", "none", "-serial", "stdio",
            "-monitor", "none",
        ]);
        // A reboot resets the machine in the same process, with the same
        // NVRAM, as on real hardware.
        let rom = match self.firmware {
            Firmware::Uefi => {
                let vars = self.disk.with_file_name(format!("{}-VARS.fd", self.name));
                q.arg("-drive")
                    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
                    .arg("-drive")
                    .arg(format!("if=pflash,format=raw,file={}", vars.display()));
                // OVMF's own PXE client, as on real UEFI machines.
                ",romfile="
            }
            // SeaBIOS runs the NIC's option ROM: iPXE.
            Firmware::Bios => "",
        };
        q.arg("-drive")
            .arg(format!(
                "file={},format=raw,if=none,id=d0",
                self.disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=d0,bootindex=1"])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={},script=no,downscript=no", self.tap),
            ])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={}{rom},bootindex=0", self.mac),
            ])
            .args(["-device", "virtio-rng-pci"]);
        q
    }
}

/// `ze install remote` on a namespace's bridge with a records directory.
pub struct Rig {
    pub net: Network,
    pub server: Server,
    pub pxe: PathBuf,
    pub ze: PathBuf,
}

/// The `ze` that runs the servers: `ZE_BIN`, else the debug build.
pub fn ze_bin() -> anyhow::Result<PathBuf> {
    let p = match std::env::var_os("ZE_BIN") {
        Some(p) => PathBuf::from(p),
        None => suite::root()?.join("target/debug/ze"),
    };
    ensure!(
        p.is_file(),
        "{} not found: run `make build-dev` or set ZE_BIN",
        p.display()
    );
    Ok(p)
}

impl Rig {
    /// A namespace `prefix` with a tap per target, a record per target
    /// (written with `ze machines add`), and the servers.
    pub fn start(
        ctx: &Ctx,
        dir: &Path,
        prefix: &str,
        targets: &[(&Target, &str)],
        show: bool,
    ) -> anyhow::Result<Rig> {
        ensure!(
            rustix::process::geteuid().is_root(),
            "this makes a network namespace and tap devices: run as root"
        );
        let net = Network::new(prefix)?;
        for (t, _) in targets {
            if t.tap != "tap0" {
                net.add_tap(&t.tap)?;
            }
        }
        let ze = ze_bin()?;
        let pxe = dir.join("pxe");
        let image = ctx
            .image
            .file_name()
            .and_then(|n| n.to_str())
            .context("image name")?
            .to_string();
        for (t, hostname) in targets {
            let out = Command::new(&ze)
                .args(["machines", "add", &t.mac, "--image", &image, "--hostname"])
                .arg(hostname)
                .args(["--install", "once", "--pxe-dir"])
                .arg(&pxe)
                .output()?;
            ensure!(
                out.status.success(),
                "ze machines add: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if show {
                println!(
                    "$ ze machines add {} --image {image} --hostname {hostname} --install once\n  {}",
                    t.mac,
                    String::from_utf8_lossy(&out.stdout).trim()
                );
            }
        }
        let server = InstallRemote {
            image: &ctx.image,
            kernel: &ctx.kernel,
            initrd: &ctx.initrd,
            pxe_dir: &pxe,
            ssh: (&ctx.ssh.0, &ctx.ssh.1),
            network: NETWORK,
            extra: &[],
        }
        .start(&net, &ze, show)?;
        server.wait_for("ze: started", Duration::from_secs(60))?;
        Ok(Rig {
            net,
            server,
            pxe,
            ze,
        })
    }

    /// GET `path` from the server, inside the namespace.
    pub fn get(&self, path: &str) -> anyhow::Result<String> {
        let out = self
            .net
            .command("curl")
            .args(["-sS", "--fail", "--max-time", "20"])
            .arg(format!("http://{SERVER}{path}"))
            .output()?;
        ensure!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The status row of `mac` from `/install/status`.
    pub fn row(&self, mac: &str) -> anyhow::Result<serde_json::Value> {
        let status: serde_json::Value = serde_json::from_str(&self.get("/install/status")?)?;
        status["machines"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["mac"] == mac))
            .cloned()
            .with_context(|| format!("{mac} is not in /install/status"))
    }

    /// The status table as the terminal view draws it (from the state the
    /// servers saved), `width` columns wide.
    pub fn table(&self, width: usize) -> String {
        match ze::provision::status::persist::read(&self.pxe.join("state")) {
            Ok(rows) => ze::provision::views::tty::render_rows(&rows, width, ze::timefmt::now_ms()),
            Err(e) => format!("(no status yet: {e})\n"),
        }
    }

    /// Run `ze machines <args…> --pxe-dir <pxe>`.
    pub fn machines(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.ze)
            .arg("machines")
            .args(args)
            .arg("--pxe-dir")
            .arg(&self.pxe)
            .output()?;
        ensure!(
            out.status.success(),
            "ze machines {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The mark of a network boot on `firmware`'s serial console: OVMF
/// prints its PXE client's start there; SeaBIOS and the NIC's iPXE ROM
/// print to the screen only (the server's log shows that boot instead).
pub fn netboot_mark(firmware: Firmware) -> Option<&'static str> {
    match firmware {
        Firmware::Uefi => Some(">>Start PXE over IPv4"),
        Firmware::Bios => None,
    }
}

/// Wait for `pattern` after `from`; the error names the machine.
fn wait(
    s: &mut Session,
    t: &Target,
    pattern: &str,
    from: usize,
    d: Duration,
) -> anyhow::Result<usize> {
    s.wait_for(pattern, from, d).with_context(|| {
        format!(
            "{} ({}): waiting for {pattern:?}",
            t.name,
            t.firmware.name()
        )
    })
}

fn install_once(ctx: &Ctx, dir: &Path, firmware: Firmware) -> anyhow::Result<String> {
    let mac = match firmware {
        Firmware::Uefi => "52:54:00:f4:00:01",
        Firmware::Bios => "52:54:00:f4:00:02",
    };
    let t = Target::new(dir, "target", mac, firmware, "tap0", ctx.disk_size)?;
    let rig = Rig::start(ctx, dir, "ze-f4", &[(&t, "rack1-once")], ctx.echo)?;
    let mut s = vm::spawn(t.command(&rig.net), ctx.echo, None)?;
    let started = Instant::now();
    let result = (|| {
        let timeout = ctx.boot_timeout;
        let first = match netboot_mark(firmware) {
            Some(mark) => wait(&mut s, &t, mark, 0, timeout)?,
            None => 0,
        };
        let done = wait(
            &mut s,
            &t,
            "[ze-install] install complete; rebooting",
            first,
            timeout,
        )?;
        let installed = started.elapsed();
        let record = std::fs::read_to_string(
            rig.pxe
                .join(format!("machines/{}.conf", mac.replace(':', "-"))),
        )?;
        ensure!(
            record.contains("installed {"),
            "the record was not marked installed:\n{record}"
        );
        // The second boot: the network again, then the disk.
        let again = match netboot_mark(firmware) {
            Some(mark) => wait(&mut s, &t, mark, done, timeout)?,
            None => done,
        };
        let up = wait(
            &mut s,
            &t,
            "ze: starting mode=bootstrap",
            again,
            timeout + firmware.network_entries_give_up(),
        )?;
        wait(
            &mut s,
            &t,
            "dhcpclient: lease interface=eth0 ip=",
            up,
            timeout,
        )?;
        let booted = started.elapsed();
        ensure!(
            !s.serial()[again..].contains("[ze-install] ze-installer "),
            "the second network boot started the installer again"
        );
        // The appliance's lease marks it up.
        let t0 = Instant::now();
        let row = loop {
            let row = rig.row(mac)?;
            if row["stage"] == "up" || t0.elapsed() > Duration::from_secs(30) {
                break row;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        ensure!(row["stage"] == "up", "not up in /install/status: {row:#}");
        // After `complete`: a network boot (DHCP from the firmware or
        // iPXE), no installer, and the appliance's lease.
        let steps: Vec<String> = row["timeline"]
            .as_array()
            .context("timeline")?
            .iter()
            .map(|s| {
                format!(
                    "{}: {}",
                    s["stage"].as_str().unwrap_or(""),
                    s["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        let after = steps
            .iter()
            .rposition(|s| s.starts_with("complete:"))
            .context("no complete in the timeline")?;
        let second = &steps[after + 1..];
        ensure!(
            second.first().is_some_and(|s| s.starts_with("dhcp:"))
                && second.last().is_some_and(|s| s.starts_with("up:"))
                && !second.iter().any(|s| s.starts_with("kernel:")),
            "the second boot in the timeline: {second:?}"
        );
        ensure!(row["hostname"] == "rack1-once", "{row:#}");
        let script = rig.get(&format!(
            "/install/boot/boot.ipxe?mac={}",
            mac.replace(':', "-")
        ))?;
        ensure!(script.contains("boot the local disk"), "{script}");
        // A running server sees the changed record within a second.
        rig.machines(&["reinstall", mac])?;
        let t0 = Instant::now();
        let script = loop {
            let script = rig.get(&format!(
                "/install/boot/boot.ipxe?mac={}",
                mac.replace(':', "-")
            ))?;
            if script.contains("kernel http://") || t0.elapsed() > Duration::from_secs(5) {
                break script;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        ensure!(
            script.contains("kernel http://"),
            "after reinstall the machine installs again:\n{script}"
        );
        anyhow::Ok((installed, booted, rig.table(120)))
    })();
    let e = s.wait(Duration::ZERO);
    suite::save(dir, &e);
    std::fs::write(dir.join("server.log"), rig.server.log())?;
    let (installed, booted, table) = result?;
    std::fs::write(dir.join("table.txt"), &table)?;
    let mark = netboot_mark(firmware);
    let order: Vec<&str> = mark
        .into_iter()
        .chain(["[ze-install] install complete; rebooting"])
        .chain(mark)
        .chain(["ze: starting mode=bootstrap"])
        .collect();
    suite::in_order(&e.serial, &order)?;
    let log = rig.server.log();
    ensure!(
        log.matches("path=/install/boot/boot.ipxe?mac=").count() >= 2,
        "boot.ipxe was asked for once per network boot:\n{log}"
    );
    rig.server.stop();
    Ok(format!(
        "{}: installed in {:.0} s; the next network boot went to the disk, appliance up at {:.0} s; record marked installed, reinstall clears it",
        firmware.name(),
        installed.as_secs_f64(),
        booted.as_secs_f64()
    ))
}

fn f4_install_once_uefi_network_first_boots_its_disk(
    ctx: &Ctx,
    dir: &Path,
) -> anyhow::Result<String> {
    install_once(ctx, dir, Firmware::Uefi)
}

fn f4_install_once_bios_network_first_boots_its_disk(
    ctx: &Ctx,
    dir: &Path,
) -> anyhow::Result<String> {
    install_once(ctx, dir, Firmware::Bios)
}

/// The fleet cases (run with the appliance image of `appliance-test`).
pub const CASES: &[iso::Case] = &[
    iso::Case {
        name: "f4_install_once_uefi_network_first_boots_its_disk",
        run: f4_install_once_uefi_network_first_boots_its_disk,
    },
    iso::Case {
        name: "f4_install_once_bios_network_first_boots_its_disk",
        run: f4_install_once_bios_network_first_boots_its_disk,
    },
];
