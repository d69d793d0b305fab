//! The UEFI boot loader: a `grub-mkstandalone` EFI binary whose memdisk
//! carries the boot configuration, so nothing but the binary lives on the
//! boot volume. Two configurations:
//!
//! - the appliance disk ([`disk_config`]): boot slot A or B (partition 2 or
//!   3) with the kernel of that slot from the ESP, falling back to the
//!   other slot when the chosen kernel does not load ([`bios_disk_config`]
//!   is the same logic for the BIOS core image, [`super::bios`]);
//! - the installer ISO ([`iso_config`]): find the ISO volume by its UUID and
//!   boot the installer kernel and initrd with `ze.source=iso`.

use super::{config::Arch, tools};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Modules the configurations use; grub-mkstandalone adds their
/// dependencies.
pub const MODULES: &[&str] = &[
    "part_gpt",
    "part_msdos",
    "fat",
    "iso9660",
    "search",
    "search_fs_uuid",
    "regexp",
    "test",
    "echo",
    "loadenv",
    "linux",
    "efi_gop",
    "normal",
];
/// The size of a GRUB environment block.
pub const ENV_BLOCK_SIZE: usize = 1024;
/// Where the appliance's environment block lives on the ESP.
pub const ENV_PATH: &str = "ze/grubenv";

/// GRUB's platform name for `arch`.
pub fn platform(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-efi",
        Arch::Arm64 => "arm64-efi",
    }
}

/// The Debian package with the platform's modules.
pub fn modules_package(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "grub-efi-amd64-bin",
        Arch::Arm64 => "grub-efi-arm64-bin",
    }
}

/// `/usr/lib/grub/<platform>`.
pub fn modules_dir(arch: Arch) -> PathBuf {
    Path::new("/usr/lib/grub").join(platform(arch))
}

/// The kernel's console arguments (checklist R8): `console=tty0
/// console=ttyS0` on x86; arm64 adds the PL011 UART. The last one is
/// `/dev/console`.
pub fn console_args(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "console=tty0 console=ttyS0",
        Arch::Arm64 => "console=tty0 console=ttyS0 console=ttyAMA0",
    }
}

/// What is missing to build a boot loader for `arch`, one line each.
pub fn missing(arch: Arch) -> Vec<String> {
    let mut out = Vec::new();
    if !tools::GRUB_MKSTANDALONE.present() {
        out.push(tools::GRUB_MKSTANDALONE.missing_line());
    }
    let dir = modules_dir(arch);
    if !dir.join("linux.mod").is_file() {
        out.push(format!(
            "GRUB modules for {} ({}): not found; install them with `apt-get install {}`",
            platform(arch),
            dir.display(),
            modules_package(arch)
        ));
    }
    out
}

/// Build `out` (e.g. `BOOTX64.EFI`) with `config` embedded. `scratch` is a
/// directory for the config file.
pub fn mkstandalone(arch: Arch, config: &str, out: &Path, scratch: &Path) -> anyhow::Result<()> {
    let cfg = scratch.join("grub.cfg");
    std::fs::write(&cfg, config).with_context(|| format!("cannot write {}", cfg.display()))?;
    let modules = MODULES.join(" ");
    tools::run(
        std::process::Command::new(tools::GRUB_MKSTANDALONE.program)
            .arg("-O")
            .arg(platform(arch))
            .arg("-d")
            .arg(modules_dir(arch))
            .arg("-o")
            .arg(out)
            .arg(format!("--modules={modules}"))
            .arg(format!("--install-modules={modules}"))
            .args(["--locales=", "--themes=", "--fonts="])
            .arg(format!("boot/grub/grub.cfg={}", cfg.display())),
    )
    .context("grub-mkstandalone could not build the boot loader")?;
    Ok(())
}

/// What the appliance disk boots.
#[derive(Debug, Clone)]
pub struct DiskBoot<'a> {
    /// `PARTUUID` of slot A (partition 2).
    pub root_a: &'a str,
    /// `PARTUUID` of slot B (partition 3).
    pub root_b: &'a str,
    /// The ESP's FAT serial, `XXXX-XXXX`, for when `$cmdpath` names no
    /// partition (always, on BIOS).
    pub esp_serial: &'a str,
    /// The image's architecture (console arguments).
    pub arch: Arch,
}

