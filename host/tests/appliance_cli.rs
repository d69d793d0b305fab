//! `ze appliance init`, and the checks `ze appliance build` and
//! `ze appliance iso` make before they build anything (no QEMU here; the
//! builds themselves run in tests/appliance_qemu.rs). Checklist A1, A2, A7.

mod common;

use common::*;
use std::{fs, path::PathBuf, process::Command};

struct Home {
    tmp: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn ze(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ze_bin());
        cmd.args(args)
            .current_dir(self.tmp.path())
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env("XDG_CACHE_HOME", self.tmp.path().join("cache"))
            .env_remove("ZE_INSTALL_IMAGE_SIZE")
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join("config/ze/appliances").join(name)
    }

    /// A stand-in kernel: the checks only look at the bzImage header.
    fn stand_in_kernel(&self) -> PathBuf {
        let kernel = self.tmp.path().join("bzImage");
        let mut k = vec![0u8; 4096];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        fs::write(&kernel, &k).unwrap();
        kernel
    }

    fn init(&self, name: &str) {
        run_ok(self.ze(&[
            "appliance",
            "init",
            "--ssh-username",
            "admin",
            "--ssh-password",
            "secret",
            name,
        ]));
    }
}

#[test]
fn a1_a2_init_writes_the_documented_defaults_and_only_a_hash() {
    let home = Home::new();
    let out = run_ok(home.ze(&[
        "appliance",
        "init",
        "--ssh-username",
        "admin",
        "--ssh-password",
        "secret",
        "prod",
    ]));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("next: ze appliance build prod"), "{stdout}");
    let dir = home.dir("prod");
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("appliance.json")).unwrap()).unwrap();
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    assert_eq!(json["image"]["arch"], arch);
    assert_eq!(json["image"]["kernel-profile"], "qemu");
    assert_eq!(json["image"]["size-bytes"], 2u64 << 30);
    assert_eq!(json["ssh"]["username"], "admin");
    assert_eq!(json["seed-config"], "ze.conf");
    let hash = json["ssh"]["password-hash"].as_str().unwrap();
    assert!(hash.starts_with("$2b$10$"), "{hash}");
    assert!(ze::credentials::verify_password("secret", hash));
    for file in ["appliance.json", "ze.conf", "tls/cert.pem", "tls/key.pem"] {
        let bytes = fs::read(dir.join(file)).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "plaintext password in {file}"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("."), 0o700);
    assert_eq!(mode("appliance.json"), 0o600);
    assert_eq!(mode("tls/key.pem"), 0o600);
    ze::config::brace::parse(&fs::read_to_string(dir.join("ze.conf")).unwrap()).unwrap();
}

#[test]
fn init_refuses_to_overwrite_and_force_keeps_the_seed_config_and_tls() {
    let home = Home::new();
    home.init("lab");
    let dir = home.dir("lab");
    fs::write(dir.join("ze.conf"), "# edited\nsshserver { }\n").unwrap();
    let mut json = fs::read_to_string(dir.join("appliance.json")).unwrap();
    json = json.replacen('{', "{\n  \"notes\": {\"owner\": \"ops\"},", 1);
    fs::write(dir.join("appliance.json"), &json).unwrap();
    let cert = fs::read(dir.join("tls/cert.pem")).unwrap();

    let out = run_fails(home.ze(&[
        "appliance",
        "init",
        "--ssh-username",
        "ops",
        "--ssh-password",
        "other",
        "lab",
    ]));
    assert!(
        text(&out.stderr).contains("pass --force"),
        "{}",
        text(&out.stderr)
    );

    let out = run_ok(home.ze(&[
        "appliance",
        "init",
        "--force",
        "--ssh-username",
        "ops",
        "--ssh-password",
        "other",
        "--size",
        "1G",
        "lab",
    ]));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("replaced"), "{stdout}");
    assert!(
        stdout.contains("ze.conf (kept)") && stdout.contains("(kept)"),
        "{stdout}"
    );
    assert_eq!(
        fs::read_to_string(dir.join("ze.conf")).unwrap(),
        "# edited\nsshserver { }\n"
    );
    assert_eq!(fs::read(dir.join("tls/cert.pem")).unwrap(), cert);
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("appliance.json")).unwrap()).unwrap();
    assert_eq!(json["ssh"]["username"], "ops");
    assert_eq!(json["image"]["size-bytes"], 1u64 << 30);
    assert_eq!(json["notes"]["owner"], "ops", "unknown fields survive");
}

