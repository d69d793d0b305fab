//! `ze appliance kernel`: build the installer kernel from Debian's
//! `linux-source` tarball (the version `kernel-config/linux.version` names,
//! or another with `--version`; or a tarball or tree given with
//! `--source`), with ze's config fragments (checklist A3–A5, A8, H1, H6).
//!
//! The steps: extract the tarball once into the cache → `make tinyconfig`
//! in a build directory → merge `base.config` and `<profile>.config` (and
//! any `--fragment`) → `make olddefconfig` → check that every symbol of the
//! `*.require` lists is `=y`, naming each one that is not → build → copy the
//! image and the resolved config into the cache and to `build/kernel/`.
//!
//! The cache lives under `$XDG_CACHE_HOME/ze/` (default `~/.cache/ze/`):
//!
//! ```text
//! src/<source-id>/linux-…/                 extracted source, shared
//! installer-kernel/<key>/{Image,config}    finished kernels, by key
//! installer-kernel/build-<source-id>-<arch>-<profile>/   make's O= dir
//! ```
//!
//! The key covers the source, the architecture, the profile and the text of
//! every fragment, so a finished kernel is reused while none of them
//! changes, and rebuilt (incrementally) when one does.

use super::config::{Arch, KernelProfile, cache_dir};
use crate::fsutil;
use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The config fragments and required-symbol lists, built into the binary so
/// an installed `ze` can build a kernel without the source repository.
pub mod fragments {
    /// Shared by every profile.
    pub const BASE: &str = include_str!("../../../kernel-config/base.config");
    /// Required in every profile.
    pub const BASE_REQUIRE: &str = include_str!("../../../kernel-config/base.require");
    /// The qemu profile.
    pub const QEMU: &str = include_str!("../../../kernel-config/qemu.config");
    /// Required in the qemu profile.
    pub const QEMU_REQUIRE: &str = include_str!("../../../kernel-config/qemu.require");
    /// The hardware profile.
    pub const HARDWARE: &str = include_str!("../../../kernel-config/hardware.config");
    /// Required in the hardware profile.
    pub const HARDWARE_REQUIRE: &str = include_str!("../../../kernel-config/hardware.require");
}

/// Where Debian's `linux-source-<version>` packages put their tarballs.
pub const DEBIAN_SOURCE_DIR: &str = "/usr/src";
/// Bumped when the build procedure changes, so old cache entries are not reused.
const BUILDER_VERSION: &str = "1";
/// How often a long build reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// A named piece of kernel config text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Where it came from (`kernel-config/qemu.config`, a `--fragment` path).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// The fragments for `profile`, in merge order, then `extra`.
pub fn profile_fragments(profile: KernelProfile, extra: &[Fragment]) -> Vec<Fragment> {
    let own = match profile {
        KernelProfile::Qemu => ("kernel-config/qemu.config", fragments::QEMU),
        KernelProfile::Hardware => ("kernel-config/hardware.config", fragments::HARDWARE),
    };
    let mut out = vec![
        Fragment {
            name: "kernel-config/base.config".into(),
            text: fragments::BASE.into(),
        },
        Fragment {
            name: own.0.into(),
            text: own.1.into(),
        },
    ];
    out.extend(extra.iter().cloned());
    out
}

/// The required symbols for `profile`, each with the list that requires it.
pub fn profile_requires(profile: KernelProfile) -> Vec<(String, &'static str)> {
    let own = match profile {
        KernelProfile::Qemu => ("kernel-config/qemu.require", fragments::QEMU_REQUIRE),
        KernelProfile::Hardware => (
            "kernel-config/hardware.require",
            fragments::HARDWARE_REQUIRE,
        ),
    };
    [("kernel-config/base.require", fragments::BASE_REQUIRE), own]
        .into_iter()
        .flat_map(|(name, text)| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(move |sym| (sym.to_string(), name))
        })
        .collect()
}

/// One config line's symbol and value: `CONFIG_X=y` → ("CONFIG_X", "y");
/// `# CONFIG_X is not set` → ("CONFIG_X", "n").
pub fn parse_line(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("# ") {
        let sym = rest.strip_suffix(" is not set")?;
        return sym.starts_with("CONFIG_").then_some((sym, "n"));
    }
    let (sym, value) = line.split_once('=')?;
    sym.starts_with("CONFIG_").then_some((sym, value))
}

/// Every symbol's value in a `.config`.
pub fn parse_config(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(parse_line)
        .map(|(s, v)| (s.to_string(), v.to_string()))
        .collect()
}

