//! The static `ze` that goes into the image's root.
//!
//! Where it comes from, in order:
//! 1. `--ze PATH`: any binary that is a static ELF for the image's arch;
//! 2. the running `ze`, when it already is one (a `make static-ze` build
//!    installed with `ze install local`);
//! 3. a build from the source tree this `ze` was compiled from:
//!    `cargo build --release -p ze --target <triple>` into `target/static`,
//!    with `-C target-feature=+crt-static` given through
//!    `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`, so build scripts and proc macros
//!    (host units) are built normally and only the target binary is static.
//!
//! "Static" means an ELF without a `PT_INTERP` program header: the kernel
//! runs it with no dynamic loader, which is all PID 1 on a bare root can
//! rely on. glibc's static-pie output qualifies.

use super::config::Arch;
use anyhow::{Context, bail};
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The rustflags of a static build.
pub const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C strip=symbols";
/// The target directory of static builds, under the workspace.
pub const TARGET_DIR: &str = "target/static";

/// What an ELF header and program headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfFacts {
    /// `e_machine` (62 x86-64, 183 AArch64).
    pub machine: u16,
    /// Whether it asks for a dynamic loader (`PT_INTERP`).
    pub dynamic: bool,
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const PT_INTERP: u32 = 3;

/// The `e_machine` of `arch`.
pub fn machine_of(arch: Arch) -> u16 {
    match arch {
        Arch::Amd64 => EM_X86_64,
        Arch::Arm64 => EM_AARCH64,
    }
}

