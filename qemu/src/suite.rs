//! `make ze-install-qemu-test`: the installer, booted for real in QEMU,
//! installing over HTTP from the test server, and every fault the issue
//! names. Each case is one QEMU run; checklist ids are in the case names.
//!
//! Knobs (spec: "Environment Knobs"): `ZE_INSTALL_KERNEL` (default
//! `build/kernel/Image`; missing is an error, never a skip),
//! `ZE_INSTALL_ARCH`, `ZE_INSTALL_BOOT_TIMEOUT` (300 s per machine),
//! `ZE_INSTALL_NIC` (`virtio-net-pci`), `ZE_INSTALL_KEEP` (keep the work
//! directory), `ZE_INSTALL_IMAGE` / `ZE_INSTALL_ZEFS` (serve these instead
//! of building them), `ZE_INSTALL_IMAGE_SIZE` (64 MiB), plus
//! `ZE_INSTALL_JOBS` (machines at once, default 2).

use crate::{
    image,
    server::{Fault, Server},
    vm::{Ended, Session, Vm},
};
use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Path of the image on the server.
pub const IMAGE_PATH: &str = "/install/image/ze.img";
/// Path of the database on the server.
pub const ZEFS_PATH: &str = "/install/database.zefs";
/// Size of each blank target disk.
pub const DISK_SIZE: u64 = 128 << 20;
/// Default test image size.
pub const DEFAULT_IMAGE_SIZE: u64 = 64 << 20;
/// The recovery password of the shell-auth cases.
pub const RECOVERY_PASSWORD: &str = "ze-recovery";
/// The first MiB, held back by the installer until the digest matched.
pub const HEAD: usize = 1 << 20;

/// Everything the cases share.
#[derive(Debug)]
pub struct Ctx {
    /// The installer kernel.
    pub kernel: PathBuf,
    /// The initrd under test.
    pub initrd: PathBuf,
    /// `amd64` / `arm64`.
    pub arch: String,
    /// Per-machine timeout.
    pub boot_timeout: Duration,
    /// NIC model.
    pub nic: String,
    /// The image served.
    pub image: Arc<Vec<u8>>,
    /// Where it is on the host (for tools that read files: bmaptool).
    pub image_path: PathBuf,
    /// The database served.
    pub zefs: Arc<Vec<u8>>,
    /// Work directory.
    pub work: PathBuf,
    /// Print the console live.
    pub echo: bool,
}

/// A `ZE_INSTALL_*` knob: unset and empty both mean "the default".
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `ZE_INSTALL_BOOT_TIMEOUT`: how long one machine may run (default 300 s).
pub fn boot_timeout() -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(
        env("ZE_INSTALL_BOOT_TIMEOUT")
            .map(|v| v.parse().context("ZE_INSTALL_BOOT_TIMEOUT must be seconds"))
            .transpose()?
            .unwrap_or(300),
    ))
}

/// `ZE_INSTALL_NIC`: the QEMU network device (default `virtio-net-pci`).
pub fn nic() -> String {
    env("ZE_INSTALL_NIC").unwrap_or_else(|| "virtio-net-pci".into())
}

/// `ZE_INSTALL_SSH_USER` / `ZE_INSTALL_SSH_PASS` (default admin/secret).
pub fn ssh_credentials() -> (String, String) {
    (
        env("ZE_INSTALL_SSH_USER").unwrap_or_else(|| "admin".into()),
        env("ZE_INSTALL_SSH_PASS").unwrap_or_else(|| "secret".into()),
    )
}

/// Find the source tree root (where `build/` lives).
pub fn root() -> anyhow::Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("firmware/Cargo.toml").is_file() && dir.join("qemu").is_dir() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("run from the ze source tree");
        }
    }
}

/// The installer kernel: `ZE_INSTALL_KERNEL` or `build/kernel/Image`.
pub fn kernel(root: &Path) -> anyhow::Result<PathBuf> {
    kernel_from(root, env("ZE_INSTALL_KERNEL"))
}

fn kernel_from(root: &Path, knob: Option<String>) -> anyhow::Result<PathBuf> {
    let path = knob
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("build/kernel/Image"));
    ensure!(
        path.is_file(),
        "installer kernel {} not found: run `make kernel` (or point ZE_INSTALL_KERNEL at one)",
        path.display()
    );
    Ok(path)
}

