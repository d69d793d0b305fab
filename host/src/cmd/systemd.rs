//! `ze install systemd` and `ze uninstall systemd` (checklist S1–S5, U1).

use crate::{
    cli::{InstallSystemd, UninstallSystemd},
    context::Context,
    layout,
    plan::{Plan, Step},
    zefs::{self, Zefs},
};
use anyhow::bail;
use std::{io::Write, path::Path};

/// The user and group the service runs as.
pub const SERVICE_USER: &str = "ze";
/// Mode of the unit file.
pub const UNIT_MODE: u32 = 0o644;
/// Where systemd keeps its runtime state; present only when systemd is PID 1
/// (`sd_booted(3)`).
pub const SYSTEMD_RUNTIME: &str = "/run/systemd/system";

/// The unit of the spec's "Systemd Service", every directive as written.
pub fn unit_text(binary: &Path, config_dir: &Path) -> String {
    let bin = binary.display();
    let dir = config_dir.display();
    format!(
        "[Unit]
Description=Ze Network OS
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=ze
Group=ze
ExecStart={bin} start
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
LimitNOFILE=65536
LimitCORE=infinity
WorkingDirectory={dir}
Environment=ZE_CONFIG_DIR={dir}
Environment=XDG_RUNTIME_DIR=/run/ze
AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE
NoNewPrivileges=true
ProtectHome=true
RuntimeDirectory=ze

[Install]
WantedBy=multi-user.target
"
    )
}

/// Fail clearly when systemd is not the running init.
fn require_systemd(ctx: &Context) -> anyhow::Result<()> {
    if !ctx.real(SYSTEMD_RUNTIME).is_dir() {
        bail!(
            "systemd is not running on this host ({SYSTEMD_RUNTIME} does not exist), so ze.service cannot be managed here; \
             --dry-run prints the unit without systemd"
        );
    }
    Ok(())
}

/// Run `ze install systemd`.
pub fn install(ctx: &Context, args: &InstallSystemd) -> anyhow::Result<()> {
    let config = ctx.config_dir(args.config.as_deref())?;
    let db = config.join(zefs::FILE_NAME);
    let real_db = ctx.real(&db);
    if !real_db.exists() {
        bail!(
            "{} does not exist: run `ze init` first{}",
            db.display(),
            if args.config.is_none() {
                " (or pass --config DIR)"
            } else {
                ""
            }
        );
    }
    Zefs::load(&real_db)?;
    let unit_path = Path::new(layout::UNIT_PATH);
    if ctx.real(unit_path).exists() && !args.force {
        bail!(
            "{} already exists: pass --force to replace it",
            unit_path.display()
        );
    }
    let binary = &ctx.exe_logical;
    let unit = unit_text(binary, &config);

    let mut plan = Plan::new();
    plan.push(Step::EnsureGroup(SERVICE_USER.into()));
    plan.push(Step::EnsureUser {
        name: SERVICE_USER.into(),
        group: SERVICE_USER.into(),
        home: config.clone(),
    });
    for path in [&config, &db] {
        plan.push(Step::Chown {
            path: path.clone(),
            user: SERVICE_USER.into(),
            group: SERVICE_USER.into(),
        });
    }
    plan.push(Step::WriteFile {
        path: unit_path.to_path_buf(),
        content: unit.clone().into_bytes(),
        mode: UNIT_MODE,
    });
    plan.push(Step::run("systemctl", &["daemon-reload"]));
    plan.push(Step::run("systemctl", &["enable", layout::UNIT_NAME]));
    if args.start {
        plan.push(Step::run("systemctl", &["start", layout::UNIT_NAME]));
    }

    let mut out = std::io::stdout().lock();
    if layout::prefix_of(binary).is_none() {
        eprintln!(
            "warning: ExecStart runs {}, which is not an installed ze (<prefix>/bin/ze); run `ze install local` first",
            binary.display()
        );
    }
    if args.dry_run {
        writeln!(out, "# {}", unit_path.display())?;
        out.write_all(unit.as_bytes())?;
        writeln!(out)?;
        plan.print_dry_run(&mut out)?;
        writeln!(out, "dry run: nothing was changed")?;
        return Ok(());
    }
    require_systemd(ctx)?;
    plan.apply(&ctx.sysroot, &mut out)?;
    writeln!(
        out,
        "{} is installed and enabled{}; check it with `systemctl status {}`",
        layout::UNIT_NAME,
        if args.start { " and started" } else { "" },
        layout::UNIT_NAME
    )?;
    Ok(())
}

/// Run `ze uninstall systemd`.
pub fn uninstall(ctx: &Context, args: &UninstallSystemd) -> anyhow::Result<()> {
    let unit_path = Path::new(layout::UNIT_PATH);
    let installed = ctx.real(unit_path).exists();
    let mut plan = Plan::new();
    if installed {
        plan.push(Step::run("systemctl", &["stop", layout::UNIT_NAME]));
        plan.push(Step::run("systemctl", &["disable", layout::UNIT_NAME]));
        plan.push(Step::RemoveFile(unit_path.to_path_buf()));
        plan.push(Step::run("systemctl", &["daemon-reload"]));
    } else {
        println!(
            "{} is not installed ({} does not exist)",
            layout::UNIT_NAME,
            unit_path.display()
        );
    }
    if args.purge {
        plan.push(Step::DeleteUser(SERVICE_USER.into()));
        plan.push(Step::DeleteGroup(SERVICE_USER.into()));
    }
    if plan.is_empty() {
        return Ok(());
    }
    if installed && !args.dry_run {
        require_systemd(ctx)?;
    }
    if super::confirm_and_apply(&plan, &ctx.sysroot, args.dry_run, args.yes)? {
        println!(
            "{} removed",
            if installed {
                layout::UNIT_NAME
            } else {
                "the ze user and group were"
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s1_unit_has_every_directive_of_the_spec() {
        let unit = unit_text(Path::new("/usr/local/bin/ze"), Path::new("/etc/ze"));
        for line in [
            "Description=Ze Network OS",
            "After=network-online.target",
            "Wants=network-online.target",
            "Type=simple",
            "User=ze",
            "Group=ze",
            "ExecStart=/usr/local/bin/ze start",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=on-failure",
            "RestartSec=5",
            "LimitNOFILE=65536",
            "LimitCORE=infinity",
            "WorkingDirectory=/etc/ze",
            "Environment=ZE_CONFIG_DIR=/etc/ze",
            "Environment=XDG_RUNTIME_DIR=/run/ze",
            "AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE",
            "NoNewPrivileges=true",
            "ProtectHome=true",
            "RuntimeDirectory=ze",
            "WantedBy=multi-user.target",
        ] {
            assert!(unit.lines().any(|l| l == line), "missing {line}");
        }
        let sections: Vec<&str> = unit.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(sections, ["[Unit]", "[Service]", "[Install]"]);
    }
}