/// Merge fragments onto a base `.config`, as the kernel's
/// `merge_config.sh` does: a symbol set by a later fragment replaces its
/// earlier line. `=n` is written as `# … is not set`.
pub fn merge(base: &str, fragments: &[Fragment]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut other_lines: Vec<String> = Vec::new();
    let mut set = |sym: &str, value: &str, order: &mut Vec<String>| {
        if values.insert(sym.to_string(), value.to_string()).is_none() {
            order.push(sym.to_string());
        }
    };
    for line in base.lines() {
        match parse_line(line) {
            Some((s, v)) => set(s, v, &mut order),
            None if line.starts_with('#') || line.trim().is_empty() => {}
            None => other_lines.push(line.to_string()),
        }
    }
    for frag in fragments {
        for line in frag.text.lines() {
            if let Some((s, v)) = parse_line(line) {
                set(s, v, &mut order);
            }
        }
    }
    let mut out = String::new();
    for sym in &order {
        let value = &values[sym];
        if value == "n" {
            out.push_str(&format!("# {sym} is not set\n"));
        } else {
            out.push_str(&format!("{sym}={value}\n"));
        }
    }
    for line in other_lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The required symbols that did not end up `=y`: (symbol, list, actual).
pub fn missing_required(
    config: &str,
    requires: &[(String, &str)],
) -> Vec<(String, String, String)> {
    let values = parse_config(config);
    requires
        .iter()
        .filter_map(|(sym, from)| {
            let actual = values.get(sym).cloned().unwrap_or_else(|| "absent".into());
            (actual != "y").then(|| (sym.clone(), from.to_string(), actual))
        })
        .collect()
}

/// Fragment symbols that `olddefconfig` changed (a dependency is missing);
/// reported as warnings, since only the `*.require` lists are binding.
pub fn dropped_symbols(config: &str, fragments: &[Fragment]) -> Vec<String> {
    let values = parse_config(config);
    let mut out = Vec::new();
    for frag in fragments {
        for (sym, wanted) in frag.text.lines().filter_map(parse_line) {
            let actual = values.get(sym).map(String::as_str).unwrap_or("n");
            if actual != wanted && !(wanted == "n" && actual == "n") {
                out.push(format!("{sym}={wanted} (now {actual}, from {})", frag.name));
            }
        }
    }
    out
}

/// The default kernel version, named in exactly one file of the
/// repository: Debian's `linux-source-<version>` package provides it.
const LINUX_VERSION_FILE: &str = include_str!("../../../kernel-config/linux.version");

/// The kernel version built when neither `--version` nor `--source` is
/// given (`kernel-config/linux.version`).
pub fn default_version() -> &'static str {
    LINUX_VERSION_FILE.trim()
}

/// Whether `v` looks like a kernel version Debian packages as
/// `linux-source-<v>`: two or three dot-separated numbers (`6.1`, `6.12`).
pub fn valid_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Debian's tarball of Linux `version` under `usr_src`
/// (`/usr/src/linux-source-<version>.tar.xz`).
pub fn debian_tarball(usr_src: &Path, version: &str) -> PathBuf {
    usr_src.join(format!("linux-source-{version}.tar.xz"))
}

/// Why the kernel source named by the flags cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `--version` and `--source` together.
    #[error(
        "--version and --source both name the kernel source: give --version V for Debian's \
         linux-source-V, or --source for a tarball or tree"
    )]
    Both,
    /// `--version` is not a version.
    #[error(
        "--version {0:?} is not a kernel version: give two or three numbers, e.g. --version 6.1"
    )]
    BadVersion(String),
    /// `--version V`, and Debian's tarball of V is not installed.
    #[error(
        "--version {version}: {} does not exist (it comes with Debian's linux-source-{version} \
         package); install that package, or pass --source TARBALL with a Linux source tarball",
        path.display()
    )]
    VersionMissing {
        /// The version asked for.
        version: String,
        /// The tarball looked for.
        path: PathBuf,
    },
    /// Neither flag, and the default version's tarball is not installed.
    #[error(
        "no kernel source: {} is missing; install it with `apt-get install linux-source-{version}` \
         (`make deps` does), or pass --version V or --source TARBALL",
        path.display()
    )]
    DefaultMissing {
        /// The default version.
        version: &'static str,
        /// The tarball looked for.
        path: PathBuf,
    },
    /// `--source` cannot be read.
    #[error("--source {}: {source}", path.display())]
    Unreadable {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `--source` is a directory that is not a kernel tree.
    #[error("--source {}: not a kernel tree (no Makefile and Kconfig)", .0.display())]
    NotATree(PathBuf),
    /// `--source` is a file that is not a tarball.
    #[error(
        "--source {}: not a Linux source tarball (neither xz, gzip nor tar data); pass a \
         linux-*.tar.xz or .tar.gz, or an unpacked kernel tree",
        .0.display()
    )]
    NotATarball(PathBuf),
}

/// Whether a file's first 512 bytes are xz, gzip or tar data.
fn looks_like_tarball(head: &[u8]) -> bool {
    head.starts_with(b"\xfd7zXZ\0")
        || head.starts_with(b"\x1f\x8b")
        || head.get(257..262) == Some(b"ustar")
}

