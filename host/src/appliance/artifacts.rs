//! Finding the installer kernel and initrd that the image and the ISO
//! carry (checklist A8).
//!
//! Kernel, in order: `--kernel PATH`; the cache entry that
//! `ze appliance kernel` makes for the appliance's arch and profile from
//! Debian's linux-source (`$XDG_CACHE_HOME/ze/installer-kernel/<key>/Image`);
//! `build/kernel/Image` (what `make kernel` leaves). Every candidate is
//! checked to be a kernel for the right architecture; the cache entry and
//! `build/kernel/Image` must also be of the right profile: the `config`
//! beside them has every symbol of the profile's `*.require` lists `=y`
//! (so a `hardware` appliance never gets the qemu kernel `make kernel`
//! left in `build/kernel/`).
//!
//! Initrd: `--initrd PATH`, else `build/initrd/initrd.img.gz`.

use super::{
    config::{Arch, KernelProfile},
    kernel::{self, Request, Source},
};
use anyhow::bail;
use std::path::{Path, PathBuf};

/// Where `make kernel` leaves the kernel.
pub const BUILD_KERNEL: &str = "build/kernel/Image";
/// Where `ze appliance initrd` leaves the initrd.
pub const BUILD_INITRD: &str = "build/initrd/initrd.img.gz";

/// Which candidate supplied the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelOrigin {
    /// `--kernel`.
    Flag,
    /// The `ze appliance kernel` cache.
    Cache,
    /// `build/kernel/Image`.
    Build,
}

/// A kernel found for an image or ISO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundKernel {
    /// The file.
    pub path: PathBuf,
    /// Where it was found.
    pub origin: KernelOrigin,
}

impl FoundKernel {
    /// One line for summaries.
    pub fn describe(&self) -> String {
        let from = match self.origin {
            KernelOrigin::Flag => "--kernel",
            KernelOrigin::Cache => "the ze appliance kernel cache",
            KernelOrigin::Build => BUILD_KERNEL,
        };
        format!("{} (from {from})", self.path.display())
    }
}

/// Whether `bytes` start like a kernel image for `arch`: an x86 bzImage
/// (`HdrS` at 0x202) or an arm64 `Image` (`ARM\x64` at 0x38).
pub fn kernel_arch_matches(bytes: &[u8], arch: Arch) -> bool {
    match arch {
        Arch::Amd64 => bytes.get(0x202..0x206) == Some(b"HdrS"),
        Arch::Arm64 => bytes.get(0x38..0x3c) == Some(b"ARM\x64"),
    }
}

fn check_kernel(path: &Path, arch: Arch) -> Result<(), String> {
    let mut head = vec![0u8; 0x400];
    let n = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !kernel_arch_matches(&head[..n], arch) {
        return Err(format!(
            "{} is not a Linux kernel image for {arch}",
            path.display()
        ));
    }
    Ok(())
}

/// The cache entry `ze appliance kernel` would use, when a kernel source
/// to key it exists.
pub fn cache_candidate(arch: Arch, profile: KernelProfile) -> Option<PathBuf> {
    let req = Request {
        arch,
        profile,
        source: Source::debian_default().ok()?,
        extra: Vec::new(),
        jobs: 1,
        output: PathBuf::from("build/kernel"),
    };
    Some(req.paths().ok()?.entry.join("Image"))
}

/// Whether the kernel `image` was built with `profile`'s drivers: the
/// `config` that `ze appliance kernel` writes beside it has every symbol of
/// the profile's require lists `=y`.
fn check_profile(image: &Path, profile: KernelProfile) -> Result<(), String> {
    let config = image.with_file_name("config");
    let text = std::fs::read_to_string(&config).map_err(|e| {
        format!(
            "{}: its profile is unknown, {} cannot be read ({e}); pass it with --kernel to use it anyway",
            image.display(),
            config.display()
        )
    })?;
    let missing = kernel::missing_required(&text, &kernel::profile_requires(profile));
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.iter().map(|(sym, _, _)| sym.as_str()).collect();
    Err(format!(
        "{} is not a {profile}-profile kernel: {} lacks {}",
        image.display(),
        config.display(),
        names.join(", ")
    ))
}

/// Find the kernel, or say which places were tried.
pub fn find_kernel(
    flag: Option<&Path>,
    arch: Arch,
    profile: KernelProfile,
) -> anyhow::Result<FoundKernel> {
    let cache = if flag.is_some() {
        None
    } else {
        cache_candidate(arch, profile)
    };
    find_kernel_among(flag, arch, profile, cache, Path::new(BUILD_KERNEL))
}

