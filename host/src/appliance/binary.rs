//! The static `ze` that goes into the image's root.
//!
//! Where it comes from, in order:
//! 1. `--ze PATH`: any binary that is a static ELF for the image's arch;
//! 2. the running `ze`, when it already is one (the release build,
//!    `make build`, is static, and so is what `ze install local` copies
//!    from it), so an installed ze needs no source tree and no toolchain;
//! 3. a build from the source tree this `ze` was compiled from, the same
//!    command `make build` runs: `cargo build --release --locked -p ze
//!    --target <triple> --target-dir target/static`, with
//!    `-C target-feature=+crt-static` given through
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
             (`make build` builds the static one)",
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
    /// One line for the build summary: which binary, and for a cargo build
    /// the exact command. `planned` is for `--check` and `--dry-run`, which
    /// build nothing.
    pub fn describe(&self, arch: Arch, planned: bool) -> String {
        match self {
            Source::Given(p) => format!("--ze {} (static, {arch})", p.display()),
            Source::Running(p) => format!("the running ze ({}, static)", p.display()),
            Source::Cargo { workspace, output } => format!(
                "{} a static ze from the source tree at {} with `{}` (to {})",
                if planned { "would build" } else { "building" },
                workspace.display(),
                cargo_command_line(workspace, arch),
                output.display()
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

/// Where the cargo build of `workspace` leaves the static ze for `arch`.
pub fn cargo_output(workspace: &Path, arch: Arch) -> PathBuf {
    workspace
        .join(TARGET_DIR)
        .join(arch.rust_triple())
        .join("release/ze")
}

/// Decide where the static ze comes from, or say why none can be had.
pub fn resolve(given: Option<&Path>, arch: Arch) -> anyhow::Result<Source> {
    let running = std::env::current_exe().ok();
    resolve_from(given, running.as_deref(), workspace(), arch)
}

/// [`resolve`] with the running binary and the workspace given.
pub fn resolve_from(
    given: Option<&Path>,
    running: Option<&Path>,
    workspace: Option<PathBuf>,
    arch: Arch,
) -> anyhow::Result<Source> {
    if let Some(p) = given {
        check_static(p, arch).context("--ze")?;
        return Ok(Source::Given(p.to_path_buf()));
    }
    if let Some(exe) = running
        && check_static(exe, arch).is_ok()
    {
        return Ok(Source::Running(exe.to_path_buf()));
    }
    match workspace {
        Some(ws) => Ok(Source::Cargo {
            output: cargo_output(&ws, arch),
            workspace: ws,
        }),
        None => bail!(
            "no static ze for {arch}: the running ze is not one and its source tree ({}) is gone; \
             pass --ze PATH (build one with `make build` in a checkout)",
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

/// The arguments of the cargo build of the static ze (after `cargo`).
fn cargo_args(workspace: &Path, arch: Arch) -> Vec<String> {
    [
        "build",
        "--release",
        "--locked",
        "-p",
        "ze",
        "--target",
        arch.rust_triple(),
        "--target-dir",
    ]
    .into_iter()
    .map(String::from)
    .chain([workspace.join(TARGET_DIR).display().to_string()])
    .collect()
}

/// The cargo build as a person would type it, for summaries.
pub fn cargo_command_line(workspace: &Path, arch: Arch) -> String {
    format!(
        "{}=\"{STATIC_RUSTFLAGS}\" cargo {}",
        target_var(arch, "RUSTFLAGS"),
        cargo_args(workspace, arch).join(" ")
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
        .args(cargo_args(workspace, arch))
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

    /// The smallest ELF `inspect` reads: a header with no program headers,
    /// hence no `PT_INTERP`: static.
    fn fake_static_elf(dir: &Path, arch: Arch) -> PathBuf {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[18..20].copy_from_slice(&machine_of(arch).to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        let path = dir.join(format!("ze-{arch}"));
        fs::write(&path, elf).unwrap();
        path
    }

    #[test]
    fn h5_resolution_order_and_what_check_says_of_each() {
        let dir = tempfile::tempdir().unwrap();
        let amd = Arch::Amd64;
        let static_ze = fake_static_elf(dir.path(), amd);
        let dynamic = std::env::current_exe().unwrap();
        let ws = dir.path().join("src/ze");

        // --ze first, even when the running ze is static.
        let got = resolve_from(Some(&static_ze), Some(&static_ze), Some(ws.clone()), amd).unwrap();
        assert_eq!(got, Source::Given(static_ze.clone()));
        assert_eq!(
            got.describe(amd, true),
            format!("--ze {} (static, amd64)", static_ze.display())
        );
        let err = resolve_from(Some(&dynamic), None, None, amd).unwrap_err();
        assert!(format!("{err:#}").contains("--ze: "), "{err:#}");

        // Then the running ze, when it is static: no source tree needed.
        let got = resolve_from(None, Some(&static_ze), None, amd).unwrap();
        assert_eq!(got, Source::Running(static_ze.clone()));
        assert_eq!(
            got.describe(amd, true),
            format!("the running ze ({}, static)", static_ze.display())
        );
        // A static ze for another arch is not the image's.
        let arm = fake_static_elf(dir.path(), Arch::Arm64);
        assert!(matches!(
            resolve_from(None, Some(&arm), Some(ws.clone()), amd).unwrap(),
            Source::Cargo { .. }
        ));

        // Then a cargo build of the source tree, the command spelled out.
        let got = resolve_from(None, Some(&dynamic), Some(ws.clone()), amd).unwrap();
        let out = ws.join("target/static/x86_64-unknown-linux-gnu/release/ze");
        assert_eq!(
            got,
            Source::Cargo {
                workspace: ws.clone(),
                output: out.clone()
            }
        );
        let cmd = format!(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS=\"-C target-feature=+crt-static -C strip=symbols\" \
             cargo build --release --locked -p ze --target x86_64-unknown-linux-gnu --target-dir {}/target/static",
            ws.display()
        );
        assert_eq!(
            got.describe(amd, true),
            format!(
                "would build a static ze from the source tree at {} with `{cmd}` (to {})",
                ws.display(),
                out.display()
            )
        );
        assert!(
            got.describe(amd, false)
                .starts_with("building a static ze from")
        );

        // Neither: say what to pass.
        let err = resolve_from(None, Some(&dynamic), None, amd)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pass --ze PATH"), "{err}");
    }

    #[test]
    fn h5_make_build_runs_the_same_static_build_as_ze_appliance_build() {
        let makefile = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Makefile");
        let text = fs::read_to_string(&makefile).unwrap();
        let has = |line: &str| text.lines().any(|l| l.trim() == line);
        assert!(
            has(&format!("STATIC_RUSTFLAGS := {STATIC_RUSTFLAGS}")),
            "the Makefile's static rustflags differ from {STATIC_RUSTFLAGS:?}"
        );
        assert!(has(&format!(
            "ZE := {TARGET_DIR}/$(STATIC_TRIPLE)/release/ze"
        )));
        let args = cargo_args(Path::new(""), Arch::Amd64)
            .join(" ")
            .replace(Arch::Amd64.rust_triple(), "$(STATIC_TRIPLE)");
        let recipe: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "build:")
            .skip(1)
            .take_while(|l| l.starts_with('\t'))
            .collect();
        let recipe = recipe.join("\n");
        assert!(
            recipe.contains(&format!("$(CARGO) {args}")),
            "`make build` does not run `cargo {args}`:\n{recipe}"
        );
        assert!(
            recipe.contains("$(STATIC_RUSTFLAGS_VAR)=\"$(STATIC_RUSTFLAGS)\""),
            "{recipe}"
        );
        assert!(has("static-ze: build"), "make static-ze is make build");
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
