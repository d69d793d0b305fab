//! The ze daemon: runs the plugins a brace config names (`ze <config-file>`,
//! `ze -`, and the provisioning servers of `ze install remote`).
//!
//! A config is a list of top-level blocks. `daemon { … }` holds the
//! daemon's own settings; every other block names a plugin kind from the
//! registry ([`crate::plugins::PLUGINS`]) and configures one instance of it:
//!
//! ```text
//! daemon { log info; log dhcpserver debug; drain-timeout 10; }
//! dhcpserver { interface br0; … }
//! tftpserver { root /srv/pxe/tftp; … }
//! ```
//!
//! Life of a plugin: [`PluginKind::configure`] reads its block (errors name
//! line:column and key) → [`Plugin::start`] takes its resources, e.g. binds
//! its sockets, so a busy port fails the whole start before anything serves
//! → [`Service::run`] serves on its own thread until [`Shutdown`] fires,
//! then stops taking new work and lets work in flight finish until the
//! drain deadline. Adding a plugin is one module implementing these two
//! traits and one line in [`crate::plugins::PLUGINS`].

pub mod log;
pub mod shutdown;
pub mod summary;

use crate::config::{
    brace,
    schema::{Block, ConfigError},
};
use anyhow::Context as _;
pub use log::{LogHandle, LogLevel, LogLevels};
pub use shutdown::{Shutdown, Wake};
use std::{
    fmt,
    io::Read,
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// The `tracing` target of the daemon's own lines.
pub const TARGET: &str = "ze";
/// How long work in flight may take after shutdown starts, by default.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
/// The longest drain timeout a config may set.
pub const MAX_DRAIN_SECS: u64 = 3600;
/// The name of the daemon's own settings block.
pub const DAEMON_BLOCK: &str = "daemon";

/// Reads one config block into a plugin ready to start.
pub type Configure = fn(&Block<'_>, &PluginEnv) -> Result<Box<dyn Plugin>, ConfigError>;

/// A kind of plugin the daemon can run.
#[derive(Clone, Copy)]
pub struct PluginKind {
    /// The config block name and log target, e.g. `dhcpserver`.
    pub name: &'static str,
    /// Read one config block into a plugin ready to start.
    pub configure: Configure,
}

impl PartialEq for PluginKind {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for PluginKind {}

impl fmt::Debug for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What the daemon knows beyond the config text, for plugins that need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginEnv {
    /// The config database (`database.zefs`) the daemon runs for, if any:
    /// `sshserver` reads its users and host key there.
    pub database: Option<std::path::PathBuf>,
    /// The config being run and where it came from (`active`, `template`,
    /// `bootstrap`, a file name), for `show configuration`.
    pub running: Option<(String, String)>,
    /// The plugin kinds the daemon was started with (set by
    /// [`Daemon::from_text_with`]), for a plugin that checks configs
    /// itself: the operator CLI's `commit`.
    pub kinds: &'static [PluginKind],
}

/// A configured plugin that has not started yet.
pub trait Plugin: Send + fmt::Debug {
    /// Take the resources the plugin needs (sockets, files). An error here
    /// stops the daemon before any plugin serves.
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>>;
}

/// A started plugin.
pub trait Service: Send {
    /// Serve until `shutdown` fires; then finish work in flight until
    /// `shutdown.deadline()` and return.
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()>;
}

/// The `daemon { … }` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Log levels from the config (the environment is applied on top).
    pub log: LogLevels,
    /// How long work in flight may take after shutdown starts.
    pub drain: Duration,
    /// The control socket of `ze start` (`socket PATH;`); `None` means
    /// `$XDG_RUNTIME_DIR/ze.socket`.
    pub socket: Option<std::path::PathBuf>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            log: LogLevels::default(),
            drain: DEFAULT_DRAIN,
            socket: None,
        }
    }
}

