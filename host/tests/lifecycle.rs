//! The host lifecycle, run for real against temporary sysroots:
//! `ze install local`, `ze init`, `ze install systemd`, `ze uninstall`,
//! `ze version`. Test names carry the checklist ids (L*, S*, U*, A9).

mod common;

use common::*;
use std::{fs, os::unix::fs::MetadataExt, path::Path, process::Command};

fn stdout(out: &std::process::Output) -> String {
    text(&out.stdout)
}
fn stderr(out: &std::process::Output) -> String {
    text(&out.stderr)
}

#[test]
fn l1_install_local_copies_the_running_binary_atomically_0755() {
    let root = Root::bare();
    let out = run_ok(root.ze(&["install", "local", "--prefix", "/opt/ze"]));
    let bin = root.path("/opt/ze/bin/ze");
    assert_eq!(fs::read(&bin).unwrap(), fs::read(ze_bin()).unwrap());
    assert_eq!(fs::metadata(&bin).unwrap().mode() & 0o777, 0o755);
    assert!(stdout(&out).contains("installed ze"), "{}", stdout(&out));
    // No staging file is left next to it.
    let names: Vec<_> = fs::read_dir(root.path("/opt/ze/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ze"]);
}

#[test]
fn l1_install_local_replaces_the_binary_that_is_running() {
    let root = Root::bare();
    let bin = root.installed("/opt/ze");
    // The installed ze reinstalls itself over its own file while running:
    // a plain write would fail with ETXTBSY; temp + rename does not.
    let out = run_ok(root.cmd(&bin, &["install", "local", "--prefix", "/opt/ze"]));
    assert!(
        stdout(&out).contains("kept the existing database"),
        "{}",
        stdout(&out)
    );
    assert_eq!(fs::read(&bin).unwrap(), fs::read(ze_bin()).unwrap());
}

#[test]
fn l3_config_dir_from_prefix() {
    for (prefix, config) in [
        ("/usr/local", "/etc/ze"),
        ("/usr", "/etc/ze"),
        ("/opt/ze", "/opt/ze/etc/ze"),
    ] {
        let root = Root::bare();
        run_ok(root.ze(&["install", "local", "--prefix", prefix]));
        assert!(root.path(config).is_dir(), "{prefix} -> {config}");
    }
}

#[test]
fn l4_config_dir_left_alone_when_a_database_exists() {
    let root = Root::bare();
    fs::create_dir_all(root.path("/etc/ze")).unwrap();
    fs::write(root.path("/etc/ze/database.zefs"), b"keep me").unwrap();
    let out = run_ok(root.ze(&["install", "local", "--prefix", "/usr/local", "--dry-run"]));
    assert!(
        !stdout(&out).contains("create directory /etc/ze"),
        "{}",
        stdout(&out)
    );
    run_ok(root.ze(&["install", "local", "--prefix", "/usr/local"]));
    assert_eq!(
        fs::read(root.path("/etc/ze/database.zefs")).unwrap(),
        b"keep me"
    );
}

