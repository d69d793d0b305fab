//! ze as PID 1 on the appliance (spec: Confirming Which Image Is
//! Installed; checklist A9).
//!
//! The kernel runs `/sbin/init` (a link to `/usr/bin/ze`) from the
//! read-only squashfs root. ze then:
//!
//! 1. mounts `/proc`, `/sys`, `/dev` (devtmpfs, unless the kernel already
//!    did), `/run` and `/tmp` (tmpfs);
//! 2. finds the partition named `perm` (`PARTNAME=perm`), preferring the
//!    disk the root is on, and mounts it (ext4) at `/perm`;
//! 3. prints the `ze version` lines, `image:` and `appliance:` included,
//!    from `/perm/ze/build.json`;
//! 4. starts the services ([`start_services`]): `ze start` over
//!    `/perm/ze/database.zefs` (bootstrap mode and SSH, or the committed
//!    config), restarted with a backoff whenever it ends;
//! 5. runs as init for good: reaps every child, and shuts down on the usual
//!    signals ([`action_for`]): it asks every process to stop (SIGTERM,
//!    then SIGKILL after [`TERM_GRACE`]), unmounts `/perm`, syncs, and
//!    reboots, halts or powers off.
//!
//! PID 1 must never exit (the kernel would panic), so no error here ends
//! the process: a failed step is reported on the console and init goes on.
//! Every path goes through the [`Context`]'s sysroot, so the tests run
//! this very code as PID 1 of a PID namespace against a scratch root.

pub mod mounts;

use crate::context::Context;
use nix::{
    errno::Errno,
    libc,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{SigSet, Signal, kill},
        signalfd::{SfdFlags, SignalFd},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};
use std::{
    collections::BTreeMap,
    io::Write,
    os::fd::AsFd,
    path::Path,
    time::{Duration, Instant},
};

/// Where the image keeps the binary (`/sbin/init` links to it).
pub const INIT_BINARY: &str = "/usr/bin/ze";
/// How long processes get to exit after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long to wait for the `/perm` device node to appear.
pub const PERM_WAIT: Duration = Duration::from_secs(5);

/// What a shutdown ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Restart the machine.
    Reboot,
    /// Stop the CPU, leave the power on.
    Halt,
    /// Switch the machine off.
    PowerOff,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Reboot => "rebooting",
            Action::Halt => "halting",
            Action::PowerOff => "powering off",
        }
    }
}

/// Whether this invocation is init: the kernel ran us as `…/init`, or we
/// are PID 1 and were given no arguments. (A container that runs
/// `ze version` as its PID 1 still gets the command line tool.)
pub fn is_init(argv: &[String]) -> bool {
    let called_init = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "init");
    called_init || (rustix::process::getpid().is_init() && argv.len() <= 1)
}

/// The shutdown a signal asks for, after the conventions of busybox init
/// (SIGTERM reboot, SIGUSR1 halt, SIGUSR2 power off), sysvinit (SIGINT
/// from Ctrl-Alt-Del reboots, SIGPWR powers off) and systemd
/// (SIGRTMIN+3 halt, +4 power off, +5 reboot).
pub fn action_for(signo: i32, rtmin: i32) -> Option<Action> {
    match signo {
        libc::SIGTERM | libc::SIGINT => Some(Action::Reboot),
        libc::SIGUSR1 => Some(Action::Halt),
        libc::SIGUSR2 | libc::SIGPWR => Some(Action::PowerOff),
        s if s == rtmin + 3 => Some(Action::Halt),
        s if s == rtmin + 4 => Some(Action::PowerOff),
        s if s == rtmin + 5 => Some(Action::Reboot),
        _ => None,
    }
}

/// A line on the console. Writing may fail (no console); init goes on.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ze: init: {line}");
    let _ = out.flush();
}