/// Read the ELF facts of a 64-bit little-endian executable.
pub fn inspect(bytes: &[u8]) -> Result<ElfFacts, String> {
    let get = |at: usize, n: usize| {
        bytes
            .get(at..at + n)
            .ok_or_else(|| format!("truncated ELF (need bytes {at}..{})", at + n))
    };
    if get(0, 4)? != b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if get(4, 1)?[0] != 2 || get(5, 1)?[0] != 1 {
        return Err("not a 64-bit little-endian ELF".into());
    }
    let u16_at = |at| get(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at| get(at, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |at| get(at, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    let machine = u16_at(18)?;
    let phoff = u64_at(32)? as usize;
    let phentsize = usize::from(u16_at(54)?);
    let phnum = usize::from(u16_at(56)?);
    if phentsize < 56 {
        return Err(format!("program header size {phentsize} is too small"));
    }
    let mut dynamic = false;
    for i in 0..phnum {
        let at = phoff
            .checked_add(i * phentsize)
            .ok_or("program headers out of range")?;
        if u32_at(at)? == PT_INTERP {
            dynamic = true;
        }
    }
    Ok(ElfFacts { machine, dynamic })
}

/// Check that `path` is a static executable for `arch`.
pub fn check_static(path: &Path, arch: Arch) -> anyhow::Result<()> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let facts = inspect(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if facts.machine != machine_of(arch) {
        bail!(
            "{} is built for ELF machine {}, not {arch} ({})",
            path.display(),
            facts.machine,
            machine_of(arch)
        );
    }
    if facts.dynamic {
        bail!(
            "{} is dynamically linked (it names an ELF interpreter); the image needs a static ze \
             (build one with `make static-ze`)",
            path.display()
        );
    }
    Ok(())
}

/// Where the static ze comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--ze PATH`.
    Given(PathBuf),
    /// The running binary, already static for the arch.
    Running(PathBuf),
    /// Built with cargo from this workspace.
    Cargo {
        /// The workspace root.
        workspace: PathBuf,
        /// The binary cargo produces.
        output: PathBuf,
    },
}

impl Source {
    /// One line for the build summary.
    pub fn describe(&self) -> String {
        match self {
            Source::Given(p) => format!("{} (--ze)", p.display()),
            Source::Running(p) => format!("{} (the running ze, static)", p.display()),
            Source::Cargo { workspace, output } => format!(
                "{} (static build of {} with cargo)",
                output.display(),
                workspace.display()
            ),
        }
    }
}

/// The workspace this binary was compiled from, if it is still there.
pub fn workspace() -> Option<PathBuf> {
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    (ws.join("Cargo.toml").is_file() && ws.join("host/Cargo.toml").is_file()).then_some(ws)
}

/// Decide where the static ze comes from, or say why none can be had.
pub fn resolve(given: Option<&Path>, arch: Arch) -> anyhow::Result<Source> {
    if let Some(p) = given {
        check_static(p, arch).context("--ze")?;
        return Ok(Source::Given(p.to_path_buf()));
    }
    if let Ok(exe) = std::env::current_exe()
        && check_static(&exe, arch).is_ok()
    {
        return Ok(Source::Running(exe));
    }
    match workspace() {
        Some(ws) => {
            let output = ws
                .join(TARGET_DIR)
                .join(arch.rust_triple())
                .join("release/ze");
            Ok(Source::Cargo {
                workspace: ws,
                output,
            })
        }
        None => bail!(
            "no static ze for {arch}: the running ze is not one and its source tree ({}) is gone; \
             pass --ze PATH (build one with `make static-ze` in a checkout)",
            env!("CARGO_MANIFEST_DIR")
        ),
    }
}

/// What a cargo build for `arch` needs that is missing, one line each.
pub fn missing_for_cargo(arch: Arch) -> Vec<String> {
    let mut out = Vec::new();
    if super::kernel::which("cargo").is_none() {
        out.push("cargo: not found on PATH; install Rust with rustup".into());
        return out;
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match sysroot {
        Some(root) if root.join("lib/rustlib").join(arch.rust_triple()).is_dir() => {}
        _ => out.push(format!(
            "the Rust standard library for {}: install it with `rustup target add {}`",
            arch.rust_triple(),
            arch.rust_triple()
        )),
    }
    if arch != Arch::host() {
        let linker = cross_linker(arch);
        if super::kernel::which(linker).is_none() {
            out.push(format!(
                "{linker} (links the static ze for {arch}): install it with `apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross`"
            ));
        }
    }
    out
}

fn cross_linker(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-linux-gnu-gcc",
        Arch::Arm64 => "aarch64-linux-gnu-gcc",
    }
}

/// `CARGO_TARGET_<TRIPLE>_<WHAT>`.
fn target_var(arch: Arch, what: &str) -> String {
    format!(
        "CARGO_TARGET_{}_{what}",
        arch.rust_triple().to_uppercase().replace('-', "_")
    )
}

/// Get the binary: check it, or build it. Cargo's own progress goes to
/// the terminal (standard error).
pub fn obtain(source: &Source, arch: Arch) -> anyhow::Result<PathBuf> {
    let (workspace, output) = match source {
        Source::Given(p) | Source::Running(p) => return Ok(p.clone()),
        Source::Cargo { workspace, output } => (workspace, output),
    };
    let missing = missing_for_cargo(arch);
    if !missing.is_empty() {
        bail!("cannot build a static ze:\n  {}", missing.join("\n  "));
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace)
        .args(["build", "--release", "--locked", "-p", "ze", "--target"])
        .arg(arch.rust_triple())
        .arg("--target-dir")
        .arg(workspace.join(TARGET_DIR))
        // Flags in these would replace the per-target ones below.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env(target_var(arch, "RUSTFLAGS"), STATIC_RUSTFLAGS);
    if arch != Arch::host() {
        cmd.env(target_var(arch, "LINKER"), cross_linker(arch));
    }
    let status = cmd
        .status()
        .context("cannot run cargo to build the static ze")?;
    if !status.success() {
        bail!("cargo could not build the static ze for {arch} ({status}); see its output above");
    }
    check_static(output, arch)?;
    Ok(output.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_static_from_dynamic() {
        // The test binary itself is dynamically linked against glibc.
        let me = std::env::current_exe().unwrap();
        let bytes = fs::read(&me).unwrap();
        let facts = inspect(&bytes).unwrap();
        assert_eq!(facts.machine, machine_of(Arch::host()));
        assert!(facts.dynamic);
        let err = check_static(&me, Arch::host()).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
        let other = match Arch::host() {
            Arch::Amd64 => Arch::Arm64,
            Arch::Arm64 => Arch::Amd64,
        };
        let err = check_static(&me, other).unwrap_err().to_string();
        assert!(err.contains("not "), "{err}");

        // Without PT_INTERP it is static: clear that header's type.
        let mut stripped = bytes.clone();
        let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
        let phentsize = u16::from_le_bytes([bytes[54], bytes[55]]) as usize;
        let phnum = u16::from_le_bytes([bytes[56], bytes[57]]) as usize;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            if stripped[at..at + 4] == PT_INTERP.to_le_bytes() {
                stripped[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        assert!(!inspect(&stripped).unwrap().dynamic);
    }

    #[test]
    fn rejects_what_is_not_an_elf() {
        for (bytes, want) in [
            (&b"#!/bin/sh\n"[..], "not an ELF"),
            (&b"\x7fELF\x01\x01"[..], "not a 64-bit"),
            (&b"\x7fELF\x02\x01\x01"[..], "truncated"),
        ] {
            let err = inspect(bytes).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
        assert_eq!(
            target_var(Arch::Amd64, "RUSTFLAGS"),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS"
        );
    }
}
