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
//! 4. starts the services ([`start_services`]: the place where `ze start`,
//!    bootstrap mode and SSH, will be launched);
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

/// Children init started and watches, by PID.
#[derive(Debug, Default)]
pub struct Supervisor {
    children: BTreeMap<i32, String>,
}

impl Supervisor {
    /// Remember a child started under `name`.
    pub fn adopt(&mut self, pid: i32, name: &str) {
        self.children.insert(pid, name.to_string());
    }

    /// Reap every child that has exited; report the ones we started.
    pub fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => {
                    if let Some(pid) = status.pid()
                        && let Some(name) = self.children.remove(&pid.as_raw())
                    {
                        say(&format!("{name} (pid {pid}) ended: {status:?}"));
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

/// Start the appliance's services. Nothing runs here yet: the runtime
/// issue adds `ze start` (bootstrap mode: DHCP on every ethernet NIC, SSH
/// with the credentials from `/perm/ze/database.zefs`) by spawning it and
/// handing it to `sup.adopt`, which reports its exit; the signal loop
/// already reaps it and stops it on shutdown.
pub fn start_services(_ctx: &Context, _sup: &mut Supervisor) {
    say("no services in this build (bootstrap mode and SSH come with `ze start`)");
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
    let perm = mounts::mount_perm(&ctx, PERM_WAIT);
    for line in crate::cmd::version::text(&ctx).lines() {
        say_plain(line);
    }
    let mut sup = Supervisor::default();
    start_services(&ctx, &mut sup);

    let signals = match signals {
        Ok(s) => s,
        Err(e) => {
            say(&format!("cannot read signals ({e}); reaping children only"));
            loop {
                sup.reap();
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    let rtmin = libc::SIGRTMIN();
    say("ready");
    loop {
        let Some(signo) = next_signal(&signals, None) else {
            continue;
        };
        if signo == libc::SIGCHLD {
            sup.reap();
            continue;
        }
        match action_for(signo, rtmin) {
            Some(action) => shutdown(&ctx, &signals, &mut sup, action, signo, perm.as_deref()),
            None => say(&format!("ignoring signal {}", signal_name(signo))),
        }
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
