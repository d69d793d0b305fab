//! `ze start`: run the appliance (spec "Bootstrap Mode"; checklist B1–B6,
//! S6). The systemd unit's `ExecStart`, and what ze as PID 1 runs on an
//! appliance image.
//!
//! 1. Resolve the config directory and open `database.zefs`.
//! 2. Choose the config: `file/active/ze.conf`, else
//!    `file/template/ze.conf`, else bootstrap mode ([`crate::runtime::mode`]).
//! 3. Run its plugins through the daemon, with the control socket.
//! 4. SIGHUP reloads (back to 2, so a committed config takes over);
//!    SIGTERM/SIGINT stop.

use crate::{
    cli::Start,
    context::Context,
    daemon::{self, Daemon, PluginEnv, Shutdown, log},
    plugins::PLUGINS,
    runtime::{control, discover, mode, plugins::ApplianceBackend},
    zefs::{self, Zefs},
};
use anyhow::{Context as _, bail};
use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    thread,
    time::Duration,
};

const RUN: u8 = 0;
const RELOAD: u8 = 1;
const STOP: u8 = 2;

/// What the signal thread acts on: the current run's shutdown event and
/// why it was triggered.
#[derive(Default)]
struct Control {
    current: Mutex<Option<(Shutdown, Duration)>>,
    reason: AtomicU8,
}

fn watch_signals(control: Arc<Control>) -> anyhow::Result<()> {
    use signal_hook::{
        consts::{SIGHUP, SIGINT, SIGTERM},
        iterator::Signals,
    };
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let (name, want) = match sig {
                    SIGHUP => ("SIGHUP", RELOAD),
                    SIGINT => ("SIGINT", STOP),
                    _ => ("SIGTERM", STOP),
                };
                // A stop wins over a reload; a reload never downgrades a stop.
                let before = control.reason.fetch_max(want, Ordering::SeqCst);
                let guard = control.current.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((shutdown, drain)) = guard.as_ref() {
                    if before != RUN && shutdown.is_triggered() && want == STOP {
                        tracing::info!(target: daemon::TARGET, signal = name, "second signal: stopping now");
                        shutdown.trigger(Duration::ZERO);
                    } else {
                        tracing::info!(
                            target: daemon::TARGET,
                            signal = name,
                            "{}",
                            if want == RELOAD { "reloading the configuration" } else { "shutting down" }
                        );
                        shutdown.trigger(*drain);
                    }
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Choose the configuration to run, with the warnings it raised.
pub fn choose(db_path: &std::path::Path) -> anyhow::Result<(mode::Chosen, Vec<String>)> {
    let db = Zefs::load(db_path)?;
    let env = PluginEnv {
        database: Some(db_path.to_path_buf()),
        running: None,
        ..Default::default()
    };
    let mut warnings = Vec::new();
    let chosen = mode::choose(
        &db,
        discover::links,
        |text| {
            Daemon::from_text_with(text, PLUGINS, &env)
                .map(|_| ())
                .map_err(|e| anyhow::anyhow!("{e}"))
        },
        &mut |w| warnings.push(w),
    )?;
    Ok((chosen, warnings))
}

/// Run `ze start`.
pub fn run(ctx: &Context, args: &Start) -> anyhow::Result<()> {
    let dir = ctx.config_dir(args.config.as_deref())?;
    let db_path: PathBuf = ctx.real(dir.join(zefs::FILE_NAME));
    if !db_path.exists() {
        bail!(
            "{} does not exist: run `ze init` first (an appliance gets it from its installer)",
            dir.join(zefs::FILE_NAME).display()
        );
    }
    if args.dry_run {
        let (chosen, warnings) = choose(&db_path)?;
        for w in warnings {
            eprintln!("warning: {w}");
        }
        println!("mode: {}", chosen.source);
        println!("database: {}", dir.join(zefs::FILE_NAME).display());
        print!("{}", chosen.text);
        return Ok(());
    }

    // Init (ze as PID 1) blocks every signal to read them from a
    // signalfd, and children inherit the mask: take signals again.
    let _ = nix::sys::signal::SigSet::all().thread_unblock();
    let control = Arc::new(Control::default());
    watch_signals(Arc::clone(&control))?;
    let mut log_handle: Option<log::LogHandle> = None;
    loop {
        let (chosen, warnings) = choose(&db_path)?;
        let env = PluginEnv {
            database: Some(db_path.clone()),
            running: Some((chosen.text.clone(), chosen.source.to_string())),
            ..Default::default()
        };
        let daemon = Daemon::from_text_with(&chosen.text, PLUGINS, &env)
            .map_err(|e| anyhow::anyhow!("{} configuration: {e}", chosen.source))?;
        let levels = daemon.log_levels(PLUGINS)?;
        match &log_handle {
            Some(h) => h.set(levels),
            None => log_handle = Some(log::install(levels)),
        }
        for w in warnings {
            tracing::warn!(target: daemon::TARGET, "{w}");
        }
        tracing::info!(
            target: daemon::TARGET,
            mode = %chosen.source,
            database = %db_path.display(),
            plugins = daemon.plugin_names().join(","),
            "starting"
        );

        let shutdown = Shutdown::new().context("cannot create the shutdown event")?;
        *control.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((shutdown.clone(), daemon.settings.drain));
        if control.reason.load(Ordering::SeqCst) == STOP {
            return Ok(());
        }

        let socket = control::socket_path(daemon.settings.socket.as_deref());
        let control_thread = match control::bind(&socket) {
            Ok(listener) => {
                let backend = ApplianceBackend::new(
                    db_path.clone(),
                    chosen.text.clone(),
                    chosen.source.to_string(),
                    PLUGINS,
                );
                let stop = shutdown.clone();
                let path = socket.clone();
                tracing::info!(target: daemon::TARGET, socket = %socket.display(), "control socket");
                Some(thread::spawn(move || {
                    control::serve(listener, path, "local", || backend.clone(), &stop)
                }))
            }
            Err(e) => {
                tracing::warn!(target: daemon::TARGET, "no control socket: {e:#}");
                None
            }
        };

        let result = daemon.run(&shutdown);
        if !shutdown.is_triggered() {
            shutdown.trigger(Duration::ZERO);
        }
        if let Some(t) = control_thread {
            let _ = t.join();
        }
        match control.reason.swap(RUN, Ordering::SeqCst) {
            RELOAD => {
                if let Err(e) = result {
                    tracing::warn!(target: daemon::TARGET, "plugins stopped with errors before the reload: {e:#}");
                }
                continue;
            }
            STOP => return result,
            _ => return result.and_then(|()| bail!("the daemon stopped by itself")),
        }
    }
}
