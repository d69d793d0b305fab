//! The block-map install in QEMU (checklist W3–W5, W8), cases of
//! `make ze-install-qemu-test`:
//!
//! - `w3_w4_w5_bmaptool_map_install_onto_a_random_disk`: the test image's
//!   map made by `bmaptool create`, served beside it; the target disk full
//!   of random bytes first. Only the ranges cross the network, on one
//!   connection, and the written disk equals the image.
//! - `w8_kill_*`: the same install killed (QEMU SIGKILLed, the power cut
//!   of a test) when the console reaches a point — mid-image, right after
//!   the image, right after the `/perm` mount, right after the database —
//!   and the disk checked: its first MiB is zero (it cannot boot) unless
//!   the install is complete.

use crate::{
    image,
    suite::{self, Case, Ctx, IMAGE_PATH},
};
use anyhow::{Context, bail, ensure};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// Where the map is served.
pub const BMAP_PATH: &str = "/install/image/ze.img.bmap";
/// The rate the kill-point cases send at, so the points are seconds apart.
const KILL_RATE: u64 = 2 << 20;

/// `bmaptool create` of the test image, written beside it (once).
fn bmaptool_map(ctx: &Ctx) -> anyhow::Result<Vec<u8>> {
    let out = ctx.work.join("ze.img.bmaptool.bmap");
    if !out.exists() {
        let status = Command::new("bmaptool")
            .arg("create")
            .arg(&ctx.image_path)
            .arg("-o")
            .arg(&out)
            .status()
            .context("cannot run bmaptool (Debian package bmap-tools; make deps installs it)")?;
        ensure!(status.success(), "bmaptool create failed: {status}");
    }
    Ok(std::fs::read(&out)?)
}

/// A disk file of the test size full of pseudo-random bytes.
fn random_disk(dir: &Path, seed: u64) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let p = dir.join("disk0.img");
    std::fs::write(&p, image::filler(seed, suite::DISK_SIZE as usize))?;
    Ok(p)
}

/// The server (image, map, database) and a machine with one random disk
/// booting with the map's digest on its command line.
fn map_machine(
    ctx: &Ctx,
    dir: &Path,
    seed: u64,
) -> anyhow::Result<(crate::server::Server, crate::vm::Vm, Vec<u8>)> {
    let map = bmaptool_map(ctx)?;
    let srv = ctx.server(true)?;
    srv.put(BMAP_PATH, map.clone());
    let mut vm = ctx.vm(
        dir,
        srv.port(),
        0,
        &format!("ip=dhcp ze.bmap-sha256={}", suite::sha_hex(&map)),
    )?;
    vm.disks = vec![crate::vm::Drive::virtio(random_disk(dir, seed)?)];
    Ok((srv, vm, map))
}

/// The mapped bytes of the map, and its range count.
fn mapped(map: &[u8]) -> anyhow::Result<(u64, usize)> {
    let m = ze_installer::bmap::Bmap::parse(map).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((m.mapped_bytes, m.range_count))
}

/// W3 (bmaptool's map accepted), W4, W5.
fn w3_w4_w5_bmaptool_map_install_onto_a_random_disk(
    ctx: &Ctx,
    dir: &Path,
) -> anyhow::Result<String> {
    let (srv, vm, map) = map_machine(ctx, dir, 0xbad_d15c)?;
    let (bytes, ranges) = mapped(&map)?;
    let e = suite::finish(dir, vm.start()?, ctx.boot_timeout);
    suite::ended_ok(&e, "reboot")?;
    suite::in_order(
        &e.serial,
        &[
            &format!("[ze-install] block map: {ranges} ranges, "),
            " matches ze.bmap-sha256",
            "[ze-install] target disk /dev/vda (134217728 bytes)",
            "[ze-install] zeroing the ",
            &format!(
                "[ze-install] image written: {bytes} bytes in {ranges} ranges, each sha256 verified ({ranges} requests on 1 connection(s))"
            ),
            "[ze-install] mounted /dev/vda4 (ext4) at /perm",
            "[ze-install] wrote /perm/ze/database.zefs",
            "[ze-install] /dev/vda: partition table and boot code written last; the disk is complete",
            "[ze-install] install complete; rebooting",
        ],
    )?;
    // Only the ranges went over the wire, all on one connection.
    let gets: Vec<_> = srv
        .log()
        .into_iter()
        .filter(|l| l.path == IMAGE_PATH && l.method == "GET")
        .collect();
    ensure!(
        gets.len() == ranges,
        "{} image requests for {ranges} ranges",
        gets.len()
    );
    ensure!(
        gets.iter()
            .all(|g| g.range_to.is_some() && g.connection == gets[0].connection),
        "every request a window on one connection: {gets:?}"
    );
    let sent: u64 = gets.iter().map(|g| g.sent).sum();
    ensure!(sent == bytes, "{sent} image bytes sent, {bytes} mapped");
    // The disk held random bytes; now it is the image.
    suite::disk_holds_image(&vm.disks[0].path, &ctx.image)?;
    suite::disk_holds_zefs(&vm.disks[0].path, &ctx.zefs, dir)?;
    let note = format!(
        "compared: {} equals the {}-byte image outside partition 4, partition 4 is a clean ext4 with the database served; {sent} image bytes sent for {ranges} ranges of bmaptool's map ({:.1}% of the image)",
        vm.disks[0].path.display(),
        ctx.image.len(),
        sent as f64 * 100.0 / ctx.image.len() as f64
    );
    std::fs::write(dir.join("compare.txt"), &note)?;
    Ok(format!(
        "installed in {:.1} s; {note}",
        e.elapsed.as_secs_f64()
    ))
}