/// The kernel's path on the ESP for a slot (8.3 names).
pub fn kernel_path(slot: &str) -> String {
    format!("ze/{slot}/vmlinuz")
}

/// The appliance disk's boot configuration for UEFI: the ESP is the
/// partition in `$cmdpath` (the loader's own), by FAT serial when that names
/// no partition.
pub fn disk_config(b: &DiskBoot<'_>) -> String {
    ab_config(
        b,
        "EFI boot loader",
        &format!(
            r#"regexp --set=1:ze_esp '^(\([^)]+\))' "$cmdpath"
if [ -z "$ze_esp" ]; then
  search --no-floppy --fs-uuid --set=ze_dev {serial}
  set ze_esp="($ze_dev)"
fi
"#,
            serial = b.esp_serial
        ),
    )
}

/// The appliance disk's boot configuration for BIOS (the i386-pc core
/// image's memdisk, [`super::bios`]): GRUB was loaded from the BIOS boot
/// partition, so `$cmdpath` names no ESP; the ESP is found by FAT serial
/// (the early configuration has usually done so already, in `ze_dev`).
pub fn bios_disk_config(b: &DiskBoot<'_>) -> String {
    ab_config(
        b,
        "BIOS core image",
        &format!(
            r#"if [ -z "$ze_dev" ]; then
  search --no-floppy --fs-uuid --set=ze_dev {serial}
fi
set ze_esp="($ze_dev)"
"#,
            serial = b.esp_serial
        ),
    )
}

/// The A/B slot logic both firmwares share, after `find_esp` has set
/// `ze_esp` to the ESP's device, `(hd0,gpt1)`.
fn ab_config(b: &DiskBoot<'_>, loader: &str, find_esp: &str) -> String {
    format!(
        r#"# ze appliance boot configuration (embedded in the {loader}).
# Slot a is partition 2 (root-a), slot b partition 3 (root-b); ze_slot in
# /{env} on the ESP picks one (default a). Each slot has its kernel on the
# ESP; when the chosen one does not load, the other slot is tried.
set timeout=0
{find_esp}set ze_slot=a
if [ -f "$ze_esp/{env}" ]; then
  load_env --file "$ze_esp/{env}" ze_slot
fi
if [ "$ze_slot" = b ]; then set ze_other=a; else set ze_slot=a; set ze_other=b; fi
for ze_try in $ze_slot $ze_other; do
  if [ "$ze_try" = a ]; then set ze_root={a}; else set ze_root={b}; fi
  echo "ze: booting slot $ze_try"
  if linux "$ze_esp/ze/$ze_try/vmlinuz" root=PARTUUID=$ze_root ro rootfstype=squashfs rootwait init=/sbin/init ze.slot=$ze_try {console}; then
    boot
  fi
  echo "ze: the kernel of slot $ze_try did not load"
done
echo "ze: no slot could be booted"
"#,
        env = ENV_PATH,
        a = b.root_a,
        b = b.root_b,
        console = console_args(b.arch),
    )
}

/// What the installer ISO boots.
#[derive(Debug, Clone)]
pub struct IsoBoot<'a> {
    /// GRUB's UUID of the ISO volume (`YYYY-MM-DD-HH-MM-SS-CC`).
    pub volume_uuid: &'a str,
    /// The kernel command line (without `BOOT_IMAGE`).
    pub cmdline: &'a str,
    /// A line to show before booting.
    pub banner: &'a str,
}

/// Where the ISO keeps the kernel and the initrd.
pub const ISO_KERNEL: &str = "/boot/vmlinuz";
/// See [`ISO_KERNEL`].
pub const ISO_INITRD: &str = "/boot/initrd.img.gz";

/// The installer ISO's boot configuration.
pub fn iso_config(b: &IsoBoot<'_>) -> String {
    format!(
        r#"# ze installer ISO boot configuration (embedded in the EFI boot loader).
set timeout=0
search --no-floppy --fs-uuid --set=root {uuid}
echo "{banner}"
linux {kernel} {cmdline}
initrd {initrd}
boot
"#,
        uuid = b.volume_uuid,
        banner = b.banner.replace(['"', '\\', '$'], "_"),
        kernel = ISO_KERNEL,
        initrd = ISO_INITRD,
        cmdline = b.cmdline,
    )
}