/// Where the kernel source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `.tar.xz`/`.tar.gz`/`.tar` of a kernel tree (Debian's linux-source).
    Tarball(PathBuf),
    /// An unpacked, unconfigured kernel tree.
    Tree(PathBuf),
}

impl Source {
    /// The source the flags name: `--source PATH`; `--version V`, Debian's
    /// `<usr_src>/linux-source-V.tar.xz`; else that tarball of the default
    /// version. Checked before anything is built.
    pub fn resolve(
        version: Option<&str>,
        source: Option<&Path>,
        usr_src: &Path,
    ) -> Result<Source, SourceError> {
        match (version, source) {
            (Some(_), Some(_)) => Err(SourceError::Both),
            (None, Some(path)) => Source::from_path(path),
            (Some(v), None) => {
                if !valid_version(v) {
                    return Err(SourceError::BadVersion(v.to_string()));
                }
                let path = debian_tarball(usr_src, v);
                if !path.is_file() {
                    return Err(SourceError::VersionMissing {
                        version: v.to_string(),
                        path,
                    });
                }
                Source::from_path(&path)
            }
            (None, None) => {
                let version = default_version();
                let path = debian_tarball(usr_src, version);
                if !path.is_file() {
                    return Err(SourceError::DefaultMissing { version, path });
                }
                Source::from_path(&path)
            }
        }
    }

    /// The default source: Debian's tarball of [`default_version`].
    pub fn debian_default() -> Result<Source, SourceError> {
        Source::resolve(None, None, Path::new(DEBIAN_SOURCE_DIR))
    }

    /// `--source PATH`: a tarball (checked by its first bytes) or a kernel
    /// tree.
    pub fn from_path(path: &Path) -> Result<Source, SourceError> {
        let unreadable = |source| SourceError::Unreadable {
            path: path.to_path_buf(),
            source,
        };
        let meta = fs::metadata(path).map_err(unreadable)?;
        let path = path.canonicalize().map_err(unreadable)?;
        if meta.is_dir() {
            if !path.join("Makefile").is_file() || !path.join("Kconfig").is_file() {
                return Err(SourceError::NotATree(path));
            }
            return Ok(Source::Tree(path));
        }
        let mut head = Vec::new();
        fs::File::open(&path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(unreadable)?;
        if !looks_like_tarball(&head) {
            return Err(SourceError::NotATarball(path));
        }
        Ok(Source::Tarball(path))
    }

    /// A short stable id: the tarball's path, size and mtime, or the tree's
    /// path. It names the extracted tree and the build directory and is
    /// part of the cache key, so two sources never share either.
    pub fn id(&self) -> anyhow::Result<String> {
        use std::os::unix::fs::MetadataExt;
        let mut h = Sha256::new();
        match self {
            Source::Tarball(p) => {
                let m = fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
                h.update(format!(
                    "tarball\0{}\0{}\0{}.{}",
                    p.display(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec()
                ));
            }
            Source::Tree(p) => h.update(format!("tree\0{}", p.display())),
        }
        Ok(hex16(&h.finalize()))
    }

    /// The path, for messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Tarball(p) => p.display().to_string(),
            Source::Tree(p) => format!("{} (tree)", p.display()),
        }
    }
}

fn hex16(digest: &[u8]) -> String {
    crate::digest::hex(digest.get(..8).unwrap_or(digest))
}

/// The cache key of a finished kernel.
pub fn cache_key(
    source_id: &str,
    arch: Arch,
    profile: KernelProfile,
    fragments: &[Fragment],
) -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "ze-installer-kernel\0{BUILDER_VERSION}\0{source_id}\0{arch}\0{profile}\0"
    ));
    for f in fragments {
        h.update(f.text.as_bytes());
        h.update(b"\0");
    }
    hex16(&h.finalize())
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Request {
    /// Target architecture.
    pub arch: Arch,
    /// Driver profile.
    pub profile: KernelProfile,
    /// Kernel source.
    pub source: Source,
    /// `--fragment` files, merged after the profile.
    pub extra: Vec<Fragment>,
    /// Parallel make jobs.
    pub jobs: usize,
    /// Where `Image` and `config` are copied (`build/kernel`).
    pub output: PathBuf,
}

/// The cache paths for a request.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The finished kernel's directory, `installer-kernel/<key>/`.
    pub entry: PathBuf,
    /// make's `O=` directory.
    pub build: PathBuf,
    /// The extracted source tree (tarball sources) or the tree itself.
    pub tree_root: PathBuf,
    /// The cache key.
    pub key: String,
}

impl Request {
    /// All fragments in merge order.
    pub fn fragments(&self) -> Vec<Fragment> {
        profile_fragments(self.profile, &self.extra)
    }

    /// Where this request's files live in the cache.
    pub fn paths(&self) -> anyhow::Result<Paths> {
        self.paths_in(&cache_dir()?)
    }

