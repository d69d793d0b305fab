//! Fixtures for the provisioning-server tests: network namespaces
//! ([`netns`]), the daemon as a child process with its log captured,
//! prerequisites that fail in CI and skip locally, and a tiny initrd whose
//! `/init` prints a marker and powers off. DHCP clients are in [`dhcp`],
//! QEMU guests in [`qemu`], `ze install remote` runs in [`remote`], a
//! site's network with its own DHCP server and relays in [`site`].
#![allow(dead_code)]

pub mod dhcp;
mod netns;
pub mod qemu;
pub mod remote;
mod segment;
pub mod site;
pub use netns::*;
#[allow(unused_imports)]
pub use segment::*;

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// The `ze` binary under test.
pub fn ze_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ze"))
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether we run in CI, where every prerequisite must be present.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Check prerequisites: in CI a missing one fails the test loudly;
/// elsewhere the test is skipped with a message. Returns whether to run.
pub fn require(test: &str, checks: &[(&str, bool)]) -> bool {
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: missing prerequisites: {}", missing.join(", "));
    if in_ci() {
        panic!("{msg} (CI=true: this is a failure, not a skip; `make deps` installs the packages)");
    }
    eprintln!("SKIP {msg}");
    false
}

/// [`require`] root, `ip` and `ss` (iproute2), each `(program, package)`
/// of `tools` on PATH, and the `other` named checks.
pub fn require_tools(test: &str, tools: &[(&str, &str)], other: &[(&str, bool)]) -> bool {
    let mut checks: Vec<(String, bool)> = vec![
        ("root".into(), is_root()),
        ("ip, ss (iproute2)".into(), have("ip") && have("ss")),
    ];
    for (program, package) in tools {
        checks.push((format!("{program} ({package})"), have(program)));
    }
    checks.extend(other.iter().map(|(n, ok)| (n.to_string(), *ok)));
    let refs: Vec<(&str, bool)> = checks.iter().map(|(n, ok)| (n.as_str(), *ok)).collect();
    require(test, &refs)
}

/// [`require_tools`] for `tools` whose Debian package has their name.
pub fn prerequisites(test: &str, tools: &[&str]) -> bool {
    let tools: Vec<(&str, &str)> = tools.iter().map(|t| (*t, *t)).collect();
    require_tools(test, &tools, &[])
}

/// The attacker's `i`-th address in tests of a hostile segment
/// (192.0.2.100 on), beside the real client's.
pub fn attacker(i: usize) -> String {
    format!("192.0.2.{}", 100 + i)
}