/// [`find_kernel`] with the cache entry (`None` when no kernel source keys
/// it) and the `build/kernel/Image` path given.
pub fn find_kernel_among(
    flag: Option<&Path>,
    arch: Arch,
    profile: KernelProfile,
    cache: Option<PathBuf>,
    build: &Path,
) -> anyhow::Result<FoundKernel> {
    if let Some(p) = flag {
        if !p.is_file() {
            bail!("--kernel {}: no such file", p.display());
        }
        check_kernel(p, arch).map_err(|e| anyhow::anyhow!("--kernel: {e}"))?;
        return Ok(FoundKernel {
            path: p.to_path_buf(),
            origin: KernelOrigin::Flag,
        });
    }
    let mut tried = Vec::new();
    let mut candidates = Vec::new();
    match cache {
        Some(p) => candidates.push((p, KernelOrigin::Cache)),
        None => tried.push(format!(
            "the ze appliance kernel cache (no {} to key it)",
            kernel::debian_tarball(
                Path::new(kernel::DEBIAN_SOURCE_DIR),
                kernel::default_version()
            )
            .display()
        )),
    }
    candidates.push((build.to_path_buf(), KernelOrigin::Build));
    for (path, origin) in candidates {
        if !path.is_file() {
            tried.push(format!("{} (absent)", absolute(&path).display()));
            continue;
        }
        match check_kernel(&path, arch).and_then(|()| check_profile(&path, profile)) {
            Ok(()) => return Ok(FoundKernel { path, origin }),
            Err(e) => tried.push(e),
        }
    }
    bail!(
        "no installer kernel for {arch} ({profile} profile); tried:\n  {}\nbuild one with `ze appliance kernel --arch {arch} --profile {profile}` (or `make kernel PROFILE={profile}`), or pass --kernel PATH",
        tried.join("\n  ")
    )
}

/// Find the initrd, or say how to make one.
pub fn find_initrd(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (path, given) = match flag {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(BUILD_INITRD), false),
    };
    if path.is_file() {
        return Ok(path);
    }
    if given {
        bail!("--initrd {}: no such file", path.display());
    }
    bail!(
        "the installer initrd {} ({}) is missing: build it with `ze appliance initrd`, or pass --initrd PATH",
        BUILD_INITRD,
        absolute(&path).display()
    )
}

/// `path` made absolute against the working directory, for messages.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_checked_for_their_arch() {
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert!(kernel_arch_matches(&bz, Arch::Amd64));
        assert!(!kernel_arch_matches(&bz, Arch::Arm64));
        let mut image = vec![0u8; 0x400];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert!(kernel_arch_matches(&image, Arch::Arm64));
        assert!(!kernel_arch_matches(&[], Arch::Amd64));

        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("Image");
        std::fs::write(&k, &image).unwrap();
        let err = find_kernel(Some(&k), Arch::Amd64, KernelProfile::Qemu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Linux kernel image for amd64"), "{err}");
        let found = find_kernel(Some(&k), Arch::Arm64, KernelProfile::Qemu).unwrap();
        assert_eq!(found.origin, KernelOrigin::Flag);
        let err = find_kernel(
            Some(&dir.path().join("nope")),
            Arch::Arm64,
            KernelProfile::Qemu,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no such file"), "{err}");
    }

    /// A stand-in bzImage with the config a build of `profile` resolves to.
    fn kernel_dir(root: &Path, name: &str, profile: KernelProfile) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(dir.join("Image"), &bz).unwrap();
        let config = kernel::merge("", &kernel::profile_fragments(profile, &[]));
        std::fs::write(dir.join("config"), config).unwrap();
        dir.join("Image")
    }

    #[test]
    fn h1_a_hardware_appliance_gets_the_hardware_kernel_not_build_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let hw = kernel_dir(tmp.path(), "cache-hw", KernelProfile::Hardware);
        let qemu_build = kernel_dir(tmp.path(), "build-qemu", KernelProfile::Qemu);
        let (amd, hwp) = (Arch::Amd64, KernelProfile::Hardware);

        // The cache entry for the hardware profile wins over build/kernel.
        let found = find_kernel_among(None, amd, hwp, Some(hw.clone()), &qemu_build).unwrap();
        assert_eq!(
            (found.path, found.origin),
            (hw.clone(), KernelOrigin::Cache)
        );

        // Without it, the qemu kernel in build/kernel is refused, by name.
        let absent = tmp.path().join("cache-none/Image");
        let err = find_kernel_among(None, amd, hwp, Some(absent.clone()), &qemu_build)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{} (absent)", absent.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "{} is not a hardware-profile kernel",
                qemu_build.display()
            )),
            "{err}"
        );
        assert!(err.contains("CONFIG_E1000E"), "{err}");
        assert!(err.contains("--profile hardware"), "{err}");

        // A hardware kernel in build/kernel is taken.
        let hw_build = kernel_dir(tmp.path(), "build-hw", KernelProfile::Hardware);
        let found = find_kernel_among(None, amd, hwp, None, &hw_build).unwrap();
        assert_eq!(found.origin, KernelOrigin::Build);

        // The qemu profile takes the qemu kernel, and a hardware one (it has
        // the qemu drivers too).
        let q = KernelProfile::Qemu;
        let found = find_kernel_among(None, amd, q, Some(absent.clone()), &qemu_build).unwrap();
        assert_eq!(found.path, qemu_build);
        find_kernel_among(None, amd, q, None, &hw_build).unwrap();

        // A kernel without its config cannot be told apart: refused unless
        // given with --kernel.
        std::fs::remove_file(hw_build.with_file_name("config")).unwrap();
        let err = find_kernel_among(None, amd, hwp, None, &hw_build)
            .unwrap_err()
            .to_string();
        assert!(err.contains("its profile is unknown"), "{err}");
        let found = find_kernel_among(Some(&hw_build), amd, hwp, None, &qemu_build).unwrap();
        assert_eq!(found.origin, KernelOrigin::Flag);
    }

    #[test]
    fn a_missing_initrd_is_named_with_how_to_build_it() {
        let err = find_initrd(Some(Path::new("/nonexistent/initrd.gz")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--initrd /nonexistent/initrd.gz: no such file"),
            "{err}"
        );
    }
}
