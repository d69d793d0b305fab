//! `ze install remote` as the tests run it: what it serves (a small
//! pattern image, or a real appliance image), started in a namespace and
//! stopped with SIGTERM.

use super::{Logged, Netns, pattern, tiny_initrd, workspace, write, ze_bin};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The SSH user and password every test provisions.
pub const SSH_USER: &str = "admin";
pub const SSH_PASSWORD: &str = "provision-me";

/// What `ze install remote` serves.
pub struct Artifacts {
    pub dir: tempfile::TempDir,
    pub image: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

impl Artifacts {
    /// A 3 MiB pattern image with its `build.json`, the tiny initrd, and
    /// `kernel` (or a placeholder file when the test boots no machine).
    pub fn tiny(kernel: Option<&Path>) -> Artifacts {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("images/ze-20260617-160000.img");
        write(&image, &pattern(3 << 20, 1));
        write(
            &dir.path().join("images/build.json"),
            br#"{"image":"ze-20260617-160000.img","built":"20260617-160000","appliance":"prod","ze-version":"0.1.0"}"#,
        );
        let initrd = dir.path().join("initrd.img");
        write(&initrd, &tiny_initrd());
        let kernel = match kernel {
            Some(k) => k.to_path_buf(),
            None => {
                let k = dir.path().join("vmlinuz");
                write(&k, b"not a kernel: this test boots no machine");
                k
            }
        };
        Artifacts {
            dir,
            image,
            kernel,
            initrd,
        }
    }

    /// A real appliance image (`ze appliance init` + `ze appliance build`
    /// of `size_mib` MiB, provisioned with [`SSH_USER`]), the installer
    /// `kernel` and the installer initrd `initrd`.
    pub fn appliance(kernel: &Path, initrd: &Path, size_mib: u32) -> Artifacts {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let ze = |args: &[&str]| {
            let started = Instant::now();
            let out = Command::new(ze_bin())
                .args(args)
                .current_dir(dir.path())
                .env("XDG_CONFIG_HOME", &config)
                .env_remove("ZE_INSTALL_IMAGE_SIZE")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ze {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!(
                "ze {} ({:.1} s)",
                args.join(" "),
                started.elapsed().as_secs_f64()
            );
        };
        ze(&[
            "appliance",
            "init",
            "--ssh-username",
            SSH_USER,
            "--ssh-password",
            SSH_PASSWORD,
            "coexist",
        ]);
        let size = format!("{size_mib}M");
        let k = kernel.to_str().unwrap();
        ze(&[
            "appliance",
            "build",
            "--size",
            &size,
            "--kernel",
            k,
            "coexist",
        ]);
        let built = config.join("ze/appliances/coexist");
        let image = fs::read_dir(&built)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "img"))
            .unwrap_or_else(|| panic!("no image in {}", built.display()));
        Artifacts {
            dir,
            image,
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
        }
    }
}

/// The installer initrd `make initrd` builds.
pub fn installer_initrd() -> PathBuf {
    workspace().join("build/initrd/initrd.img.gz")
}

/// `ze install remote --interface <interface> --network <network>` in
/// `ns`, serving `a`, with `extra` flags; returns once the servers run.
pub fn install_remote(
    ns: &Netns,
    interface: &str,
    network: &str,
    a: &Artifacts,
    extra: &[&str],
) -> Logged {
    let mut cmd = ns.cmd(ze_bin().to_str().unwrap());
    cmd.args(["install", "remote", "--interface", interface])
        .args(["--network", network])
        .arg("--image")
        .arg(&a.image)
        .arg("--kernel")
        .arg(&a.kernel)
        .arg("--initrd")
        .arg(&a.initrd)
        .arg("--pxe-dir")
        .arg(a.dir.path().join("pxe"))
        .args(["--ssh-username", SSH_USER, "--ssh-password", SSH_PASSWORD])
        .args(extra)
        .env_remove("ZE_LOG")
        .env_remove("ze.log");
    let mut d = Logged::spawn(cmd);
    d.wait_for("ze: started", Duration::from_secs(60));
    d
}

/// Stop `ze install remote` with SIGTERM; returns its log once it exited
/// cleanly.
pub fn stop_install_remote(mut servers: Logged) -> String {
    servers.signal(rustix::process::Signal::TERM);
    assert_eq!(
        servers.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        servers.text()
    );
    let log = servers.text();
    assert!(
        log.contains("ze: shutting down: closing listeners, draining transfers signal=SIGTERM"),
        "{log}"
    );
    log
}
