//! `ze uninstall local`: remove the binary, and with `--purge` the config
//! directory and database (checklist U2–U4).

use crate::{
    cli::UninstallLocal,
    context::Context,
    layout,
    plan::{Plan, Step},
    sysroot,
};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// Prefixes shared with the rest of the system: ze removes only its own
/// files there, never directories.
const SHARED_PREFIXES: [&str; 3] = ["/", "/usr", "/usr/local"];

/// Run `ze uninstall local`.
pub fn run(ctx: &Context, args: &UninstallLocal) -> anyhow::Result<()> {
    let prefix = match &args.prefix {
        Some(p) => sysroot::normalize(p)
            .with_context(|| format!("--prefix {}: must be an absolute path", p.display()))?,
        None => ctx.own_prefix().with_context(|| {
            format!(
                "cannot detect the prefix: the running binary {} is not in a <prefix>/bin directory; pass --prefix",
                ctx.exe_logical.display()
            )
        })?,
    };
    if ctx.real(layout::UNIT_PATH).exists() {
        bail!(
            "{} is still installed ({}): run `ze uninstall systemd` first, so nothing is left running a binary that is gone",
            layout::UNIT_NAME,
            layout::UNIT_PATH
        );
    }
    let plan = plan_uninstall(ctx, &prefix, args.purge)?;
    if plan.is_empty() {
        bail!(
            "nothing to remove: {} does not exist (wrong --prefix?)",
            layout::binary_in(&prefix).display()
        );
    }
    if super::confirm_and_apply(&plan, &ctx.sysroot, args.dry_run, args.yes)? {
        println!("ze removed from {}", prefix.display());
    }
    Ok(())
}

/// The steps that undo `ze install local --prefix <prefix>`.
pub fn plan_uninstall(ctx: &Context, prefix: &Path, purge: bool) -> anyhow::Result<Plan> {
    let mut plan = Plan::new();
    let binary = layout::binary_in(prefix);
    let real_binary = ctx.real(&binary);
    if real_binary.is_dir() {
        bail!("{} is a directory, not the ze binary", binary.display());
    }
    if real_binary.symlink_metadata().is_ok() {
        plan.push(Step::RemoveFile(binary));
    }
    let config = layout::config_dir_for_prefix(prefix);
    if purge && ctx.real(&config).symlink_metadata().is_ok() {
        plan.push(Step::RemoveTree(config.clone()));
    }
    if plan.is_empty() {
        return Ok(plan);
    }
    // A self-contained prefix (/opt/ze, /tmp/x) goes away entirely once
    // empty; shared prefixes keep their directories.
    if !SHARED_PREFIXES.iter().any(|p| Path::new(p) == prefix) {
        let mut dirs: Vec<PathBuf> = vec![prefix.join("bin")];
        if purge && config.starts_with(prefix) {
            dirs.push(prefix.join("etc"));
        }
        dirs.push(prefix.to_path_buf());
        for dir in dirs {
            if ctx.real(&dir).is_dir() {
                plan.push(Step::RemoveDirIfEmpty(dir));
            }
        }
    }
    Ok(plan)
}
