//! One module per `ze` subcommand.

pub mod appliance_build;
pub mod appliance_init;
pub mod appliance_initrd;
pub mod appliance_iso;
pub mod appliance_kernel;
pub mod cli;
pub mod daemon;
pub mod init;
pub mod install_local;
pub mod install_remote;
pub mod machines;
pub mod start;
pub mod systemd;
pub mod uninstall_local;
pub mod version;

use crate::{plan::Plan, prompt, sysroot::Sysroot};
use anyhow::bail;
use std::io::Write;

/// Print a plan and, unless `yes`, ask before applying it. `dry_run`
/// prints and stops. Shared by the uninstallers.
pub fn confirm_and_apply(
    plan: &Plan,
    root: &Sysroot,
    dry_run: bool,
    yes: bool,
) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    if dry_run {
        plan.print_dry_run(&mut out)?;
        writeln!(out, "dry run: nothing was changed")?;
        return Ok(false);
    }
    if !yes {
        writeln!(out, "This will:")?;
        for step in plan.steps() {
            writeln!(out, "  {}", step.describe())?;
        }
        out.flush()?;
        if !prompt::stdin_is_terminal() {
            bail!(
                "not confirmed: standard input is not a terminal; pass --yes to proceed without asking"
            );
        }
        if !prompt::confirm("Proceed?")? {
            writeln!(out, "aborted: nothing was changed")?;
            return Ok(false);
        }
    }
    plan.apply(root, &mut out)?;
    Ok(true)
}
