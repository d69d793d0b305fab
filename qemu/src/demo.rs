//! `make demo` (`ze-qemu demo`): the main job on a built-in virtual target.
//!
//! 1. Build the appliance image, with the installer kernel and initrd.
//! 2. Make a provisioning network: a namespace with a bridge, and a tap
//!    for the target machine.
//! 3. `ze install remote` on the bridge: DHCP with PXE options, TFTP and
//!    the HTTP image server.
//! 4. A QEMU machine with OVMF and a blank disk network-boots: EDK2's PXE
//!    fetches `ipxe.efi` over TFTP, iPXE fetches `boot.ipxe`, the kernel
//!    and the initrd over HTTP; the installer writes the disk and reboots.
//! 5. The machine boots the appliance from its disk: bootstrap mode takes a
//!    lease from the provisioning server and starts SSH.
//! 6. The demo logs in over SSH and runs `show version`.
//!
//! Each stage prints as it happens: the server's log lines and the
//! machine's console, filtered to what matters.

use crate::{
    iso::{self, OVMF_CODE, OVMF_VARS},
    login, provision,
    vm::{self, Session},
};
use anyhow::ensure;
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

/// The provisioning network (RFC 5737 documentation range).
const NETWORK: &str = "192.0.2.0/24";
/// The target's MAC address.
const MAC: &str = "52:54:00:5e:00:01";

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
    ];
    let l = line.trim_start_matches(|c: char| {
        c == '[' || c.is_ascii_digit() || c == '.' || c == ' ' || c == ']'
    });
    MARKS.iter().any(|m| line.contains(m) || l.starts_with(m)) || line.starts_with("ze ")
}

/// Print the console lines that arrived since `shown`; returns the new mark.
fn show_console(s: &Session, shown: usize) -> usize {
    let text = s.serial();
    let Some(new) = text.get(shown..) else {
        return shown;
    };
    let Some(end) = new.rfind('\n') else {
        return shown;
    };
    for line in new[..end].lines() {
        let line = line.trim_end();
        if interesting(line) {
            println!("  \x1b[33mtarget |\x1b[0m {line}");
        }
    }
    shown + end + 1
}

/// Wait for `pattern` on the console after byte `from`, showing the
/// console meanwhile; returns the offset past the pattern.
fn follow(
    s: &mut Session,
    shown: &mut usize,
    pattern: &str,
    from: usize,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        *shown = show_console(s, *shown);
        match s.wait_for(pattern, from, Duration::from_millis(500)) {
            Ok(at) => {
                *shown = show_console(s, *shown);
                return Ok(at);
            }
            Err(e) if Instant::now() >= deadline || e.to_string().contains("QEMU exited") => {
                return Err(e.context(format!("waiting for {pattern:?}")));
            }
            Err(_) => {}
        }
    }
}

