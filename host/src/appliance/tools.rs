//! The external programs the appliance builders use, where each is the
//! field's canonical tool (docs/ARCHITECTURE.md, "Dependencies"): how to run one, and how to name a
//! missing one with the package that provides it.

use std::process::Command;

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
/// `grub-mkimage`: the BIOS boot loader (GRUB's `i386-pc` core image).
pub const GRUB_MKIMAGE: Tool = Tool {
    program: "grub-mkimage",
    package: "grub-common",
    purpose: "builds the BIOS boot loader",
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

/// Run `cmd` to completion (see [`crate::command::run`]).
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    Ok(crate::command::run(cmd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
