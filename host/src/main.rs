//! The `ze` command.

use argh::FromArgs;
use std::process::ExitCode;
use ze::{
    cli::{ApplianceWhat, Command, InstallWhat, MachinesWhat, UninstallWhat, Ze},
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
    if let Some(source) = daemon_source(&strs) {
        return match cmd::daemon::run(source) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ze: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
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

/// `ze -` and `ze <config-file>`: a single argument that is `-`, or that
/// is neither a subcommand nor a flag and is an existing file or looks
/// like a path (holds `/` or `.`), names a config to run.
fn daemon_source(args: &[&str]) -> Option<cmd::daemon::ConfigSource> {
    let [_, arg] = args else {
        return None;
    };
    if *arg == "-" {
        return Some(cmd::daemon::ConfigSource::Stdin);
    }
    let subcommand = <Command as argh::SubCommands>::COMMANDS
        .iter()
        .any(|c| c.name == *arg);
    if subcommand || arg.starts_with('-') || arg.is_empty() {
        return None;
    }
    // A bare word that names no file is a mistyped command, not a config.
    let path = std::path::Path::new(arg);
    if !path.exists() && !arg.contains(['/', '.']) {
        return None;
    }
    Some(cmd::daemon::ConfigSource::File(path.into()))
}

fn run(ze: Ze) -> anyhow::Result<()> {
    let ctx = Context::from_env()?;
    match ze.command {
        Command::Install(i) => match i.what {
            InstallWhat::Local(a) => cmd::install_local::run(&ctx, &a),
            InstallWhat::Systemd(a) => cmd::systemd::install(&ctx, &a),
            InstallWhat::Remote(a) => cmd::install_remote::run(&a),
        },
        Command::Uninstall(u) => match u.what {
            UninstallWhat::Local(a) => cmd::uninstall_local::run(&ctx, &a),
            UninstallWhat::Systemd(a) => cmd::systemd::uninstall(&ctx, &a),
        },
        Command::Init(a) => cmd::init::run(&ctx, &a),
        Command::Version(_) => cmd::version::run(&ctx),
        Command::Start(a) => cmd::start::run(&ctx, &a),
        Command::Cli(a) => cmd::cli::run(&a),
        Command::Machines(m) => match m.what {
            MachinesWhat::List(a) => cmd::machines::list(&a),
            MachinesWhat::Status(a) => cmd::machines::status_table(&a),
            MachinesWhat::Show(a) => cmd::machines::show(&a),
            MachinesWhat::Add(a) => cmd::machines::add(&a),
            MachinesWhat::Reinstall(a) => cmd::machines::reinstall(&a),
            MachinesWhat::Remove(a) => cmd::machines::remove(&a),
        },
        Command::Appliance(a) => match a.what {
            ApplianceWhat::Kernel(k) => cmd::appliance_kernel::run(&k),
            ApplianceWhat::Initrd(a) => cmd::appliance_initrd::run(&a),
            ApplianceWhat::Init(a) => cmd::appliance_init::run(&a),
            ApplianceWhat::Build(a) => cmd::appliance_build::run(&a),
            ApplianceWhat::Iso(a) => cmd::appliance_iso::run(&a),
        },
    }
}