#[test]
fn l5_dry_runs_change_nothing() {
    // install local
    let root = Root::with_systemd();
    let before = snapshot(root.dir.path());
    let out = run_ok(root.ze(&["install", "local", "--prefix", "/opt/ze", "--dry-run"]));
    assert!(
        stdout(&out).contains("would copy the running ze"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("would create directory /opt/ze/etc/ze"));
    assert_eq!(snapshot(root.dir.path()), before);

    // install systemd, uninstall systemd, uninstall local
    let bin = root.installed("/opt/ze");
    let before = snapshot(root.dir.path());
    run_ok(root.cmd(&bin, &["install", "systemd", "--dry-run"]));
    assert_eq!(
        snapshot(root.dir.path()),
        before,
        "install systemd --dry-run"
    );
    run_ok(root.cmd(&bin, &["uninstall", "local", "--purge", "--dry-run"]));
    assert_eq!(
        snapshot(root.dir.path()),
        before,
        "uninstall local --dry-run"
    );
    run_ok(root.cmd(&bin, &["install", "systemd"]));
    let before = snapshot(root.dir.path());
    let out = run_ok(root.cmd(&bin, &["uninstall", "systemd", "--purge", "--dry-run"]));
    assert!(
        stdout(&out).contains("would run systemctl stop ze.service"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        snapshot(root.dir.path()),
        before,
        "uninstall systemd --dry-run"
    );
    assert_eq!(
        root.systemctl_calls(),
        ["daemon-reload", "enable ze.service"]
    );
}

#[test]
fn l2_menu_enter_picks_usr_local() {
    let root = Root::bare();
    let mut pty = Pty::spawn(root.ze(&["install", "local"]));
    pty.expect("Choice [1]: ");
    let menu = pty.output();
    for line in [
        "Select installation prefix:",
        "1) /usr/local (recommended)",
        "2) /usr (system)",
        "3) /opt/ze (self-contained)",
    ] {
        assert!(menu.contains(line), "missing {line:?} in {menu}");
    }
    pty.send(b"\r");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(root.path("/usr/local/bin/ze").is_file());
    assert!(root.path("/etc/ze").is_dir());
}

#[test]
fn l2_menu_out_of_range_asks_again() {
    let root = Root::bare();
    let mut pty = Pty::spawn(root.ze(&["install", "local"]));
    pty.expect("Choice [1]: ");
    pty.send(b"7\r");
    pty.expect("invalid choice \"7\"");
    pty.send(b"3\r");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(root.path("/opt/ze/bin/ze").is_file());
    assert!(!root.path("/usr/local/bin/ze").exists());
}

#[test]
fn l2_menu_eof_aborts_and_changes_nothing() {
    let root = Root::bare();
    let before = snapshot(root.dir.path());
    let mut pty = Pty::spawn(root.ze(&["install", "local"]));
    pty.expect("Choice [1]: ");
    pty.send(&[0x04]); // Ctrl-D
    let (code, out) = pty.wait();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("aborted"), "{out}");
    assert_eq!(snapshot(root.dir.path()), before);
}

#[test]
fn l2_no_terminal_and_no_prefix_asks_for_prefix() {
    let root = Root::bare();
    let out = run_fails(root.ze(&["install", "local"]));
    assert!(stderr(&out).contains("pass --prefix"), "{}", stderr(&out));
}

#[test]
fn install_local_rejects_a_prefix_that_is_a_file() {
    let root = Root::bare();
    fs::write(root.path("/opt-file"), b"x").unwrap();
    let before = snapshot(root.dir.path());
    let out = run_fails(root.ze(&["install", "local", "--prefix", "/opt-file"]));
    assert!(
        stderr(&out).contains("--prefix /opt-file: exists and is not a directory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(root.dir.path()), before);
    let out = run_fails(root.ze(&["install", "local", "--prefix", "relative/dir"]));
    assert!(
        stderr(&out).contains("must be an absolute path"),
        "{}",
        stderr(&out)
    );
}

/// A read-only tmpfs under the sysroot; unmounted on drop.
struct ReadOnlyMount(std::path::PathBuf);
impl ReadOnlyMount {
    fn new(at: std::path::PathBuf) -> Self {
        fs::create_dir_all(&at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
            .arg(&at)
            .status()
            .expect("mount (these tests run as root, as CI does)");
        assert!(st.success(), "mount a read-only tmpfs needs root");
        ReadOnlyMount(at)
    }
}
impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn install_local_on_a_read_only_target_fails_cleanly() {
    let root = Root::bare();
    let _ro = ReadOnlyMount::new(root.path("/ro"));
    let out = run_fails(root.ze(&["install", "local", "--prefix", "/ro"]));
    let err = stderr(&out);
    assert!(
        err.contains("cannot create /ro/bin") && err.contains("Read-only file system"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(fs::read_dir(root.path("/ro")).unwrap().count(), 0);
}

#[test]
fn l6_init_writes_a_0600_database_with_hashed_password() {
    let root = Root::bare();
    let bin = root.installed("/opt/ze");
    let db = root.path("/opt/ze/etc/ze/database.zefs");
    assert_eq!(fs::metadata(&db).unwrap().mode() & 0o777, 0o600);
    let bytes = fs::read(&db).unwrap();
    let parsed = ze::zefs::Zefs::parse(&bytes).unwrap();
    let user = parsed.user("admin").unwrap();
    assert!(user.password_hash.starts_with("$2b$10$"));
    assert!(ze::credentials::verify_password(
        "secret",
        &user.password_hash
    ));
    assert!(
        !bytes.windows(6).any(|w| w == b"secret"),
        "plaintext in the database"
    );
    assert!(parsed.get("meta/created").is_some() && parsed.get("meta/version").is_some());

    // It refuses to overwrite without --force, and replaces with it.
    let mut again = root.cmd(&bin, &["init", "--username", "other", "--password-stdin"]);
    let out = run_with_stdin(&mut again, b"pw2\n", false);
    assert!(
        stderr(&out).contains("already exists: pass --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&db).unwrap(), bytes);
    let mut forced = root.cmd(
        &bin,
        &["init", "--username", "other", "--password-stdin", "--force"],
    );
    run_with_stdin(&mut forced, b"pw2\n", true);
    let replaced = ze::zefs::Zefs::load(&db).unwrap();
    assert!(replaced.user("other").is_some() && replaced.user("admin").is_none());
}

#[test]
fn l6_init_password_from_closed_stdin_is_an_error() {
    let root = Root::bare();
    run_ok(root.ze(&["install", "local", "--prefix", "/opt/ze"]));
    let before = snapshot(root.dir.path());
    let out = run_fails(root.ze(&[
        "init",
        "--config",
        "/opt/ze/etc/ze",
        "--username",
        "admin",
        "--password-stdin",
    ]));
    assert!(
        stderr(&out).contains("standard input is closed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(root.dir.path()), before);
}

#[test]
fn l6_init_missing_config_dir_is_an_error() {
    let root = Root::bare();
    let mut cmd = root.ze(&[
        "init",
        "--config",
        "/nowhere/ze",
        "--username",
        "admin",
        "--password-stdin",
    ]);
    let out = run_with_stdin(&mut cmd, b"secret\n", false);
    assert!(
        stderr(&out)
            .contains("config directory /nowhere/ze does not exist: run `ze install local` first"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn l6_init_config_dir_precedence() {
    let root = Root::bare();
    run_ok(root.ze(&["install", "local", "--prefix", "/opt/ze"]));
    for d in ["/flag", "/env"] {
        fs::create_dir_all(root.path(d)).unwrap();
    }
    let bin = root.path("/opt/ze/bin/ze");
    // --config beats ZE_CONFIG_DIR.
    let mut cmd = root.cmd(
        &bin,
        &[
            "init",
            "--config",
            "/flag",
            "--username",
            "a",
            "--password-stdin",
        ],
    );
    cmd.env("ZE_CONFIG_DIR", "/env");
    run_with_stdin(&mut cmd, b"pw\n", true);
    assert!(root.path("/flag/database.zefs").exists() && !root.path("/env/database.zefs").exists());
    // ZE_CONFIG_DIR beats the binary's location.
    let mut cmd = root.cmd(&bin, &["init", "--username", "a", "--password-stdin"]);
    cmd.env("ZE_CONFIG_DIR", "/env");
    run_with_stdin(&mut cmd, b"pw\n", true);
    assert!(
        root.path("/env/database.zefs").exists()
            && !root.path("/opt/ze/etc/ze/database.zefs").exists()
    );
    // Else the directory derived from the binary.
    let mut cmd = root.cmd(&bin, &["init", "--username", "a", "--password-stdin"]);
    run_with_stdin(&mut cmd, b"pw\n", true);
    assert!(root.path("/opt/ze/etc/ze/database.zefs").exists());
}

#[test]
fn l6_init_prompts_on_a_terminal_without_echo_twice() {
    let root = Root::bare();
    run_ok(root.ze(&["install", "local", "--prefix", "/opt/ze"]));
    let bin = root.path("/opt/ze/bin/ze");
    let mut pty = Pty::spawn(root.cmd(&bin, &["init"]));
    pty.expect("Username: ");
    pty.send(b"operator\r");
    pty.expect("Password: ");
    pty.send(b"hunter22\r");
    pty.expect("Confirm password: ");
    pty.send(b"hunter23\r");
    pty.expect("do not match");
    pty.expect("Password: ");
    pty.send(b"hunter22\r");
    pty.expect("Confirm password: ");
    pty.send(b"hunter22\r");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("operator"), "the username is echoed: {out}");
    assert!(!out.contains("hunter2"), "a password was echoed: {out}");
    let db = ze::zefs::Zefs::load(&root.path("/opt/ze/etc/ze/database.zefs")).unwrap();
    assert!(ze::credentials::verify_password(
        "hunter22",
        &db.user("operator").unwrap().password_hash
    ));
}

#[test]
fn s2_install_systemd_refuses_without_a_database() {
    let root = Root::with_systemd();
    run_ok(root.ze(&["install", "local", "--prefix", "/opt/ze"]));
    let bin = root.path("/opt/ze/bin/ze");
    let before = snapshot(root.dir.path());
    let out = run_fails(root.cmd(&bin, &["install", "systemd"]));
    assert!(
        stderr(&out).contains("/opt/ze/etc/ze/database.zefs does not exist: run `ze init` first"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(root.dir.path()), before);
    assert!(root.systemctl_calls().is_empty());
}

#[test]
fn s2_corrupt_or_truncated_database_is_named_with_its_offset() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    let db = root.path("/opt/ze/etc/ze/database.zefs");
    let good = fs::read(&db).unwrap();
    fs::write(&db, &good[..good.len() - 7]).unwrap();
    let out = run_fails(root.cmd(&bin, &["install", "systemd"]));
    let err = stderr(&out);
    assert!(
        err.contains("database.zefs is not a valid zefs database: truncated"),
        "{err}"
    );
    assert!(
        err.contains(&format!("at offset {}", good.len() - 7)),
        "{err}"
    );
    let mut flipped = good.clone();
    flipped[30] ^= 1;
    fs::write(&db, &flipped).unwrap();
    let out = run_fails(root.cmd(&bin, &["install", "systemd"]));
    assert!(
        stderr(&out).contains("checksum mismatch at offset"),
        "{}",
        stderr(&out)
    );
    assert!(!root.path("/etc/systemd/system/ze.service").exists());
}

#[test]
fn s3_s4_install_systemd_creates_user_writes_unit_and_enables() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    let out = run_ok(root.cmd(&bin, &["install", "systemd", "--start"]));
    assert!(
        stdout(&out).contains("ze.service is installed and enabled and started"),
        "{}",
        stdout(&out)
    );
    let passwd = fs::read_to_string(root.path("/etc/passwd")).unwrap();
    let group = fs::read_to_string(root.path("/etc/group")).unwrap();
    let uid = ze::users::id_in(&passwd, "ze").expect("user ze");
    let gid = ze::users::id_in(&group, "ze").expect("group ze");
    for p in ["/opt/ze/etc/ze", "/opt/ze/etc/ze/database.zefs"] {
        let meta = fs::metadata(root.path(p)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{p}");
    }
    let unit = fs::read_to_string(root.path("/etc/systemd/system/ze.service")).unwrap();
    assert!(unit.contains("ExecStart=/opt/ze/bin/ze start\n"));
    assert!(unit.contains("Environment=ZE_CONFIG_DIR=/opt/ze/etc/ze\n"));
    assert_eq!(
        root.systemctl_calls(),
        ["daemon-reload", "enable ze.service", "start ze.service"]
    );

    // An existing unit is kept unless --force.
    let out = run_fails(root.cmd(&bin, &["install", "systemd"]));
    assert!(stderr(&out).contains("/etc/systemd/system/ze.service already exists: pass --force"));
    run_ok(root.cmd(
        &bin,
        &[
            "install",
            "systemd",
            "--force",
            "--config",
            "/opt/ze/etc/ze",
        ],
    ));
    // The user is not created twice.
    let passwd = fs::read_to_string(root.path("/etc/passwd")).unwrap();
    assert_eq!(passwd.lines().filter(|l| l.starts_with("ze:")).count(), 1);
}

#[test]
fn s4_failing_systemctl_is_reported() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    let mut cmd = root.cmd(&bin, &["install", "systemd"]);
    cmd.env("ZE_TEST_SYSTEMCTL_EXIT", "1");
    let out = run_fails(cmd);
    let err = stderr(&out);
    assert!(
        err.contains("`systemctl daemon-reload` failed (exit status: 1)"),
        "{err}"
    );
    assert!(err.contains("stopped at step 6 of 7"), "{err}");
}

#[test]
fn s5_without_systemd_dry_run_works_and_a_real_run_fails_clearly() {
    let root = Root::bare();
    let bin = root.installed("/opt/ze");
    let out = run_ok(root.cmd(&bin, &["install", "systemd", "--dry-run"]));
    let text = stdout(&out);
    assert!(
        text.starts_with("# /etc/systemd/system/ze.service\n[Unit]\n"),
        "{text}"
    );
    assert!(text.contains("would run systemctl daemon-reload"));
    let before = snapshot(root.dir.path());
    let out = run_fails(root.cmd(&bin, &["install", "systemd"]));
    assert!(
        stderr(&out).contains("systemd is not running on this host"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(root.dir.path()), before);
}

#[test]
fn s1_generated_unit_passes_systemd_analyze_verify() {
    // No sysroot: ExecStart must name a binary that exists on this host.
    let config = tempfile::tempdir().unwrap();
    let mut init = Command::new(ze_bin());
    init.args(["init", "--username", "admin", "--password-stdin"])
        .env("ZE_CONFIG_DIR", config.path())
        .env_remove("ZE_SYSROOT");
    run_with_stdin(&mut init, b"secret\n", true);
    let mut dry = Command::new(ze_bin());
    dry.args(["install", "systemd", "--dry-run"])
        .env("ZE_CONFIG_DIR", config.path())
        .env_remove("ZE_SYSROOT");
    let out = run_ok(dry);
    let printed = stdout(&out);
    let unit: String = printed
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("would "))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ze.service");
    fs::write(&path, unit.trim_end().to_string() + "\n").unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd)");
    assert!(verify.status.success(), "{}", text_of(&verify));
    assert_eq!(text(&verify.stderr).trim(), "", "systemd-analyze warnings");
}

fn text_of(out: &std::process::Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[test]
fn u1_uninstall_systemd_stops_disables_removes_and_purges() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    run_ok(root.cmd(&bin, &["install", "systemd"]));
    let out = run_ok(root.cmd(&bin, &["uninstall", "systemd", "--purge", "--yes"]));
    assert!(
        stdout(&out).contains("ze.service removed"),
        "{}",
        stdout(&out)
    );
    assert!(!root.path("/etc/systemd/system/ze.service").exists());
    assert_eq!(
        root.systemctl_calls(),
        [
            "daemon-reload",
            "enable ze.service",
            "stop ze.service",
            "disable ze.service",
            "daemon-reload"
        ]
    );
    let passwd = fs::read_to_string(root.path("/etc/passwd")).unwrap();
    let group = fs::read_to_string(root.path("/etc/group")).unwrap();
    assert!(ze::users::id_in(&passwd, "ze").is_none() && ze::users::id_in(&group, "ze").is_none());
}

#[test]
fn u3_uninstall_asks_and_no_keeps_everything() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    let before = snapshot(root.dir.path());
    let mut pty = Pty::spawn(root.cmd(&bin, &["uninstall", "local", "--purge"]));
    pty.expect("Proceed? [y/N]: ");
    let listing = pty.output();
    assert!(listing.contains("remove /opt/ze/bin/ze"), "{listing}");
    assert!(
        listing.contains("remove directory /opt/ze/etc/ze and everything in it"),
        "{listing}"
    );
    pty.send(b"\r");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("aborted: nothing was changed"), "{out}");
    assert_eq!(snapshot(root.dir.path()), before);
    // Without a terminal and without --yes, it refuses.
    let out = run_fails(root.cmd(&bin, &["uninstall", "local"]));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert_eq!(snapshot(root.dir.path()), before);
}

#[test]
fn u2_u3_uninstall_local_detects_prefix_and_purges_on_yes() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    let mut pty = Pty::spawn(root.cmd(&bin, &["uninstall", "local", "--purge"]));
    pty.expect("Proceed? [y/N]: ");
    pty.send(b"y\r");
    let (code, out) = pty.wait();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ze removed from /opt/ze"), "{out}");
    assert!(
        !root.path("/opt/ze").exists(),
        "the self-contained prefix is gone"
    );
}

#[test]
fn u2_uninstall_local_without_purge_keeps_the_database() {
    let root = Root::bare();
    root.installed("/usr/local");
    run_ok(root.ze(&["uninstall", "local", "--prefix", "/usr/local", "--yes"]));
    assert!(!root.path("/usr/local/bin/ze").exists());
    assert!(
        root.path("/usr/local/bin").is_dir(),
        "shared prefix directories stay"
    );
    assert!(root.path("/etc/ze/database.zefs").exists());
    let out = run_fails(root.ze(&["uninstall", "local", "--prefix", "/usr/local", "--yes"]));
    assert!(
        stderr(&out).contains("nothing to remove"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn u4_uninstall_local_refuses_while_the_service_is_installed() {
    let root = Root::with_systemd();
    let bin = root.installed("/opt/ze");
    run_ok(root.cmd(&bin, &["install", "systemd"]));
    let out = run_fails(root.cmd(&bin, &["uninstall", "local", "--yes"]));
    assert!(
        stderr(&out).contains("run `ze uninstall systemd` first"),
        "{}",
        stderr(&out)
    );
    assert!(bin.exists());
}

#[test]
fn a9_version_reports_build_and_baked_manifest() {
    let root = Root::bare();
    let out = run_ok(root.ze(&["version"]));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("ze {} (built ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("\ncommit: "), "{text}");
    assert!(!text.contains("image:"));

    fs::create_dir_all(root.path("/perm/ze")).unwrap();
    fs::write(
        root.path("/perm/ze/build.json"),
        r#"{"image":"ze-20260617-160000.img","built":"20260617-160000","appliance":"prod","ze-version":"0.1.0"}"#,
    )
    .unwrap();
    let text = stdout(&run_ok(root.ze(&["version"])));
    assert!(
        text.ends_with("image: ze-20260617-160000.img (built 20260617-160000)\nappliance: prod\n"),
        "{text}"
    );

    let elsewhere = root.path("/other.json");
    fs::write(&elsewhere, "{not json").unwrap();
    let mut cmd = root.ze(&["version"]);
    cmd.env("ZE_BUILD_JSON", &elsewhere);
    let text = stdout(&run_ok(cmd));
    assert!(text.contains("image: unknown ("), "{text}");
}

#[test]
fn help_is_complete_for_every_command() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[],
            &[
                "install",
                "uninstall",
                "init",
                "version",
                "ze <config-file>",
                "ze -",
            ],
        ),
        (&["install"], &["local", "systemd"]),
        (
            &["install", "local"],
            &[
                "--prefix",
                "--dry-run",
                "/usr/local (recommended)",
                "/opt/ze (self-contained)",
            ],
        ),
        (
            &["install", "systemd"],
            &[
                "--dry-run",
                "--config",
                "--force",
                "--start",
                "database.zefs",
            ],
        ),
        (&["uninstall"], &["local", "systemd"]),
        (
            &["uninstall", "local"],
            &["--prefix", "--purge", "--dry-run", "--yes"],
        ),
        (
            &["uninstall", "systemd"],
            &["--purge", "--dry-run", "--yes"],
        ),
        (
            &["init"],
            &[
                "--config",
                "--username",
                "--password-stdin",
                "--force",
                "bcrypt",
            ],
        ),
        (&["version"], &["build.json"]),
    ];
    for (path, words) in cases {
        let mut args: Vec<&str> = path.to_vec();
        args.push("--help");
        let out = Command::new(ze_bin()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = stdout(&out);
        for w in *words {
            assert!(
                help.contains(w),
                "`ze {}` lacks {w:?}:\n{help}",
                args.join(" ")
            );
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["install", "local", "--bogus"][..],
        &["frobnicate"],
        &["init", "--username"],
    ] {
        let out = Command::new(ze_bin()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("--help"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn relative_config_paths_are_resolved_against_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("cfg")).unwrap();
    let mut cmd = Command::new(ze_bin());
    cmd.args([
        "init",
        "--config",
        "cfg",
        "--username",
        "admin",
        "--password-stdin",
    ])
    .current_dir(dir.path())
    .env_remove("ZE_SYSROOT");
    run_with_stdin(&mut cmd, b"pw\n", true);
    assert!(Path::new(&dir.path().join("cfg/database.zefs")).exists());
}
