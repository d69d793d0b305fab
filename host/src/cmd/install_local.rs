//! `ze install local`: copy the running binary to `<prefix>/bin/ze` and
//! create the config directory (checklist L1–L5).

use crate::{
    cli::InstallLocal,
    context::{Context, SELF_EXE},
    layout,
    plan::{Plan, Step},
    prompt, sysroot, zefs,
};
use anyhow::{Context as _, bail};
use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// Mode of the installed binary.
pub const BINARY_MODE: u32 = 0o755;

/// Run `ze install local`.
pub fn run(ctx: &Context, args: &InstallLocal) -> anyhow::Result<()> {
    let prefix = match &args.prefix {
        Some(p) => sysroot::normalize(p).with_context(|| {
            format!(
                "--prefix {}: must be an absolute path, e.g. /usr/local",
                p.display()
            )
        })?,
        None if prompt::stdin_is_terminal() => match ask_prefix()? {
            Some(p) => p,
            None => bail!("aborted: no prefix chosen; nothing was changed"),
        },
        None => bail!(
            "no terminal to ask on: pass --prefix, e.g. `ze install local --prefix /usr/local`"
        ),
    };
    let plan = plan_install(ctx, &prefix)?;
    let binary = layout::binary_in(&prefix);
    let mut out = std::io::stdout().lock();
    if args.dry_run {
        plan.print_dry_run(&mut out)?;
        writeln!(out, "dry run: nothing was changed")?;
        return Ok(());
    }
    plan.apply(&ctx.sysroot, &mut out)?;
    let config = layout::config_dir_for_prefix(&prefix);
    writeln!(
        out,
        "installed ze {} as {}",
        crate::build::VERSION,
        binary.display()
    )?;
    if ctx.real(config.join(zefs::FILE_NAME)).exists() {
        writeln!(out, "kept the existing database in {}", config.display())?;
    } else {
        writeln!(
            out,
            "next: run `{} init` to create {}/{}",
            binary.display(),
            config.display(),
            zefs::FILE_NAME
        )?;
    }
    Ok(())
}

/// The prefix menu (checklist L2). `None` when input ends.
fn ask_prefix() -> anyhow::Result<Option<PathBuf>> {
    let mut err = std::io::stderr().lock();
    writeln!(err, "Select installation prefix:")?;
    for (i, (path, label)) in layout::MENU_PREFIXES.iter().enumerate() {
        writeln!(err, "{}) {path} ({label})", i + 1)?;
    }
    drop(err);
    for _ in 0..prompt::MAX_ATTEMPTS {
        let Some(answer) = prompt::ask("Choice [1]: ")? else {
            return Ok(None);
        };
        match parse_choice(&answer) {
            Some(prefix) => return Ok(Some(PathBuf::from(prefix))),
            None => eprintln!(
                "invalid choice {:?}: enter 1, 2 or 3 (or press Enter for 1)",
                answer.trim()
            ),
        }
    }
    bail!(
        "no valid choice after {} attempts; nothing was changed",
        prompt::MAX_ATTEMPTS
    )
}

/// The menu answer's prefix: empty means the first entry.
pub fn parse_choice(answer: &str) -> Option<&'static str> {
    let answer = answer.trim();
    let index = if answer.is_empty() {
        1
    } else {
        answer.parse::<usize>().ok()?
    };
    layout::MENU_PREFIXES
        .get(index.checked_sub(1)?)
        .map(|(p, _)| *p)
}

/// Check the target and list the steps (checklist L1, L4).
pub fn plan_install(ctx: &Context, prefix: &Path) -> anyhow::Result<Plan> {
    let real_prefix = ctx.real(prefix);
    if real_prefix.exists() && !real_prefix.is_dir() {
        bail!(
            "--prefix {}: exists and is not a directory",
            prefix.display()
        );
    }
    let bin_dir = prefix.join("bin");
    let real_bin_dir = ctx.real(&bin_dir);
    if real_bin_dir.exists() && !real_bin_dir.is_dir() {
        bail!("{} exists and is not a directory", bin_dir.display());
    }
    let binary = layout::binary_in(prefix);
    if ctx.real(&binary).is_dir() {
        bail!("{} is a directory, not a file", binary.display());
    }

    let mut plan = Plan::new();
    if !real_bin_dir.is_dir() {
        plan.push(Step::CreateDir(bin_dir));
    }
    plan.push(Step::CopyFile {
        from: PathBuf::from(SELF_EXE),
        from_label: format!("the running ze ({})", ctx.exe.display()),
        to: binary,
        mode: BINARY_MODE,
    });
    let config = layout::config_dir_for_prefix(prefix);
    let real_config = ctx.real(&config);
    if real_config.exists() && !real_config.is_dir() {
        bail!(
            "config directory {} exists and is not a directory",
            config.display()
        );
    }
    if !real_config.join(zefs::FILE_NAME).exists() && !real_config.is_dir() {
        plan.push(Step::CreateDir(config));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_menu_choices() {
        assert_eq!(parse_choice(""), Some("/usr/local"));
        assert_eq!(parse_choice("  \t"), Some("/usr/local"));
        assert_eq!(parse_choice("1"), Some("/usr/local"));
        assert_eq!(parse_choice("2"), Some("/usr"));
        assert_eq!(parse_choice(" 3 "), Some("/opt/ze"));
        for bad in ["0", "4", "-1", "x", "1.0", "99999999999999999999999"] {
            assert_eq!(parse_choice(bad), None, "{bad}");
        }
    }
}
