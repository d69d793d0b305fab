//! The last step of the end-to-end tests (spec "End-to-End QEMU
//! Verification"): log in over SSH to a freshly installed appliance,
//! through a QEMU host forward, with OpenSSH's own client, and run a
//! command in ze's operator CLI. That login is the regression test for
//! loading credentials from the installed `database.zefs`.

use anyhow::{Context, bail};
use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

/// Where the appliance's SSH server is reached, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// `127.0.0.1` through a QEMU host forward, or the appliance's own
    /// address.
    pub host: String,
    pub port: u16,
    /// A network namespace to run the client in (`ip netns exec`).
    pub netns: Option<String>,
}

impl Target {
    /// A QEMU host forward to the guest's port 22.
    pub fn forward(port: u16) -> Target {
        Target {
            host: "127.0.0.1".into(),
            port,
            netns: None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One `ssh user@host -p port command` with a password, through OpenSSH's
/// own client (sshpass feeds the password; no key is offered and no host
/// key is kept).
pub fn ssh_once(
    target: &Target,
    user: &str,
    password: &str,
    command: &str,
) -> anyhow::Result<Output> {
    let mut cmd = match &target.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sshpass"]);
            c
        }
        None => Command::new("sshpass"),
    };
    cmd.args(["-p", password, "ssh"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password",
        ])
        .args([
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=20",
            "-o",
            "LogLevel=ERROR",
        ])
        .args(["-p", &target.port.to_string()])
        .arg(format!("{user}@{}", target.host))
        .arg(command)
        .output()
        .context(
            "sshpass and ssh are needed: apt-get install sshpass openssh-client (or `make deps`)",
        )
}

/// Log in and run `command`, retrying while the appliance's SSH server is
/// not up yet (connection refused or reset), for at most `timeout`. A
/// refused password is an error at once.
pub fn ssh_command(
    target: &Target,
    user: &str,
    password: &str,
    command: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let start = Instant::now();
    loop {
        let out = ssh_once(target, user, password, command)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        if stderr.contains("Permission denied") {
            bail!(
                "ssh {user}@{target}: the password was refused: {}",
                stderr.trim()
            );
        }
        if start.elapsed() > timeout {
            bail!(
                "ssh {user}@{target}: no login within {timeout:?}: {}",
                stderr.trim()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The checks every login test makes: the right password runs `show
/// version`, whose `image:` line names `image_line`; a wrong password and
/// an unknown user are refused. Returns the `show version` output.
pub fn login_and_show_version(
    target: &Target,
    user: &str,
    password: &str,
    image_line: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let shown = ssh_command(target, user, password, "show version", timeout)?;
    if !shown.lines().any(|l| l.starts_with(image_line)) {
        bail!("`show version` over SSH lacks {image_line:?}:\n{shown}");
    }
    for (u, p) in [(user, "not-the-password"), ("nobody", password)] {
        let out = ssh_once(target, u, p, "show version")?;
        if out.status.success() {
            bail!("ssh as {u} with a wrong password got in");
        }
    }
    Ok(shown)
}
