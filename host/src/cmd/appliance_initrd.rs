//! `ze appliance initrd`: build the installer firmware for the target
//! architecture and pack it as the only file, `init`, of a gzip-compressed
//! newc cpio (checklist A6, I15).
//!
//! The firmware is built exactly as `make firmware` does (see
//! `linker/README.md`): `cargo build -p ze-installer --features pid1
//! --profile firmware --target <triple>` with the flags of
//! `linker/rustflags` passed through `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`.

use crate::{cli::ApplianceInitrd, cpio, fsutil};
use anyhow::{Context as _, bail};
use flate2::{Compression, write::GzEncoder};
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

/// Where the initrd goes, relative to the working directory.
pub const DEFAULT_OUTPUT: &str = "build/initrd/initrd.img.gz";
/// The initrd's size budget (docs/appliance-initrd.md).
pub const BUDGET: u64 = 192 * 1024;

/// A supported target architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86_64.
    Amd64,
    /// aarch64.
    Arm64,
}

impl Arch {
    /// Parse `amd64` / `arm64` (and the kernel's names).
    pub fn parse(s: &str) -> anyhow::Result<Arch> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => bail!("unknown architecture {other:?}: use amd64 or arm64"),
        }
    }

    /// The Rust target triple the firmware is built for.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The environment variable cargo reads the target's rustflags from.
    pub fn rustflags_var(self) -> String {
        format!(
            "CARGO_TARGET_{}_RUSTFLAGS",
            self.triple().to_uppercase().replace('-', "_")
        )
    }
}

/// Find the ze source tree: `start` or the nearest parent holding
/// `linker/rustflags` and `firmware/Cargo.toml`.
pub fn find_source(start: &Path) -> anyhow::Result<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join("linker/rustflags").is_file() && d.join("firmware/Cargo.toml").is_file() {
            return Ok(d.to_path_buf());
        }
        dir = d.parent();
    }
    bail!(
        "no ze source tree at or above {} (looked for linker/rustflags and firmware/Cargo.toml); run from the checkout or pass --source DIR, or pack a prebuilt binary with --firmware PATH",
        start.display()
    )
}

/// The cargo command that builds the firmware for `arch` in `source`.
pub fn firmware_command(source: &Path, arch: Arch) -> anyhow::Result<(Command, PathBuf)> {
    let flags_path = source.join("linker/rustflags");
    let flags = std::fs::read_to_string(&flags_path)
        .with_context(|| format!("cannot read {}", flags_path.display()))?;
    let flags = flags.split_whitespace().collect::<Vec<_>>().join(" ");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(source)
        .env(arch.rustflags_var(), flags)
        .args([
            "build",
            "--locked",
            "-p",
            "ze-installer",
            "--bin",
            "ze-installer",
            "--features",
            "pid1",
            "--profile",
            "firmware",
            "--target",
            arch.triple(),
            "--target-dir",
            "target/firmware",
        ]);
    let out = source
        .join("target/firmware")
        .join(arch.triple())
        .join("firmware/ze-installer");
    Ok((cmd, out))
}

/// Pack `init` into a gzip-compressed newc cpio (maximum compression).
pub fn pack(init: &[u8]) -> anyhow::Result<Vec<u8>> {
    let gz = GzEncoder::new(Vec::new(), Compression::best());
    let mut w = cpio::Writer::new(gz);
    w.file("init", 0o755, init)?;
    let mut gz = w.finish()?;
    gz.flush()?;
    Ok(gz.finish()?)
}

fn check_elf(bytes: &[u8], arch: Arch, path: &Path) -> anyhow::Result<()> {
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" {
        bail!("{} is not an ELF binary", path.display());
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    let want = match arch {
        Arch::Amd64 => EM_X86_64,
        Arch::Arm64 => EM_AARCH64,
    };
    if machine != want {
        bail!(
            "{} is built for ELF machine {machine}, not {:?} ({want}); pass the right --arch",
            path.display(),
            arch
        );
    }
    Ok(())
}

/// Run `ze appliance initrd`.
pub fn run(args: &ApplianceInitrd) -> anyhow::Result<()> {
    let arch = Arch::parse(args.arch.as_deref().unwrap_or("amd64"))?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    let firmware = match &args.firmware {
        Some(path) => {
            if args.dry_run {
                println!("would pack {} as init", path.display());
            }
            path.clone()
        }
        None => {
            let cwd = std::env::current_dir().context("cannot read the working directory")?;
            let source = find_source(args.source.as_deref().unwrap_or(&cwd))?;
            let (mut cmd, out) = firmware_command(&source, arch)?;
            let var = arch.rustflags_var();
            let flags = cmd
                .get_envs()
                .find(|(k, _)| *k == var.as_str())
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned())
                .unwrap_or_default();
            let line = format!(
                "{var}=\"{flags}\" {} {}",
                cmd.get_program().to_string_lossy(),
                cmd.get_args()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            if args.dry_run {
                println!("would run in {}: {line}", source.display());
            } else {
                eprintln!("ze: building the installer firmware: {line}");
                let status = cmd
                    .status()
                    .context("cannot run cargo to build the firmware")?;
                if !status.success() {
                    bail!("building the firmware failed ({status}): {line}");
                }
            }
            out
        }
    };
    if args.dry_run {
        println!(
            "would write {} (newc cpio through gzip -9, one entry: init, mode 0755)",
            output.display()
        );
        println!("dry run: nothing was changed");
        return Ok(());
    }
    let init = std::fs::read(&firmware)
        .with_context(|| format!("cannot read the firmware {}", firmware.display()))?;
    check_elf(&init, arch, &firmware)?;
    let packed = pack(&init)?;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fsutil::write_atomic(&output, &packed, 0o644)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let size = packed.len() as u64;
    println!(
        "{}: {size} bytes ({} KiB of the {} KiB budget), init {} bytes",
        output.display(),
        size.div_ceil(1024),
        BUDGET / 1024,
        init.len()
    );
    if size > BUDGET {
        bail!(
            "{} is {size} bytes, over the {BUDGET}-byte budget",
            output.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a6_pack_is_a_gzipped_cpio_with_one_entry() {
        let packed = pack(b"\x7fELF-ish").unwrap();
        assert_eq!(&packed[..2], &[0x1f, 0x8b]);
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut cpio)
            .unwrap();
        assert_eq!(&cpio[..6], b"070701");
        assert_eq!(&cpio[110..115], b"init\0");
        let names: Vec<&[u8]> = cpio.windows(11).filter(|w| w == b"TRAILER!!!\0").collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn arch_names_and_triples() {
        assert_eq!(
            Arch::parse("amd64").unwrap().triple(),
            "x86_64-unknown-linux-gnu"
        );
        assert_eq!(
            Arch::parse("arm64").unwrap().rustflags_var(),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS"
        );
        assert!(Arch::parse("riscv64").is_err());
    }

    #[test]
    fn finds_the_source_tree_from_a_subdirectory() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(find_source(&ws.join("host/src")).unwrap(), ws);
        let e = find_source(Path::new("/proc")).unwrap_err().to_string();
        assert!(e.contains("--source DIR"), "{e}");
    }

    #[test]
    fn wrong_architecture_binaries_are_refused() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert!(check_elf(&elf, Arch::Amd64, Path::new("x")).is_ok());
        let e = check_elf(&elf, Arch::Arm64, Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("--arch"));
        assert!(check_elf(b"#!/bin/sh", Arch::Amd64, Path::new("x")).is_err());
    }
}