    /// Where this request's files live in the cache at `cache`.
    pub fn paths_in(&self, cache: &Path) -> anyhow::Result<Paths> {
        let source_id = self.source.id()?;
        let key = cache_key(&source_id, self.arch, self.profile, &self.fragments());
        let kernels = cache.join("installer-kernel");
        Ok(Paths {
            entry: kernels.join(&key),
            build: kernels.join(format!("build-{source_id}-{}-{}", self.arch, self.profile)),
            tree_root: match &self.source {
                Source::Tarball(_) => cache.join("src").join(&source_id),
                Source::Tree(p) => p.clone(),
            },
            key,
        })
    }

    /// The image file make produces, relative to the build directory.
    pub fn make_target(&self) -> (&'static str, &'static str) {
        match self.arch {
            Arch::Amd64 => ("bzImage", "arch/x86/boot/bzImage"),
            Arch::Arm64 => ("Image", "arch/arm64/boot/Image"),
        }
    }

    fn make_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("ARCH".to_string(), self.arch.kernel_arch().to_string())];
        if self.arch != Arch::host() {
            env.push(("CROSS_COMPILE".into(), cross_prefix(self.arch).into()));
        }
        env
    }
}

fn cross_prefix(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64-linux-gnu-",
        Arch::Arm64 => "aarch64-linux-gnu-",
    }
}

/// Every prerequisite of a build that is missing, one line each.
pub fn missing_prerequisites(req: &Request) -> Vec<String> {
    let mut missing = Vec::new();
    let mut tools = vec!["make", "tar", "xz", "flex", "bison", "bc", "perl"];
    let cc = if req.arch == Arch::host() {
        "gcc".to_string()
    } else {
        format!("{}gcc", cross_prefix(req.arch))
    };
    tools.push("gcc");
    for tool in tools {
        if which(tool).is_none() {
            missing.push(format!(
                "{tool} (apt-get install build-essential bc flex bison xz-utils)"
            ));
        }
    }
    if cc != "gcc" && which(&cc).is_none() {
        missing.push(format!("{cc} (apt-get install gcc-aarch64-linux-gnu)"));
    }
    for (header, package) in [
        ("/usr/include/libelf.h", "libelf-dev"),
        ("/usr/include/openssl/opensslv.h", "libssl-dev"),
    ] {
        if !Path::new(header).exists() {
            missing.push(format!("{header} (apt-get install {package})"));
        }
    }
    match &req.source {
        Source::Tarball(p) | Source::Tree(p) if !p.exists() => {
            missing.push(format!("kernel source {}", p.display()))
        }
        _ => {}
    }
    missing
}

/// The first `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The result of [`build`].
#[derive(Debug, Clone)]
pub struct Built {
    /// The kernel image in the output directory.
    pub image: PathBuf,
    /// The resolved config in the output directory.
    pub config: PathBuf,
    /// The cache entry it came from.
    pub entry: PathBuf,
    /// Whether a cached kernel was reused without building.
    pub reused: bool,
}

/// Build (or reuse) the kernel. Progress goes to `log`.
pub fn build(req: &Request, log: &mut dyn Write) -> anyhow::Result<Built> {
    let paths = req.paths()?;
    let cached_image = paths.entry.join("Image");
    let cached_config = paths.entry.join("config");
    let reusable = matches!(req.source, Source::Tarball(_))
        && cached_image.is_file()
        && cached_config.is_file();
    if reusable {
        writeln!(
            log,
            "reusing cached kernel {} (key {})",
            paths.entry.display(),
            paths.key
        )?;
    } else {
        let missing = missing_prerequisites(req);
        if !missing.is_empty() {
            bail!(
                "cannot build the kernel; missing:\n  {}",
                missing.join("\n  ")
            );
        }
        let tree = prepare_tree(req, &paths, log)?;
        configure(req, &tree, &paths, log)?;
        compile(req, &tree, &paths, log)?;
    }
    // A cached config must still satisfy today's require lists.
    let config_text = fs::read_to_string(&cached_config)?;
    check_required(req, &config_text)?;
    fs::create_dir_all(&req.output)
        .with_context(|| format!("cannot create {}", req.output.display()))?;
    let image = req.output.join("Image");
    let config = req.output.join("config");
    copy_atomic(&cached_image, &image)?;
    copy_atomic(&cached_config, &config)?;
    Ok(Built {
        image,
        config,
        entry: paths.entry,
        reused: reusable,
    })
}

fn copy_atomic(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut src =
        fs::File::open(from).with_context(|| format!("cannot read {}", from.display()))?;
    fsutil::write_atomic_with(to, 0o644, |dst| std::io::copy(&mut src, dst).map(|_| ()))
        .with_context(|| format!("cannot write {}", to.display()))
}

