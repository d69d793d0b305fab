//! A provisioning network for QEMU machines, made here and removed
//! afterwards: a network namespace with a bridge `br0`, tap devices for
//! the machines, and `ze install remote` serving on the bridge with its
//! log collected (shown live when asked).

use anyhow::{Context, bail, ensure};
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A network namespace with `br0` and `tap0`, removed on drop.
#[derive(Debug)]
pub struct Network {
    /// The namespace's name.
    pub name: String,
}

impl Network {
    /// A namespace named `<prefix>-<pid>` with `br0` and `tap0` on it.
    pub fn new(prefix: &str) -> anyhow::Result<Network> {
        let name = format!("{prefix}-{}", std::process::id());
        let net = Network { name };
        net.run("ip", &["netns", "add", &net.name], false)?;
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "br0", "type", "bridge"],
            &["tuntap", "add", "dev", "tap0", "mode", "tap"],
            &["link", "set", "tap0", "master", "br0"],
            &["link", "set", "tap0", "up"],
            &["link", "set", "br0", "up"],
        ] {
            net.run("ip", args, true)?;
        }
        Ok(net)
    }

    /// Another tap on the bridge, for another machine.
    pub fn add_tap(&self, tap: &str) -> anyhow::Result<()> {
        for args in [
            &["tuntap", "add", "dev", tap, "mode", "tap"][..],
            &["link", "set", tap, "master", "br0"],
            &["link", "set", tap, "up"],
        ] {
            self.run("ip", args, true)?;
        }
        Ok(())
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run `program args` (inside the namespace when `inside`); an error
    /// carries its stderr.
    pub fn run(&self, program: &str, args: &[&str], inside: bool) -> anyhow::Result<()> {
        let mut c = if inside {
            self.command(program)
        } else {
            Command::new(program)
        };
        let out = c
            .args(args)
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        ensure!(
            out.status.success(),
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// Take `port` out of the bridge (`blocked`) or put it back: a
    /// switch port that does not forward yet (STP listening and learning)
    /// drops every frame the machine sends and sends it none, while the
    /// machine's link stays up.
    pub fn block(&self, port: &str, blocked: bool) -> anyhow::Result<()> {
        let how: &[&str] = if blocked {
            &["nomaster"]
        } else {
            &["master", "br0"]
        };
        let mut args = vec!["link", "set", "dev", port];
        args.extend_from_slice(how);
        self.run("ip", &args, true)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).output();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// What `ze install remote` serves.
#[derive(Debug, Clone, Copy)]
pub struct InstallRemote<'a> {
    /// `--image`.
    pub image: &'a Path,
    /// `--kernel`.
    pub kernel: &'a Path,
    /// `--initrd`.
    pub initrd: &'a Path,
    /// `--pxe-dir`.
    pub pxe_dir: &'a Path,
    /// `--ssh-username` and `--ssh-password`.
    pub ssh: (&'a str, &'a str),
    /// `--network`.
    pub network: &'a str,
    /// More arguments.
    pub extra: &'a [&'a str],
}

/// `ze install remote` running on `br0`, its log collected.
#[derive(Debug)]
pub struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl InstallRemote<'_> {
    /// Start `ze` (`ze_bin`) as `ze install remote --interface br0 …`
    /// inside `net`; with `show`, its lines are printed as they come.
    pub fn start(&self, net: &Network, ze_bin: &Path, show: bool) -> anyhow::Result<Server> {
        let mut cmd = net.command(ze_bin.to_str().context("ze path")?);
        cmd.args([
            "install",
            "remote",
            "--interface",
            "br0",
            "--network",
            self.network,
            "--image",
        ])
        .arg(self.image)
        .arg("--kernel")
        .arg(self.kernel)
        .arg("--initrd")
        .arg(self.initrd)
        .arg("--pxe-dir")
        .arg(self.pxe_dir)
        .args(["--ssh-username", self.ssh.0, "--ssh-password", self.ssh.1])
        .args(self.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if show {
            println!(
                "$ ze install remote --interface br0 --network {} --image {} --kernel {} --initrd {} --ssh-username {} --ssh-password '…'{}",
                self.network,
                self.image.display(),
                self.kernel.display(),
                self.initrd.display(),
                self.ssh.0,
                self.extra
                    .iter()
                    .map(|a| format!(" {a}"))
                    .collect::<String>()
            );
        }
        let mut child = cmd.spawn().context("cannot start ze install remote")?;
        let log = collect_output(&mut child, show)?;
        Ok(Server { child, log })
    }
}

/// Collect every line `child` prints on its standard output and error
/// into one text, as the lines come (printed too, marked as the server's,
/// when `show`).
pub fn collect_output(child: &mut Child, show: bool) -> anyhow::Result<Arc<Mutex<String>>> {
    let log = Arc::new(Mutex::new(String::new()));
    for stream in [
        Box::new(child.stdout.take().context("stdout")?) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().context("stderr")?),
    ] {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if show {
                    println!("  \x1b[36mserver |\x1b[0m {line}");
                }
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    Ok(log)
}

impl Server {
    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wait until its log holds `needle`.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the provisioning server did not log {needle:?} within {timeout:?}")
    }

    /// SIGTERM, then wait for it to exit.
    pub fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
    }
}