/// How soon a service that stopped is started again: 1 s, doubling with
/// each quick failure, up to [`MAX_RESTART_DELAY`].
pub const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
/// The longest wait before restarting a service.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);
/// A service that ran this long is considered healthy: its next restart
/// starts the backoff afresh.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// A long-running program init keeps alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Name for the console.
    pub name: String,
    /// The program.
    pub program: std::path::PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

#[derive(Debug)]
struct Managed {
    spec: ServiceSpec,
    pid: Option<i32>,
    started: Instant,
    failures: u32,
    next_start: Option<Instant>,
}

/// Children init started and watches, by PID, and the services it keeps
/// running.
#[derive(Debug, Default)]
pub struct Supervisor {
    children: BTreeMap<i32, String>,
    services: Vec<Managed>,
    stopping: bool,
}

impl Supervisor {
    /// Remember a child started under `name`.
    pub fn adopt(&mut self, pid: i32, name: &str) {
        self.children.insert(pid, name.to_string());
    }

    /// Keep `spec` running: start it now, and again whenever it ends.
    pub fn keep_running(&mut self, spec: ServiceSpec) {
        self.services.push(Managed {
            spec,
            pid: None,
            started: Instant::now(),
            failures: 0,
            next_start: Some(Instant::now()),
        });
        self.start_due(Instant::now());
    }

    /// Stop restarting services (shutdown has begun).
    pub fn stop_restarting(&mut self) {
        self.stopping = true;
    }

    /// The delay before restart number `failures` (1-based).
    pub fn restart_delay(failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(8);
        FIRST_RESTART_DELAY
            .saturating_mul(1 << shift)
            .min(MAX_RESTART_DELAY)
    }

    /// When the next service restart is due.
    pub fn next_due(&self) -> Option<Instant> {
        if self.stopping {
            return None;
        }
        self.services.iter().filter_map(|m| m.next_start).min()
    }

    /// Start every service whose time has come.
    pub fn start_due(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        for m in &mut self.services {
            if m.pid.is_some() || m.next_start.is_none_or(|t| t > now) {
                continue;
            }
            m.next_start = None;
            let mut cmd = std::process::Command::new(&m.spec.program);
            cmd.args(&m.spec.args);
            for (k, v) in &m.spec.env {
                cmd.env(k, v);
            }
            match cmd.spawn() {
                Ok(child) => {
                    let pid = child.id() as i32;
                    // Reaped by `reap`, not by the Child handle.
                    std::mem::forget(child);
                    say(&format!("started {} (pid {pid})", m.spec.name));
                    m.pid = Some(pid);
                    m.started = now;
                    self.children.insert(pid, m.spec.name.clone());
                }
                Err(e) => {
                    m.failures += 1;
                    let delay = Self::restart_delay(m.failures);
                    say(&format!(
                        "cannot start {}: {e}; retrying in {}s",
                        m.spec.name,
                        delay.as_secs()
                    ));
                    m.next_start = Some(now + delay);
                }
            }
        }
    }

    /// Reap every child that has exited; report the ones we started and
    /// schedule the restart of services.
    pub fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    let Some(pid) = status.pid().map(|p| p.as_raw()) else {
                        continue;
                    };
                    let Some(name) = self.children.remove(&pid) else {
                        continue;
                    };
                    say(&format!("{name} (pid {pid}) ended: {status:?}"));
                    let now = Instant::now();
                    let stopping = self.stopping;
                    if let Some(m) = self.services.iter_mut().find(|m| m.pid == Some(pid)) {
                        m.pid = None;
                        if stopping {
                            continue;
                        }
                        if now.saturating_duration_since(m.started) >= HEALTHY_AFTER {
                            m.failures = 0;
                        }
                        m.failures += 1;
                        let delay = Self::restart_delay(m.failures);
                        say(&format!(
                            "restarting {} in {}s",
                            m.spec.name,
                            delay.as_secs()
                        ));
                        m.next_start = Some(now + delay);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    say(&format!("waitpid failed: {e}"));
                    return;
                }
            }
        }
    }
}

