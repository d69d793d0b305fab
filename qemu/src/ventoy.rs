//! The installer ISO as a file on a Ventoy-style USB disk (checklist O6),
//! one case of `make ze-install-hw-qemu-test`. No Ventoy binary is used:
//! the harness builds Ventoy's disk layout and boots the way Ventoy does.
//!
//! - the layout: a GPT disk, partition 1 an exFAT data partition
//!   (`mkfs.exfat`, label `Ventoy`) holding the ISO as `iso/ze-prod.iso`
//!   (one directory down) and a text file, partition 2 a 32 MiB FAT EFI
//!   partition (`mkfs.vfat`, label `VTOYEFI`, empty here: Ventoy's loader
//!   would live there), the table made with `sgdisk`;
//! - exFAT cannot be written from this host (its kernel has no exFAT and
//!   exfatprogs copies no files), so a short QEMU boot of the hardware
//!   kernel with a busybox initrd mounts the fresh filesystem and copies
//!   the ISO onto it;
//! - the boot: the ISO's own kernel and initrd with the command line of
//!   the ISO's own `grub.cfg` (which Ventoy keeps), `-kernel`/`-initrd`,
//!   the disk as a removable USB disk on xHCI and a blank NVMe disk.

use crate::{
    bench::run,
    iso::{self, Ctx},
    suite,
    vm::{Bus, Drive, Vm},
};
use anyhow::{Context, ensure};
use std::{
    fs::{self, File},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    process::Command,
};

/// The ISO file's path on the data partition.
pub const ISO_FILE: &str = "iso/ze-prod.iso";
/// The EFI partition's size.
const EFI_PART: u64 = 32 << 20;
/// Where partition 1 starts (sectors).
const START: u64 = 2048;

/// The busybox script that copies the ISO (`/dev/vdb`) onto the exFAT
/// filesystem (`/dev/vda`).
const COPY_INIT: &str = r#"#!/busybox sh
/busybox mkdir -p /proc /sys /dev /mnt
/busybox mount -t proc proc /proc
/busybox mount -t devtmpfs dev /dev
/busybox mount -t exfat /dev/vda /mnt && \
/busybox mkdir -p /mnt/iso && \
/busybox cat /dev/vdb > /mnt/iso/ze-prod.iso && \
echo "readme: ze ISO on a Ventoy-style disk" > /mnt/README.txt && \
/busybox sync && /busybox umount /mnt && echo "ventoy-layout: copied"
/busybox poweroff -f
"#;

/// The busybox initrd running [`COPY_INIT`], packed with ze's own cpio
/// writer (files only, so busybox sits in the root).
fn copy_initrd(dir: &Path) -> anyhow::Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.is_file(),
        "/bin/busybox is needed: apt-get install busybox-static (or `make deps`)"
    );
    let mut w = ze::cpio::Writer::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    w.file("busybox", 0o755, &fs::read(busybox)?)?;
    w.file("init", 0o755, COPY_INIT.as_bytes())?;
    let out = dir.join("copy-initrd.img.gz");
    fs::write(&out, w.finish()?.finish()?)?;
    Ok(out)
}

fn copy_at(from: &Path, to: &Path, offset: u64) -> anyhow::Result<()> {
    let mut src = File::open(from)?;
    let mut dst = fs::OpenOptions::new().write(true).open(to)?;
    dst.seek(SeekFrom::Start(offset))?;
    std::io::copy(&mut src, &mut dst)?;
    dst.flush()?;
    Ok(())
}

/// Build the Ventoy-style disk holding `ctx.iso` as [`ISO_FILE`].
pub fn build_disk(ctx: &Ctx, dir: &Path) -> anyhow::Result<PathBuf> {
    for (program, package) in [
        ("mkfs.exfat", "exfatprogs"),
        ("mkfs.vfat", "dosfstools"),
        ("sgdisk", "gdisk"),
    ] {
        ensure!(
            iso::on_path(program),
            "{program} is needed: apt-get install {package} (or `make deps`)"
        );
    }
    fs::create_dir_all(dir)?;
    let iso_len = fs::metadata(&ctx.iso)?.len();
    let data_len = (iso_len + (32 << 20)).div_ceil(1 << 20) << 20;
    let data = iso::blank(dir, "p1-exfat.img", data_len)?;
    run(Command::new("mkfs.exfat").args(["-L", "Ventoy"]).arg(&data))?;
    let efi = iso::blank(dir, "p2-vfat.img", EFI_PART)?;
    run(Command::new("mkfs.vfat").args(["-n", "VTOYEFI"]).arg(&efi))?;
    let vm = Vm {
        arch: "amd64".into(),
        kernel: ctx.kernel.clone(),
        initrd: copy_initrd(dir)?,
        append: "console=ttyS0 panic=-1".into(),
        disks: vec![Drive::virtio(&data), Drive::virtio(&ctx.iso)],
        nic: "virtio-net-pci".into(),
        tap: None,
        monitor: None,
        echo: ctx.echo,
        memory_mib: 256,
    };
    let e = vm.start()?.wait(ctx.boot_timeout);
    iso::save(dir, "ventoy-layout", &e);
    ensure!(
        e.serial.contains("ventoy-layout: copied"),
        "copying the ISO onto the exFAT partition failed (see ventoy-layout.serial.log)"
    );
    let sectors = data_len / 512;
    let efi_start = START + sectors;
    let disk = iso::blank(dir, "ventoy.img", (efi_start * 512) + EFI_PART + (1 << 20))?;
    run(Command::new("sgdisk")
        .arg(format!("-n1:{START}:+{sectors}"))
        .args(["-t1:0700", "-c1:Ventoy"])
        .arg(format!("-n2:{efi_start}:+{}", EFI_PART / 512))
        .args(["-t2:ef00", "-c2:VTOYEFI"])
        .arg(&disk))?;
    copy_at(&data, &disk, START * 512)?;
    copy_at(&efi, &disk, efi_start * 512)?;
    Ok(disk)
}

