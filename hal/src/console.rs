//! The consoles the kernel writes to, from `/sys/class/tty/console/active`.
//!
//! That file lists every console named by `console=` on the command line,
//! e.g. `tty0 ttyS0`. The installer writes each line to all of them, because
//! the preferred `/dev/console` can be a dead VGA tty on a headless box.

use crate::{Error, sysfs::SysFs};
use heapless::{String, Vec};

/// Where the kernel lists the active consoles.
pub const ACTIVE_CONSOLES: &str = "/sys/class/tty/console/active";

/// The most consoles the installer writes to.
pub const MAX_CONSOLES: usize = 8;

/// The longest console name kept (`ttyS0`, `ttyAMA0`, `hvc0`, `tty0`).
pub const MAX_CONSOLE_NAME: usize = 16;

/// One active console's kernel name.
pub type ConsoleName = String<MAX_CONSOLE_NAME>;

/// Split the content of `/sys/class/tty/console/active` into names.
/// Duplicates, over-long names and names with a `/` are dropped, so each
/// result is safe to append to `/dev/`.
pub fn parse_active(text: &str) -> Vec<ConsoleName, MAX_CONSOLES> {
    let mut out: Vec<ConsoleName, MAX_CONSOLES> = Vec::new();
    for word in text.split_ascii_whitespace() {
        if word.contains('/') || word == "." || word == ".." {
            continue;
        }
        let mut name = ConsoleName::new();
        if name.push_str(word).is_err() || out.contains(&name) {
            continue;
        }
        if out.push(name).is_err() {
            break;
        }
    }
    out
}

/// Read and parse the active console list.
pub fn active<S: SysFs + ?Sized>(fs: &S) -> Result<Vec<ConsoleName, MAX_CONSOLES>, Error> {
    let mut buf = [0u8; 256];
    let n = fs.read(ACTIVE_CONSOLES, &mut buf)?;
    let text = core::str::from_utf8(&buf[..n]).map_err(|_| Error::Malformed)?;
    Ok(parse_active(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_list() {
        let got = parse_active("tty0 ttyS0\n");
        assert_eq!(
            got.iter().map(|s| s.as_str()).collect::<std::vec::Vec<_>>(),
            ["tty0", "ttyS0"]
        );
    }

    #[test]
    fn drops_duplicates_paths_and_overlong_names() {
        let got = parse_active("ttyS0 ttyS0 ../sda a/b ttyAMA0 averyveryverylongconsolename\n");
        assert_eq!(
            got.iter().map(|s| s.as_str()).collect::<std::vec::Vec<_>>(),
            ["ttyS0", "ttyAMA0"]
        );
    }

    #[test]
    fn empty_list_is_empty() {
        assert!(parse_active("").is_empty());
        assert!(parse_active("\n").is_empty());
    }

    #[test]
    fn bounded_at_max_consoles() {
        let text = "a b c d e f g h i j k";
        assert_eq!(parse_active(text).len(), MAX_CONSOLES);
    }
}