/// The appliance's service: `ze start` over the database on `/perm`
/// (bootstrap mode, SSH, or the committed config). Without `/perm` there
/// is no database, and ze start would only fail: it is not started.
pub fn start_services(ctx: &Context, sup: &mut Supervisor, perm: Option<&Path>) {
    let Some(perm) = perm else {
        say("no /perm: not starting `ze start` (the appliance has no database)");
        return;
    };
    let config_dir = perm.join("ze");
    let exe = std::env::current_exe().unwrap_or_else(|_| ctx.exe.clone());
    sup.keep_running(ServiceSpec {
        name: "ze start".into(),
        program: exe,
        args: vec!["start".into()],
        env: vec![
            // Logical: ze start maps it through the same sysroot.
            ("ZE_CONFIG_DIR".into(), config_dir.display().to_string()),
            (
                "XDG_RUNTIME_DIR".into(),
                ctx.real("/run/ze").display().to_string(),
            ),
        ],
    });
}

/// Run as init. Never returns.
pub fn run() -> ! {
    // The sysroot is known now; the running binary's path needs /proc,
    // so it is looked up again once /proc is mounted.
    let sysroot = crate::sysroot::Sysroot::from_env().unwrap_or_else(|e| {
        say(&format!("{e:#}; using /"));
        crate::sysroot::Sysroot::host()
    });
    let mut ctx = Context {
        sysroot,
        exe: INIT_BINARY.into(),
        exe_logical: INIT_BINARY.into(),
    };
    // Signals first: from here on nothing is lost while we set up.
    let all = SigSet::all();
    if let Err(e) = all.thread_block() {
        say(&format!("cannot block signals: {e}"));
    }
    let signals = SignalFd::with_flags(&all, SfdFlags::SFD_CLOEXEC);
    // Ctrl-Alt-Del sends SIGINT to init instead of rebooting at once.
    let _ = rustix::system::reboot(rustix::system::RebootCommand::CadOff);

    say(&format!("ze {} starting as PID 1", crate::build::VERSION));
    mounts::early(&ctx);
    if let Ok(c) = Context::from_env() {
        ctx = c;
    }
    loopback_up();
    let perm = mounts::mount_perm(&ctx, PERM_WAIT);
    for line in crate::version::text(&ctx).lines() {
        say_plain(line);
    }
    let mut sup = Supervisor::default();
    start_services(&ctx, &mut sup, perm.as_deref());

    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            say(&format!("cannot read signals ({e}); reaping children only"));
            loop {
                sup.reap();
                sup.start_due(Instant::now());
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let rtmin = libc::SIGRTMIN();
    say("ready");
    loop {
        let wait = sup
            .next_due()
            .map(|t| t.saturating_duration_since(Instant::now()));
        let signal = next_signal(&signals, wait);
        sup.start_due(Instant::now());
        let Some(signo) = signal else {
            continue;
        };
        if signo == libc::SIGCHLD {
            sup.reap();
            sup.start_due(Instant::now());
            continue;
        }
        match action_for(signo, rtmin) {
            Some(action) => shutdown(&ctx, &signals, &mut sup, action, signo, perm.as_deref()),
            None => say(&format!("ignoring signal {}", signal_name(signo))),
        }
    }
}

/// Bring `lo` up: services listen on and talk to 127.0.0.1.
fn loopback_up() {
    use ze_hal::os::Os;
    let mut os = ze_hal::linux::LinuxOs::new();
    let mut lo = None;
    if let Err(e) = os.links(&mut |l| {
        if l.loopback {
            lo = Some((l.index, l.up));
        }
    }) {
        say(&format!("cannot list interfaces: {e}"));
        return;
    }
    match lo {
        Some((_, true)) => {}
        Some((index, false)) => match os.link_up(index) {
            Ok(()) => say("loopback lo up"),
            Err(e) => say(&format!("cannot set lo up: {e}")),
        },
        None => say("no loopback interface"),
    }
}

/// A version line as `ze version` prints it, without the init prefix.
fn say_plain(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn signal_name(signo: i32) -> String {
    match Signal::try_from(signo) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("SIGRTMIN+{}", signo - libc::SIGRTMIN()),
    }
}

/// Wait for the next signal, at most `timeout`.
fn next_signal(signals: &SignalFd, timeout: Option<Duration>) -> Option<i32> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
    };
    let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(n) if n > 0 => {}
        _ => return None,
    }
    match signals.read_signal() {
        Ok(Some(info)) => Some(info.ssi_signo as i32),
        _ => None,
    }
}

