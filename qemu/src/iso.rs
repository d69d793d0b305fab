//! `make ze-install-iso-qemu-test` (`ze-qemu iso-test`): the appliance ISO
//! install, for real. `ze appliance build` makes an image of a test
//! appliance and `ze appliance iso` (without `--target`) makes its ISO with
//! the real installer kernel and initrd; each case boots that ISO under
//! OVMF (TCG) and checks the result on the host. Checklist O1–O5 in the
//! case names.
//!
//! - the ISO as a CD next to one blank disk: the installer powers off (no
//!   reboot), the disk holds the image byte for byte (so the same GPT,
//!   read with `ze::appliance::gpt`, and the baked `/perm/ze/database.zefs`,
//!   read with `debugfs`), and the disk then boots under OVMF to ze, whose
//!   version lines name the image; ze start runs the image's seed config
//!   (template mode) and an SSH login through a host forward with the
//!   baked credentials runs `show version` (checklist T3);
//! - the same ISO next to two blank disks: a FATAL line naming both and
//!   `--target`, the recovery menu (no credential on ISO media), power off
//!   from it, and both disks still all zero;
//! - the ISO written to a disk as `dd` would (the media is then the fixed
//!   virtio disk `vda`): the media is excluded, `vdb` gets the image, and
//!   the media is unchanged.
//!
//! Knobs (spec "Environment Knobs"): `ZE_INSTALL_KERNEL` (default
//! `build/kernel/Image`; missing is an error, never a skip),
//! `ZE_INSTALL_BOOT_TIMEOUT` (300 s per machine), `ZE_INSTALL_KEEP`,
//! `ZE_INSTALL_IMAGE_SIZE` (default 384M here: the smallest A/B layout is
//! 354 MiB), `ZE_INSTALL_IMAGE` (install this appliance image instead of
//! building one), `ZE_INSTALL_SSH_USER` / `ZE_INSTALL_SSH_PASS` (the
//! credentials baked into the built image), `ZE_INSTALL_NIC` (the first
//! boot's NIC), `ZE_INSTALL_ARCH` (amd64 only: the ISO evidence boots
//! x86 OVMF), `ZE_INSTALL_JOBS` (machines at once, default 2), and
//! `ZE_BIN` (the `ze` to run, default `target/debug/ze`).