/// The `linux` line of the ISO's own `grub.cfg`: the kernel path and its
/// command line.
pub fn grub_linux_line(iso: &Path) -> anyhow::Result<(String, String)> {
    let cfg = String::from_utf8(iso::iso_file(iso, "boot/grub/grub.cfg")?)?;
    let line = cfg
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("linux "))
        .context("the ISO's grub.cfg has no linux line")?;
    let (kernel, cmdline) = line.split_once(' ').unwrap_or((line, ""));
    Ok((kernel.into(), cmdline.into()))
}

/// O6: the ISO file found on the exFAT data partition of a removable USB
/// disk, the image installed onto NVMe, the USB disk untouched.
pub fn o6_ventoy_iso_file_on_exfat_usb_disk(ctx: &Ctx, dir: &Path) -> anyhow::Result<String> {
    let stick = build_disk(ctx, dir)?;
    let before = dir.join("ventoy-before.img");
    fs::copy(&stick, &before)?;
    let (kernel, cmdline) = grub_linux_line(&ctx.iso)?;
    let vmlinuz = dir.join("vmlinuz");
    fs::write(&vmlinuz, iso::iso_file(&ctx.iso, &kernel)?)?;
    let initrd = dir.join("initrd.img.gz");
    fs::write(
        &initrd,
        iso::iso_file(&ctx.iso, ze::appliance::grub::ISO_INITRD)?,
    )?;
    let nvme = iso::blank(dir, "nvme.img", ctx.disk_size)?;
    let vm = Vm {
        arch: "amd64".into(),
        kernel: vmlinuz,
        initrd,
        append: format!("{cmdline} panic=-1"),
        disks: vec![
            Drive::new(&stick, Bus::Usb, "VENTOY0001"),
            Drive::new(&nvme, Bus::Nvme, crate::hardware::NVME_SERIAL),
        ],
        nic: "virtio-net-pci".into(),
        tap: None,
        monitor: None,
        echo: ctx.echo,
        memory_mib: 512,
    };
    let e = vm.start()?.wait(ctx.boot_timeout);
    iso::save(dir, "install", &e);
    iso::ended_powered_off(&e)?;
    let id = &ctx.meta.media_id;
    suite::in_order(
        &e.serial,
        &[
            "[ze-install] media: /dev/sda: not an ISO 9660 volume",
            "[ze-install] media: /dev/sda1 (exfat): 1 ISO files",
            &format!(
                "[ze-install] installer media: /run/ze-media/{ISO_FILE} on /dev/sda1 (exfat; ISO 9660, media id {id})"
            ),
            "[ze-install] target disk /dev/nvme0n1",
            "[ze-install] /dev/nvme0n1: partition table and boot code written last; the disk is complete",
            "[ze-install] install complete; powering off",
            "reboot: Power down",
        ],
    )?;
    ensure!(
        !e.serial.contains("FATAL"),
        "a FATAL line during the install"
    );
    ensure!(
        !e.serial.contains("warning: unmounting"),
        "the data partition did not unmount"
    );
    let checked = iso::disk_is_the_image(ctx, &nvme, dir)?;
    let len = fs::metadata(&stick)?.len();
    ensure!(
        iso::first_difference(&before, &stick, len)?.is_none(),
        "the Ventoy disk was modified"
    );
    let _ = fs::remove_file(&before);
    Ok(format!(
        "found /run/ze-media/{ISO_FILE} on /dev/sda1 (exFAT, removable USB), installed onto /dev/nvme0n1; {checked}; the USB disk unchanged; powered off in {:.1} s",
        e.elapsed.as_secs_f64()
    ))
}