/// What the disk is after a kill.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// First MiB zero: it cannot boot.
    Unbootable,
    /// Image and database: it boots a complete appliance.
    Complete,
}

fn state(ctx: &Ctx, disk: &Path, dir: &Path) -> anyhow::Result<State> {
    if suite::all_zero(disk, 0, 1 << 20)? {
        return Ok(State::Unbootable);
    }
    suite::disk_holds_image(disk, &ctx.image)
        .and_then(|()| suite::disk_holds_zefs(disk, &ctx.zefs, dir))
        .context("the disk has a partition table but is not complete")?;
    Ok(State::Complete)
}

/// Install with the map at a throttled rate, kill the machine when the
/// console shows `point`, and check the disk: unbootable, or (when
/// `may_be_complete`) complete.
fn kill_at(ctx: &Ctx, dir: &Path, point: &str, may_be_complete: bool) -> anyhow::Result<String> {
    let (srv, vm, _) = map_machine(ctx, dir, 0x0c0f_fee0)?;
    srv.throttle(KILL_RATE);
    let mut s = vm.start()?;
    let at = s.wait_for(point, 0, ctx.boot_timeout);
    let since = s.elapsed();
    // No grace: SIGKILL now, as a power cut would.
    let e = s.wait(Duration::ZERO);
    suite::save(dir, &e);
    at.with_context(|| format!("the console never showed {point:?}"))?;
    let got = state(ctx, &vm.disks[0].path, dir)?;
    if got == State::Complete && !may_be_complete {
        bail!("killed at {point:?} but the disk is already complete");
    }
    Ok(format!(
        "killed {:.1} s after boot at {point:?}: {}",
        since.as_secs_f64(),
        match got {
            State::Unbootable => "first MiB zero, the disk cannot boot",
            State::Complete => "complete: image and database, the partition table written",
        }
    ))
}

fn w8_kill_mid_image(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    kill_at(ctx, dir, " MiB of the map (", false)
}

fn w8_kill_after_the_image(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    kill_at(ctx, dir, "[ze-install] image written: ", false)
}

fn w8_kill_after_the_perm_mount(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    kill_at(
        ctx,
        dir,
        "[ze-install] mounted /dev/vda4 (ext4) at /perm",
        false,
    )
}

fn w8_kill_after_the_database(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    kill_at(ctx, dir, "[ze-install] wrote /perm/ze/database.zefs", true)
}

/// The block-map cases.
pub const CASES: &[Case] = &[
    Case {
        name: "w3_w4_w5_bmaptool_map_install_onto_a_random_disk",
        run: w3_w4_w5_bmaptool_map_install_onto_a_random_disk,
    },
    Case {
        name: "w8_kill_mid_image",
        run: w8_kill_mid_image,
    },
    Case {
        name: "w8_kill_after_the_image",
        run: w8_kill_after_the_image,
    },
    Case {
        name: "w8_kill_after_the_perm_mount",
        run: w8_kill_after_the_perm_mount,
    },
    Case {
        name: "w8_kill_after_the_database",
        run: w8_kill_after_the_database,
    },
];
