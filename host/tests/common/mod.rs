//! Shared fixtures for the host integration tests: a throwaway sysroot,
//! a recording `systemctl`, tree snapshots, and a pseudo-terminal driver.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The `ze` binary under test.
pub fn ze_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ze"))
}

/// A temporary system root with the files the shadow tools need, and a
/// `systemctl` stand-in on PATH that records its arguments.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub fakebin: tempfile::TempDir,
}

impl Root {
    /// A sysroot where systemd "runs" (`/run/systemd/system` exists).
    pub fn with_systemd() -> Root {
        let root = Root::bare();
        fs::create_dir_all(root.path("/run/systemd/system")).unwrap();
        root
    }

    /// A sysroot without systemd.
    pub fn bare() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        fs::create_dir_all(&etc).unwrap();
        fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
        fs::write(etc.join("group"), "root:x:0:\n").unwrap();
        fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
        fs::write(etc.join("gshadow"), "root:*::\n").unwrap();
        fs::set_permissions(etc.join("shadow"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::create_dir_all(etc.join("systemd/system")).unwrap();
        let fakebin = tempfile::tempdir().unwrap();
        let log = dir.path().join("systemctl.log");
        let script = format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\nexit ${{ZE_TEST_SYSTEMCTL_EXIT:-0}}\n",
            log.display()
        );
        fs::write(fakebin.path().join("systemctl"), script).unwrap();
        fs::set_permissions(
            fakebin.path().join("systemctl"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        Root { dir, fakebin }
    }

    /// The real path of a logical one.
    pub fn path(&self, logical: &str) -> PathBuf {
        self.dir.path().join(logical.trim_start_matches('/'))
    }

    /// `ze args…` (the binary under test) inside this sysroot.
    pub fn ze(&self, args: &[&str]) -> Command {
        self.cmd(&ze_bin(), args)
    }

    /// Any binary (e.g. an installed `ze`) run inside this sysroot.
    pub fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("ZE_SYSROOT", self.dir.path())
            .env_remove("ZE_CONFIG_DIR")
            .env_remove("ZE_BUILD_JSON")
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.fakebin.path().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .stdin(Stdio::null());
        cmd
    }

    /// What the fake systemctl was asked to do, one call per line.
    pub fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Install the binary under test into `prefix` and create a database.
    pub fn installed(&self, prefix: &str) -> PathBuf {
        run_ok(self.ze(&["install", "local", "--prefix", prefix]));
        let bin = self.path(&format!("{prefix}/bin/ze"));
        let mut init = self.cmd(&bin, &["init", "--username", "admin", "--password-stdin"]);
        run_with_stdin(&mut init, b"secret\n", true);
        bin
    }
}

/// Run and expect success; return the output.
pub fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Run and expect failure with exit status 1; return the output.
pub fn run_fails(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{cmd:?}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Run with `input` on stdin; check success or failure as asked.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8], expect_ok: bool) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit without reading its input (an early error):
    // a broken pipe here is not the test's concern.
    if let Err(e) = child.stdin.take().unwrap().write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.success(),
        expect_ok,
        "{cmd:?}: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every entry of a tree with its type, mode, owner and content.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            let head = format!("{:o} {}:{}", meta.mode(), meta.uid(), meta.gid());
            if meta.is_dir() {
                out.insert(rel, format!("dir {head}"));
                walk(base, &path, out);
            } else if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link {head} -> {}", fs::read_link(&path).unwrap().display()),
                );
            } else {
                let content = fs::read(&path).unwrap();
                out.insert(rel, format!("file {head} {content:?}"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// A child process on a pseudo-terminal, driven like a person would.
pub struct Pty {
    master: fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
    child: std::process::Child,
}

impl Pty {
    /// Start `cmd` with its stdin, stdout and stderr on a new pty.
    pub fn spawn(mut cmd: Command) -> Pty {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().unwrap();
        // Drop our copies of the slave (moved into Stdio above) so reads
        // see EOF/EIO when the child exits.
        drop(cmd);
        let master = fs::File::from(master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            seen,
            child,
        }
    }

    /// Everything the child has printed so far (with the terminal's echo).
    pub fn output(&self) -> String {
        text(&self.seen.lock().unwrap())
    }

    /// Wait until the output contains `pattern` (at most 20 s).
    pub fn expect(&self, pattern: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.output().contains(pattern) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {pattern:?}; output so far:\n{}",
            self.output()
        );
    }

    /// Type `keys`.
    pub fn send(&mut self, keys: &[u8]) {
        self.master.write_all(keys).unwrap();
        self.master.flush().unwrap();
    }

    /// Wait for the child to exit (at most 30 s) and return its status code.
    pub fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.output());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("child did not exit; output:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// OpenSSH's client logging in with `password` only (through sshpass),
/// keeping host keys in `known_hosts`, to `port`. `base` runs sshpass:
/// `Command::new("sshpass")`, or a wrapper such as `ip netns exec NS
/// sshpass`. The caller adds the destination and the command.
pub fn ssh_with_password(
    mut base: Command,
    password: &str,
    known_hosts: &Path,
    port: u16,
) -> Command {
    base.args(["-p", password, "ssh"])
        .args([
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args([
            "-o",
            "PreferredAuthentications=password",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(["-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-p", &port.to_string()]);
    base
}

/// Debian's python3, where python3-prometheus-client installs.
pub const PYTHON: &str = "/usr/bin/python3";

/// Whether Prometheus' own text parser is there (python3-prometheus-client).
pub fn have_prometheus_parser() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `text` through `prometheus_client.parser`: family name → `type`,
/// `help` and `samples` (each `[name, labels, value]`); a text the parser
/// refuses fails the test.
pub fn prometheus_families(text: &str) -> serde_json::Value {
    let script = "import sys, json\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  out = {}\n\
                  for fam in text_string_to_metric_families(sys.stdin.read()):\n\
                  \x20   out[fam.name] = {'type': fam.type, 'help': fam.documentation,\n\
                  \x20                    'samples': [[s.name, s.labels, s.value] for s in fam.samples]}\n\
                  print(json.dumps(out))\n";
    let out = run_with_stdin(
        Command::new(PYTHON).args(["-c", script]),
        text.as_bytes(),
        true,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
