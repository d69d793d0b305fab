//! `ze install remote`'s command line, without running the servers: the
//! dry run's steps and config (checklist R11, R13), and where the admin
//! password comes from (R12): a file, standard input, a prompt without
//! echo on a terminal, or `--ssh-password` (which `ps` shows) — exactly
//! one of them.

mod common;
mod pxe_support;

use pxe_support::*;
use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
};

fn prerequisites(test: &str) -> bool {
    require(test, &[("root", is_root()), ("ip (iproute2)", have("ip"))])
}

/// A namespace with a bridge `d0`, and an image, a kernel, an initrd and
/// iPXE binaries to serve.
struct Remote {
    dir: tempfile::TempDir,
    ns: Netns,
}

impl Remote {
    fn new() -> Remote {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("img/ze-20260101-000000.img"), &pattern(4096, 1));
        write(&d.join("boot/vmlinuz"), &pattern(1000, 2));
        write(&d.join("boot/initrd.img.gz"), &pattern(1000, 3));
        write(&d.join("ipxe/ipxe.efi"), b"efi");
        write(&d.join("ipxe/ipxe.pxe"), b"pxe");
        let ns = Netns::new("dry");
        ns.ip(&["link", "add", "d0", "type", "bridge"]);
        ns.ip(&["link", "set", "d0", "up"]);
        Remote { dir, ns }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `ze install remote` on d0 for admin, with `password` flags; the
    /// caller adds the rest.
    fn cmd(&self, password: &[&str]) -> Command {
        let mut cmd = self.ns.cmd(ze_bin().to_str().unwrap());
        cmd.args([
            "install",
            "remote",
            "--interface",
            "d0",
            "--network",
            "192.0.2.0/24",
            "--image",
        ])
        .arg(self.path("img/ze-20260101-000000.img"))
        .arg("--pxe-dir")
        .arg(self.path("pxe"))
        .arg("--ipxe-dir")
        .arg(self.path("ipxe"))
        .args(["--ssh-username", "admin"])
        .args(password)
        .stdin(Stdio::null());
        cmd
    }

    /// A dry run with the staged kernel and initrd.
    fn dry_run(&self, password: &[&str]) -> Command {
        let mut cmd = self.cmd(password);
        cmd.arg("--dry-run")
            .arg("--kernel")
            .arg(self.path("boot/vmlinuz"))
            .arg("--initrd")
            .arg(self.path("boot/initrd.img.gz"));
        cmd
    }
}

/// The bcrypt hash in a dry run's config.
fn config_hash(text: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("ssh-password-hash "))
        .unwrap_or_else(|| panic!("no hash in:\n{text}"))
        .trim_end_matches(';')
        .to_string()
}

fn assert_hash_of(out: &Output, password: &str) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains(password), "the password is never printed");
    assert!(ze::credentials::verify_password(
        password,
        &config_hash(&text)
    ));
}

