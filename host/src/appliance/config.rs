//! `appliance.json`: what `ze appliance init <name>` writes and every
//! other `ze appliance` command reads.
//!
//! ```json
//! {
//!   "image": { "arch": "amd64", "kernel-profile": "qemu", "size-bytes": 2147483648 },
//!   "ssh": { "username": "admin", "password-hash": "$2b$10$…" },
//!   "seed-config": "ze.conf"
//! }
//! ```
//!
//! Beside it in the appliance directory: the seed config named by
//! `seed-config`, the TLS identity (`tls/cert.pem`, `tls/key.pem`), and the
//! images (`ze-<YYYYMMDD-HHMMSS>.img`) with `build.json`.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
};

/// The file name inside an appliance's directory.
pub const FILE_NAME: &str = "appliance.json";
/// The default image size: 2 GiB.
pub const DEFAULT_SIZE_BYTES: u64 = 2 << 30;

/// A CPU architecture ze builds for, named as Debian names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86_64.
    Amd64,
    /// aarch64.
    Arm64,
}

impl Arch {
    /// The architecture of the running host.
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    /// The Rust target triple of the libc-free firmware and static binaries.
    pub fn rust_triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-gnu",
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The kernel's `ARCH=` name.
    pub fn kernel_arch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86",
            Arch::Arm64 => "arm64",
        }
    }

    /// The UEFI removable-media loader name.
    pub fn efi_loader(self) -> &'static str {
        match self {
            Arch::Amd64 => "BOOTX64.EFI",
            Arch::Arm64 => "BOOTAA64.EFI",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        })
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(format!(
                "unknown architecture {other:?}: use amd64 or arm64"
            )),
        }
    }
}

/// The installer kernel's driver set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelProfile {
    /// virtio and e1000: QEMU guests, fast to build.
    Qemu,
    /// Bare metal: NICs, AHCI, NVMe, USB storage, framebuffer, exFAT.
    Hardware,
}

impl fmt::Display for KernelProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelProfile::Qemu => "qemu",
            KernelProfile::Hardware => "hardware",
        })
    }
}

impl FromStr for KernelProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "qemu" => Ok(KernelProfile::Qemu),
            "hardware" => Ok(KernelProfile::Hardware),
            other => Err(format!(
                "unknown kernel profile {other:?}: use qemu or hardware"
            )),
        }
    }
}

/// The `image` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ImageSettings {
    /// Target CPU architecture.
    pub arch: Arch,
    /// Installer kernel profile.
    #[serde(default = "default_profile")]
    pub kernel_profile: KernelProfile,
    /// Disk image size in bytes.
    #[serde(default = "default_size")]
    pub size_bytes: u64,
}

fn default_profile() -> KernelProfile {
    KernelProfile::Qemu
}
fn default_size() -> u64 {
    DEFAULT_SIZE_BYTES
}

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            arch: Arch::host(),
            kernel_profile: KernelProfile::Qemu,
            size_bytes: DEFAULT_SIZE_BYTES,
        }
    }
}

/// The SSH login baked into the image's zefs (`auth/user/<username>`,
/// role admin). The password is kept only as its bcrypt hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SshCredentials {
    /// The login name.
    pub username: String,
    /// bcrypt hash (cost 10) of the password.
    pub password_hash: String,
}

impl SshCredentials {
    /// Check the username and that the hash is a bcrypt hash.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::credentials::validate_username(&self.username).context("ssh.username")?;
        if self.password_hash.parse::<bcrypt::HashParts>().is_err() {
            bail!(
                "ssh.password-hash is not a bcrypt hash ($2b$10$…); set the password again with `ze appliance init --force`"
            );
        }
        Ok(())
    }
}

/// The seed config's default file name in the appliance directory.
pub const SEED_CONFIG_FILE: &str = "ze.conf";
/// The TLS certificate, relative to the appliance directory.
pub const TLS_CERT_FILE: &str = "tls/cert.pem";
/// The TLS private key, relative to the appliance directory.
pub const TLS_KEY_FILE: &str = "tls/key.pem";

