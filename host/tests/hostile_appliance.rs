//! The appliance on a hostile segment (issue 14), through a real
//! `ze start` in network namespaces: connections that never log in, and
//! parallel password guesses, then the operator logging in with OpenSSH
//! (checklist B4: credentials from zefs); a crash's leftover temp file and
//! a control socket path that names the database (S6), then a commit and
//! a login. Each ends with a real client served (drop-and-survive).

mod common;
mod pxe_support;

use pxe_support::*;
use std::{
    fs,
    io::Read,
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

const SERVER: &str = "192.0.2.1";
/// The operator's address (the first on its interface, so ssh uses it).
const CLIENT: &str = "192.0.2.200";
/// Slack on every time bound: the machine is shared with other builds.
const MARGIN: Duration = Duration::from_secs(3);

/// `ze start` in `ns` over a database in `dir` whose committed
/// configuration is `config`; the control socket in `dir/run`.
fn start_appliance(ns: &Netns, dir: &Path, config: &str) -> Logged {
    appliance_database(dir, Some(config));
    let mut cmd = ns.cmd(ze_bin().to_str().unwrap());
    cmd.args(["start", "--config"])
        .arg(dir)
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env("ZE_LOG", "debug");
    let mut d = Logged::spawn(cmd);
    d.wait_for("ze: starting mode=active", Duration::from_secs(20));
    d
}

/// OpenSSH (through sshpass) from `ns` logging in to the appliance as
/// admin and running `show version`; the output and how long it took.
fn ssh_login(ns: &Netns, known: &Path, password: &str) -> (std::process::Output, Duration) {
    let t0 = Instant::now();
    let out = common::ssh_with_password(ns.cmd("sshpass"), password, known, 22)
        .args(["-l", "admin", SERVER, "show version"])
        .output()
        .unwrap();
    (out, t0.elapsed())
}

const SSH_CONFIG: &str = "sshserver {\n    listen 192.0.2.1:22;\n}\n";

#[test]
fn ssh_silent_connections_never_lock_out_the_operator() {
    if !prerequisites("ssh_silent", &["ssh", "sshpass"]) {
        return;
    }
    let pair = VethPair::new("ssil", Some("192.0.2.1/24"));
    pair.client
        .ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "zc0"]);
    pair.client.ip_batch(
        &(0..4)
            .map(|i| format!("addr add {}/24 dev zc0", attacker(i)))
            .collect::<Vec<_>>(),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut d = start_appliance(&pair.server, dir.path(), SSH_CONFIG);
    d.wait_for("sshserver: listening", Duration::from_secs(20));
    // 16 connections, 4 from each of 4 addresses, that never send a
    // banner (before the fix: every one of the 16 sessions, for 600 s).
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..16)
        .map(|i| tcp_from(&pair.client, &attacker(i % 4), &format!("{SERVER}:22")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The operator logs in at once.
    let known = dir.path().join("known_hosts");
    let (out, took) = ssh_login(&pair.client, &known, "secret");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ze "));
    // A login costs a handshake and a bcrypt check (slow in a debug build).
    assert!(took < Duration::from_secs(5) + MARGIN, "{took:?}");
    eprintln!("operator logged in in {took:?} with 16 silent connections open");
    // Every silent connection is closed by the login deadline: evicted for
    // a newer one, or at 30 s.
    let bound = Duration::from_secs(30) + MARGIN;
    for c in &mut silent {
        c.set_read_timeout(Some(
            bound
                .saturating_sub(started.elapsed())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("still open after {:?}: {e}", started.elapsed()));
        assert!(got.is_empty() || got.starts_with(b"SSH-2.0-"), "{got:?}");
    }
    eprintln!("all 16 closed by {:?}", started.elapsed());
    let log = d.text();
    assert!(
        log.contains("closed a connection that had not logged in yet, to make room for a new one"),
        "{log}"
    );
    assert!(
        log.contains("closed the connection: not logged in within 30 s"),
        "{log}"
    );
    // Still serving.
    let (out, _) = ssh_login(&pair.client, &known, "secret");
    assert!(out.status.success());
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn ssh_parallel_wrong_passwords_from_one_address_get_three_checks() {
    if !prerequisites("ssh_guesses", &["ssh", "sshpass"]) {
        return;
    }
    let pair = VethPair::new("sgue", Some("192.0.2.1/24"));
    pair.client
        .ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "zc0"]);
    pair.client
        .ip(&["addr", "add", &format!("{}/24", attacker(0)), "dev", "zc0"]);
    let dir = tempfile::tempdir().unwrap();
    let mut d = start_appliance(&pair.server, dir.path(), SSH_CONFIG);
    d.wait_for("sshserver: listening", Duration::from_secs(20));
    let known = dir.path().join("known_hosts-guess");
    // 16 OpenSSH clients at once from one address, each with a wrong
    // password.
    let guesses: Vec<std::process::Child> = (0..16)
        .map(|_| {
            common::ssh_with_password(pair.client.cmd("sshpass"), "wrong", &known, 22)
                .args(["-o", &format!("BindAddress={}", attacker(0))])
                .args(["-l", "admin", SERVER, "show version"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut g in guesses {
        assert!(!g.wait().unwrap().success(), "a wrong password got in");
    }
    // Every bcrypt check logs one `login failed` line: at most the three
    // free failures, whatever the timing.
    let log = d.text();
    let from = format!("from={}", attacker(0));
    let checked = log
        .lines()
        .filter(|l| l.contains("sshserver: warning: login failed") && l.contains(&from))
        .count();
    eprintln!(
        "16 parallel wrong passwords: {checked} checked, {} refused by the limiter, {} at the door",
        log.matches("login refused: too many failures").count(),
        log.matches("have not logged in yet").count()
    );
    assert!(
        (1..=3).contains(&checked),
        "{checked} bcrypt checks:\n{log}"
    );
    // The operator, from another address, is not held back.
    let (out, _) = ssh_login(&pair.client, &dir.path().join("known_hosts"), "secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn s6_a_crashed_saves_temp_file_with_the_daemons_pid_never_blocks_commit() {
    if !prerequisites("stale_temp", &[]) {
        return;
    }
    let ns = Netns::new("stmp");
    ns.ip(&["link", "add", "d0", "type", "bridge"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    ns.ip(&["link", "set", "d0", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let mut d = start_appliance(&ns, dir.path(), SSH_CONFIG);
    d.wait_for("sshserver: listening", Duration::from_secs(20));
    // What a save cut short by a crash leaves, under the name the daemon
    // itself would use: on an appliance `ze start` gets the same pid at
    // every boot (before the fix, every later save then failed).
    let planted = dir
        .path()
        .join(format!(".database.zefs.tmp-{}", d.child.id()));
    let f = fs::File::create(&planted).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let new_config = "sshserver {\n    listen 192.0.2.1:2222;\n}\n";
    let mut cli = std::process::Command::new(ze_bin());
    cli.args(["cli", "--socket"])
        .arg(dir.path().join("run/ze.socket"));
    let out = common::run_with_stdin(
        &mut cli,
        format!("config edit\n{new_config}.\ncommit\nexit\n").as_bytes(),
        true,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("committed"), "{text}");
    let db = ze::zefs::Zefs::load(&dir.path().join("database.zefs")).unwrap();
    assert_eq!(
        db.get(ze::zefs::keys::ACTIVE_CONFIG).unwrap(),
        new_config.as_bytes()
    );
    assert!(!planted.exists(), "the leftover is cleaned up");
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}

#[test]
fn s6_a_control_socket_path_that_is_the_database_leaves_it_alone() {
    if !prerequisites("socket_path", &["ssh", "sshpass"]) {
        return;
    }
    let pair = VethPair::new("sock", Some("192.0.2.1/24"));
    pair.client
        .ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "zc0"]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("database.zefs");
    let config = format!("daemon {{\n    socket {};\n}}\n{SSH_CONFIG}", db.display());
    let mut d = start_appliance(&pair.server, dir.path(), &config);
    d.wait_for(
        &format!(
            "ze: warning: no control socket: {} exists and is not a socket (a regular file)",
            db.display()
        ),
        Duration::from_secs(20),
    );
    d.wait_for("sshserver: listening", Duration::from_secs(20));
    assert!(fs::symlink_metadata(&db).unwrap().is_file());
    let stored = ze::zefs::Zefs::load(&db).unwrap();
    assert!(stored.user("admin").is_some(), "the credentials are intact");
    // And the operator still gets in with them.
    let (out, _) = ssh_login(&pair.client, &dir.path().join("known_hosts"), "secret");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
}
