//! What every command needs to know about where it runs: the sysroot and
//! the running binary.

use crate::{layout, sysroot::Sysroot};
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// The file to copy when installing the running binary. Reading it works
/// even after the binary was replaced or deleted on disk.
pub const SELF_EXE: &str = "/proc/self/exe";

/// The environment of one `ze` invocation.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where system paths are resolved.
    pub sysroot: Sysroot,
    /// The running binary's real path.
    pub exe: PathBuf,
    /// The running binary's path as seen inside the sysroot (equal to `exe`
    /// on a real host).
    pub exe_logical: PathBuf,
}

impl Context {
    /// Read `ZE_SYSROOT` and the running binary's location.
    pub fn from_env() -> anyhow::Result<Context> {
        let sysroot = Sysroot::from_env()?;
        let exe = std::env::current_exe().context("cannot find the running ze binary")?;
        // Linux appends " (deleted)" when the file was replaced under us.
        let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
            Some(stripped) => PathBuf::from(stripped),
            None => exe,
        };
        let exe_logical = sysroot.logical(&exe).unwrap_or_else(|| exe.clone());
        Ok(Context {
            sysroot,
            exe,
            exe_logical,
        })
    }

    /// The config directory: `--config`, then `ZE_CONFIG_DIR`, then the
    /// directory derived from the binary's location (checklist L3). A
    /// relative path is taken from the working directory.
    pub fn config_dir(&self, flag: Option<&Path>) -> anyhow::Result<PathBuf> {
        let chosen = match flag {
            Some(dir) => dir.to_path_buf(),
            None => match std::env::var_os(layout::CONFIG_ENV) {
                Some(v) if !v.is_empty() => PathBuf::from(v),
                _ => layout::config_dir_for_binary(&self.exe_logical),
            },
        };
        let absolute = if chosen.is_absolute() {
            chosen
        } else {
            std::env::current_dir()
                .context("cannot read the working directory")?
                .join(chosen)
        };
        Ok(crate::sysroot::normalize(&absolute).unwrap_or(absolute))
    }

    /// The real path of a logical one.
    pub fn real(&self, logical: impl AsRef<Path>) -> PathBuf {
        self.sysroot.path(logical)
    }

    /// The installation prefix of the running binary, if it sits in a
    /// `<prefix>/bin` directory.
    pub fn own_prefix(&self) -> Option<PathBuf> {
        layout::prefix_of(&self.exe_logical)
    }
}