/// One appliance definition. Fields this version does not know are kept
/// when the file is rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub struct Appliance {
    /// Image settings.
    pub image: ImageSettings,
    /// The SSH credentials baked into every image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshCredentials>,
    /// The seed config's file, relative to the appliance directory; baked
    /// as `file/template/ze.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_config: Option<String>,
    /// Everything else in the file, preserved as is.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// Check an appliance name: 1–64 of `a-z 0-9 - _`, starting with a letter or digit.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "invalid appliance name {name:?}: use 1 to 64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
        );
    }
    Ok(())
}

/// `$XDG_CONFIG_HOME/ze/appliances` (default `~/.config/ze/appliances`).
pub fn appliances_dir() -> anyhow::Result<PathBuf> {
    Ok(xdg_dir("XDG_CONFIG_HOME", ".config")?.join("ze/appliances"))
}

/// `$XDG_CACHE_HOME/ze` (default `~/.cache/ze`).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    Ok(xdg_dir("XDG_CACHE_HOME", ".cache")?.join("ze"))
}

fn xdg_dir(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    match std::env::var_os(var) {
        Some(v) if Path::new(&v).is_absolute() => Ok(PathBuf::from(v)),
        _ => {
            let home = std::env::var_os("HOME").context("neither $XDG_* nor $HOME is set")?;
            Ok(PathBuf::from(home).join(fallback))
        }
    }
}

/// The directory of appliance `name`.
pub fn dir_of(name: &str) -> anyhow::Result<PathBuf> {
    validate_name(name)?;
    Ok(appliances_dir()?.join(name))
}

impl Appliance {
    /// Parse `appliance.json` text.
    pub fn parse(text: &str) -> anyhow::Result<Appliance> {
        Ok(serde_json::from_str(text)?)
    }

    /// Read the definition of appliance `name`.
    pub fn load(name: &str) -> anyhow::Result<(Appliance, PathBuf)> {
        let path = dir_of(name)?.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("appliance {name:?} does not exist ({} is missing): run `ze appliance init {name}` first", path.display())
            } else {
                anyhow::anyhow!("cannot read {}: {e}", path.display())
            }
        })?;
        let appliance =
            Appliance::parse(&text).with_context(|| format!("{} is not valid", path.display()))?;
        Ok((appliance, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2_defaults_and_round_trip() {
        let hash = crate::credentials::hash_password("secret").unwrap();
        let a = Appliance::parse(&format!(
            r#"{{"image":{{"arch":"arm64"}},"notes":{{"owner":"ops"}},"ssh":{{"username":"admin","password-hash":"{hash}"}}}}"#
        ))
        .unwrap();
        assert_eq!(a.image.arch, Arch::Arm64);
        assert_eq!(a.image.kernel_profile, KernelProfile::Qemu);
        assert_eq!(a.image.size_bytes, 2 * 1024 * 1024 * 1024);
        assert!(a.rest.contains_key("notes"), "unknown sections are kept");
        assert_eq!(a.ssh.as_ref().unwrap().username, "admin");
        a.ssh.as_ref().unwrap().validate().unwrap();
        assert!(a.seed_config.is_none());
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(Appliance::parse(&text).unwrap(), a);
    }

    #[test]
    fn bad_values_are_named() {
        let err = Appliance::parse(r#"{"image":{"arch":"sparc"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sparc"), "{err}");
        let err = Appliance::parse(r#"{"image":{"arch":"amd64","kernel-profile":"cloud"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloud"), "{err}");
        let err = Appliance::parse(r#"{"image":{"arch":"amd64","sizebytes":1}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sizebytes"), "{err}");
    }

    #[test]
    fn ssh_credentials_are_checked() {
        let creds = |u: &str, h: &str| SshCredentials {
            username: u.into(),
            password_hash: h.into(),
        };
        let good = crate::credentials::hash_password("secret").unwrap();
        creds("admin", &good).validate().unwrap();
        assert!(creds("Admin", &good).validate().is_err());
        let err = creds("admin", "secret").validate().unwrap_err().to_string();
        assert!(err.contains("not a bcrypt hash"), "{err}");
        let err =
            Appliance::parse(r#"{"image":{"arch":"amd64"},"ssh":{"username":"a","password":"x"}}"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn names() {
        for ok in ["prod", "lab-1", "a_b", "9"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "Prod", "-x", "a/b", "..", "a b", &"a".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