/// Parse a size like `67108864`, `64M`, `1G`.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size (bytes, or with K/M/G)"))?;
    n.checked_mul(mult).context("size overflows")
}

/// The test database: one admin user (`ZE_INSTALL_SSH_USER`/`_PASS`,
/// default admin/secret), bcrypt-hashed, in real zefs format.
pub fn make_zefs() -> anyhow::Result<Vec<u8>> {
    let (user, pass) = ssh_credentials();
    let db = ze::zefs::new_database(&user, &pass, 0)?;
    Ok(db.to_bytes())
}

impl Ctx {
    /// Build the context from the environment knobs.
    pub fn from_env(initrd: PathBuf, work: PathBuf, echo: bool) -> anyhow::Result<Ctx> {
        let root = root()?;
        let kernel = kernel(&root)?;
        ensure!(
            initrd.is_file(),
            "initrd {} not found: run `ze appliance initrd` (make ze-install-qemu-test does)",
            initrd.display()
        );
        let arch = env("ZE_INSTALL_ARCH").unwrap_or_else(|| "amd64".into());
        ensure!(
            arch == "amd64" || arch == "arm64",
            "ZE_INSTALL_ARCH={arch}: use amd64 or arm64"
        );
        let boot_timeout = boot_timeout()?;
        let nic = nic();
        std::fs::create_dir_all(&work)?;
        let image_path = match env("ZE_INSTALL_IMAGE") {
            Some(p) => PathBuf::from(p),
            None => {
                let size = env("ZE_INSTALL_IMAGE_SIZE")
                    .map(|s| parse_size(&s))
                    .transpose()?
                    .unwrap_or(DEFAULT_IMAGE_SIZE);
                let path = work.join("ze.img");
                image::build(&path, size)?;
                path
            }
        };
        let image = std::fs::read(&image_path)
            .with_context(|| format!("cannot read the test image {}", image_path.display()))?;
        ensure!(
            image.len() as u64 <= DISK_SIZE,
            "the test image ({} bytes) must fit the {DISK_SIZE}-byte test disks",
            image.len()
        );
        let zefs = match env("ZE_INSTALL_ZEFS") {
            Some(p) => std::fs::read(&p).with_context(|| format!("ZE_INSTALL_ZEFS={p}"))?,
            None => make_zefs()?,
        };
        Ok(Ctx {
            kernel,
            initrd,
            arch,
            boot_timeout,
            nic,
            image: Arc::new(image),
            image_path,
            zefs: Arc::new(zefs),
            work,
            echo,
        })
    }

    /// A server with the image and the database.
    pub fn server(&self, with_image: bool) -> anyhow::Result<Server> {
        let s = Server::start()?;
        if with_image {
            s.put(IMAGE_PATH, self.image.to_vec());
        }
        s.put(ZEFS_PATH, self.zefs.to_vec());
        Ok(s)
    }

    fn console(&self) -> &'static str {
        if self.arch == "arm64" {
            "ttyAMA0"
        } else {
            "ttyS0"
        }
    }

    /// A machine for `case` with `disks` blank disks and `extra` on the
    /// command line.
    pub fn vm(&self, dir: &Path, port: u16, disks: usize, extra: &str) -> anyhow::Result<Vm> {
        std::fs::create_dir_all(dir)?;
        let mut paths = Vec::new();
        for i in 0..disks {
            let p = dir.join(format!("disk{i}.img"));
            let f = File::create(&p)?;
            f.set_len(DISK_SIZE)?;
            paths.push(crate::vm::Drive::virtio(p));
        }
        let con = self.console();
        // The console set boot.ipxe gives x86: the VGA console first, the
        // serial line last (the preferred /dev/console).
        let vga = if self.arch == "amd64" { "tty0 " } else { "" };
        Ok(Vm {
            arch: self.arch.clone(),
            kernel: self.kernel.clone(),
            initrd: self.initrd.clone(),
            append: format!(
                "console={vga}console={con} ze.server=10.0.2.2 ze.port={port} panic=-1 {extra}"
            )
            .trim()
            .to_string(),
            disks: paths,
            nic: self.nic.clone(),
            tap: None,
            monitor: (self.arch == "amd64").then(|| dir.join("monitor.sock")),
            echo: self.echo,
            memory_mib: 512,
        })
    }
}