impl DaemonSettings {
    fn read(block: &Block<'_>, kinds: &[PluginKind]) -> Result<DaemonSettings, ConfigError> {
        let mut s = DaemonSettings::default();
        let mut global_seen = None;
        for node in block.all("log") {
            let key = block.child_key("log");
            match node.args.as_slice() {
                [level] => {
                    if let Some(first) = global_seen {
                        return Err(ConfigError::new(
                            node.pos,
                            key,
                            format!("set more than once (first at {first})"),
                        ));
                    }
                    global_seen = Some(node.pos);
                    s.log.default = level
                        .parse()
                        .map_err(|e: String| ConfigError::new(node.pos, key.clone(), e))?;
                }
                [target, level] => {
                    if !kinds.iter().any(|k| k.name == target) {
                        return Err(ConfigError::new(
                            node.pos,
                            key,
                            format!("unknown plugin {target:?} ({})", kind_names(kinds)),
                        ));
                    }
                    let level: LogLevel = level
                        .parse()
                        .map_err(|e: String| ConfigError::new(node.pos, key.clone(), e))?;
                    s.log.targets.insert(target.clone(), level);
                }
                _ => {
                    return Err(ConfigError::new(
                        node.pos,
                        key,
                        "expected `log <level>;` or `log <plugin> <level>;`",
                    ));
                }
            }
        }
        if let Some(secs) = block.number("drain-timeout", 0..=MAX_DRAIN_SECS)? {
            s.drain = Duration::from_secs(secs);
        }
        s.socket = block.abs_path("socket")?;
        Ok(s)
    }
}

