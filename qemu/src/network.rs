//! The installer's network stage on a real bridge (checklist N3, I8, I9),
//! a case of `make ze-install-qemu-test`:
//!
//! `n3_switch_port_forwards_only_after_40_s`: the machine's switch port
//! (its tap on the namespace's bridge) drops every frame for the first
//! 40 s after power-on, as a real switch port does for 30–50 s after the
//! link comes up (STP listening and learning): nothing the machine sends
//! reaches `ze install remote`, DHCP included. The kernel boots without `ip=` (on the hardware the spec
//! names, the kernel's own DHCP gives up before the link is up), so the
//! installer's own DHCP finds nothing at first. It must keep trying for
//! its whole `ze.wait` budget (30 attempts, about a minute), get a lease
//! once the port forwards, and install.

use crate::{
    provision::{InstallRemote, Network},
    suite::{self, Case, Ctx},
    vm,
};
use anyhow::{Context, ensure};
use std::{path::Path, time::Duration};

/// How long the port blocks.
const BLOCKED: Duration = Duration::from_secs(40);

fn n3_switch_port_forwards_only_after_40_s(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    ensure!(
        rustix::process::geteuid().is_root(),
        "this case makes a network namespace and a tap device: run as root"
    );
    std::fs::create_dir_all(dir)?;
    let net = Network::new("ze-n3")?;
    net.block("tap0", true)?;
    let server = InstallRemote {
        image: &ctx.image_path,
        kernel: &ctx.kernel,
        initrd: &ctx.initrd,
        pxe_dir: &dir.join("pxe"),
        ssh: ("admin", "secret"),
        network: "192.0.2.0/24",
        extra: &[],
    }
    .start(&net, &crate::fleet::ze_bin()?, ctx.echo)?;
    server.wait_for("ze: started", Duration::from_secs(60))?;
    let image = ctx
        .image_path
        .file_name()
        .and_then(|n| n.to_str())
        .context("image name")?;
    let mut machine = ctx.vm(dir, 80, 1, "")?;
    // ze.server and ze.port point at the bridge's server, not slirp.
    machine.append = format!(
        "console=ttyS0 panic=-1 ze.server=192.0.2.1 ze.image={image} ze.sha256={}",
        suite::sha_hex(&ctx.image)
    );
    machine.tap = Some("tap0".into());
    let c = machine.command();
    let mut q = net.command(c.get_program().to_str().context("qemu")?);
    q.args(c.get_args());
    let mut s = vm::spawn(q, ctx.echo, None)?;
    let result = (|| {
        let booted = s.wait_for("[ze-install] ze-installer ", 0, ctx.boot_timeout)?;
        let t_init = s.elapsed();
        std::thread::sleep(BLOCKED.saturating_sub(t_init));
        net.block("tap0", false)?;
        let t_forward = s.elapsed();
        let lease = s.wait_for(
            "[ze-install] eth0: lease 192.0.2.",
            booted,
            ctx.boot_timeout,
        )?;
        let t_lease = s.elapsed();
        s.wait_for(
            "[ze-install] install complete; rebooting",
            lease,
            ctx.boot_timeout,
        )?;
        let t_done = s.elapsed();
        anyhow::Ok((t_init, t_forward, t_lease, t_done))
    })();
    let e = s.wait(Duration::from_secs(30));
    suite::save(dir, &e);
    std::fs::write(dir.join("server.log"), server.log())?;
    server.stop();
    let (t_init, t_forward, t_lease, t_done) = result?;
    suite::in_order(
        &e.serial,
        &[
            "[ze-install] no default route from the kernel; trying DHCP on every interface",
            "[ze-install] eth0: no DHCP lease in 10 s",
            "[ze-install] 192.0.2.1:80 not reached yet; trying again (",
            "[ze-install] eth0: lease 192.0.2.",
            "[ze-install] eth0: reaches 192.0.2.1:80; using it",
            "[ze-install] install complete; rebooting",
        ],
    )?;
    suite::disk_holds_image(&machine.disks[0].path, &ctx.image)?;
    Ok(format!(
        "installer up {:.1} s after power-on; the port forwarded at {:.1} s; lease at {:.1} s; install complete at {:.1} s",
        t_init.as_secs_f64(),
        t_forward.as_secs_f64(),
        t_lease.as_secs_f64(),
        t_done.as_secs_f64()
    ))
}

/// The network cases.
pub const CASES: &[Case] = &[Case {
    name: "n3_switch_port_forwards_only_after_40_s",
    run: n3_switch_port_forwards_only_after_40_s,
}];
