//! A command that changes the system first builds a [`Plan`]: the exact
//! list of steps it will take. `--dry-run` prints the plan; a real run
//! prints each step as it performs it. Both share this one code path, so
//! what a dry run shows is what a real run does.

use crate::{fsutil, sysroot::Sysroot, users};
use anyhow::Context;
use std::{
    fs,
    io::{self, Write},
    path::PathBuf,
    process::Command,
};

/// One change to the system. Paths are logical (as on the installed
/// system); the [`Sysroot`] maps them when the step is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create a directory and its missing parents, mode 0755.
    CreateDir(PathBuf),
    /// Copy a file (a real path, e.g. the running binary) to `to`
    /// atomically with `mode`.
    CopyFile {
        /// Real path of the source.
        from: PathBuf,
        /// How to name the source to the user.
        from_label: String,
        /// Logical destination.
        to: PathBuf,
        /// Mode of the new file.
        mode: u32,
    },
    /// Write `content` to `path` atomically with `mode`.
    WriteFile {
        /// Logical destination.
        path: PathBuf,
        /// The new content.
        content: Vec<u8>,
        /// Mode of the new file.
        mode: u32,
    },
    /// Change the owner of `path` to the named user and group, looked up in
    /// the sysroot's `/etc/passwd` and `/etc/group` when the step runs.
    Chown {
        /// Logical path.
        path: PathBuf,
        /// User name.
        user: String,
        /// Group name.
        group: String,
    },
    /// Remove one file.
    RemoveFile(PathBuf),
    /// Remove a directory and everything in it.
    RemoveTree(PathBuf),
    /// Remove a directory if it is empty; leave it otherwise.
    RemoveDirIfEmpty(PathBuf),
    /// Create a system group unless it exists (`groupadd --system`).
    EnsureGroup(String),
    /// Create a system user unless it exists (`useradd --system`), with
    /// the given primary group and home directory, no login shell.
    EnsureUser {
        /// User name.
        name: String,
        /// Primary group (must exist by then).
        group: String,
        /// Home directory (not created).
        home: PathBuf,
    },
    /// Delete a user if it exists (`userdel`).
    DeleteUser(String),
    /// Delete a group if it exists (`groupdel`). `userdel` may already
    /// have removed a user's own group; then there is nothing to do.
    DeleteGroup(String),
    /// Run an external program.
    Run {
        /// Program name, found on `PATH`.
        program: String,
        /// Its arguments.
        args: Vec<String>,
    },
}