/// The ordered patterns must appear in `text` in this order.
pub fn in_order(text: &str, patterns: &[&str]) -> anyhow::Result<()> {
    let mut at = 0;
    for p in patterns {
        match text[at..].find(p) {
            Some(i) => at += i + p.len(),
            None => bail!("console lacks {p:?} (in order after byte {at})"),
        }
    }
    Ok(())
}

pub fn read_at(path: &Path, offset: u64, len: usize) -> anyhow::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

fn compare(disk: &Path, image: &[u8], from: usize, to: usize) -> anyhow::Result<()> {
    let got = read_at(disk, from as u64, to - from)?;
    if got != image[from..to] {
        let first = got
            .iter()
            .zip(&image[from..to])
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        bail!(
            "{} differs from the image at byte {}",
            disk.display(),
            from + first
        );
    }
    Ok(())
}

/// The disk holds the image: byte for byte outside partition 4 (GPT,
/// partitions 1-3, backup GPT), and partition 4 is a clean ext4 (the
/// install mounted it and wrote the database, so its bytes changed).
pub fn disk_holds_image(disk: &Path, image: &[u8]) -> anyhow::Result<()> {
    let gpt = image::read_gpt(disk).context("no GPT on the written disk")?;
    let (first, last) = gpt.partition(4)?;
    let p4_start = (first * image::SECTOR) as usize;
    let p4_end = ((last + 1) * image::SECTOR) as usize;
    ensure!(p4_end <= image.len(), "partition 4 ends past the image");
    compare(disk, image, 0, p4_start)?;
    compare(disk, image, p4_end, image.len())?;
    let p4 = disk.with_extension("p4-fsck");
    image::extract_partition(disk, 4, &p4)?;
    let out = std::process::Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&p4)
        .output()
        .context("cannot run e2fsck (package e2fsprogs)")?;
    let _ = std::fs::remove_file(&p4);
    ensure!(
        out.status.success(),
        "partition 4 of {} is not a clean ext4: {}",
        disk.display(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    Ok(())
}

/// The database on partition 4 of `disk` equals `zefs`.
pub fn disk_holds_zefs(disk: &Path, zefs: &[u8], dir: &Path) -> anyhow::Result<()> {
    let p4 = dir.join("p4.img");
    image::extract_partition(disk, 4, &p4)?;
    let got = image::debugfs_cat(&p4, "/ze/database.zefs")?;
    let _ = std::fs::remove_file(&p4);
    ensure!(
        got == zefs,
        "/perm/ze/database.zefs on {} is {} bytes and differs from the {} bytes served",
        disk.display(),
        got.len(),
        zefs.len()
    );
    Ok(())
}

pub fn all_zero(path: &Path, offset: u64, len: usize) -> anyhow::Result<bool> {
    Ok(read_at(path, offset, len)?.iter().all(|&b| b == 0))
}

pub fn ended_ok(e: &Ended, what: &str) -> anyhow::Result<()> {
    match e.status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!("QEMU exited with {s} after {what}: {}", e.errors.trim()),
        None => bail!("the machine did not {what} before the timeout"),
    }
}

/// A progress line: bytes and percent (the whole stream) or MiB of the
/// map, then MB/s and ETA.
pub fn has_progress_line(serial: &str) -> bool {
    serial.lines().any(|l| {
        l.starts_with("[ze-install] image: ")
            && ((l.contains(" bytes (") && l.contains("%), ")) || l.contains(" MiB of the map ("))
            && l.contains(" MB/s, ETA ")
    })
}