/// Run the demo.
pub fn run(initrd: Option<PathBuf>) -> anyhow::Result<bool> {
    ensure!(
        rustix::process::geteuid().is_root(),
        "the demo creates a network namespace and a tap device: run it as root (sudo make demo)"
    );
    let t0 = Instant::now();
    let work = std::env::temp_dir().join(format!("ze-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    banner(
        1,
        "build the appliance image (ze appliance init + build), with the installer kernel and initrd",
    );
    let ctx = iso::Ctx::prepare(initrd, work.clone(), false)?;
    let ze = crate::suite::root()?.join("target/debug/ze");
    let ze = std::env::var_os("ZE_BIN").map(PathBuf::from).unwrap_or(ze);
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
        "a provisioning network: namespace with bridge br0 and tap0 for the target",
    );
    let net = provision::Network::new("ze-demo")?;
    println!(
        "  namespace {}: br0 (bridge), tap0 (the target's cable)",
        net.name
    );

    banner(
        3,
        "ze install remote: DHCP (PXE), TFTP and the HTTP image server on br0",
    );
    let server = provision::InstallRemote {
        image: &ctx.image,
        kernel: &ctx.kernel,
        initrd: &ctx.initrd,
        pxe_dir: &work.join("pxe"),
        ssh: (&ctx.ssh.0, &ctx.ssh.1),
        network: NETWORK,
        extra: &[],
    }
    .start(&net, &ze, true)?;
    server.wait_for("ze: started", Duration::from_secs(60))?;

    banner(
        4,
        "the target powers on: OVMF network boot → TFTP ipxe.efi → iPXE → HTTP → installer",
    );
    let vars = work.join("OVMF_VARS.fd");
    std::fs::copy(OVMF_VARS, &vars)?;
    let disk = work.join("target-disk.img");
    std::fs::File::create(&disk)?.set_len(ctx.disk_size)?;
    let mut q = net.command("qemu-system-x86_64");
    q.args([
        "-accel", "tcg", "-smp", "1", "-m", "512", "-display", "none", "-serial", "stdio",
        "-monitor", "none",
    ])
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,file={}", vars.display()))
    .arg("-drive")
    .arg(format!("file={},format=raw,if=none,id=d0", disk.display()))
    // The disk first: blank, it is skipped and the NIC boots; once
    // written, the machine boots from it.
    .args(["-device", "virtio-blk-pci,drive=d0,bootindex=0"])
    .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
    .args([
        "-device",
        &format!("virtio-net-pci,netdev=n0,mac={MAC},romfile=,bootindex=1"),
    ])
    .args(["-device", "virtio-rng-pci"]);
    let mut vm = vm::spawn(q, false, None)?;
    let timeout = ctx.boot_timeout;
    let mut shown = 0;
    let at = follow(
        &mut vm,
        &mut shown,
        "[ze-install] install complete; rebooting",
        0,
        timeout,
    )?;
    let installed = t0.elapsed();

    banner(
        5,
        "the target reboots into the appliance: bootstrap mode, DHCP from the provisioning server, SSH",
    );
    let at = follow(
        &mut vm,
        &mut shown,
        "ze: starting mode=bootstrap",
        at,
        timeout,
    )?;
    let at = follow(&mut vm, &mut shown, "sshserver: listening", at, timeout)?;
    let lease_mark = "dhcpclient: lease interface=eth0 ip=";
    let at_lease = follow(&mut vm, &mut shown, lease_mark, at, timeout)?;
    let serial = vm.serial();
    let ip = serial[at_lease..]
        .split(|c: char| c == '/' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_string();
    ensure!(!ip.is_empty(), "no address in the lease line");
    let booted = t0.elapsed();

    banner(6, &format!("ssh {}@{ip} show version", ctx.ssh.0));
    let target = login::Target {
        host: ip.clone(),
        port: 22,
        netns: Some(net.name.clone()),
    };
    let mut ssh_out = String::new();
    for command in ["show version", "show interfaces"] {
        let text = login::ssh_command(
            &target,
            &ctx.ssh.0,
            &ctx.ssh.1,
            command,
            Duration::from_secs(120),
        )?;
        println!("$ ssh {}@{ip} '{command}'", ctx.ssh.0);
        print!("{text}");
        ssh_out.push_str(&text);
    }
    show_console(&vm, shown);
    let image_line = format!("image: {}", ctx.meta.image);
    ensure!(
        ssh_out.contains(&image_line),
        "`show version` does not name {}",
        ctx.meta.image
    );
    let done = t0.elapsed();

    let _ = vm.wait(Duration::ZERO);
    server.stop();
    drop(net);
    let _ = std::fs::remove_dir_all(&work);
    println!(
        "\n\x1b[1mdone:\x1b[0m a blank machine network-booted, installed {} and was reachable over SSH.\n  build {:.0} s | network boot + install {:.0} s | first boot to SSH {:.0} s | login {:.0} s | total {:.0} s",
        ctx.meta.image,
        built.as_secs_f64(),
        (installed - built).as_secs_f64(),
        (booted - installed).as_secs_f64(),
        (done - booted).as_secs_f64(),
        done.as_secs_f64()
    );
    Ok(true)
}