/// Whether we are root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Run a command and require success.
pub fn sh(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Output of a command (stdout), success required.
pub fn sh_out(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process whose standard error (and output) lines are collected.
pub struct Logged {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
    pub stdin: Option<std::process::ChildStdin>,
}

impl Logged {
    /// Spawn `cmd`, collecting stdout and stderr.
    pub fn spawn(mut cmd: Command) -> Logged {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if std::env::var_os("ZE_TEST_ECHO").is_some() {
                        eprintln!("| {line}");
                    }
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        Logged { child, log, stdin }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log holds `needle`; panic with the log after `timeout`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.text().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "process exited ({status}) before logging {needle:?}:\n{}",
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("no {needle:?} within {timeout:?}:\n{}", self.text());
    }

    /// Send a signal by pid.
    pub fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// Wait for exit within `timeout`, else kill; returns the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                return s.code();
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        panic!("did not exit within {timeout:?}:\n{}", self.text());
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `ze -` in `ns` with `config` (and a NUL) on stdin, and wait for
/// the daemon to report that it started; it logs at debug level.
pub fn start_daemon(ns: &Netns, config: &str) -> Logged {
    start_daemon_logging(ns, config, "debug")
}

/// [`start_daemon`] with the log level `level`.
pub fn start_daemon_logging(ns: &Netns, config: &str, level: &str) -> Logged {
    let mut cmd = ns.cmd(ze_bin().to_str().unwrap());
    cmd.arg("-").env("ZE_LOG", level);
    let mut d = Logged::spawn(cmd);
    let stdin = d.stdin.as_mut().unwrap();
    stdin.write_all(config.as_bytes()).unwrap();
    stdin.write_all(&[0]).unwrap();
    stdin.flush().unwrap();
    d.wait_for("ze: started", Duration::from_secs(30));
    d
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The marker the tiny `/init` prints on the console.
pub const INIT_MARKER: &str = "ZE-PXE-TEST-INIT-OK";

/// A static x86-64 ELF that writes `ZE-PXE-TEST-INIT-OK\n` to fd 1 and
/// powers the machine off (reboot(2) with LINUX_REBOOT_CMD_POWER_OFF).
pub fn tiny_init_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    let msg = format!("{INIT_MARKER}\n");
    #[rustfmt::skip]
    let mut code: Vec<u8> = vec![
        0xb8, 1, 0, 0, 0,                   // mov eax, 1 (write)
        0xbf, 1, 0, 0, 0,                   // mov edi, 1
        0x48, 0x8d, 0x35, 31, 0, 0, 0,      // lea rsi, [rip + 31] (msg)
        0xba, msg.len() as u8, 0, 0, 0,     // mov edx, len
        0x0f, 0x05,                         // syscall
        0xb8, 169, 0, 0, 0,                 // mov eax, 169 (reboot)
        0xbf, 0xad, 0xde, 0xe1, 0xfe,       // mov edi, 0xfee1dead
        0xbe, 0x69, 0x19, 0x12, 0x28,       // mov esi, 0x28121969
        0xba, 0xdc, 0xfe, 0x21, 0x43,       // mov edx, 0x4321fedc (POWER_OFF)
        0x0f, 0x05,                         // syscall
        0xeb, 0xfe,                         // jmp .
    ];
    assert_eq!(code.len(), 48);
    code.extend_from_slice(msg.as_bytes());
    let total = HEADERS + code.len() as u64;
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    elf.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    elf.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // phnum
    elf.extend_from_slice(&[0; 6]); // shentsize, shnum, shstrndx
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R+X
    elf.extend_from_slice(&0u64.to_le_bytes()); // offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // paddr
    elf.extend_from_slice(&total.to_le_bytes()); // filesz
    elf.extend_from_slice(&total.to_le_bytes()); // memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // align
    assert_eq!(elf.len() as u64, HEADERS);
    elf.extend_from_slice(&code);
    elf
}

/// A newc cpio archive (uncompressed; the kernel detects the format)
/// holding only `/init` = [`tiny_init_elf`].
pub fn tiny_initrd() -> Vec<u8> {
    let mut w = ze::cpio::Writer::new(Vec::new());
    w.file("init", 0o755, &tiny_init_elf()).unwrap();
    w.finish().unwrap()
}

/// The installer kernel for QEMU tests: `ZE_TEST_KERNEL`, else the one
/// `make kernel` builds at `build/kernel/Image`.
pub fn test_kernel() -> PathBuf {
    match std::env::var_os("ZE_TEST_KERNEL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace().join("build/kernel/Image"),
    }
}

/// Write `bytes` to `path`, creating parents.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

/// A PXE (UEFI x64) DHCPDISCOVER from `mac`, broadcast flag set.
pub fn dhcp_discover(mac: [u8; 6], xid: u32) -> ze::wire::dhcp::Repr {
    use ze::wire::dhcp::{self, MessageType, Op, Options, Repr, opt};
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    let mut options = Options::new();
    options.set(opt::MESSAGE_TYPE, [MessageType::Discover.code()]);
    options.set(opt::CLIENT_ARCH, [0, 7]);
    options.set(
        opt::VENDOR_CLASS_ID,
        b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
    );
    Repr {
        op: Op::Request,
        htype: 1,
        hlen: 6,
        hops: 0,
        xid,
        secs: 0,
        flags: dhcp::FLAG_BROADCAST,
        ciaddr: "0.0.0.0".parse().unwrap(),
        yiaddr: "0.0.0.0".parse().unwrap(),
        siaddr: "0.0.0.0".parse().unwrap(),
        giaddr: "0.0.0.0".parse().unwrap(),
        chaddr,
        sname: vec![],
        file: vec![],
        options,
    }
}

/// An appliance's `database.zefs` in `dir`: user `admin` with password
/// `secret`, and `active` as the committed configuration.
pub fn appliance_database(dir: &Path, active: Option<&str>) -> PathBuf {
    use ze::zefs::{UserRecord, Zefs, keys};
    let mut db = Zefs::new();
    db.set_user(
        "admin",
        &UserRecord {
            role: "admin".into(),
            password_hash: ze::credentials::hash_password("secret").unwrap(),
        },
    )
    .unwrap();
    if let Some(text) = active {
        db.insert(keys::ACTIVE_CONFIG, text).unwrap();
    }
    let path = dir.join("database.zefs");
    db.store(&path).unwrap();
    path
}

/// The resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Headless Chromium in `ns` with a fresh profile, `extra` flags, then
/// the URL, its virtual time limited to `budget_ms`; killed when it runs
/// past 120 s. Returns its output (the DOM with `--dump-dom`).
pub fn chromium(ns: &Netns, url: &str, extra: &[&str], budget_ms: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = ns.cmd("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ])
    .arg(format!("--virtual-time-budget={budget_ms}"))
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .env("HOME", profile.path());
    let mut run = Logged::spawn(cmd);
    let code = run.wait_exit(Duration::from_secs(120));
    let text = run.text();
    assert_eq!(code, Some(0), "chromium failed:\n{text}");
    text
}