pub fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One case: its name (with checklist ids) and body.
pub struct Case {
    /// Name, with checklist ids.
    pub name: &'static str,
    /// Runs the case in its directory; returns a one-line summary.
    pub run: fn(&Ctx, &Path) -> anyhow::Result<String>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub fn save(dir: &Path, e: &Ended) {
    let _ = std::fs::write(dir.join("serial.log"), &e.serial);
}

pub fn finish(dir: &Path, s: Session, timeout: Duration) -> Ended {
    let e = s.wait(timeout);
    save(dir, &e);
    e
}

/// T2, I3, I5, I6, I7, I11, I16: the kernel's ip=dhcp route is trusted
/// after a probe; image and database written; progress then reboot;
/// every line on both consoles.
fn t2_i7_install_over_kernel_route(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let vm = ctx.vm(dir, srv.port(), 1, "ip=dhcp")?;
    let s = vm.start()?;
    let e = finish(dir, s, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "Run /init",
            "[ze-install] ze-installer ",
            "[ze-install] kernel network: default route via 10.0.2.2 dev eth0",
            "[ze-install] probe 1/30 10.0.2.2:",
            "reachable (HTTP 200)",
            "[ze-install] using the kernel's network configuration",
            "[ze-install] target disk /dev/vda (134217728 bytes)",
            "[ze-install] image: http://10.0.2.2:",
            "bytes (100%)",
            "[ze-install] image written: ",
            "[ze-install] mounted /dev/vda4 (ext4) at /perm",
            "[ze-install] wrote /perm/ze/database.zefs",
            "[ze-install] install complete; rebooting",
            "reboot: Restarting system",
        ],
    )?;
    ensure!(
        has_progress_line(&e.serial),
        "no progress line with bytes, %, MB/s and ETA"
    );
    let digest = sha_hex(&ctx.image);
    ensure!(
        e.serial.contains(&digest),
        "the console does not show the image digest {digest}"
    );
    disk_holds_image(&vm.disks[0].path, &ctx.image)?;
    disk_holds_zefs(&vm.disks[0].path, &ctx.zefs, dir)?;
    Ok(format!("installed in {:.1} s", e.elapsed.as_secs_f64()))
}

/// I8: no ip= on the command line: DHCP over AF_PACKET, lease applied
/// through netlink, server verified, install.
fn i8_install_over_own_dhcp(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let vm = ctx.vm(dir, srv.port(), 1, "")?;
    let e = finish(dir, vm.start()?, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "[ze-install] no default route from the kernel; trying DHCP on every interface",
            "[ze-install] eth0: lease 10.0.2.15/24 router 10.0.2.2 from 10.0.2.2",
            "[ze-install] probe 1/30 10.0.2.2:",
            "reachable",
            "[ze-install] eth0: reaches 10.0.2.2:",
            "[ze-install] install complete; rebooting",
        ],
    )?;
    disk_holds_image(&vm.disks[0].path, &ctx.image)?;
    disk_holds_zefs(&vm.disks[0].path, &ctx.zefs, dir)?;
    Ok(format!("installed in {:.1} s", e.elapsed.as_secs_f64()))
}

/// I12, I14 (network branch), I9 (404 = reachable), I11: the image is
/// missing; FATAL on serial and VGA, then about 30 s, then reboot; the disk
/// is not bootable.
fn i12_i14_image_404_reboots_after_30s(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(false)?;
    let vm = ctx.vm(dir, srv.port(), 1, "ip=dhcp")?;
    let mut s = vm.start()?;
    let at = s.wait_for("[ze-install] FATAL: ", 0, ctx.boot_timeout)?;
    let t_fatal = s.elapsed();
    // I11: the same lines reached the VGA console (tty0), read back from
    // its text buffer while the machine waits to reboot.
    let vga = if ctx.arch == "amd64" {
        s.wait_for(
            "[ze-install] rebooting in 20 s",
            at,
            Duration::from_secs(40),
        )?;
        let screen = s.vga_text()?;
        ensure!(
            screen.contains("[ze-install] FATAL: download of the image failed")
                && screen.contains("[ze-install] rebooting in 20 s"),
            "the VGA console (tty0) did not get the installer's lines:\n{screen}"
        );
        ", same lines on tty0 (VGA)"
    } else {
        ""
    };
    let e = finish(dir, s, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "reachable (HTTP 404)",
            "[ze-install] FATAL: download of the image failed: HTTP 404 (not found)",
            "[ze-install] no recovery password (ze.shell-auth) on this network install: rebooting in 30 s",
            "[ze-install] rebooting in 20 s",
            "[ze-install] rebooting in 10 s",
            "reboot: Restarting system",
        ],
    )?;
    let waited = e.elapsed.saturating_sub(t_fatal);
    ensure!(
        waited >= Duration::from_secs(29) && waited < Duration::from_secs(60),
        "rebooted {:.1} s after FATAL, expected about 30 s",
        waited.as_secs_f64()
    );
    ensure!(
        e.serial[at..].lines().count() >= 2,
        "nothing after the FATAL line"
    );
    ensure!(
        all_zero(&vm.disks[0].path, 0, HEAD)?,
        "first MiB not zero after a failed install"
    );
    Ok(format!(
        "rebooted {:.1} s after FATAL{vga}",
        waited.as_secs_f64()
    ))
}