use crate::{
    server::Server,
    suite,
    vm::{self, Drive, Ended, Session, Vm},
};
use anyhow::{Context, bail, ensure};
use std::{
    fs::{self, File},
    io::Read,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use ze::appliance::{gpt::Table, iso::IsoMetadata};

/// UEFI firmware code, read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// UEFI variables template; each machine gets its own copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// The test appliance's name.
pub const APPLIANCE: &str = "ze-iso-test";
/// Default image size: the smallest A/B layout is 354 MiB.
pub const DEFAULT_IMAGE_SIZE: &str = "384M";
/// Blank target disks are this much larger than the image, as real disks
/// are.
pub const DISK_SLACK: u64 = 128 << 20;
/// Bytes per sector.
const SECTOR: u64 = 512;

/// Which installer kernel the image and the ISO carry, and the ISO's
/// `--target`.
#[derive(Debug, Clone)]
pub struct Flavour {
    /// The kernel.
    pub kernel: PathBuf,
    /// Its profile (`qemu`, `hardware`), for `ze appliance init`.
    pub profile: &'static str,
    /// `ze appliance iso --target`.
    pub target: Option<String>,
}

impl Flavour {
    /// The qemu-profile kernel and no target (the ISO cases).
    pub fn qemu(kernel: PathBuf) -> Flavour {
        Flavour {
            kernel,
            profile: "qemu",
            target: None,
        }
    }
}

/// Everything the cases share: the built image and ISO and the knobs.
#[derive(Debug)]
pub struct Ctx {
    /// The installer kernel.
    pub kernel: PathBuf,
    /// The installer initrd.
    pub initrd: PathBuf,
    /// The appliance image the ISO carries.
    pub image: PathBuf,
    /// What the ISO says about it (`/ze/install.json`).
    pub meta: IsoMetadata,
    /// When the image was built (`YYYYMMDD-HHMMSS`), from its build.json.
    pub built: Option<String>,
    /// The appliance named in the image's baked manifest.
    pub appliance: String,
    /// The ISO.
    pub iso: PathBuf,
    /// Size of each blank target disk.
    pub disk_size: u64,
    /// Per-machine timeout.
    pub boot_timeout: Duration,
    /// The first boot's NIC model.
    pub nic: String,
    /// The SSH user and password baked into a built image.
    pub ssh: (String, String),
    /// Work directory.
    pub work: PathBuf,
    /// Print the consoles live.
    pub echo: bool,
}

fn run_ze(ze: &Path, config: &Path, cwd: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(ze)
        .args(args)
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("ZE_INSTALL_IMAGE_SIZE")
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", ze.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "`ze {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Read the file `path` (`ze/install.json`, `boot/vmlinuz`) from the ISO
/// with the installer's own reader.
pub fn iso_file(iso: &Path, path: &str) -> anyhow::Result<Vec<u8>> {
    use ze_installer::iso9660::{SliceSectors, Volume};
    let bytes = fs::read(iso)?;
    let mut src = SliceSectors(&bytes);
    let volume = Volume::open(&mut src).map_err(|e| anyhow::anyhow!("{}: {e:?}", iso.display()))?;
    let entry = volume
        .lookup(&mut src, path.trim_start_matches('/'))
        .map_err(|e| anyhow::anyhow!("{}: /{path}: {e:?}", iso.display()))?;
    let mut buf = vec![0u8; entry.size() as usize];
    volume
        .read(&mut src, &entry, &mut buf)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", iso.display()))?;
    Ok(buf)
}

/// Read `/ze/install.json` from the ISO with the installer's own reader.
pub fn iso_metadata(iso: &Path) -> anyhow::Result<IsoMetadata> {
    Ok(serde_json::from_slice(&iso_file(
        iso,
        ze::appliance::iso::METADATA_PATH,
    )?)?)
}

impl Ctx {
    /// Check the tools, build the image and the ISO in `work`.
    pub fn prepare(initrd: Option<PathBuf>, work: PathBuf, echo: bool) -> anyhow::Result<Ctx> {
        let kernel = suite::kernel(&suite::root()?)?;
        Ctx::prepare_with(initrd, work, echo, &Flavour::qemu(kernel))
    }

    /// [`Ctx::prepare`] with `flavour`'s kernel, profile and `--target`.
    pub fn prepare_with(
        initrd: Option<PathBuf>,
        work: PathBuf,
        echo: bool,
        flavour: &Flavour,
    ) -> anyhow::Result<Ctx> {
        let root = suite::root()?;
        let kernel = flavour.kernel.clone();
        let initrd = initrd.unwrap_or_else(|| root.join("build/initrd/initrd.img.gz"));
        ensure!(
            initrd.is_file(),
            "initrd {} not found: run `make initrd` (make ze-install-iso-qemu-test does)",
            initrd.display()
        );
        let ze = suite::env("ZE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/debug/ze"));
        ensure!(
            ze.is_file(),
            "{} not found: run `make build-dev` (or point ZE_BIN at a ze)",
            ze.display()
        );
        let arch = suite::env("ZE_INSTALL_ARCH").unwrap_or_else(|| "amd64".into());
        ensure!(
            arch == "amd64",
            "ZE_INSTALL_ARCH={arch}: the ISO install test boots x86 OVMF; use amd64"
        );
        for (program, package) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("xorriso", "xorriso"),
            ("grub-mkstandalone", "grub-common grub-efi-amd64-bin"),
            ("mke2fs", "e2fsprogs"),
            ("debugfs", "e2fsprogs"),
        ] {
            ensure!(
                on_path(program),
                "{program} is needed: apt-get install {package} (or `make deps`)"
            );
        }
        for f in [OVMF_CODE, OVMF_VARS] {
            ensure!(
                Path::new(f).is_file(),
                "{f} is needed: apt-get install ovmf (or `make deps`)"
            );
        }
        let boot_timeout = suite::boot_timeout()?;
        let nic = suite::nic();
        let ssh = suite::ssh_credentials();
        fs::create_dir_all(&work)?;
        let config = work.join("config");
        let k = kernel.to_str().context("kernel path")?;
        let t = Instant::now();
        run_ze(
            &ze,
            &config,
            &work,
            &[
                "appliance",
                "init",
                "--ssh-username",
                &ssh.0,
                "--ssh-password",
                &ssh.1,
                "--kernel-profile",
                flavour.profile,
                APPLIANCE,
            ],
        )?;
        let image = match suite::env("ZE_INSTALL_IMAGE") {
            Some(p) => {
                let p = PathBuf::from(p);
                ensure!(p.is_file(), "ZE_INSTALL_IMAGE={} not found", p.display());
                p
            }
            None => {
                let size = suite::env("ZE_INSTALL_IMAGE_SIZE")
                    .unwrap_or_else(|| DEFAULT_IMAGE_SIZE.into());
                run_ze(
                    &ze,
                    &config,
                    &work,
                    &[
                        "appliance",
                        "build",
                        "--size",
                        &size,
                        "--kernel",
                        k,
                        APPLIANCE,
                    ],
                )?;
                ze::appliance::iso::newest_image(&config.join("ze/appliances").join(APPLIANCE))?
            }
        };
        eprintln!(
            "ze-qemu: image {} ({} bytes) in {:.1} s",
            image.display(),
            fs::metadata(&image)?.len(),
            t.elapsed().as_secs_f64()
        );
        let iso = work.join("install.iso");
        let t = Instant::now();
        let mut args = vec![
            "appliance",
            "iso",
            "--kernel",
            k,
            "--initrd",
            initrd.to_str().context("initrd path")?,
            "--image",
            image.to_str().context("image path")?,
            "--output",
            iso.to_str().context("work path")?,
        ];
        if let Some(t) = &flavour.target {
            args.extend(["--target", t]);
        }
        args.push(APPLIANCE);
        run_ze(&ze, &config, &work, &args)?;
        let meta = iso_metadata(&iso)?;
        ensure!(
            meta.target == flavour.target,
            "the test ISO's target is {:?}, not {:?}",
            meta.target,
            flavour.target
        );
        eprintln!(
            "ze-qemu: ISO {} ({} bytes, media id {}) in {:.1} s",
            iso.display(),
            fs::metadata(&iso)?.len(),
            meta.media_id,
            t.elapsed().as_secs_f64()
        );
        let manifest = ze::appliance::iso::manifest_for(&image);
        let baked = debugfs_cat_partition(&image, &work.join("image-p4.img"), "/ze/build.json")
            .ok()
            .and_then(|b| ze::manifest::Manifest::parse(&String::from_utf8_lossy(&b)).ok());
        let appliance = baked
            .as_ref()
            .map(|m| m.appliance.clone())
            .unwrap_or_else(|| APPLIANCE.into());
        let built = manifest.map(|m| m.built).or_else(|| baked.map(|m| m.built));
        let image_len = fs::metadata(&image)?.len();
        let disk_size = (image_len + DISK_SLACK).div_ceil(1 << 20) << 20;
        Ok(Ctx {
            kernel,
            initrd,
            image,
            meta,
            built,
            appliance,
            iso,
            disk_size,
            boot_timeout,
            nic,
            ssh,
            work,
            echo,
        })
    }
}

/// A free TCP port on 127.0.0.1 (for a QEMU host forward).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A blank (sparse) disk image of `size` bytes.
pub fn blank(dir: &Path, name: &str, size: u64) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let p = dir.join(name);
    File::create(&p)?.set_len(size)?;
    Ok(p)
}

/// A machine booting by UEFI (OVMF): what is attached to it.
#[derive(Debug, Default)]
pub struct Machine<'a> {
    /// The ISO as a CD (`sr0`).
    pub cdrom: Option<&'a Path>,
    /// The disks.
    pub drives: Vec<Drive>,
    /// A NIC (`ctx.nic`, or `nic`) forwarding this host port to the
    /// guest's port 22; none without.
    pub ssh_port: Option<u16>,
    /// The NIC model, when not `ctx.nic`.
    pub nic: Option<&'a str>,
    /// The UEFI variables to use and keep (copied from the template when
    /// the file does not exist); a fresh copy per machine without.
    pub vars: Option<PathBuf>,
    /// A VGA display (`-vga std`, the EFI framebuffer) instead of none.
    pub vga: bool,
    /// A QEMU monitor on this unix socket.
    pub monitor: Option<PathBuf>,
}

impl Machine<'_> {
    /// Virtio disks only.
    pub fn virtio(disks: &[PathBuf]) -> Self {
        Machine {
            drives: disks.iter().map(Drive::virtio).collect(),
            ..Machine::default()
        }
    }
}

/// The QEMU command line of `m`, its NVRAM in `dir` (`<name>.vars.fd`
/// unless `m.vars` names one).
pub fn ovmf(ctx: &Ctx, dir: &Path, name: &str, m: &Machine<'_>) -> anyhow::Result<Command> {
    fs::create_dir_all(dir)?;
    let vars = match &m.vars {
        Some(v) => v.clone(),
        None => dir.join(format!("{name}.vars.fd")),
    };
    if m.vars.is_none() || !vars.is_file() {
        fs::copy(OVMF_VARS, &vars).with_context(|| format!("copy {OVMF_VARS}"))?;
    }
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-accel", "tcg", "-smp", "1", "-m", "512"]);
    if m.vga {
        c.args(["-display", "none", "-vga", "std"]);
    } else {
        c.args(["-display", "none"]);
    }
    c.args(["-no-reboot", "-serial", "stdio"])
        // A hardware random source, as real machines have (RDRAND, a
        // TPM): the appliance makes its SSH host key at first boot.
        .args(["-device", "virtio-rng-pci"]);
    match &m.monitor {
        Some(p) => c
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", p.display())),
        None => c.args(["-monitor", "none"]),
    };
    c.arg("-drive")
        .arg(format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"))
        .arg("-drive")
        .arg(format!("if=pflash,format=raw,file={}", vars.display()));
    if let Some(iso) = m.cdrom {
        c.arg("-drive").arg(format!(
            "file={},format=raw,media=cdrom,readonly=on",
            iso.display()
        ));
    }
    vm::attach(&mut c, &m.drives);
    match m.ssh_port {
        Some(port) => c
            .arg("-netdev")
            .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .arg("-device")
            .arg(format!("{},netdev=n0", m.nic.unwrap_or(&ctx.nic))),
        None => c.args(["-nic", "none"]),
    };
    Ok(c)
}

pub fn save(dir: &Path, name: &str, e: &Ended) {
    let _ = fs::write(dir.join(format!("{name}.serial.log")), &e.serial);
}

pub fn ended_powered_off(e: &Ended) -> anyhow::Result<()> {
    match e.status {
        Some(s) if s.success() => {}
        Some(s) => bail!("QEMU exited with {s}: {}", e.errors.trim()),
        None => bail!("the machine did not power off before the timeout"),
    }
    // With -no-reboot a reboot also ends QEMU: tell them apart (O5).
    ensure!(
        e.serial.contains("reboot: Power down"),
        "QEMU ended without the kernel's \"reboot: Power down\""
    );
    ensure!(
        !e.serial.contains("reboot: Restarting system"),
        "the machine rebooted instead of powering off"
    );
    Ok(())
}

/// Compare `len` bytes of two files from `offset`, 1 MiB at a time; the
/// first differing byte, if any.
pub fn first_difference(a: &Path, b: &Path, len: u64) -> anyhow::Result<Option<u64>> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(1 << 20) as usize;
        fa.read_exact(&mut ba[..n])?;
        fb.read_exact(&mut bb[..n])?;
        if let Some(i) = ba[..n].iter().zip(&bb[..n]).position(|(x, y)| x != y) {
            return Ok(Some(at + i as u64));
        }
        at += n as u64;
    }
    Ok(None)
}

/// Whether `len` bytes of `path` from `offset` are all zero.
pub fn all_zero(path: &Path, offset: u64, len: u64) -> anyhow::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(1 << 20) as usize;
        f.read_exact(&mut buf[..n])?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        left -= n as u64;
    }
    Ok(true)
}

/// Copy partition 4 of the image `disk` (its GPT checked over the whole
/// file) into `out` and read `file` from it with `debugfs`.
fn debugfs_cat_partition(disk: &Path, out: &Path, file: &str) -> anyhow::Result<Vec<u8>> {
    debugfs_cat_partition_of(disk, disk, out, file)
}

/// [`debugfs_cat_partition`] of a written disk whose layout is `image`'s
/// (a disk larger than the image keeps the image's backup GPT where the
/// image ended, so its own table does not validate against its size).
fn debugfs_cat_partition_of(
    layout: &Path,
    disk: &Path,
    out: &Path,
    file: &str,
) -> anyhow::Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let mut l = File::open(layout)?;
    let sectors = l.metadata()?.len() / SECTOR;
    let table = Table::read_from(&mut l, sectors)
        .with_context(|| format!("{}: no valid GPT", layout.display()))?;
    let mut f = File::open(disk)?;
    let p4 = table.partitions.get(3).context("no partition 4")?;
    f.seek(SeekFrom::Start(p4.offset()))?;
    std::io::copy(&mut f.take(p4.size()), &mut File::create(out)?)?;
    let got = crate::image::debugfs_cat(out, file);
    let _ = fs::remove_file(out);
    got
}

/// O1, O4: the written disk is the image: byte for byte over the image's
/// length (the rest of the disk untouched), the same GPT (both headers,
/// read and checked with `ze::appliance::gpt` over the image's sectors),
/// and partition 4's `/ze/database.zefs` is the one the image carries.
pub fn disk_is_the_image(ctx: &Ctx, disk: &Path, dir: &Path) -> anyhow::Result<String> {
    let len = fs::metadata(&ctx.image)?.len();
    let sectors = len / SECTOR;
    let want =
        Table::read_from(&mut File::open(&ctx.image)?, sectors).context("the image's own GPT")?;
    let got = Table::read_from(&mut File::open(disk)?, sectors)
        .with_context(|| format!("{}: no valid GPT where the image has one", disk.display()))?;
    ensure!(
        got == want,
        "the written GPT differs from the image's:\n{got:?}\n{want:?}"
    );
    if let Some(at) = first_difference(&ctx.image, disk, len)? {
        bail!("{} differs from the image at byte {at}", disk.display());
    }
    let disk_len = fs::metadata(disk)?.len();
    ensure!(
        all_zero(disk, len, disk_len - len)?,
        "bytes past the image on {} were written",
        disk.display()
    );
    let p4 = want
        .partitions
        .get(3)
        .context("no partition 4 in the image")?;
    let part = dir.join("p4.img");
    {
        use std::io::{Seek, SeekFrom};
        let mut f = File::open(disk)?;
        f.seek(SeekFrom::Start(p4.offset()))?;
        std::io::copy(&mut f.take(p4.size()), &mut File::create(&part)?)?;
    }
    let zefs = crate::image::debugfs_cat(&part, "/ze/database.zefs");
    let _ = fs::remove_file(&part);
    let zefs = zefs?;
    let baked = debugfs_cat_partition(&ctx.image, &dir.join("image-p4.img"), "/ze/database.zefs")?;
    ensure!(
        zefs == baked,
        "/ze/database.zefs on the written partition 4 differs from the image's"
    );
    let db = ze::zefs::Zefs::parse(&zefs).context("the written database.zefs does not parse")?;
    let (user, pass) = &ctx.ssh;
    let record = db
        .user(user)
        .with_context(|| format!("the written database has no user {user}"))?;
    ensure!(
        ze::credentials::verify_password(pass, &record.password_hash),
        "the written database's hash for {user} does not match ZE_INSTALL_SSH_PASS"
    );
    Ok(format!(
        "GPT with {} partitions as in the image, p4 /ze/database.zefs {} bytes with user {user}",
        got.partitions.len(),
        zefs.len()
    ))
}

/// The image's disk booted under OVMF, up to `ze: init: ready`.
#[derive(Debug)]
pub struct FirstBoot {
    /// The running machine.
    pub session: Session,
    /// The host port forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// Seconds from QEMU's start to `ze: init: ready`.
    pub ready_after: f64,
}

/// Boot `disk` and wait for ze's version lines: `ze <version> (built ...)`,
/// `image: <image> (built <ts>)`, `appliance: <name>`, then ready.
pub fn first_boot(ctx: &Ctx, dir: &Path, disk: &Path) -> anyhow::Result<FirstBoot> {
    first_boot_on(
        ctx,
        dir,
        Machine::virtio(&[disk.to_path_buf()]),
        "/dev/vda4",
    )
}

/// [`first_boot`] of the machine `m` (its SSH port is set here), whose
/// `/perm` is `perm` (`/dev/nvme0n1p4`).
pub fn first_boot_on(
    ctx: &Ctx,
    dir: &Path,
    mut m: Machine<'_>,
    perm: &str,
) -> anyhow::Result<FirstBoot> {
    let ssh_port = free_port()?;
    m.ssh_port = Some(ssh_port);
    let cmd = ovmf(ctx, dir, "first-boot", &m)?;
    let mut s = vm::spawn(cmd, ctx.echo, m.monitor.clone())?;
    let t = ctx.boot_timeout;
    let image_line = match &ctx.built {
        Some(b) => format!("image: {} (built {b})", ctx.meta.image),
        None => format!("image: {}", ctx.meta.image),
    };
    let steps = [
        "ze: init: ".to_string(),
        format!("ze: init: mounted {perm} (PARTNAME=perm) on /perm"),
        format!("ze {} (built ", ctx.meta.ze_version),
        image_line,
        format!("appliance: {}", ctx.appliance),
        "ze: init: ready".into(),
    ];
    let mut at = 0;
    for step in &steps {
        at = match s.wait_for(step, at, t) {
            Ok(at) => at,
            Err(e) => {
                let serial = s.serial();
                let _ = fs::write(dir.join("first-boot.serial.log"), &serial);
                return Err(e.context("first boot of the written disk"));
            }
        };
    }
    Ok(FirstBoot {
        ready_after: s.elapsed().as_secs_f64(),
        session: s,
        ssh_port,
    })
}

/// On a first boot: wait for `ze start` in `mode` with its SSH server,
/// log in over the host forward (T2, T3), check `show version` names the
/// image and that wrong credentials are refused, then stop the machine.
pub fn login_on_first_boot(
    ctx: &Ctx,
    dir: &Path,
    mut boot: FirstBoot,
    mode: &str,
) -> anyhow::Result<(String, Ended)> {
    let t = ctx.boot_timeout;
    let result = (|| {
        let at = boot
            .session
            .wait_for(&format!("ze: starting mode={mode}"), 0, t)?;
        boot.session.wait_for("sshserver: listening", at, t)?;
        let image_line = format!("image: {}", ctx.meta.image);
        let started = Instant::now();
        let shown = crate::login::login_and_show_version(
            &crate::login::Target::forward(boot.ssh_port),
            &ctx.ssh.0,
            &ctx.ssh.1,
            &image_line,
            t,
        )?;
        // The transcript of the login, whole, for the CI log (one write,
        // so that a case running beside this one does not interleave).
        let mut transcript = format!(
            "$ ssh -p {} {}@127.0.0.1 show version\n",
            boot.ssh_port, ctx.ssh.0
        );
        for line in shown.lines() {
            transcript.push_str(&format!("  {line}\n"));
        }
        print!("{transcript}");
        let version = shown
            .lines()
            .find(|l| l.starts_with("image:"))
            .unwrap_or_default()
            .to_string();
        Ok::<_, anyhow::Error>(format!(
            "ssh {}@127.0.0.1:{} (mode {mode}) `show version` in {:.1} s: {version}; wrong password and unknown user refused",
            ctx.ssh.0,
            boot.ssh_port,
            started.elapsed().as_secs_f64()
        ))
    })();
    let ended = boot.session.wait(Duration::ZERO);
    save(dir, "first-boot", &ended);
    match result {
        Ok(line) => Ok((line, ended)),
        Err(e) => Err(e.context("SSH login on the first boot")),
    }
}

/// The HTTP install of the appliance image (as `ze install remote`
/// serves it: the image, and a `database.zefs` built from the SSH
/// credentials) onto `drives` with a `nic`, booting the installer kernel
/// directly; checks that `drives[target]`, the kernel's `disk` (`vda`,
/// `nvme0n1`), got the image and the served database.
pub fn http_install(
    ctx: &Ctx,
    dir: &Path,
    drives: Vec<Drive>,
    nic: &str,
    (target, disk): (usize, &str),
) -> anyhow::Result<Ended> {
    fs::create_dir_all(dir)?;
    let hash = ze::credentials::hash_password(&ctx.ssh.1)?;
    let zefs = ze::zefs::new_database_with_hash(&ctx.ssh.0, &hash, ze::timefmt::now())?.to_bytes();
    let srv = Server::start()?;
    srv.put(
        &format!("/install/image/{}", ctx.meta.image),
        fs::read(&ctx.image)?,
    );
    srv.put(suite::ZEFS_PATH, zefs.clone());
    let target = drives.get(target).context("no such drive")?.path.clone();
    let vm = Vm {
        arch: "amd64".into(),
        kernel: ctx.kernel.clone(),
        initrd: ctx.initrd.clone(),
        append: format!(
            "console=ttyS0 ze.server=10.0.2.2 ze.port={} ze.image={} ze.sha256={} ip=dhcp panic=-1",
            srv.port(),
            ctx.meta.image,
            ctx.meta.sha256
        ),
        disks: drives,
        nic: nic.into(),
        tap: None,
        monitor: None,
        echo: ctx.echo,
        memory_mib: 512,
    };
    let e = vm.start()?.wait(ctx.boot_timeout);
    save(dir, "install", &e);
    let perm = ze_installer::disk::partition_path(disk, 4);
    suite::in_order(
        &e.serial,
        &[
            "[ze-install] ze-installer ",
            &format!(
                "[ze-install] installing {} from 10.0.2.2:{}",
                ctx.meta.image,
                srv.port()
            ),
            &format!("[ze-install] target disk /dev/{disk}"),
            &format!(
                "[ze-install] image written: {} bytes, sha256 {}",
                ctx.meta.image_size, ctx.meta.sha256
            ),
            &format!("[ze-install] mounted {perm} (ext4) at /perm"),
            &format!(
                "[ze-install] wrote /perm/ze/database.zefs ({} bytes)",
                zefs.len()
            ),
            "[ze-install] install complete; rebooting",
            "reboot: Restarting system",
        ],
    )?;
    ensure!(
        !e.serial.contains("FATAL"),
        "a FATAL line during the install"
    );
    let served = debugfs_cat_partition_of(
        &ctx.image,
        &target,
        &dir.join("disk-p4.img"),
        "/ze/database.zefs",
    )?;
    ensure!(
        served == zefs,
        "/perm/ze/database.zefs on the disk is not the one served"
    );
    Ok(e)
}

/// T2: the HTTP install of the appliance image (as `ze install remote`
/// serves it: the image, and a `database.zefs` built from the SSH
/// credentials), then the first boot of the written disk (bootstrap mode:
/// that database has no config) and an SSH login as the provisioned user.
fn t2_http_install_first_boot_and_ssh_login(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let disk = blank(dir, "disk0.img", ctx.disk_size)?;
    let e = http_install(ctx, dir, vec![Drive::virtio(&disk)], &ctx.nic, (0, "vda"))?;
    let installed = e.elapsed.as_secs_f64();

    let boot = first_boot(ctx, dir, &disk)?;
    let ready = boot.ready_after;
    let (login, ended) = login_on_first_boot(ctx, dir, boot, "bootstrap")?;
    ensure!(
        ended
            .serial
            .contains("dhcpclient: lease interface=eth0 ip=10.0.2.15/24"),
        "bootstrap mode's DHCP client did not take the slirp lease"
    );
    let lines = version_lines(&ended.serial).join(" | ");
    Ok(format!(
        "installed over HTTP and rebooted in {installed:.1} s; database as served; first boot ready in {ready:.1} s: {lines}; {login}"
    ))
}

/// The ze lines of a first boot's console.
pub fn version_lines(serial: &str) -> Vec<&str> {
    serial
        .lines()
        .filter(|l| {
            l.starts_with("ze")
                || l.starts_with("commit:")
                || l.starts_with("image:")
                || l.starts_with("appliance:")
        })
        .collect()
}

/// A progress line: bytes, percent, MB/s, ETA.
fn has_progress_line(serial: &str) -> bool {
    suite::has_progress_line(serial)
}

/// O1, O3, O4, O5, then the first boot: the ISO as a CD with one blank
/// disk.
fn o1_o3_o4_o5_cd_install_then_first_boot(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let disk = blank(dir, "disk0.img", ctx.disk_size)?;
    let m = Machine {
        cdrom: Some(&ctx.iso),
        ..Machine::virtio(std::slice::from_ref(&disk))
    };
    let cmd = ovmf(ctx, dir, "install", &m)?;
    let e = vm::spawn(cmd, ctx.echo, None)?.wait(ctx.boot_timeout);
    save(dir, "install", &e);
    ended_powered_off(&e)?;
    let m = &ctx.meta;
    suite::in_order(
        &e.serial,
        &[
            &format!(
                "Command line: BOOT_IMAGE=/boot/vmlinuz ze.source=iso ze.media-id={} ze.image={}",
                m.media_id, m.image
            ),
            "[ze-install] ze-installer ",
            &format!(
                "[ze-install] installing {} from the installer media (ze.media-id={})",
                m.image, m.media_id
            ),
            &format!(
                "[ze-install] installer media: /dev/sr0 (ISO 9660, media id {})",
                m.media_id
            ),
            "[ze-install] block map: ",
            &format!(
                " matches ze.bmap-sha256\n[ze-install] image: /ze/{}.data.gz on /dev/sr0 (",
                m.image
            ),
            &format!(" bytes gzip'd, {} bytes mapped)", m.mapped_bytes),
            &format!(
                "[ze-install] target disk /dev/vda ({} bytes)",
                ctx.disk_size
            ),
            "[ze-install] zeroing the ",
            &format!("[ze-install] image written: {} bytes in ", m.mapped_bytes),
            " ranges, each sha256 verified; ",
            "[ze-install] /perm/ze/database.zefs comes with the image (ISO install: no database download)",
            "[ze-install] /dev/vda: partition table and boot code written last; the disk is complete",
            "[ze-install] install complete; powering off: remove the installer media before the next boot",
            "reboot: Power down",
        ],
    )?;
    ensure!(
        !e.serial.contains("FATAL"),
        "a FATAL line during the install"
    );
    ensure!(
        has_progress_line(&e.serial),
        "no progress line with bytes, %, MB/s and ETA"
    );
    ensure!(
        !e.serial.contains("/perm (ext4)") && !e.serial.contains("database.zefs ("),
        "O4: the ISO install mounted /perm or wrote a database"
    );
    let installed = e.elapsed.as_secs_f64();
    let checked = disk_is_the_image(ctx, &disk, dir)?;

    let boot = first_boot(ctx, dir, &disk)?;
    let ready = boot.ready_after;
    // The ISO keeps the image's own database, seed config included:
    // `ze start` runs the template, and the login uses the credentials
    // baked by `ze appliance build`.
    let (login, ended) = login_on_first_boot(ctx, dir, boot, "template")?;
    let lines = version_lines(&ended.serial).join(" | ");
    Ok(format!(
        "installed and powered off in {installed:.1} s; {checked}; first boot ready in {ready:.1} s: {lines}; {login}"
    ))
}

/// O2, O5: two blank disks and an ISO made without `--target`: FATAL
/// naming both, the menu (ISO, no credential), power off; both disks all
/// zero.
fn o2_two_disks_without_target_refused(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let disks = [
        blank(dir, "disk0.img", ctx.disk_size)?,
        blank(dir, "disk1.img", ctx.disk_size)?,
    ];
    let m = Machine {
        cdrom: Some(&ctx.iso),
        ..Machine::virtio(&disks)
    };
    let cmd = ovmf(ctx, dir, "install", &m)?;
    let mut s = vm::spawn(cmd, ctx.echo, None)?;
    let t = Duration::from_secs(30);
    let step = |s: &mut Session, pattern: &str, at: usize, t: Duration| {
        s.wait_for(pattern, at, t).inspect_err(|_| {
            let _ = fs::write(dir.join("install.serial.log"), s.serial());
        })
    };
    let at = step(&mut s, "[ze-install] FATAL: ", 0, ctx.boot_timeout)?;
    let at = step(&mut s, "choice> ", at, t)?;
    s.send(b"4\r")?;
    step(&mut s, "[ze-install] powering off", at, t)?;
    let e = s.wait(Duration::from_secs(60));
    save(dir, "install", &e);
    ended_powered_off(&e)?;
    let size = ze_installer::disk::Size(ctx.disk_size);
    let fatal = format!(
        "[ze-install] FATAL: 2 fixed disks (/dev/vda {size}, /dev/vdb {size}) and no ze.target: refusing to guess which to erase; rebuild the ISO with `ze appliance iso --target /dev/<disk> <appliance>`"
    );
    suite::in_order(
        &e.serial,
        &[
            &format!(
                "[ze-install] installer media: /dev/sr0 (ISO 9660, media id {})",
                ctx.meta.media_id
            ),
            &fatal,
            "[ze-install] recovery menu:",
            "[ze-install] powering off",
            "reboot: Power down",
        ],
    )?;
    ensure!(
        !e.serial.contains("rebooting in"),
        "the unattended reboot ran on ISO media without a credential"
    );
    for d in &disks {
        ensure!(
            all_zero(d, 0, ctx.disk_size)?,
            "{} was written although the choice was refused",
            d.display()
        );
    }
    Ok(format!(
        "FATAL, menu, powered off after {:.1} s; both disks all zero",
        e.elapsed.as_secs_f64()
    ))
}

/// O2, O3: the ISO written to a disk as `dd` would: that fixed disk (vda)
/// carries the media id and is excluded; vdb gets the image; the media is
/// unchanged.
fn o2_o3_dd_written_media_is_excluded(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    fs::create_dir_all(dir)?;
    let stick = dir.join("usb-stick.img");
    fs::copy(&ctx.iso, &stick)?;
    let disks = [stick.clone(), blank(dir, "disk1.img", ctx.disk_size)?];
    let cmd = ovmf(ctx, dir, "install", &Machine::virtio(&disks))?;
    let e = vm::spawn(cmd, ctx.echo, None)?.wait(ctx.boot_timeout);
    save(dir, "install", &e);
    ended_powered_off(&e)?;
    suite::in_order(
        &e.serial,
        &[
            &format!(
                "[ze-install] installer media: /dev/vda (ISO 9660, media id {})",
                ctx.meta.media_id
            ),
            &format!(
                "[ze-install] target disk /dev/vdb ({} bytes)",
                ctx.disk_size
            ),
            "[ze-install] install complete; powering off",
            "reboot: Power down",
        ],
    )?;
    disk_is_the_image(ctx, &disks[1], dir)?;
    let iso_len = fs::metadata(&ctx.iso)?.len();
    ensure!(
        fs::metadata(&stick)?.len() == iso_len
            && first_difference(&ctx.iso, &stick, iso_len)?.is_none(),
        "the installer media (vda) was modified"
    );
    Ok(format!(
        "media on vda untouched, image on vdb, powered off in {:.1} s",
        e.elapsed.as_secs_f64()
    ))
}

/// One case.
#[derive(Clone, Copy)]
pub struct Case {
    /// Name, with checklist ids.
    pub name: &'static str,
    /// Runs in its directory; returns a one-line summary.
    pub run: fn(&Ctx, &Path) -> anyhow::Result<String>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every case, longest first.
pub const CASES: &[Case] = &[
    Case {
        name: "o1_o3_o4_o5_cd_install_then_first_boot",
        run: o1_o3_o4_o5_cd_install_then_first_boot,
    },
    Case {
        name: "o2_two_disks_without_target_refused",
        run: o2_two_disks_without_target_refused,
    },
    Case {
        name: "o2_o3_dd_written_media_is_excluded",
        run: o2_o3_dd_written_media_is_excluded,
    },
];

/// The HTTP install of the same appliance image, with the first boot and
/// the SSH login (`make ze-install-qemu-test`, after the fault cases).
pub const HTTP_CASES: &[Case] = &[Case {
    name: "t2_http_install_first_boot_and_ssh_login",
    run: t2_http_install_first_boot_and_ssh_login,
}];

/// Run the cases whose names contain one of `only` (all when empty),
/// `jobs` at a time; returns the number of failures.
pub fn run(ctx: &Ctx, label: &str, cases: &[Case], only: &[String], jobs: usize) -> usize {
    let queue: Vec<&Case> = cases
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| c.name.contains(o.as_str())))
        .collect();
    let total = queue.len();
    let queue = Arc::new(Mutex::new(queue));
    let failed = Arc::new(Mutex::new(0usize));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            let (queue, failed) = (queue.clone(), failed.clone());
            scope.spawn(move || {
                loop {
                    let next = {
                        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                        (!q.is_empty()).then(|| q.remove(0))
                    };
                    let Some(case) = next else { break };
                    let dir = ctx.work.join(case.name);
                    let t = Instant::now();
                    eprintln!("{label}: RUN  {}", case.name);
                    match (case.run)(ctx, &dir) {
                        Ok(s) => eprintln!(
                            "{label}: PASS {} ({:.1} s): {s}",
                            case.name,
                            t.elapsed().as_secs_f64()
                        ),
                        Err(e) => {
                            *failed.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                            eprintln!(
                                "{label}: FAIL {} ({:.1} s): {e:#} (consoles: {})",
                                case.name,
                                t.elapsed().as_secs_f64(),
                                dir.display()
                            );
                        }
                    }
                }
            });
        }
    });
    let failed = *failed.lock().unwrap_or_else(|e| e.into_inner());
    println!(
        "{label}: {total} cases in {:.1} s, {jobs} at a time: {} passed, {failed} failed",
        start.elapsed().as_secs_f64(),
        total - failed
    );
    failed
}

/// Serial timestamps of one install: from the installer's first line to
/// `install complete`, and from `target disk` to `image written`.
#[derive(Debug, Clone, Copy)]
pub struct InstallTimes {
    /// Installer start to `install complete`, seconds.
    pub installer: f64,
    /// `target disk` to `image written` (the image transport and write).
    pub write: f64,
    /// QEMU start to exit.
    pub machine: f64,
}

fn times(
    mut s: Session,
    timeout: Duration,
    dir: &Path,
    name: &str,
) -> anyhow::Result<InstallTimes> {
    let mut at = 0;
    let mut marks = Vec::new();
    for p in [
        "[ze-install] ze-installer ",
        "[ze-install] target disk ",
        "[ze-install] image written: ",
        "[ze-install] install complete; ",
    ] {
        at = match s.wait_for(p, at, timeout) {
            Ok(a) => a,
            Err(e) => {
                let _ = fs::write(dir.join(format!("{name}.serial.log")), s.serial());
                return Err(e);
            }
        };
        marks.push(s.arrival(at).context("no arrival time")?.as_secs_f64());
    }
    let e = s.wait(timeout);
    save(dir, name, &e);
    ensure!(
        e.status.is_some_and(|st| st.success()),
        "{name}: QEMU did not end by itself"
    );
    Ok(InstallTimes {
        installer: marks[3] - marks[0],
        write: marks[2] - marks[1],
        machine: e.elapsed.as_secs_f64(),
    })
}

/// `ze-qemu iso-bench`: the ISO install against the HTTP install of the
/// same image, `runs` times each, alternating; prints medians and ratios.
pub fn bench(ctx: &Ctx, runs: usize, iso_only: bool) -> anyhow::Result<()> {
    let image_bytes = fs::read(&ctx.image)?;
    let zefs = debugfs_cat_partition(
        &ctx.image,
        &ctx.work.join("bench-p4.img"),
        "/ze/database.zefs",
    )?;
    let srv = Server::start()?;
    srv.put(&format!("/install/image/{}", ctx.meta.image), image_bytes);
    srv.put(suite::ZEFS_PATH, zefs);
    let (mut iso, mut http) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let dir = ctx.work.join(format!("bench-{i}"));
        fs::create_dir_all(&dir)?;
        let disk = blank(&dir, "iso-disk.img", ctx.disk_size)?;
        let m = Machine {
            cdrom: Some(&ctx.iso),
            ..Machine::virtio(&[disk])
        };
        let cmd = ovmf(ctx, &dir, "iso", &m)?;
        let t = times(vm::spawn(cmd, false, None)?, ctx.boot_timeout, &dir, "iso")?;
        eprintln!(
            "iso-bench run {i}: ISO installer {:.1} s (image write {:.1} s, machine {:.1} s)",
            t.installer, t.write, t.machine
        );
        iso.push(t);
        if iso_only {
            let _ = fs::remove_dir_all(&dir);
            continue;
        }
        let disk = blank(&dir, "http-disk.img", ctx.disk_size)?;
        let vm = Vm {
            arch: "amd64".into(),
            kernel: ctx.kernel.clone(),
            initrd: ctx.initrd.clone(),
            append: format!(
                "console=ttyS0 ze.server=10.0.2.2 ze.port={} ze.image={} ze.sha256={} ze.size={} ip=dhcp panic=-1",
                srv.port(),
                ctx.meta.image,
                ctx.meta.sha256,
                ctx.meta.image_size
            ),
            disks: vec![Drive::virtio(disk)],
            nic: ctx.nic.clone(),
            tap: None,
            monitor: None,
            echo: false,
            memory_mib: 512,
        };
        let t = times(vm.start()?, ctx.boot_timeout, &dir, "http")?;
        eprintln!(
            "iso-bench run {i}: HTTP installer {:.1} s (image write {:.1} s, machine {:.1} s)",
            t.installer, t.write, t.machine
        );
        http.push(t);
        let _ = fs::remove_dir_all(&dir);
    }
    let med = |v: &[InstallTimes], f: fn(&InstallTimes) -> f64| {
        crate::bench::median(v.iter().map(f).collect())
    };
    let gz = fs::metadata(&ctx.iso)?.len();
    println!(
        "# ISO install vs HTTP install of the same image ({} bytes, {}; ISO {} bytes), {runs} runs each, medians",
        ctx.meta.image_size, ctx.meta.image, gz
    );
    if iso_only {
        println!(
            "ISO installer: first [ze-install] line to `install complete`: {:.1} s; image transport + write {:.1} s",
            med(&iso, |t| t.installer),
            med(&iso, |t| t.write)
        );
        return Ok(());
    }
    for (what, f) in [
        (
            "installer: first [ze-install] line to `install complete`",
            (|t: &InstallTimes| t.installer) as fn(&InstallTimes) -> f64,
        ),
        (
            "image transport + write: `target disk` to `image written`",
            |t| t.write,
        ),
        (
            "machine: QEMU start to exit (ISO: OVMF + GRUB; HTTP: -kernel)",
            |t| t.machine,
        ),
    ] {
        let (a, b) = (med(&iso, f), med(&http, f));
        println!("{what}: ISO {a:.1} s, HTTP {b:.1} s: ISO/HTTP {:.2}", a / b);
    }
    Ok(())
}
