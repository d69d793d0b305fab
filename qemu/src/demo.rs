//! `make demo` (`ze-qemu demo`): the main job on a built-in virtual target.
//!
//! 1. Build the appliance image, with the installer kernel and initrd.
//! 2. Two blank QEMU machines whose boot order puts the network first, as
//!    in a data centre: one UEFI (OVMF, its own NVRAM), one BIOS (SeaBIOS
//!    running the NIC's iPXE ROM).
//! 3. A record per machine (`ze machines add … --install once`), then
//!    `ze install remote` on a namespace's bridge: DHCP with PXE options,
//!    TFTP and the HTTP image server.
//! 4. Both network-boot at once; each gets its own boot script, installs
//!    and reboots. The server marks each record installed.
//! 5. Each network-boots again and is sent to its disk (iPXE `exit` on
//!    UEFI, `sanboot` on BIOS); the appliance takes a lease from the
//!    provisioning server and starts SSH; the fleet's table shows both up.
//! 6. The demo logs in to each over SSH and runs `show version`.
//!
//! Each stage prints as it happens: the server's log lines, the machines'
//! consoles filtered to what matters, and the fleet's table whenever it
//! changes.

use crate::{
    fleet, iso, login,
    vm::{self, Session},
};
use anyhow::ensure;
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// The machines' MAC addresses.
const MAC_UEFI: &str = "52:54:00:5e:00:01";
const MAC_BIOS: &str = "52:54:00:5e:00:02";

fn banner(n: usize, text: &str) {
    println!("\n\x1b[1m== {n}/6 {text}\x1b[0m");
}

/// The console lines worth showing in a demo.
fn interesting(line: &str) -> bool {
    const MARKS: &[&str] = &[
        "[ze-install]",
        ">>Start PXE",
        "Station IP address",
        "iPXE initialising",
        "http://",
        "Run /init",
        "Run /sbin/init",
        "reboot: ",
        "ze: init:",
        "ze: starting",
        "image: ",
        "appliance: ",
        "sshserver:",
        "dhcpclient:",
        "BdsDxe: loading",
        "BdsDxe: starting",
        "ze: booting slot",
        "Booting from ",
    ];
    let l = line.trim_start_matches(|c: char| {
        c == '[' || c.is_ascii_digit() || c == '.' || c == ' ' || c == ']'
    });
    MARKS.iter().any(|m| line.contains(m) || l.starts_with(m)) || line.starts_with("ze ")
}

/// One machine of the demo, its console followed.
struct Machine {
    target: fleet::Target,
    hostname: &'static str,
    vm: Session,
    shown: usize,
    /// Where its console was last matched.
    at: usize,
}

impl Machine {
    /// Print the console lines that arrived since last time, marked with
    /// the machine's name.
    fn show(&mut self) {
        let text = self.vm.serial();
        let Some(new) = text.get(self.shown..) else {
            return;
        };
        let Some(end) = new.rfind('\n') else {
            return;
        };
        for line in new[..end].lines() {
            let line = line.trim_end();
            if interesting(line) {
                println!("  \x1b[33m{:<6}|\x1b[0m {line}", self.target.name);
            }
        }
        self.shown += end + 1;
    }
}

/// Wait until every machine's console shows `pattern` (each after where
/// it was last matched), showing the consoles and, when it changed, the
/// status table meanwhile.
fn follow_all(
    rig: &fleet::Rig,
    machines: &mut [Machine],
    pattern: &str,
    timeout: Duration,
    table: &mut String,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut done = vec![false; machines.len()];
    let mut last_table = Instant::now();
    while !done.iter().all(|d| *d) {
        for (m, d) in machines.iter_mut().zip(done.iter_mut()) {
            m.show();
            if *d {
                continue;
            }
            match m.vm.wait_for(pattern, m.at, Duration::from_millis(200)) {
                Ok(at) => {
                    m.at = at;
                    *d = true;
                    m.show();
                }
                Err(e) if e.to_string().contains("QEMU exited") => {
                    return Err(e.context(format!("{}: waiting for {pattern:?}", m.target.name)));
                }
                Err(_) => {}
            }
        }
        if last_table.elapsed() >= Duration::from_secs(10) {
            show_table(rig, table);
            last_table = Instant::now();
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "waiting for {pattern:?}: not every machine got there in {timeout:?}"
        );
    }
    show_table(rig, table);
    Ok(())
}

/// Print the fleet's table when it changed since it was last printed.
fn show_table(rig: &fleet::Rig, last: &mut String) {
    let text = rig.table(110);
    // Elapsed times change every second: compare without them.
    let key: String = text
        .lines()
        .map(|l| l.rsplit_once(' ').map_or(l, |(a, _)| a))
        .collect();
    if key != *last {
        println!("  \x1b[36mfleet  |\x1b[0m");
        for line in text.lines() {
            println!("  \x1b[36mfleet  |\x1b[0m {line}");
        }
        *last = key;
    }
}