fn check_required(req: &Request, config: &str) -> anyhow::Result<()> {
    let missing = missing_required(config, &profile_requires(req.profile));
    if !missing.is_empty() {
        let lines: Vec<String> = missing
            .iter()
            .map(|(sym, from, actual)| format!("{sym} is {actual}, not y (required by {from})"))
            .collect();
        bail!(
            "the {} kernel config lacks {} required symbol{}:\n  {}\n(a dependency is probably missing from the fragments)",
            req.profile,
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            lines.join("\n  ")
        );
    }
    Ok(())
}

/// The kernel tree an extracted tarball holds: its one top-level
/// directory, with a Makefile and a Kconfig.
fn kernel_tree_in(dir: &Path) -> Option<PathBuf> {
    let dirs: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] if one.join("Makefile").is_file() && one.join("Kconfig").is_file() => {
            Some(one.clone())
        }
        _ => None,
    }
}

/// Extract a tarball source into the cache once; return the kernel tree.
/// A tarball that does not extract, or holds no kernel tree, leaves
/// nothing in the cache.
fn prepare_tree(req: &Request, paths: &Paths, log: &mut dyn Write) -> anyhow::Result<PathBuf> {
    let Source::Tarball(tarball) = &req.source else {
        return Ok(paths.tree_root.clone());
    };
    let done = paths.tree_root.join(".ze-extracted");
    if !done.exists() {
        writeln!(
            log,
            "extracting {} into {}",
            tarball.display(),
            paths.tree_root.display()
        )?;
        let staging = paths.tree_root.with_extension("partial");
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging)?;
        let extracted = run_logged(
            Command::new("tar")
                .arg("-xf")
                .arg(tarball)
                .arg("-C")
                .arg(&staging),
            None,
            log,
        );
        if let Err(e) = extracted {
            let _ = fs::remove_dir_all(&staging);
            bail!(
                "cannot extract {}: it is not a readable Linux source tarball ({e:#})",
                tarball.display()
            );
        }
        if kernel_tree_in(&staging).is_none() {
            let _ = fs::remove_dir_all(&staging);
            bail!(
                "{} does not hold a Linux source tree (one top-level directory with a Makefile \
                 and a Kconfig); pass a Linux source tarball",
                tarball.display()
            );
        }
        let _ = fs::remove_dir_all(&paths.tree_root);
        fs::rename(&staging, &paths.tree_root)?;
        fs::write(&done, tarball.display().to_string())?;
    }
    kernel_tree_in(&paths.tree_root).with_context(|| {
        format!(
            "{} holds no kernel tree: remove it and run again to extract {} afresh",
            paths.tree_root.display(),
            tarball.display()
        )
    })
}

fn make(req: &Request, tree: &Path, build: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(tree)
        .arg(format!("O={}", build.display()));
    for (k, v) in req.make_env() {
        cmd.arg(format!("{k}={v}"));
    }
    cmd
}

fn configure(req: &Request, tree: &Path, paths: &Paths, log: &mut dyn Write) -> anyhow::Result<()> {
    fs::create_dir_all(&paths.build)?;
    let build_log = paths.build.join("build.log");
    writeln!(
        log,
        "configuring Linux ({}, {} profile, {}) in {}",
        req.source.describe(),
        req.profile,
        req.arch,
        paths.build.display()
    )?;
    run_logged(
        make(req, tree, &paths.build).arg("tinyconfig"),
        Some(&build_log),
        log,
    )?;
    let dot_config = paths.build.join(".config");
    let base = fs::read_to_string(&dot_config)?;
    let fragments = req.fragments();
    fs::write(&dot_config, merge(&base, &fragments))?;
    run_logged(
        make(req, tree, &paths.build).arg("olddefconfig"),
        Some(&build_log),
        log,
    )?;
    let resolved = fs::read_to_string(&dot_config)?;
    for dropped in dropped_symbols(&resolved, &fragments) {
        writeln!(log, "note: {dropped}")?;
    }
    check_required(req, &resolved)
}

fn compile(req: &Request, tree: &Path, paths: &Paths, log: &mut dyn Write) -> anyhow::Result<()> {
    let (target, produced) = req.make_target();
    let build_log = paths.build.join("build.log");
    writeln!(
        log,
        "building the kernel with {} job{} (takes minutes; log: {})",
        req.jobs,
        if req.jobs == 1 { "" } else { "s" },
        build_log.display()
    )?;
    run_logged(
        make(req, tree, &paths.build)
            .arg(format!("-j{}", req.jobs))
            .arg(target),
        Some(&build_log),
        log,
    )?;
    fs::create_dir_all(&paths.entry)?;
    copy_atomic(&paths.build.join(produced), &paths.entry.join("Image"))?;
    copy_atomic(&paths.build.join(".config"), &paths.entry.join("config"))?;
    Ok(())
}