/// A GRUB environment block (`grub-editenv` format) holding `vars`.
pub fn env_block(vars: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from("# GRUB Environment Block\n");
    for (k, v) in vars {
        text.push_str(&format!("{k}={v}\n"));
    }
    let mut bytes = text.into_bytes();
    bytes.resize(ENV_BLOCK_SIZE, b'#');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r8_console_arguments_per_arch() {
        assert_eq!(console_args(Arch::Amd64), "console=tty0 console=ttyS0");
        assert!(console_args(Arch::Arm64).ends_with("console=ttyAMA0"));
    }

    #[test]
    fn disk_config_boots_both_slots() {
        let cfg = disk_config(&DiskBoot {
            root_a: "11111111-1111-4111-8111-111111111111",
            root_b: "22222222-2222-4222-8222-222222222222",
            esp_serial: "1234-ABCD",
            arch: Arch::Amd64,
        });
        assert!(cfg.contains("set ze_root=11111111-1111-4111-8111-111111111111; else set ze_root=22222222-2222-4222-8222-222222222222"));
        assert!(cfg.contains("search --no-floppy --fs-uuid --set=ze_dev 1234-ABCD"));
        assert!(cfg.contains("root=PARTUUID=$ze_root ro rootfstype=squashfs rootwait init=/sbin/init ze.slot=$ze_try console=tty0 console=ttyS0"));
        assert!(cfg.contains(&format!("$ze_esp/{}", kernel_path("$ze_try"))));
    }

    #[test]
    fn bios_disk_config_finds_the_esp_by_serial_and_shares_the_slot_logic() {
        let boot = DiskBoot {
            root_a: "11111111-1111-4111-8111-111111111111",
            root_b: "22222222-2222-4222-8222-222222222222",
            esp_serial: "1234-ABCD",
            arch: Arch::Amd64,
        };
        let (efi, bios) = (disk_config(&boot), bios_disk_config(&boot));
        assert!(efi.contains("\"$cmdpath\""));
        assert!(!bios.contains("cmdpath"), "{bios}");
        assert!(bios.contains(
            "if [ -z \"$ze_dev\" ]; then\n  search --no-floppy --fs-uuid --set=ze_dev 1234-ABCD\nfi\nset ze_esp=\"($ze_dev)\"\n"
        ));
        // From `set ze_slot=a` on, the two are the same script.
        let tail = |c: &str| c[c.find("set ze_slot=a\n").unwrap()..].to_string();
        assert_eq!(tail(&efi), tail(&bios));
        assert!(
            bios.starts_with(
                "# ze appliance boot configuration (embedded in the BIOS core image)."
            )
        );
    }

    #[test]
    fn iso_config_names_volume_kernel_and_initrd() {
        let cfg = iso_config(&IsoBoot {
            volume_uuid: "2026-06-17-16-00-00-42",
            cmdline: "ze.source=iso ze.media-id=0123 console=ttyS0",
            banner: "ze installer \"prod\" $x",
        });
        assert!(cfg.contains("search --no-floppy --fs-uuid --set=root 2026-06-17-16-00-00-42\n"));
        assert!(cfg.contains("linux /boot/vmlinuz ze.source=iso ze.media-id=0123 console=ttyS0\n"));
        assert!(cfg.contains("initrd /boot/initrd.img.gz\n"));
        assert!(cfg.contains("echo \"ze installer _prod_ _x\""));
    }

    #[test]
    fn env_block_is_what_grub_editenv_writes() {
        let block = env_block(&[("ze_slot", "a")]);
        assert_eq!(block.len(), 1024);
        assert!(block.starts_with(b"# GRUB Environment Block\nze_slot=a\n#"));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &block).unwrap();
        let list = std::process::Command::new("grub-editenv")
            .arg(f.path())
            .arg("list")
            .output()
            .expect("grub-editenv (package grub-common) is needed");
        assert_eq!(String::from_utf8_lossy(&list.stdout), "ze_slot=a\n");
    }
}
