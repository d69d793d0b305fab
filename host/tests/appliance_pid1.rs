//! ze as PID 1 (checklist A9), run for real as the init of a new PID and
//! mount namespace (`unshare --pid --fork --mount`) against a scratch root
//! (`ZE_SYSROOT`): it mounts proc, devtmpfs, tmpfs and an ext4 `/perm`,
//! prints the version lines from `/perm/ze/build.json`, reaps orphans, and
//! on a shutdown signal stops every process, unmounts `/perm` and calls
//! reboot(2), which in a PID namespace ends the namespace's init with
//! SIGHUP (restart) or SIGINT (power off, halt).
//!
//! The machines these tests run on boot kernels without GPT support
//! (`CONFIG_EFI_PARTITION` is off), so the kernel gives a loop device no
//! `PARTNAME`. The test therefore binds a small stand-in for
//! `/sys/class/block` over the root's `/sys` naming a loop device (set to
//! the `/perm` partition's offset and size) `perm`; the device node and
//! the ext4 mount are real. The QEMU test (tests/appliance_qemu.rs) covers
//! the real kernel's `PARTNAME`. Needs root, util-linux and e2fsprogs.

mod common;

use common::*;
use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::{fs::symlink, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use ze::appliance::{
    Arch,
    disk::{DiskLayout, Identities, min_image_bytes},
    perm,
};

const IMAGE: &str = "ze-20260617-160000.img";

/// A loop device over the `/perm` partition of a scratch image.
struct PermLoop {
    dev: String,
}

impl Drop for PermLoop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// ze running as init inside new namespaces, with its console captured.
struct Init {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Init {
    fn drop(&mut self) {
        // Killing the namespace's init kills everything in it.
        if let Some(pid) = self.init_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Init {
    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn expect(&self, pattern: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.output().contains(pattern) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {pattern:?} from init; console:\n{}", self.output());
    }

    /// The host PID of ze (the child of `unshare`).
    fn init_pid(&self) -> Option<u32> {
        let me = self.child.id();
        fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Host PIDs of init's children.
    /// Init's children, but for the `ze start` service it keeps running.
    fn children(&self) -> Vec<u32> {
        let Some(pid) = self.init_pid() else {
            return Vec::new();
        };
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|child| {
                let cmdline = fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
                !cmdline.split(|b| *b == 0).any(|arg| arg == b"start")
            })
            .collect()
    }

    fn signal(&self, sig: &str) {
        let pid = self.init_pid().expect("init is running");
        let st = Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Run `script` with sh inside init's namespaces; what it leaves
    /// behind is reparented to init.
    fn enter(&self, script: &str) {
        let pid = self.init_pid().unwrap().to_string();
        let st = Command::new("nsenter")
            .args([
                "--target", &pid, "--pid", "--mount", "--", "sh", "-c", script,
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "nsenter {script}");
    }

    fn wait(mut self, within: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "init did not end; console:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Scratch {
    tmp: tempfile::TempDir,
    _loop: PermLoop,
    loop_name: String,
}

impl Scratch {
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// An image whose `/perm` holds a baked manifest and a database, a
    /// loop device on that partition, a root with the mount points and
    /// `/sbin/init` → the ze under test, and a stand-in sysfs.
    fn new(appliance: &str) -> Scratch {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join(IMAGE);
        let layout = DiskLayout::plan(
            min_image_bytes(),
            Arch::host(),
            Identities::random().unwrap(),
        )
        .unwrap();
        let file = fs::File::create(&image).unwrap();
        file.set_len(layout.size).unwrap();
        layout.table.write_to(&mut &file).unwrap();
        drop(file);
        let stage = tmp.path().join("stage");
        fs::create_dir(&stage).unwrap();
        let manifest = format!(
            r#"{{"image":"{IMAGE}","built":"20260617-160000","appliance":"{appliance}","ze-version":"0.1.0","arch":"amd64"}}"#
        );
        perm::stage(
            &stage,
            &perm::PermFiles {
                zefs: &ze::zefs::Zefs::new().to_bytes(),
                manifest: manifest.as_bytes(),
            },
        )
        .unwrap();
        let p = layout.perm();
        perm::mkfs(&image, p, &stage, p.guid, tmp.path()).unwrap();

        let out = Command::new("losetup")
            .args([
                "--find",
                "--show",
                "--offset",
                &p.offset().to_string(),
                "--sizelimit",
                &p.size().to_string(),
            ])
            .arg(&image)
            .output()
            .expect("losetup (util-linux) is needed; this test runs as root");
        assert!(out.status.success(), "losetup: {}", text(&out.stderr));
        let dev = text(&out.stdout).trim().to_string();
        let loop_name = dev.trim_start_matches("/dev/").to_string();
        let guard = PermLoop { dev: dev.clone() };

        let root = tmp.path().join("root");
        for d in ["proc", "sys", "dev", "run", "tmp", "perm", "sbin"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        symlink(ze_bin(), root.join("sbin/init")).unwrap();
        let fake = tmp.path().join("sys/class/block").join(&loop_name);
        fs::create_dir_all(&fake).unwrap();
        let rdev = fs::read_to_string(format!("/sys/class/block/{loop_name}/dev")).unwrap();
        fs::write(fake.join("dev"), rdev).unwrap();
        fs::write(fake.join("partition"), "4\n").unwrap();
        fs::write(
            fake.join("uevent"),
            format!("DEVNAME={loop_name}\nDEVTYPE=partition\nPARTN=4\nPARTNAME=perm\n"),
        )
        .unwrap();
        Scratch {
            tmp,
            _loop: guard,
            loop_name,
        }
    }

    fn start(&self) -> Init {
        let script =
            r#"mount --bind "$FAKE_SYS" "$ZE_SYSROOT/sys" && exec "$ZE_SYSROOT/sbin/init""#;
        let mut child = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                // Its own network namespace (only `lo`): the `ze start`
                // that init launches must not touch the host's network.
                "--net",
                "--propagation",
                "private",
                "--",
            ])
            .args(["sh", "-c", script])
            .env("ZE_SYSROOT", self.root())
            .env("FAKE_SYS", self.tmp.path().join("sys"))
            .env_remove("ZE_BUILD_JSON")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) is needed");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        Init { child, lines }
    }
}

fn mounted(path: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok()
}

#[test]
fn init_keeps_ze_start_running_and_restarts_it_with_a_backoff() {
    let scratch = Scratch::new("svc");
    let init = scratch.start();
    init.expect("ze: init: ready", Duration::from_secs(20));
    init.expect("ze: init: started ze start (pid", Duration::from_secs(10));
    // The scratch database has no config, and init's network namespace
    // has only `lo`: bootstrap mode refuses, clearly, and init restarts it.
    init.expect(
        "bootstrap mode needs an ethernet interface",
        Duration::from_secs(10),
    );
    init.expect(
        "ze: init: restarting ze start in 1s",
        Duration::from_secs(10),
    );
    init.expect(
        "ze: init: restarting ze start in 2s",
        Duration::from_secs(10),
    );
    let console = init.output();
    assert!(
        console.matches("ze: init: started ze start").count() >= 2,
        "{console}"
    );
}

#[test]
fn a9_init_mounts_perm_prints_the_version_reaps_orphans_and_reboots_on_sigterm() {
    let scratch = Scratch::new("nsroot");
    let init = scratch.start();
    init.expect("ze: init: ready", Duration::from_secs(20));
    let console = init.output();
    for line in [
        "ze: init: mounted proc on /proc".to_string(),
        "ze: init: mounted devtmpfs on /dev".to_string(),
        "ze: init: mounted tmpfs on /run".to_string(),
        "ze: init: mounted tmpfs on /tmp".to_string(),
        format!(
            "ze: init: mounted /dev/{} (PARTNAME=perm) on /perm",
            scratch.loop_name
        ),
        format!("image: {IMAGE} (built 20260617-160000)"),
        "appliance: nsroot".to_string(),
    ] {
        assert!(
            console.contains(&line),
            "{line:?} missing; console:\n{console}"
        );
    }
    assert!(
        console.lines().any(|l| l.starts_with("ze 0.1.0 (built ")),
        "{console}"
    );
    assert!(
        !console.contains("mounted sysfs"),
        "/sys was already mounted and must be left alone"
    );
    // The mounts live only in init's mount namespace.
    assert!(!mounted(&scratch.root().join("perm")));

    // An orphan is reparented to init and reaped when it exits.
    init.enter("sleep 30 & exit 0");
    let deadline = Instant::now() + Duration::from_secs(5);
    let orphan = loop {
        if let Some(&pid) = init.children().first() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the orphan never reached init");
        std::thread::sleep(Duration::from_millis(20));
    };
    Command::new("kill")
        .args(["-TERM", &orphan.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(orphan) {
        assert!(
            Instant::now() < deadline,
            "pid {orphan} was not reaped: {}",
            fs::read_to_string(format!("/proc/{orphan}/stat")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // SIGTERM: stop everything, unmount /perm, reboot.
    init.enter("sleep 1000 & exit 0");
    let deadline = Instant::now() + Duration::from_secs(5);
    let survivor = loop {
        if let Some(&pid) = init.children().first() {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the second orphan never reached init"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    init.signal("TERM");
    let (status, console) = init.wait(Duration::from_secs(15));
    assert!(
        console.contains("ze: init: rebooting (SIGTERM received)"),
        "{console}"
    );
    assert!(console.contains("ze: init: unmounted /perm"), "{console}");
    assert_eq!(
        status.signal(),
        Some(libc_sighup()),
        "reboot(RESTART) ends a namespace's init with SIGHUP; {status:?}\n{console}"
    );
    assert!(!alive(survivor), "pid {survivor} outlived the shutdown");
}

#[test]
fn a9_init_powers_off_on_sigusr2_and_systemds_rtmin_plus_4() {
    for (sig, name) in [("USR2", "SIGUSR2"), ("RTMIN+4", "SIGRTMIN+4")] {
        let scratch = Scratch::new("poweroff");
        let init = scratch.start();
        init.expect("ze: init: ready", Duration::from_secs(20));
        init.signal(sig);
        let (status, console) = init.wait(Duration::from_secs(15));
        assert!(
            console.contains(&format!("ze: init: powering off ({name} received)")),
            "{console}"
        );
        assert!(console.contains("ze: init: unmounted /perm"), "{console}");
        assert_eq!(
            status.signal(),
            Some(libc_sigint()),
            "reboot(POWER_OFF) ends a namespace's init with SIGINT; {status:?}\n{console}"
        );
    }
}

#[test]
fn init_ignores_sighup_and_keeps_running() {
    let scratch = Scratch::new("hup");
    let init = scratch.start();
    init.expect("ze: init: ready", Duration::from_secs(20));
    init.signal("HUP");
    init.expect("ze: init: ignoring signal SIGHUP", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    assert!(init.init_pid().is_some(), "init ended on SIGHUP");
}

fn libc_sighup() -> i32 {
    1
}

fn libc_sigint() -> i32 {
    2
}