/// I18, I10, I9 (5xx): a 503, then the server dies mid-download and comes back: the install
/// resumes with Range and completes.
fn i18_server_killed_mid_download_resumes(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let cut = (ctx.image.len() as u64 / 3).max(1 << 20) + 12_345;
    // A server error first (retried: a 5xx is not "unreachable"), then the
    // server dies mid-body and is gone for 1.5 s.
    srv.fault(IMAGE_PATH, Fault::Status(503));
    srv.fault(IMAGE_PATH, Fault::Kill(cut, Duration::from_millis(1500)));
    let vm = ctx.vm(dir, srv.port(), 1, "ip=dhcp")?;
    let e = finish(dir, vm.start()?, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "[ze-install] image: attempt 1 failed at byte 0: HTTP 503",
            "[ze-install] image: retrying in 2 s",
            "[ze-install] image: attempt 2 failed at byte ",
            "[ze-install] image: retrying in 2 s",
            "[ze-install] image: resuming at byte ",
            "bytes (100%)",
            "[ze-install] install complete; rebooting",
        ],
    )?;
    let log = srv.log();
    let resumed = log
        .iter()
        .find(|r| r.path == IMAGE_PATH && r.method == "GET" && r.status == 206)
        .context("no Range request reached the server")?;
    let from = resumed.range_from.unwrap_or(0);
    ensure!(
        from > 0 && from <= cut,
        "resumed at {from}, the cut was at {cut}"
    );
    disk_holds_image(&vm.disks[0].path, &ctx.image)?;
    disk_holds_zefs(&vm.disks[0].path, &ctx.zefs, dir)?;
    Ok(format!("cut at {cut}, resumed with Range: bytes={from}-"))
}

/// I10, stall timeout: the server goes silent mid-body; after the stall
/// timeout the installer resumes.
fn i10_stalled_download_resumes(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let at = (ctx.image.len() as u64 / 2).max(1 << 20);
    srv.fault(IMAGE_PATH, Fault::Stall(at, Duration::from_secs(15)));
    let vm = ctx.vm(dir, srv.port(), 1, "ip=dhcp")?;
    let e = finish(dir, vm.start()?, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "[ze-install] image: attempt 1 failed at byte ",
            "stalled: no data for 10 s",
            "[ze-install] image: resuming at byte ",
            "[ze-install] install complete; rebooting",
        ],
    )?;
    disk_holds_image(&vm.disks[0].path, &ctx.image)?;
    Ok("stalled, resumed after the 10 s stall timeout".into())
}

fn password_hash_hex() -> String {
    sha_hex(RECOVERY_PASSWORD.as_bytes())
}

/// I17, I14 (password branch), I13 power off: a wrong ze.sha256 leaves the
/// image on the disk but the first MiB zero; the operator powers off.
fn i17_wrong_sha256_leaves_disk_unbootable(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let wrong = sha_hex(b"not the image");
    let extra = format!(
        "ip=dhcp ze.sha256={wrong} ze.shell-auth={}",
        password_hash_hex()
    );
    let vm = ctx.vm(dir, srv.port(), 1, &extra)?;
    let mut s = vm.start()?;
    let at = s.wait_for("[ze-install] recovery password: ", 0, ctx.boot_timeout)?;
    s.send(format!("{RECOVERY_PASSWORD}\r").as_bytes())?;
    let at = s.wait_for("choice> ", at, Duration::from_secs(30))?;
    s.send(b"4\r")?;
    s.wait_for("[ze-install] powering off", at, Duration::from_secs(30))?;
    let e = finish(dir, s, Duration::from_secs(60));
    ended_ok(&e, "power off")?;
    in_order(
        &e.serial,
        &[
            "bytes (100%)",
            &format!(
                "[ze-install] FATAL: image sha256 {} differs from ze.sha256={wrong}; disk left unbootable",
                sha_hex(&ctx.image)
            ),
            "[ze-install] password accepted",
            "[ze-install] powering off",
            "reboot: Power down",
        ],
    )?;
    ensure!(
        all_zero(&vm.disks[0].path, 0, HEAD)?,
        "first MiB is not zero: the disk could boot"
    );
    let rest = read_at(&vm.disks[0].path, HEAD as u64, ctx.image.len() - HEAD)?;
    ensure!(
        rest == ctx.image[HEAD..],
        "the image after the first MiB is not on the disk"
    );
    Ok("first MiB zero, the rest written; powered off from the menu".into())
}

