//! The external programs the appliance builders use, where each is the
//! field's canonical tool (DESIGN §2): how to run one, and how to name a
//! missing one with the package that provides it.

use anyhow::bail;
use std::{io, process::Command};

/// An external program and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    /// The program name on PATH.
    pub program: &'static str,
    /// The Debian package.
    pub package: &'static str,
    /// What ze uses it for.
    pub purpose: &'static str,
}

/// `mke2fs -d`: makes `/perm`.
pub const MKE2FS: Tool = Tool {
    program: "mke2fs",
    package: "e2fsprogs",
    purpose: "makes the /perm ext4 filesystem",
};
/// `debugfs`: gives `/perm/ze` to root when the build does not run as root.
pub const DEBUGFS: Tool = Tool {
    program: "debugfs",
    package: "e2fsprogs",
    purpose: "sets owners inside /perm",
};
/// `grub-mkstandalone`: the UEFI boot loader.
pub const GRUB_MKSTANDALONE: Tool = Tool {
    program: "grub-mkstandalone",
    package: "grub-common",
    purpose: "builds the UEFI boot loader",
};
/// `xorriso`: writes the ISO.
pub const XORRISO: Tool = Tool {
    program: "xorriso",
    package: "xorriso",
    purpose: "writes the hybrid ISO",
};

impl Tool {
    /// Whether the program is on PATH.
    pub fn present(&self) -> bool {
        super::kernel::which(self.program).is_some()
    }

    /// The line `--check` prints when it is missing.
    pub fn missing_line(&self) -> String {
        format!(
            "{} ({}): not found on PATH; install it with `apt-get install {}`",
            self.program, self.purpose, self.package
        )
    }
}

/// Run `cmd` to completion, capturing its output. A failure names the
/// command, its exit status and the last lines it printed.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let shown = format!(
        "{program} {}",
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let out = cmd.output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            anyhow::anyhow!("{program} is not installed (not found on PATH)")
        } else {
            anyhow::anyhow!("cannot run {program}: {e}")
        }
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let both = format!("{stdout}{stderr}");
        let tail: Vec<&str> = both.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{shown}` failed ({}){}{}",
            out.status,
            if tail.is_empty() { "" } else { ":\n  " },
            tail.join("\n  ")
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_its_output() {
        let err = run(Command::new("sh").args(["-c", "echo one; echo two >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`sh -c echo one; echo two >&2; exit 3` failed"),
            "{err}"
        );
        assert!(err.contains("exit status: 3") && err.contains("one") && err.contains("two"));
        let err = run(&mut Command::new("ze-no-such-program")).unwrap_err();
        assert!(err.to_string().contains("not installed"), "{err}");
        assert_eq!(run(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }

    #[test]
    fn missing_tools_name_their_package() {
        let t = Tool {
            program: "ze-no-such-program",
            package: "ze-pkg",
            purpose: "tests",
        };
        assert!(!t.present());
        assert_eq!(
            t.missing_line(),
            "ze-no-such-program (tests): not found on PATH; install it with `apt-get install ze-pkg`"
        );
        assert!(MKE2FS.present(), "e2fsprogs is a test prerequisite");
    }
}