/// Run a command, appending its output to `build_log` and reporting
/// progress to `log` every [`PROGRESS_EVERY`]; on failure, show the last
/// lines of the output.
fn run_logged(
    cmd: &mut Command,
    build_log: Option<&Path>,
    log: &mut dyn Write,
) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    // Merge stderr into the same stream through a thread.
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx_err = tx.clone();
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx_err.send(line);
        }
    });
    let stdout = child.stdout.take().expect("piped");
    let out_thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut file = match build_log {
        Some(p) => Some(fs::OpenOptions::new().create(true).append(true).open(p)?),
        None => None,
    };
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut compiled = 0usize;
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                if line.trim_start().starts_with("CC") {
                    compiled += 1;
                }
                if let Some(f) = file.as_mut() {
                    writeln!(f, "{line}")?;
                }
                tail.push_back(line);
                if tail.len() > 25 {
                    tail.pop_front();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            writeln!(
                log,
                "  … {}s, {compiled} files compiled{}",
                started.elapsed().as_secs(),
                tail.back()
                    .map(|l| format!(", last: {}", l.trim()))
                    .unwrap_or_default()
            )?;
        }
    }
    let _ = out_thread.join();
    let _ = err_thread.join();
    let status = child.wait()?;
    if !status.success() {
        let where_log = build_log
            .map(|p| format!("; full log: {}", p.display()))
            .unwrap_or_default();
        bail!(
            "{shown} failed ({status}){where_log}\nlast lines:\n  {}",
            tail.iter().cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_lines() {
        assert_eq!(parse_line("CONFIG_E1000=y"), Some(("CONFIG_E1000", "y")));
        assert_eq!(
            parse_line("# CONFIG_SMP is not set"),
            Some(("CONFIG_SMP", "n"))
        );
        assert_eq!(
            parse_line("CONFIG_CMDLINE=\"a b\""),
            Some(("CONFIG_CMDLINE", "\"a b\""))
        );
        assert_eq!(parse_line("# a comment"), None);
        assert_eq!(parse_line("FOO=y"), None);
    }

    #[test]
    fn a4_merge_later_fragments_win() {
        let base = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\n";
        let frags = [
            Fragment {
                name: "one".into(),
                text: "CONFIG_B=y\nCONFIG_D=y\n".into(),
            },
            Fragment {
                name: "two".into(),
                text: "CONFIG_C=n\n# CONFIG_A is not set\n".into(),
            },
        ];
        let merged = merge(base, &frags);
        assert_eq!(
            merged,
            "# CONFIG_A is not set\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=y\n"
        );
    }

    #[test]
    fn a4_missing_required_symbols_are_named() {
        let config = "CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\n";
        let req = vec![
            ("CONFIG_A".to_string(), "x.require"),
            ("CONFIG_B".to_string(), "x.require"),
            ("CONFIG_C".to_string(), "y.require"),
            ("CONFIG_D".to_string(), "y.require"),
        ];
        let missing = missing_required(config, &req);
        assert_eq!(
            missing,
            [
                ("CONFIG_B".into(), "x.require".into(), "m".into()),
                ("CONFIG_C".into(), "y.require".into(), "n".into()),
                ("CONFIG_D".into(), "y.require".into(), "absent".into()),
            ]
        );
    }

    #[test]
    fn a5_profiles_carry_the_spec_drivers() {
        let qemu = parse_config(&merge("", &profile_fragments(KernelProfile::Qemu, &[])));
        for sym in [
            "CONFIG_VIRTIO_NET",
            "CONFIG_VIRTIO_BLK",
            "CONFIG_VIRTIO_PCI",
            "CONFIG_E1000",
            "CONFIG_PACKET",
            "CONFIG_IP_PNP_DHCP",
            "CONFIG_DEVTMPFS",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_RD_GZIP",
            "CONFIG_EXT4_FS",
            "CONFIG_ISO9660_FS",
            "CONFIG_VFAT_FS",
            "CONFIG_BLK_DEV_LOOP",
            "CONFIG_EFI_PARTITION",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_EFI_STUB",
        ] {
            assert_eq!(
                qemu.get(sym).map(String::as_str),
                Some("y"),
                "qemu lacks {sym}"
            );
        }
        let hw = parse_config(&merge("", &profile_fragments(KernelProfile::Hardware, &[])));
        for sym in [
            "CONFIG_E1000E",
            "CONFIG_IGB",
            "CONFIG_IGC",
            "CONFIG_R8169",
            "CONFIG_TIGON3",
            "CONFIG_MLX5_CORE_EN",
            "CONFIG_SATA_AHCI",
            "CONFIG_BLK_DEV_NVME",
            "CONFIG_FB_EFI",
            "CONFIG_EXFAT_FS",
            "CONFIG_EFI_STUB",
        ] {
            assert_eq!(
                hw.get(sym).map(String::as_str),
                Some("y"),
                "hardware lacks {sym}"
            );
        }
        // Every required symbol is asked for by some fragment.
        for profile in [KernelProfile::Qemu, KernelProfile::Hardware] {
            let merged = parse_config(&merge("", &profile_fragments(profile, &[])));
            for (sym, from) in profile_requires(profile) {
                assert_eq!(
                    merged.get(&sym).map(String::as_str),
                    Some("y"),
                    "{sym} from {from} not in {profile} fragments"
                );
            }
        }
    }

    #[test]
    fn h1_hardware_profile_requires_what_bare_metal_installs_need() {
        let required: Vec<String> = profile_requires(KernelProfile::Hardware)
            .into_iter()
            .map(|(sym, _)| sym)
            .collect();
        for sym in [
            "CONFIG_E1000E",
            "CONFIG_BLK_DEV_NVME",
            "CONFIG_ATA",
            "CONFIG_SATA_AHCI",
            "CONFIG_USB_XHCI_HCD",
            "CONFIG_USB_XHCI_PCI",
            "CONFIG_USB_STORAGE",
            "CONFIG_FB_EFI",
            "CONFIG_VT_CONSOLE",
            "CONFIG_FRAMEBUFFER_CONSOLE",
            "CONFIG_BLK_DEV_LOOP",
            "CONFIG_VFAT_FS",
            "CONFIG_EXFAT_FS",
            "CONFIG_EXT4_FS",
            "CONFIG_ISO9660_FS",
            "CONFIG_EFIVAR_FS",
        ] {
            assert!(
                required.iter().any(|r| r == sym),
                "{sym} is not in base.require or hardware.require"
            );
        }
    }

    #[test]
    fn a5_every_profile_has_efivarfs() {
        for profile in [KernelProfile::Qemu, KernelProfile::Hardware] {
            assert!(
                profile_requires(profile)
                    .iter()
                    .any(|(sym, _)| sym == "CONFIG_EFIVAR_FS"),
                "{profile}"
            );
            let merged = parse_config(&merge("", &profile_fragments(profile, &[])));
            for sym in ["CONFIG_EFI", "CONFIG_EFIVAR_FS"] {
                assert_eq!(
                    merged.get(sym).map(String::as_str),
                    Some("y"),
                    "{profile} {sym}"
                );
            }
        }
    }

    #[test]
    fn h1_the_framebuffer_console_is_efifb_without_drm() {
        let hw = parse_config(&merge("", &profile_fragments(KernelProfile::Hardware, &[])));
        let get = |sym: &str| hw.get(sym).map(String::as_str).unwrap_or("unset");
        for sym in [
            "CONFIG_FB",
            "CONFIG_FB_EFI",
            "CONFIG_VT",
            "CONFIG_FRAMEBUFFER_CONSOLE",
        ] {
            assert_eq!(get(sym), "y", "{sym}");
        }
        // With SYSFB_SIMPLEFB the GOP framebuffer becomes a
        // simple-framebuffer device, which efifb does not bind.
        assert_eq!(get("CONFIG_SYSFB_SIMPLEFB"), "n");
        assert_eq!(get("CONFIG_DRM"), "n");
    }

    #[test]
    fn a4_no_symbol_is_required_twice() {
        for profile in [KernelProfile::Qemu, KernelProfile::Hardware] {
            let mut seen = std::collections::BTreeMap::new();
            for (sym, from) in profile_requires(profile) {
                if let Some(first) = seen.insert(sym.clone(), from) {
                    panic!("{sym} is in both {first} and {from}");
                }
            }
        }
    }

    #[test]
    fn h6_the_default_version_is_named_once_and_valid() {
        assert_eq!(
            LINUX_VERSION_FILE.lines().count(),
            1,
            "{LINUX_VERSION_FILE:?}"
        );
        assert!(valid_version(default_version()), "{}", default_version());
        for ok in ["6.1", "6.12", "5.10.3"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "", "6", "6.", ".1", "6.1.2.3", "6.x", "../6.1", "6.1/..", "v6.1", "6.1 ",
        ] {
            assert!(!valid_version(bad), "{bad:?}");
        }
    }

    /// A tempdir standing in for `/usr/src`, with tarballs of `versions`.
    fn usr_src(versions: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for v in versions {
            fs::write(debian_tarball(dir.path(), v), b"\xfd7zXZ\0rest").unwrap();
        }
        dir
    }

    #[test]
    fn h6_version_resolves_to_debians_tarball() {
        let dir = usr_src(&["6.12", default_version()]);
        let got = Source::resolve(Some("6.12"), None, dir.path()).unwrap();
        assert_eq!(
            got,
            Source::Tarball(
                dir.path()
                    .join("linux-source-6.12.tar.xz")
                    .canonicalize()
                    .unwrap()
            )
        );
        let default = Source::resolve(None, None, dir.path()).unwrap();
        assert_eq!(
            default,
            Source::Tarball(
                debian_tarball(dir.path(), default_version())
                    .canonicalize()
                    .unwrap()
            ),
            "the default is linux.version's, not the newest"
        );
    }

    #[test]
    fn h6_version_without_its_tarball_names_what_was_looked_for() {
        let dir = usr_src(&[]);
        let err = Source::resolve(Some("6.12"), None, dir.path())
            .unwrap_err()
            .to_string();
        let looked = dir.path().join("linux-source-6.12.tar.xz");
        assert!(
            err.contains(&format!("{} does not exist", looked.display())),
            "{err}"
        );
        assert!(err.contains("linux-source-6.12 package"), "{err}");
        assert!(err.contains("--source TARBALL"), "{err}");

        let err = Source::resolve(None, None, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "{} is missing",
                debian_tarball(dir.path(), default_version()).display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "apt-get install linux-source-{}",
                default_version()
            )),
            "{err}"
        );
    }

    #[test]
    fn h6_bad_flag_combinations_are_refused_before_anything_is_read() {
        let dir = usr_src(&["6.1"]);
        let tarball = debian_tarball(dir.path(), "6.1");
        let err = Source::resolve(Some("6.1"), Some(&tarball), dir.path()).unwrap_err();
        assert!(matches!(err, SourceError::Both), "{err}");
        let err = Source::resolve(Some("../../etc/passwd"), None, dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"../../etc/passwd\" is not a kernel version"),
            "{err}"
        );
    }

    #[test]
    fn h6_source_files_are_checked_by_their_first_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            fs::write(&p, bytes).unwrap();
            p
        };
        let xz = write("linux-6.12.tar.xz", b"\xfd7zXZ\0...");
        let gz = write("linux-6.12.tar.gz", b"\x1f\x8b\x08...");
        let mut tar = vec![0u8; 1024];
        tar[257..262].copy_from_slice(b"ustar");
        let tar = write("linux-6.12.tar", &tar);
        for p in [&xz, &gz, &tar] {
            assert!(
                matches!(Source::from_path(p), Ok(Source::Tarball(_))),
                "{}",
                p.display()
            );
        }
        let bogus = write("linux-9.9.tar.xz", b"this is not a tarball\n");
        let err = Source::from_path(&bogus).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "--source {}: not a Linux source tarball",
                bogus.canonicalize().unwrap().display()
            )),
            "{err}"
        );
        let err = Source::from_path(&dir.path().join("absent.tar.xz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("absent.tar.xz"), "{err}");
    }

    #[test]
    fn h6_different_sources_never_share_a_cache_entry_or_build_directory() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let a = dir.path().join("linux-a.tar.xz");
        let b = dir.path().join("linux-b.tar.xz");
        fs::write(&a, b"\xfd7zXZ\0aaaa").unwrap();
        fs::write(&b, b"\xfd7zXZ\0bbbb").unwrap();
        let req = |source: Source| Request {
            arch: Arch::Amd64,
            profile: KernelProfile::Hardware,
            source,
            extra: Vec::new(),
            jobs: 1,
            output: PathBuf::from("build/kernel"),
        };
        let paths = |p: &Path| req(Source::from_path(p).unwrap()).paths_in(&cache).unwrap();
        let (pa, pb) = (paths(&a), paths(&b));
        assert_ne!(pa.key, pb.key);
        assert_ne!(pa.entry, pb.entry);
        assert_ne!(pa.build, pb.build);
        assert_ne!(pa.tree_root, pb.tree_root);
        assert_eq!(paths(&a).key, pa.key, "the same source keeps its key");

        // The same path with other content (another size, another mtime)
        // is another source.
        fs::write(&a, b"\xfd7zXZ\0a newer tarball").unwrap();
        let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(when)
            .unwrap();
        let pa2 = paths(&a);
        assert_ne!(pa2.key, pa.key);
        assert_ne!(pa2.build, pa.build);
        // Same size, other mtime: still another source.
        fs::File::options()
            .write(true)
            .open(&a)
            .unwrap()
            .set_modified(when + Duration::from_secs(1))
            .unwrap();
        assert_ne!(paths(&a).key, pa2.key);
        assert!(
            pa.entry.starts_with(cache.join("installer-kernel")),
            "{}",
            pa.entry.display()
        );
    }

    #[test]
    fn a8_cache_key_follows_every_input() {
        let f = profile_fragments(KernelProfile::Qemu, &[]);
        let k = cache_key("src", Arch::Amd64, KernelProfile::Qemu, &f);
        assert_eq!(k.len(), 16);
        assert_eq!(k, cache_key("src", Arch::Amd64, KernelProfile::Qemu, &f));
        assert_ne!(k, cache_key("src2", Arch::Amd64, KernelProfile::Qemu, &f));
        assert_ne!(k, cache_key("src", Arch::Arm64, KernelProfile::Qemu, &f));
        assert_ne!(
            k,
            cache_key("src", Arch::Amd64, KernelProfile::Hardware, &f)
        );
        let extra = [Fragment {
            name: "site".into(),
            text: "CONFIG_X=y\n".into(),
        }];
        assert_ne!(
            k,
            cache_key(
                "src",
                Arch::Amd64,
                KernelProfile::Qemu,
                &profile_fragments(KernelProfile::Qemu, &extra)
            )
        );
    }
}