#[test]
fn init_rejects_bad_input_naming_it() {
    let home = Home::new();
    for (args, want) in [
        (vec!["Bad/Name"], "invalid appliance name"),
        (
            vec!["--ssh-username", "Admin", "--ssh-password", "x", "a"],
            "--ssh-username",
        ),
        (
            vec!["--ssh-username", "admin", "--ssh-password", "", "a"],
            "the password is empty",
        ),
        (vec!["--ssh-username", "admin", "a"], "pass --ssh-password"),
        (vec!["a"], "pass --ssh-username"),
        (
            vec![
                "--ssh-username",
                "admin",
                "--ssh-password",
                "x",
                "--size",
                "100M",
                "a",
            ],
            "too small for the A/B layout",
        ),
    ] {
        let mut full = vec!["appliance", "init"];
        full.extend(args.iter());
        let out = run_fails(home.ze(&full));
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!home.dir("a").join("appliance.json").exists());
    let out = home
        .ze(&["appliance", "init", "--arch", "sparc", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "bad usage exits 2");
}

#[test]
fn a1_init_asks_on_a_terminal_without_echoing_the_password() {
    let home = Home::new();
    let mut cmd = home.ze(&["appliance", "init", "tty"]);
    cmd.stdin(std::process::Stdio::inherit());
    let mut pty = Pty::spawn(cmd);
    pty.expect("SSH username: ");
    pty.send(b"operator\r");
    pty.expect("Password: ");
    pty.send(b"hunter22\r");
    pty.expect("Confirm password: ");
    pty.send(b"hunter22\r");
    let (code, output) = pty.wait();
    assert_eq!(code, 0, "{output}");
    assert!(
        !output.contains("hunter22"),
        "the password was echoed:\n{output}"
    );
    let json = fs::read_to_string(home.dir("tty").join("appliance.json")).unwrap();
    assert!(json.contains("\"username\": \"operator\""), "{json}");
}

#[test]
fn build_check_names_every_missing_prerequisite() {
    let home = Home::new();
    home.init("chk");
    let dir = home.dir("chk");
    fs::write(
        dir.join("ze.conf"),
        "sshserver {\n  listen \"unterminated;\n}\n",
    )
    .unwrap();
    fs::remove_file(dir.join("tls/key.pem")).unwrap();
    let out = run_fails(home.ze(&[
        "appliance",
        "build",
        "--check",
        "--kernel",
        "/nonexistent/vmlinuz",
        "--size",
        "300M",
        "chk",
    ]));
    let err = text(&out.stderr);
    for want in [
        "missing prerequisites:",
        "image size: size from --size: image size 300 MiB is too small",
        "kernel: --kernel /nonexistent/vmlinuz: no such file",
        "seed config: ",
        "ze.conf:2:",
        "credentials: ",
        "tls/key.pem is missing",
    ] {
        assert!(err.contains(want), "{want:?} not in\n{err}");
    }
    // The same problems stop a real build before it writes anything.
    let out = run_fails(home.ze(&[
        "appliance",
        "build",
        "--kernel",
        "/nonexistent/vmlinuz",
        "chk",
    ]));
    assert!(text(&out.stderr).contains("cannot build appliance chk"));
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".img"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn build_size_comes_from_the_flag_then_the_environment_then_the_file() {
    let home = Home::new();
    home.init("sz");
    let kernel = home.stand_in_kernel();
    let k = kernel.to_str().unwrap();
    let dry = |extra: &[&str], env: Option<&str>| {
        let mut args = vec!["appliance", "build", "--dry-run", "--kernel", k];
        args.extend_from_slice(extra);
        args.push("sz");
        let mut cmd = home.ze(&args);
        if let Some(v) = env {
            cmd.env("ZE_INSTALL_IMAGE_SIZE", v);
        }
        cmd.output().unwrap()
    };
    let out = dry(&[], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("2 GiB (from appliance.json)"), "{stdout}");
    assert!(
        stdout.contains("p4 perm      1726 MiB at 321 MiB"),
        "{stdout}"
    );
    // amd64 (the host's arch is the default): the BIOS boot partition in
    // the gap before the ESP.
    assert_eq!(
        stdout.contains("p5 bios-boot   1004 KiB at 20 KiB"),
        cfg!(target_arch = "x86_64"),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing was built"));
    let stdout = text(&dry(&[], Some("512M")).stdout);
    assert!(
        stdout.contains("512 MiB (from ZE_INSTALL_IMAGE_SIZE)"),
        "{stdout}"
    );
    let stdout = text(&dry(&["--size", "1G"], Some("512M")).stdout);
    assert!(stdout.contains("1 GiB (from --size)"), "{stdout}");
    let out = dry(&[], Some("lots"));
    assert!(text(&out.stderr).contains("ZE_INSTALL_IMAGE_SIZE: invalid size \"lots\""));
    assert!(
        fs::read_dir(home.dir("sz")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".img"))
    );
}

#[test]
fn h5_build_check_says_which_ze_binary_it_will_use() {
    let home = Home::new();
    home.init("bin");
    let kernel = home.stand_in_kernel();
    let k = kernel.to_str().unwrap();
    let check = |extra: &[&str]| {
        let mut args = vec!["appliance", "build", "--check", "--kernel", k];
        args.extend_from_slice(extra);
        args.push("bin");
        text(&run_ok(home.ze(&args)).stdout)
    };

    // The test build of ze is dynamic, so the image's ze is built from
    // this source tree, with the command `make build` runs.
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let stdout = check(&[]);
    let want = format!(
        "  ze binary:  would build a static ze from the source tree at {ws} with \
         `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS=\"-C target-feature=+crt-static -C strip=symbols\" \
         cargo build --release --locked -p ze --target x86_64-unknown-linux-gnu --target-dir {ws}/target/static` \
         (to {ws}/target/static/x86_64-unknown-linux-gnu/release/ze)\n",
        ws = ws.display()
    );
    assert!(stdout.contains(&want), "{want:?} not in\n{stdout}");

    // --ze names a static binary: that one, said so.
    let elf = home.tmp.path().join("ze-static");
    let mut bytes = vec![0u8; 64];
    bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
    bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
    bytes[32] = 64;
    bytes[54] = 56;
    fs::write(&elf, &bytes).unwrap();
    let stdout = check(&["--ze", elf.to_str().unwrap()]);
    let want = format!("  ze binary:  --ze {} (static, amd64)\n", elf.display());
    assert!(stdout.contains(&want), "{want:?} not in\n{stdout}");

    // A dynamic --ze is refused by name.
    let out = run_fails(home.ze(&[
        "appliance",
        "build",
        "--check",
        "--kernel",
        k,
        "--ze",
        ze_bin().to_str().unwrap(),
        "bin",
    ]));
    let err = text(&out.stderr);
    assert!(err.contains("static ze: --ze: "), "{err}");
    assert!(err.contains("is dynamically linked"), "{err}");
}

#[test]
fn a7_iso_check_names_the_missing_initrd_and_how_to_build_it() {
    let home = Home::new();
    home.init("iso");
    let out = run_fails(home.ze(&[
        "appliance",
        "iso",
        "--check",
        "--kernel",
        "/nonexistent/k",
        "--target",
        "/dev/sda1",
        "iso",
    ]));
    let err = text(&out.stderr);
    let initrd = home.tmp.path().join("build/initrd/initrd.img.gz");
    for want in [
        "--target \"/dev/sda1\": names a partition".to_string(),
        "kernel: --kernel /nonexistent/k: no such file".to_string(),
        format!(
            "the installer initrd build/initrd/initrd.img.gz ({}) is missing: build it with `ze appliance initrd`",
            initrd.display()
        ),
        "holds no ze-*.img: build one with `ze appliance build`".to_string(),
    ] {
        assert!(err.contains(&want), "{want:?} not in\n{err}");
    }
    let out = run_fails(home.ze(&["appliance", "iso", "nope"]));
    assert!(text(&out.stderr).contains("run `ze appliance init nope` first"));
}

#[test]
fn a1_init_reads_the_password_from_a_file_or_stdin_and_one_source_only() {
    let home = Home::new();
    let hash_of = |name: &str| -> String {
        let json: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(home.dir(name).join("appliance.json")).unwrap(),
        )
        .unwrap();
        json["ssh"]["password-hash"].as_str().unwrap().to_string()
    };
    let file = home.tmp.path().join("pw");
    fs::write(&file, "from-a-file\n").unwrap();
    let f = file.to_str().unwrap();
    run_ok(home.ze(&[
        "appliance",
        "init",
        "--ssh-username",
        "admin",
        "--ssh-password-file",
        f,
        "viafile",
    ]));
    assert!(ze::credentials::verify_password(
        "from-a-file",
        &hash_of("viafile")
    ));
    run_with_stdin(
        &mut home.ze(&[
            "appliance",
            "init",
            "--ssh-username",
            "admin",
            "--ssh-password-stdin",
            "viastdin",
        ]),
        b"from-stdin\n",
        true,
    );
    assert!(ze::credentials::verify_password(
        "from-stdin",
        &hash_of("viastdin")
    ));
    for (args, want) in [
        (
            vec![
                "--ssh-username",
                "admin",
                "--ssh-password",
                "x",
                "--ssh-password-file",
                f,
            ],
            "--ssh-password and --ssh-password-file were given together: pass exactly one of",
        ),
        (
            vec![
                "--ssh-username",
                "admin",
                "--ssh-password-file",
                f,
                "--ssh-password-stdin",
            ],
            "--ssh-password-file and --ssh-password-stdin were given together",
        ),
        (
            vec!["--ssh-password-stdin"],
            "--ssh-password-stdin takes standard input: pass --ssh-username NAME too",
        ),
    ] {
        let mut full = vec!["appliance", "init"];
        full.extend(args.iter());
        full.push("two");
        let err = text(&run_fails(home.ze(&full)).stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!home.dir("two").exists());
}