/// Run the demo.
pub fn run(initrd: Option<PathBuf>) -> anyhow::Result<bool> {
    ensure!(
        rustix::process::geteuid().is_root(),
        "the demo creates a network namespace and tap devices: run it as root (sudo make demo)"
    );
    let t0 = Instant::now();
    let work = std::env::temp_dir().join(format!("ze-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    banner(
        1,
        "build the appliance image (ze appliance init + build), with the installer kernel and initrd",
    );
    let ctx = iso::Ctx::prepare(initrd, work.clone(), false)?;
    println!(
        "  image  {} ({} MiB, sha256 {}…)\n  kernel {}\n  initrd {}",
        ctx.image.display(),
        ctx.meta.image_size >> 20,
        &ctx.meta.sha256[..16],
        ctx.kernel.display(),
        ctx.initrd.display()
    );
    let built = t0.elapsed();

    banner(
        2,
        "two blank machines, the network first in their boot order: one UEFI (OVMF), one BIOS (SeaBIOS + iPXE ROM)",
    );
    let targets = [
        (
            fleet::Target::new(
                &work,
                "uefi",
                MAC_UEFI,
                fleet::Firmware::Uefi,
                "tap0",
                ctx.disk_size,
            )?,
            "rack1-uefi",
        ),
        (
            fleet::Target::new(
                &work,
                "bios",
                MAC_BIOS,
                fleet::Firmware::Bios,
                "tap1",
                ctx.disk_size,
            )?,
            "rack1-bios",
        ),
    ];
    for (t, h) in &targets {
        println!(
            "  {:<5} {} {} → {h}, install once",
            t.name,
            t.firmware.name(),
            t.mac
        );
    }

    banner(
        3,
        "a record per machine (ze machines add), then ze install remote: DHCP (PXE), TFTP and HTTP on br0",
    );
    let records: Vec<(&fleet::Target, &str)> = targets.iter().map(|(t, h)| (t, *h)).collect();
    let rig = fleet::Rig::start(&ctx, &work, "ze-demo", &records, true)?;
    print!("$ ze machines list\n{}", rig.machines(&["list"])?);

    banner(
        4,
        "both power on: network boot → iPXE → HTTP → installer, each with its own boot script",
    );
    let mut machines = Vec::new();
    for (t, hostname) in targets {
        let vm = vm::spawn(t.command(&rig.net), false, None)?;
        machines.push(Machine {
            target: t,
            hostname,
            vm,
            shown: 0,
            at: 0,
        });
    }
    let timeout = ctx.boot_timeout;
    let mut table = String::new();
    follow_all(
        &rig,
        &mut machines,
        "[ze-install] install complete; rebooting",
        timeout,
        &mut table,
    )?;
    let installed = t0.elapsed();

    banner(
        5,
        "they reboot: the network again, which sends each (installed once) to its disk; the appliance takes a lease",
    );
    follow_all(
        &rig,
        &mut machines,
        "ze: starting mode=bootstrap",
        timeout + fleet::Firmware::Uefi.network_entries_give_up(),
        &mut table,
    )?;
    follow_all(
        &rig,
        &mut machines,
        "sshserver: listening",
        timeout,
        &mut table,
    )?;
    let lease_mark = "dhcpclient: lease interface=eth0 ip=";
    follow_all(&rig, &mut machines, lease_mark, timeout, &mut table)?;
    let booted = t0.elapsed();
    // Each is up in the table once its lease is acknowledged.
    let t_up = Instant::now();
    while machines.iter().any(|m| {
        rig.row(&m.target.mac)
            .map(|r| r["stage"] != "up")
            .unwrap_or(true)
    }) {
        ensure!(
            t_up.elapsed() < Duration::from_secs(60),
            "not every machine is up in /install/status"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(1500));
    show_table(&rig, &mut table);

    banner(6, "ssh into each: show version");
    for m in &machines {
        let serial = m.vm.serial();
        let at = serial
            .rfind(lease_mark)
            .map(|i| i + lease_mark.len())
            .unwrap_or_default();
        let ip = serial[at..]
            .split(|c: char| c == '/' || c.is_whitespace())
            .next()
            .unwrap_or_default()
            .to_string();
        ensure!(
            !ip.is_empty(),
            "{}: no address in the lease line",
            m.target.name
        );
        let row = rig.row(&m.target.mac)?;
        ensure!(
            row["hostname"] == m.hostname && row["ip"] == ip.as_str(),
            "{}: the table says {row}",
            m.target.name
        );
        let target = login::Target {
            host: ip.clone(),
            port: 22,
            netns: Some(rig.net.name.clone()),
        };
        let text = login::ssh_command(
            &target,
            &ctx.ssh.0,
            &ctx.ssh.1,
            "show version",
            Duration::from_secs(120),
        )?;
        println!(
            "$ ssh {}@{ip} 'show version'   # {} ({})",
            ctx.ssh.0,
            m.hostname,
            m.target.firmware.name()
        );
        print!("{text}");
        let image_line = format!("image: {}", ctx.meta.image);
        ensure!(
            text.contains(&image_line),
            "`show version` on {} does not name {}",
            m.target.name,
            ctx.meta.image
        );
    }
    print!("$ ze machines list\n{}", rig.machines(&["list"])?);
    let done = t0.elapsed();

    for m in machines {
        let _ = m.vm.wait(Duration::ZERO);
    }
    rig.server.stop();
    drop(rig.net);
    let _ = std::fs::remove_dir_all(&work);
    println!(
        "\n\x1b[1mdone:\x1b[0m two blank machines (UEFI and BIOS) network-booted, installed {} from their own records, booted their disks although the network comes first, and were reachable over SSH.\n  build {:.0} s | network boot + install {:.0} s | second boot to SSH {:.0} s | login {:.0} s | total {:.0} s",
        ctx.meta.image,
        built.as_secs_f64(),
        (installed - built).as_secs_f64(),
        (booted - installed).as_secs_f64(),
        (done - booted).as_secs_f64(),
        done.as_secs_f64()
    );
    Ok(true)
}