fn kind_names(kinds: &[PluginKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
    format!("known: {}", names.join(", "))
}

/// A parsed config: daemon settings and the configured plugins.
#[derive(Debug)]
pub struct Daemon {
    /// The `daemon { … }` settings.
    pub settings: DaemonSettings,
    plugins: Vec<(&'static str, Box<dyn Plugin>)>,
}

impl Daemon {
    /// The log levels to run with: the `daemon { … }` settings, overridden
    /// by the environment (`ze.log`, `ze.log.<plugin>` for the plugin
    /// kinds in `kinds`).
    pub fn log_levels(&self, kinds: &[PluginKind]) -> anyhow::Result<LogLevels> {
        let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        self.settings
            .log
            .clone()
            .with_env(|k| std::env::var(k).ok(), &names)
            .map_err(anyhow::Error::msg)
    }

    /// Parse a config text against the plugin kinds in `kinds`.
    pub fn from_text(text: &str, kinds: &'static [PluginKind]) -> Result<Daemon, ConfigError> {
        Daemon::from_text_with(text, kinds, &PluginEnv::default())
    }

    /// [`Daemon::from_text`] for a daemon that runs with `env`.
    pub fn from_text_with(
        text: &str,
        kinds: &'static [PluginKind],
        env: &PluginEnv,
    ) -> Result<Daemon, ConfigError> {
        let env = &PluginEnv {
            kinds,
            ..env.clone()
        };
        let doc = brace::parse(text)?;
        let mut settings = None;
        let mut plugins = Vec::new();
        for node in &doc.nodes {
            if node.name == DAEMON_BLOCK {
                if settings.is_some() {
                    return Err(ConfigError::new(
                        node.pos,
                        DAEMON_BLOCK,
                        "more than one daemon block",
                    ));
                }
                let block = Block::new(node, DAEMON_BLOCK)?;
                block.own_args(0, "`daemon { … }` without arguments")?;
                let s = DaemonSettings::read(&block, kinds)?;
                block.finish()?;
                settings = Some(s);
                continue;
            }
            let Some(kind) = kinds.iter().find(|k| k.name == node.name) else {
                return Err(ConfigError::new(
                    node.pos,
                    node.name.clone(),
                    format!("unknown plugin ({}, and daemon)", kind_names(kinds)),
                ));
            };
            let block = Block::new(node, kind.name)?;
            block.own_args(0, &format!("`{} {{ … }}` without arguments", kind.name))?;
            let plugin = (kind.configure)(&block, env)?;
            block.finish()?;
            plugins.push((kind.name, plugin));
        }
        if plugins.is_empty() {
            return Err(ConfigError::new(
                brace::Pos { line: 1, col: 1 },
                "",
                format!("the config enables no plugin ({})", kind_names(kinds)),
            ));
        }
        Ok(Daemon {
            settings: settings.unwrap_or_default(),
            plugins,
        })
    }

    /// The plugin names, in config order.
    pub fn plugin_names(&self) -> Vec<&'static str> {
        self.plugins.iter().map(|(n, _)| *n).collect()
    }

    /// Start every plugin, serve until `shutdown` fires (or a plugin
    /// fails), then drain and return. A plugin failure is an error.
    pub fn run(self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let names = self.plugin_names();
        raise_open_file_limit();
        let mut services = Vec::with_capacity(self.plugins.len());
        for (name, plugin) in self.plugins {
            let service = plugin
                .start()
                .with_context(|| format!("{name} did not start"))?;
            services.push((name, service));
        }
        tracing::info!(target: TARGET, plugins = names.join(","), "started");

        let (done_tx, done_rx) = mpsc::channel::<(&'static str, anyhow::Result<()>)>();
        let mut running = 0usize;
        for (name, service) in services {
            let tx = done_tx.clone();
            let stop = shutdown.clone();
            thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let result = service.run(&stop);
                    let _ = tx.send((name, result));
                })
                .with_context(|| format!("cannot start a thread for {name}"))?;
            running += 1;
        }
        drop(done_tx);

        let mut failed: Vec<String> = Vec::new();
        while running > 0 {
            let timeout = match shutdown.deadline() {
                // Threads watch the deadline themselves; allow a moment for
                // them to notice and return.
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .saturating_add(Duration::from_millis(500)),
                None => Duration::from_secs(3600),
            };
            match done_rx.recv_timeout(timeout) {
                Ok((name, result)) => {
                    running -= 1;
                    if let Err(e) = result {
                        tracing::error!(target: TARGET, plugin = name, "stopped: {e:#}");
                        failed.push(format!("{name}: {e:#}"));
                    } else if !shutdown.is_triggered() {
                        tracing::error!(target: TARGET, plugin = name, "stopped unexpectedly");
                        failed.push(format!("{name} stopped unexpectedly"));
                    }
                    if !shutdown.is_triggered() {
                        shutdown.trigger(self.settings.drain);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if shutdown.drain_expired() {
                        tracing::warn!(
                            target: TARGET,
                            plugins = running,
                            "drain timeout: stopping with work still in flight"
                        );
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        tracing::info!(target: TARGET, "stopped");
        if failed.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failed.join("; "))
        }
    }
}

/// The servers hold a descriptor or two per connection and transfer (a
/// few hundred at once), more than the usual soft limit of 1024 allows:
/// raise the soft limit to the hard one.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current.is_some() && current < maximum.or(Some(u64::MAX)) {
        let want = Rlimit {
            current: maximum,
            maximum,
        };
        match setrlimit(Resource::Nofile, want) {
            Ok(()) => {
                tracing::debug!(target: TARGET, from = current, to = maximum, "raised the open-file limit")
            }
            Err(e) => tracing::warn!(target: TARGET, "cannot raise the open-file limit: {e}"),
        }
    }
}

/// How many SIGHUPs this process has had: a plugin that rereads files on
/// SIGHUP (the machine records) compares it with the count it last saw.
static RELOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The number of reloads asked for so far (SIGHUP).
pub fn reload_generation() -> u64 {
    RELOADS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Ask the plugins to reread what they reread on SIGHUP.
pub fn request_reload() {
    RELOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Start shutdown on SIGINT and SIGTERM, a second one cutting the drain
/// short; SIGHUP asks for a reload ([`reload_generation`]).
pub fn shutdown_on_signals(shutdown: &Shutdown, drain: Duration) -> anyhow::Result<()> {
    use signal_hook::{
        consts::{SIGHUP, SIGINT, SIGTERM},
        iterator::Signals,
    };
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install signal handlers")?;
    let stop = shutdown.clone();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = match sig {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    _ => {
                        tracing::info!(target: TARGET, signal = "SIGHUP", "reloading: the machine records are read again");
                        request_reload();
                        continue;
                    }
                };
                if stop.is_triggered() {
                    tracing::info!(target: TARGET, signal = name, "second signal: stopping now");
                    stop.trigger(Duration::ZERO);
                } else {
                    tracing::info!(
                        target: TARGET,
                        signal = name,
                        drain_secs = drain.as_secs(),
                        "shutting down: closing listeners, draining transfers"
                    );
                    stop.trigger(drain);
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// Start shutdown when `input` reaches end of file (`ze -`: the parent
/// closed our standard input).
pub fn shutdown_on_eof(
    shutdown: &Shutdown,
    drain: Duration,
    mut input: impl Read + Send + 'static,
) -> anyhow::Result<()> {
    let stop = shutdown.clone();
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if !stop.is_triggered() {
                tracing::info!(
                    target: TARGET,
                    drain_secs = drain.as_secs(),
                    "standard input closed: shutting down"
                );
                stop.trigger(drain);
            }
        })
        .context("cannot start the stdin thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    #[derive(Debug)]
    struct Probe {
        fail_start: bool,
        started: Arc<AtomicUsize>,
    }

    struct ProbeService(Arc<AtomicUsize>);

    impl Plugin for Probe {
        fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
            anyhow::ensure!(!self.fail_start, "port busy");
            self.started.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(ProbeService(self.started)))
        }
    }

    impl Service for ProbeService {
        fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
            while !shutdown.sleep(Duration::from_secs(5)) {}
            self.0.fetch_add(100, Ordering::SeqCst);
            Ok(())
        }
    }

    static STARTED: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();

    fn probe(block: &Block<'_>, _env: &PluginEnv) -> Result<Box<dyn Plugin>, ConfigError> {
        let fail_start = block.str("fail")?.is_some();
        Ok(Box::new(Probe {
            fail_start,
            started: STARTED.get_or_init(Default::default).clone(),
        }))
    }

    const KINDS: &[PluginKind] = &[PluginKind {
        name: "probe",
        configure: probe,
    }];

    #[test]
    fn r14_config_errors_name_line_column_and_key() {
        for (text, want) in [
            ("probe { x 1; }", "1:9: probe.x: unknown setting"),
            (
                "\n\nnope { }",
                "3:1: nope: unknown plugin (known: probe, and daemon)",
            ),
            ("probe;", "1:1: probe: expected a block: `{ … }`"),
            (
                "daemon { log loud; }\nprobe { }",
                "1:10: daemon.log: \"loud\" is not a log level (off, error, warn, info, debug or trace)",
            ),
            (
                "daemon { log other debug; }\nprobe { }",
                "1:10: daemon.log: unknown plugin \"other\" (known: probe)",
            ),
            (
                "daemon { drain-timeout 99999; }\nprobe { }",
                "1:10: daemon.drain-timeout: expected a number from 0 to 3600, got 99999",
            ),
            (
                "daemon { }\ndaemon { }\nprobe { }",
                "2:1: daemon: more than one daemon block",
            ),
            (
                "probe {",
                "1:8: block 'probe' opened at 1:1 is not closed: add '}'",
            ),
            ("", "1:1: the config enables no plugin (known: probe)"),
        ] {
            let err = Daemon::from_text(text, KINDS).unwrap_err();
            assert_eq!(err.to_string(), want, "{text:?}");
        }
        let d = Daemon::from_text(
            "daemon { log warn; log probe debug; drain-timeout 3; }\nprobe { }\nprobe { }",
            KINDS,
        )
        .unwrap();
        assert_eq!(d.plugin_names(), ["probe", "probe"]);
        assert_eq!(d.settings.drain, Duration::from_secs(3));
        assert_eq!(d.settings.log.default, LogLevel::Warn);
        assert_eq!(d.settings.log.targets["probe"], LogLevel::Debug);
    }

    #[test]
    fn r17_runs_until_shutdown_and_a_failed_start_stops_everything() {
        let counter = STARTED.get_or_init(Default::default).clone();
        let before = counter.load(Ordering::SeqCst);
        let d = Daemon::from_text("probe { }\nprobe { }", KINDS).unwrap();
        let shutdown = Shutdown::new().unwrap();
        let stop = shutdown.clone();
        let t = thread::spawn(move || d.run(&stop));
        thread::sleep(Duration::from_millis(100));
        shutdown.trigger(Duration::from_secs(1));
        t.join().unwrap().unwrap();
        let after = counter.load(Ordering::SeqCst);
        assert_eq!(after - before, 202, "both started, both drained");

        let d = Daemon::from_text("probe { }\nprobe { fail yes; }", KINDS).unwrap();
        let err = d.run(&Shutdown::new().unwrap()).unwrap_err();
        assert_eq!(format!("{err:#}"), "probe did not start: port busy");
    }
}
