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

use crate::{credentials, plan::Plan, prompt, sysroot::Sysroot};
use anyhow::{Context as _, bail};
use std::{io::Write, path::Path};

/// Where an SSH password comes from: `--ssh-password`, `--ssh-password-file`,
/// `--ssh-password-stdin` (exactly one may be given), else asked twice
/// without echo on a terminal. Shared by `ze install remote` and
/// `ze appliance init`.
pub fn ssh_password(
    value: Option<&str>,
    file: Option<&Path>,
    stdin: bool,
) -> anyhow::Result<String> {
    let given: Vec<&str> = [
        value.map(|_| "--ssh-password"),
        file.map(|_| "--ssh-password-file"),
        stdin.then_some("--ssh-password-stdin"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        bail!(
            "{} were given together: pass exactly one of --ssh-password-file, --ssh-password-stdin and --ssh-password",
            given.join(" and ")
        );
    }
    match (value, file, stdin) {
        (Some(p), _, _) => {
            credentials::validate_password(p).context("--ssh-password")?;
            Ok(p.to_string())
        }
        (None, Some(f), _) => credentials::password_from_file(f, "--ssh-password-file"),
        (None, None, true) => credentials::password_from_stdin("--ssh-password-stdin"),
        (None, None, false) if prompt::stdin_is_terminal() => credentials::password_from_terminal(),
        (None, None, false) => bail!(
            "no terminal to ask for the SSH password: pass --ssh-password-file FILE or --ssh-password-stdin (--ssh-password PW works too, but shows in `ps`)"
        ),
    }
}

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