/// Stop everything and end with `action`.
fn shutdown(
    ctx: &Context,
    signals: &SignalFd,
    sup: &mut Supervisor,
    action: Action,
    signo: i32,
    perm: Option<&Path>,
) -> ! {
    say(&format!(
        "{} ({} received)",
        action.verb(),
        signal_name(signo)
    ));
    sup.stop_restarting();
    let all = Pid::from_raw(-1);
    let _ = kill(all, Signal::SIGTERM);
    let deadline = Instant::now() + TERM_GRACE;
    loop {
        sup.reap();
        if matches!(
            waitpid(None, Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD)
        ) {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            say("processes still running after SIGTERM; sending SIGKILL");
            let _ = kill(all, Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(100));
            sup.reap();
            break;
        }
        // Any signal (SIGCHLD above all) wakes us to reap again.
        let _ = next_signal(signals, Some(left.min(Duration::from_millis(200))));
    }
    rustix::fs::sync();
    if let Some(path) = perm {
        mounts::unmount_perm(ctx, path);
    }
    rustix::fs::sync();
    let cmd = match action {
        Action::Reboot => rustix::system::RebootCommand::Restart,
        Action::Halt => rustix::system::RebootCommand::Halt,
        Action::PowerOff => rustix::system::RebootCommand::PowerOff,
    };
    if let Err(e) = rustix::system::reboot(cmd) {
        say(&format!("{} failed: {e}", action.verb()));
    }
    // Still here: the kernel refused. Keep reaping; never exit.
    loop {
        let _ = next_signal(signals, Some(Duration::from_secs(60)));
        sup.reap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_the_usual_actions() {
        let rtmin = 34;
        assert_eq!(action_for(libc::SIGTERM, rtmin), Some(Action::Reboot));
        assert_eq!(action_for(libc::SIGINT, rtmin), Some(Action::Reboot));
        assert_eq!(action_for(libc::SIGUSR1, rtmin), Some(Action::Halt));
        assert_eq!(action_for(libc::SIGUSR2, rtmin), Some(Action::PowerOff));
        assert_eq!(action_for(libc::SIGPWR, rtmin), Some(Action::PowerOff));
        assert_eq!(action_for(rtmin + 3, rtmin), Some(Action::Halt));
        assert_eq!(action_for(rtmin + 4, rtmin), Some(Action::PowerOff));
        assert_eq!(action_for(rtmin + 5, rtmin), Some(Action::Reboot));
        for other in [
            libc::SIGHUP,
            libc::SIGCHLD,
            libc::SIGPIPE,
            libc::SIGQUIT,
            rtmin,
        ] {
            assert_eq!(action_for(other, rtmin), None, "{other}");
        }
    }

    #[test]
    fn init_is_recognised_by_name_not_by_accident() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_init(&args(&["/sbin/init"])));
        assert!(is_init(&args(&["init", "single"])));
        assert!(!is_init(&args(&["ze", "version"])));
        assert!(
            !is_init(&args(&["/usr/bin/ze"])),
            "the test runner is not PID 1"
        );
        assert!(!is_init(&args(&["/sbin/initialize"])));
    }
}