/// I12, I4: no disk at all: FATAL naming the problem, then the recovery
/// policy.
fn i12_no_disk_is_fatal(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let vm = ctx.vm(dir, srv.port(), 0, "ip=dhcp")?;
    let e = finish(dir, vm.start()?, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "[ze-install] FATAL: no writable disk: none of the ",
            "rebooting in 30 s",
            "reboot: Restarting system",
        ],
    )?;
    // The installer's reports (GETs under /install/report/, best effort)
    // may come; nothing else may.
    let fetched: Vec<String> = srv
        .log()
        .iter()
        .filter(|r| r.method == "GET" && !r.path.starts_with("/install/report/"))
        .map(|r| r.path.clone())
        .collect();
    ensure!(
        fetched.is_empty(),
        "the installer fetched {fetched:?} although there is no disk"
    );
    Ok("FATAL before any download".into())
}

/// I4, ze.target: two fixed disks, `ze.target=/dev/vdb` is written and
/// the first disk is untouched.
fn i4_two_disks_target_wins(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(true)?;
    let vm = ctx.vm(dir, srv.port(), 2, "ip=dhcp ze.target=/dev/vdb")?;
    let e = finish(dir, vm.start()?, ctx.boot_timeout);
    ended_ok(&e, "reboot")?;
    in_order(
        &e.serial,
        &[
            "[ze-install] target disk /dev/vdb",
            "[ze-install] mounted /dev/vdb4 (ext4) at /perm",
            "[ze-install] install complete; rebooting",
        ],
    )?;
    disk_holds_image(&vm.disks[1].path, &ctx.image)?;
    disk_holds_zefs(&vm.disks[1].path, &ctx.zefs, dir)?;
    ensure!(
        all_zero(&vm.disks[0].path, 0, ctx.image.len())?,
        "/dev/vda was written although ze.target=/dev/vdb"
    );
    Ok("vdb written, vda untouched".into())
}

/// I13, I14 (password branch): the menu asks for the password on serial,
/// refuses a wrong one, accepts the right one; diagnostics; "reboot".
fn i13_i14_shell_auth_menu(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let srv = ctx.server(false)?;
    let extra = format!("ip=dhcp ze.shell-auth={}", password_hash_hex());
    let vm = ctx.vm(dir, srv.port(), 1, &extra)?;
    let mut s = vm.start()?;
    let t = Duration::from_secs(30);
    let at = s.wait_for(
        "[ze-install] FATAL: download of the image failed: HTTP 404",
        0,
        ctx.boot_timeout,
    )?;
    let at = s.wait_for("[ze-install] recovery password: ", at, t)?;
    s.send(b"wrong-password\r")?;
    let at = s.wait_for("[ze-install] wrong password", at, t)?;
    let at = s.wait_for("[ze-install] recovery password: ", at, t)?;
    s.send(format!("{RECOVERY_PASSWORD}\r").as_bytes())?;
    let at = s.wait_for("[ze-install] password accepted", at, t)?;
    let at = s.wait_for("choice> ", at, t)?;
    s.send(b"2\r")?;
    let at = s.wait_for("[ze-install] link eth0 ", at, t)?;
    let at = s.wait_for("[ze-install] disk vda 134217728 bytes, candidate", at, t)?;
    let at = s.wait_for("choice> ", at, t)?;
    s.send(b"reboot\r")?;
    s.wait_for("[ze-install] rebooting", at, t)?;
    let e = finish(dir, s, Duration::from_secs(60));
    ended_ok(&e, "reboot")?;
    ensure!(
        !e.serial.contains("wrong-password") && !e.serial.contains(RECOVERY_PASSWORD),
        "a typed password was echoed on the console"
    );
    ensure!(
        !e.serial.contains("rebooting in 30 s"),
        "the unattended reboot ran although ze.shell-auth is set"
    );
    Ok("wrong password refused, right one accepted, diagnostics, reboot".into())
}

