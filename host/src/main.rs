//! The `ze` command.

use argh::FromArgs;
use std::process::ExitCode;
use ze::{
    cli::{ApplianceWhat, Command, InstallWhat, UninstallWhat, Ze},
    cmd,
    context::Context,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    // On an appliance the kernel runs ze as /sbin/init (docs/appliance.md).
    if ze::pid1::is_init(&args) {
        ze::pid1::run();
    }
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let name = strs
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("ze");
    let ze = match Ze::from_args(&[name], strs.get(1..).unwrap_or_default()) {
        Ok(ze) => ze,
        Err(early) => {
            return match early.status {
                Ok(()) => {
                    print!("{}", early.output);
                    ExitCode::SUCCESS
                }
                Err(()) => {
                    eprint!("{}", early.output);
                    if !early.output.ends_with('\n') {
                        eprintln!();
                    }
                    eprintln!("Run `{name} --help` for usage.");
                    ExitCode::from(2)
                }
            };
        }
    };
    match run(ze) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ze: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(ze: Ze) -> anyhow::Result<()> {
    let ctx = Context::from_env()?;
    match ze.command {
        Command::Install(i) => match i.what {
            InstallWhat::Local(a) => cmd::install_local::run(&ctx, &a),
            InstallWhat::Systemd(a) => cmd::systemd::install(&ctx, &a),
        },
        Command::Uninstall(u) => match u.what {
            UninstallWhat::Local(a) => cmd::uninstall_local::run(&ctx, &a),
            UninstallWhat::Systemd(a) => cmd::systemd::uninstall(&ctx, &a),
        },
        Command::Init(a) => cmd::init::run(&ctx, &a),
        Command::Version(_) => cmd::version::run(&ctx),
        Command::Appliance(a) => match a.what {
            ApplianceWhat::Kernel(k) => cmd::appliance_kernel::run(&k),
            ApplianceWhat::Initrd(a) => cmd::appliance_initrd::run(&a),
            ApplianceWhat::Init(a) => cmd::appliance_init::run(&a),
            ApplianceWhat::Build(a) => cmd::appliance_build::run(&a),
            ApplianceWhat::Iso(a) => cmd::appliance_iso::run(&a),
        },
    }
}