impl Step {
    /// A [`Step::Run`] from string slices.
    pub fn run(program: &str, args: &[&str]) -> Step {
        Step::Run {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    /// One line saying what the step does.
    pub fn describe(&self) -> String {
        match self {
            Step::CreateDir(p) => format!("create directory {}", p.display()),
            Step::CopyFile {
                from_label,
                to,
                mode,
                ..
            } => {
                format!("copy {from_label} to {} (mode {mode:04o})", to.display())
            }
            Step::WriteFile {
                path,
                content,
                mode,
            } => {
                format!(
                    "write {} ({} bytes, mode {mode:04o})",
                    path.display(),
                    content.len()
                )
            }
            Step::Chown { path, user, group } => format!("chown {user}:{group} {}", path.display()),
            Step::RemoveFile(p) => format!("remove {}", p.display()),
            Step::RemoveTree(p) => format!("remove directory {} and everything in it", p.display()),
            Step::RemoveDirIfEmpty(p) => format!("remove directory {} if empty", p.display()),
            Step::EnsureGroup(g) => format!("create system group {g} (groupadd --system {g})"),
            Step::EnsureUser { name, group, home } => format!(
                "create system user {name} (useradd --system --gid {group} --home-dir {} --no-create-home --shell {NOLOGIN} {name})",
                home.display()
            ),
            Step::DeleteUser(u) => format!("delete user {u} (userdel {u})"),
            Step::DeleteGroup(g) => format!("delete group {g} (groupdel {g})"),
            Step::Run { program, args } => {
                let mut line = format!("run {program}");
                for a in args {
                    line.push(' ');
                    line.push_str(a);
                }
                line
            }
        }
    }

    /// Perform the step.
    pub fn apply(&self, root: &Sysroot) -> anyhow::Result<()> {
        match self {
            Step::CreateDir(p) => {
                let real = root.path(p);
                fs::create_dir_all(&real)
                    .with_context(|| format!("cannot create {}", p.display()))?;
            }
            Step::CopyFile { from, to, mode, .. } => {
                let real = root.path(to);
                let mut src = fs::File::open(from)
                    .with_context(|| format!("cannot read {}", from.display()))?;
                fsutil::write_atomic_with(&real, *mode, |dst| io::copy(&mut src, dst).map(|_| ()))
                    .with_context(|| format!("cannot write {}", to.display()))?;
            }
            Step::WriteFile {
                path,
                content,
                mode,
            } => {
                fsutil::write_atomic(&root.path(path), content, *mode)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Step::Chown { path, user, group } => {
                let uid = users::uid(root, user)?.with_context(|| {
                    format!(
                        "user {user} does not exist in {}",
                        root.path("/etc/passwd").display()
                    )
                })?;
                let gid = users::gid(root, group)?.with_context(|| {
                    format!(
                        "group {group} does not exist in {}",
                        root.path("/etc/group").display()
                    )
                })?;
                std::os::unix::fs::chown(root.path(path), Some(uid), Some(gid))
                    .with_context(|| format!("cannot chown {}", path.display()))?;
            }
            Step::RemoveFile(p) => {
                fs::remove_file(root.path(p))
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
            Step::RemoveTree(p) => {
                fs::remove_dir_all(root.path(p))
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
            Step::RemoveDirIfEmpty(p) => match fs::remove_dir(root.path(p)) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::DirectoryNotEmpty
                        || e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
            },
            Step::EnsureGroup(g) => {
                if users::gid(root, g)?.is_none() {
                    run("groupadd", &with_prefix(root, &["--system", g]))?;
                }
            }
            Step::EnsureUser { name, group, home } => {
                if users::uid(root, name)?.is_none() {
                    let home = home.to_string_lossy();
                    let args = [
                        "--system",
                        "--gid",
                        group,
                        "--home-dir",
                        &home,
                        "--no-create-home",
                        "--shell",
                        NOLOGIN,
                        "--comment",
                        "ze network OS",
                        name,
                    ];
                    run("useradd", &with_prefix(root, &args))?;
                }
            }
            Step::DeleteUser(u) => {
                if users::uid(root, u)?.is_some() {
                    run("userdel", &with_prefix(root, &[u]))?;
                }
            }
            Step::DeleteGroup(g) => {
                if users::gid(root, g)?.is_some() {
                    run("groupdel", &with_prefix(root, &[g]))?;
                }
            }
            Step::Run { program, args } => run(program, args)?,
        }
        Ok(())
    }
}

/// The login shell of system users: none.
pub const NOLOGIN: &str = "/usr/sbin/nologin";

/// Arguments for the shadow tools, with `--prefix <root>` when the sysroot
/// is not the host, so they edit the sysroot's `/etc/passwd` and `/etc/group`.
fn with_prefix(root: &Sysroot, args: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    if !root.is_host() {
        out.push("--prefix".to_string());
        out.push(root.root().to_string_lossy().into_owned());
    }
    out.extend(args.iter().map(|a| (*a).to_string()));
    out
}

/// Run `program args…` to completion (see [`crate::command::run`]).
pub fn run(program: &str, args: &[String]) -> anyhow::Result<()> {
    crate::command::run(Command::new(program).args(args))?;
    Ok(())
}

/// An ordered list of steps.
#[derive(Debug, Default)]
pub struct Plan {
    steps: Vec<Step>,
}

impl Plan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a step.
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Print the plan, one "would …" line per step.
    pub fn print_dry_run(&self, out: &mut dyn Write) -> io::Result<()> {
        for step in &self.steps {
            writeln!(out, "would {}", step.describe())?;
        }
        Ok(())
    }

    /// Perform every step in order, printing each; stop at the first failure
    /// and say which steps had already been done.
    pub fn apply(&self, root: &Sysroot, out: &mut dyn Write) -> anyhow::Result<()> {
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(out, "{}", step.describe())?;
            if let Err(e) = step.apply(root) {
                if i == 0 {
                    return Err(e.context("nothing was changed"));
                }
                return Err(e.context(format!(
                    "stopped at step {} of {}; the steps before it were done",
                    i + 1,
                    self.steps.len()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_describes_every_step() {
        let mut plan = Plan::new();
        plan.push(Step::CreateDir("/etc/ze".into()));
        plan.push(Step::run("systemctl", &["daemon-reload"]));
        let mut out = Vec::new();
        plan.print_dry_run(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "would create directory /etc/ze\nwould run systemctl daemon-reload\n"
        );
    }

    #[test]
    fn apply_stops_at_the_first_failure_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let root = Sysroot::at(dir.path()).unwrap();
        let mut plan = Plan::new();
        plan.push(Step::CreateDir("/a".into()));
        plan.push(Step::RemoveFile("/missing".into()));
        plan.push(Step::CreateDir("/b".into()));
        let err = plan.apply(&root, &mut Vec::new()).unwrap_err();
        assert!(
            format!("{err:#}").contains("stopped at step 2 of 3"),
            "{err:#}"
        );
        assert!(dir.path().join("a").is_dir());
        assert!(!dir.path().join("b").exists());
    }

    #[test]
    fn failing_programs_report_status_and_stderr() {
        let err = run("sh", &["-c".into(), "echo boom >&2; exit 3".into()]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("exit status: 3") && text.contains("boom"),
            "{text}"
        );
        let err = run("ze-no-such-program", &[]).unwrap_err();
        assert!(err.to_string().contains("not installed"));
    }
}