#[test]
fn r11_r13_dry_run_prints_steps_and_config_and_changes_nothing() {
    if !prerequisites("dry_run") {
        return;
    }
    let r = Remote::new();
    let (pxe, ipxe) = (r.path("pxe"), r.path("ipxe"));
    let run = |extra: &[&str]| {
        let mut cmd = r.cmd(&["--ssh-password", "do-not-write-me"]);
        cmd.args(extra);
        cmd.output().unwrap()
    };
    // Without kernel and initrd: both missing, named by absolute path.
    let out = run(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}/boot/vmlinuz (pass --kernel", pxe.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}/boot/initrd.img.gz (pass --initrd",
            pxe.display()
        )),
        "{err}"
    );
    let k = r.path("boot/vmlinuz");
    let i = r.path("boot/initrd.img.gz");
    let out = run(&[
        "--dry-run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        format!(
            "would copy {} to {}/boot/vmlinuz (mode 0644)",
            k.display(),
            pxe.display()
        ),
        format!(
            "would copy {}/ipxe.efi to {}/tftp/ipxe.efi (mode 0644)",
            ipxe.display(),
            pxe.display()
        ),
        "would add address 192.0.2.1/24 to d0 (removed on exit)".to_string(),
        "pool 192.0.2.2 192.0.2.254;".to_string(),
        "boot-script-url http://192.0.2.1/install/boot/boot.ipxe;".to_string(),
        "ssh-password-hash $2b$10$".to_string(),
        "dry run: nothing was changed".to_string(),
    ] {
        assert!(text.contains(&want), "lacks {want:?}:\n{text}");
    }
    assert!(
        !text.contains("do-not-write-me"),
        "the plaintext password is never printed"
    );
    assert!(!pxe.exists(), "nothing created");
    let addrs =
        String::from_utf8_lossy(&r.ns.run("ip", &["-4", "addr", "show", "d0"]).stdout).into_owned();
    assert!(!addrs.contains("192.0.2.1"), "{addrs}");
    // With an address on the interface, that address is the server's and
    // nothing is added; the pool leaves it out.
    r.ns.ip(&["addr", "add", "192.0.2.7/24", "dev", "d0"]);
    let out = run(&[
        "--dry-run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("would add address"), "{text}");
    assert!(text.contains("address 192.0.2.7;"), "{text}");
    assert!(
        text.contains("boot-script-url http://192.0.2.7/install/boot/boot.ipxe;"),
        "{text}"
    );
    assert!(text.contains("pool 192.0.2.1 192.0.2.254;"), "{text}");
}

#[test]
fn r12_the_password_comes_from_a_file_or_from_standard_input() {
    if !prerequisites("password_sources") {
        return;
    }
    let r = Remote::new();
    let file = r.path("password");
    std::fs::write(&file, "from-a-file\nnot this line\n").unwrap();
    let out = r
        .dry_run(&["--ssh-password-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_hash_of(&out, "from-a-file");
    let out = common::run_with_stdin(
        &mut r.dry_run(&["--ssh-password-stdin"]),
        b"from-stdin\n",
        true,
    );
    assert_hash_of(&out, "from-stdin");
    // An empty file, or a closed standard input, is named.
    std::fs::write(&file, "").unwrap();
    let out = r
        .dry_run(&["--ssh-password-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "--ssh-password-file {}: the password is empty",
            file.display()
        )),
        "{err}"
    );
    let out = r.dry_run(&["--ssh-password-stdin"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("--ssh-password-stdin: standard input is closed; no password was read")
    );
}

#[test]
fn r12_exactly_one_password_source_and_errors_name_the_conflict() {
    if !prerequisites("password_conflicts") {
        return;
    }
    let r = Remote::new();
    let file = r.path("password");
    std::fs::write(&file, "pw\n").unwrap();
    let f = file.to_str().unwrap();
    for (flags, named) in [
        (
            &["--ssh-password", "x", "--ssh-password-file", f][..],
            "--ssh-password and --ssh-password-file were given together",
        ),
        (
            &["--ssh-password", "x", "--ssh-password-stdin"][..],
            "--ssh-password and --ssh-password-stdin were given together",
        ),
        (
            &["--ssh-password-file", f, "--ssh-password-stdin"][..],
            "--ssh-password-file and --ssh-password-stdin were given together",
        ),
        (
            &[
                "--ssh-password",
                "x",
                "--ssh-password-file",
                f,
                "--ssh-password-stdin",
            ][..],
            "--ssh-password and --ssh-password-file and --ssh-password-stdin were given together",
        ),
        (
            &[][..],
            "no terminal to ask for the SSH password: pass --ssh-password-file FILE or --ssh-password-stdin",
        ),
    ] {
        let out = r.dry_run(flags).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(named), "{flags:?}: {err}");
    }
    // The help says what --ssh-password costs.
    let out = Command::new(ze_bin())
        .args(["install", "remote", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("visible to every local user in `ps`"),
        "{help}"
    );
}

#[test]
fn r12_without_a_source_a_terminal_is_asked_twice_without_echo() {
    if !prerequisites("password_prompt") {
        return;
    }
    let r = Remote::new();
    let mut cmd = r.dry_run(&[]);
    cmd.stdin(Stdio::inherit());
    let mut pty = common::Pty::spawn(cmd);
    pty.expect("Password: ");
    pty.send(b"typed-secret\r");
    pty.expect("Confirm password: ");
    pty.send(b"typed-secret\r");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("typed-secret"), "no echo: {out}");
    assert!(ze::credentials::verify_password(
        "typed-secret",
        &config_hash(&out)
    ));
}