/// Every case, in the order they run.
pub const CASES: &[Case] = &[
    Case {
        name: "i12_i14_image_404_reboots_after_30s",
        run: i12_i14_image_404_reboots_after_30s,
    },
    Case {
        name: "i12_no_disk_is_fatal",
        run: i12_no_disk_is_fatal,
    },
    Case {
        name: "t2_i7_install_over_kernel_route",
        run: t2_i7_install_over_kernel_route,
    },
    Case {
        name: "i8_install_over_own_dhcp",
        run: i8_install_over_own_dhcp,
    },
    Case {
        name: "i18_server_killed_mid_download_resumes",
        run: i18_server_killed_mid_download_resumes,
    },
    Case {
        name: "i10_stalled_download_resumes",
        run: i10_stalled_download_resumes,
    },
    Case {
        name: "i17_wrong_sha256_leaves_disk_unbootable",
        run: i17_wrong_sha256_leaves_disk_unbootable,
    },
    Case {
        name: "i4_two_disks_target_wins",
        run: i4_two_disks_target_wins,
    },
    Case {
        name: "i13_i14_shell_auth_menu",
        run: i13_i14_shell_auth_menu,
    },
];

/// A case's name, duration and outcome.
type CaseResult = (&'static str, Duration, Result<String, String>);

/// Run the `cases` whose names contain one of `only` (all when empty),
/// `jobs` at a time. Returns the number of failures.
pub fn run(ctx: &Ctx, cases: &[&Case], only: &[String], jobs: usize) -> usize {
    let selected: Vec<&Case> = cases
        .iter()
        .copied()
        .filter(|c| only.is_empty() || only.iter().any(|o| c.name.contains(o.as_str())))
        .collect();
    let queue = Arc::new(Mutex::new(selected.clone()));
    let results: Arc<Mutex<Vec<CaseResult>>> = Arc::default();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let queue = queue.clone();
            let results = results.clone();
            scope.spawn(move || {
                loop {
                    let next = {
                        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                        if q.is_empty() {
                            None
                        } else {
                            Some(q.remove(0))
                        }
                    };
                    let Some(case) = next else { break };
                    let dir = ctx.work.join(case.name);
                    let t = Instant::now();
                    eprintln!("ze-install-qemu-test: RUN  {}", case.name);
                    let r = (case.run)(ctx, &dir).map_err(|e| {
                        format!("{e:#} (console: {})", dir.join("serial.log").display())
                    });
                    let took = t.elapsed();
                    match &r {
                        Ok(s) => eprintln!(
                            "ze-install-qemu-test: PASS {} ({:.1} s): {s}",
                            case.name,
                            took.as_secs_f64()
                        ),
                        Err(e) => eprintln!(
                            "ze-install-qemu-test: FAIL {} ({:.1} s): {e}",
                            case.name,
                            took.as_secs_f64()
                        ),
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((case.name, took, r));
                }
            });
        }
    });
    let results = results.lock().unwrap_or_else(|e| e.into_inner());
    let failed = results.iter().filter(|r| r.2.is_err()).count();
    let machine: Duration = results.iter().map(|r| r.1).sum();
    println!(
        "ze-install-qemu-test: {} cases in {:.1} s wall, {:.1} s of QEMU time, {jobs} at a time",
        results.len(),
        start.elapsed().as_secs_f64(),
        machine.as_secs_f64()
    );
    println!("{} passed, {failed} failed", results.len() - failed);
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn order_matching() {
        assert!(in_order("a b c", &["a", "c"]).is_ok());
        assert!(in_order("a b c", &["c", "a"]).is_err());
    }

    #[test]
    fn progress_line_shape() {
        assert!(has_progress_line(
            "[ze-install] image: 1/2 bytes (50%), 1.0 MB/s, ETA 0:01\n"
        ));
        assert!(!has_progress_line("[ze-install] image: 1/2 bytes\n"));
    }

    #[test]
    fn the_test_database_is_a_real_zefs() {
        let bytes = make_zefs().unwrap();
        let db = ze::zefs::Zefs::parse(&bytes).unwrap();
        assert!(db.users().count() == 1);
    }

    #[test]
    fn missing_kernel_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = kernel_from(dir.path(), None).unwrap_err().to_string();
        assert!(
            e.contains("build/kernel/Image not found: run `make kernel`"),
            "{e}"
        );
        let e = kernel_from(dir.path(), Some("/nonexistent/bzImage".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/bzImage"), "{e}");
    }
}
