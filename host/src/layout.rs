//! Where ze lives on a host: the GNU-prefix rules of the spec's "Local
//! Installation" (checklist L3).
//!
//! | binary              | config directory  |
//! |---------------------|-------------------|
//! | `/usr/local/bin/ze` | `/etc/ze`         |
//! | `/usr/bin/ze`       | `/etc/ze`         |
//! | `<P>/bin/ze`        | `<P>/etc/ze`      |

use std::path::{Path, PathBuf};

/// The binary's path below a prefix.
pub const BIN_REL: &str = "bin/ze";
/// The environment variable naming the config directory.
pub const CONFIG_ENV: &str = "ZE_CONFIG_DIR";
/// The system-wide config directory.
pub const SYSTEM_CONFIG_DIR: &str = "/etc/ze";
/// The systemd unit ze installs.
pub const UNIT_PATH: &str = "/etc/systemd/system/ze.service";
/// The unit's name.
pub const UNIT_NAME: &str = "ze.service";
/// The prefixes offered by the `ze install local` menu, with their labels.
pub const MENU_PREFIXES: [(&str, &str); 3] = [
    ("/usr/local", "recommended"),
    ("/usr", "system"),
    ("/opt/ze", "self-contained"),
];

/// `<prefix>/bin/ze`.
pub fn binary_in(prefix: &Path) -> PathBuf {
    prefix.join(BIN_REL)
}

/// The prefix a binary was installed under: `<P>` for `<P>/bin/<name>`.
pub fn prefix_of(binary: &Path) -> Option<PathBuf> {
    let dir = binary.parent()?;
    if dir.file_name()? != "bin" {
        return None;
    }
    dir.parent().map(Path::to_path_buf)
}

/// The config directory for an installation prefix.
pub fn config_dir_for_prefix(prefix: &Path) -> PathBuf {
    if prefix == Path::new("/usr") || prefix == Path::new("/usr/local") || prefix == Path::new("/")
    {
        PathBuf::from(SYSTEM_CONFIG_DIR)
    } else {
        prefix.join("etc/ze")
    }
}

/// The config directory for a binary at `binary`; `/etc/ze` when the
/// binary is not under a `bin` directory (e.g. a development build).
pub fn config_dir_for_binary(binary: &Path) -> PathBuf {
    prefix_of(binary)
        .map(|p| config_dir_for_prefix(&p))
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CONFIG_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l3_config_dir_from_binary_path() {
        for (bin, dir) in [
            ("/usr/local/bin/ze", "/etc/ze"),
            ("/usr/bin/ze", "/etc/ze"),
            ("/opt/ze/bin/ze", "/opt/ze/etc/ze"),
            ("/tmp/x/bin/ze", "/tmp/x/etc/ze"),
            ("/home/me/src/ze/target/debug/ze", "/etc/ze"),
        ] {
            assert_eq!(
                config_dir_for_binary(Path::new(bin)),
                Path::new(dir),
                "{bin}"
            );
        }
    }

    #[test]
    fn prefix_of_needs_a_bin_directory() {
        assert_eq!(
            prefix_of(Path::new("/opt/ze/bin/ze")).unwrap(),
            Path::new("/opt/ze")
        );
        assert_eq!(prefix_of(Path::new("/bin/ze")).unwrap(), Path::new("/"));
        assert!(prefix_of(Path::new("/opt/ze/ze")).is_none());
    }
}
