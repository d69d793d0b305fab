//! `ze start` for real, in network namespaces (tier 2): an appliance
//! namespace running `ze start` over a database, a provisioning namespace
//! running our dhcpserver, joined by a veth pair.
//!
//! It proves: the dhcpclient plugin takes a lease and configures it; the
//! sshserver plugin lets the database's user in (and nobody else); the
//! control socket serves `ze cli`; `commit` stores the active config and
//! SIGHUP makes it take over (B6); `ze start --dry-run` reports the mode;
//! SIGTERM stops cleanly. Checklist B1, B4, B6, S6.

mod common;
mod pxe_support;

use pxe_support::*;
use std::{fs, path::Path, process::Command, time::Duration};
use ze::zefs::{Zefs, keys};

const SERVER_IP: &str = "198.51.100.1";

fn dhcp_config() -> String {
    format!(
        "dhcpserver {{
    interface zs0;
    lease-time 60;
    shared-network test {{
        subnet 198.51.100.0/24 {{
            pool 198.51.100.50 198.51.100.60;
            router {SERVER_IP};
        }}
    }}
}}
"
    )
}

fn ssh(
    ns: &Netns,
    known: &Path,
    ip: &str,
    port: u16,
    password: &str,
    command: &str,
) -> std::process::Output {
    ssh_as(ns, known, "admin", ip, port, password, command)
}

fn ssh_as(
    ns: &Netns,
    known: &Path,
    user: &str,
    ip: &str,
    port: u16,
    password: &str,
    command: &str,
) -> std::process::Output {
    common::ssh_with_password(ns.cmd("sshpass"), password, known, port)
        .args(["-l", user, ip])
        .arg(command)
        .output()
        .unwrap()
}

fn leased_ip(ns: &Netns) -> Option<String> {
    let out = ns.run("ip", &["-4", "-o", "addr", "show", "dev", "zc0"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .map(|a| a.split('/').next().unwrap_or_default().to_string())
}

#[test]
fn b1_b4_b6_ze_start_leases_serves_ssh_commits_and_reloads() {
    if !require(
        "b1_b4_b6_ze_start",
        &[
            ("root", is_root()),
            ("ssh", have("ssh")),
            ("sshpass", have("sshpass")),
        ],
    ) {
        return;
    }
    let pair = VethPair::new("rt", Some(&format!("{SERVER_IP}/24")));
    let _dhcp = start_daemon(&pair.server, &dhcp_config());
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let config = "dhcpclient {\n    interface zc0;\n}\nsshserver {\n    listen 0.0.0.0:2222;\n}\n";
    let db_path = appliance_database(dir.path(), Some(config));

    // The dry run says what would run.
    let out = pair
        .client
        .cmd(ze_bin().to_str().unwrap())
        .args(["start", "--dry-run", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let dry = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dry.starts_with("mode: active\n"),
        "{dry}"
    );

    let mut cmd = pair.client.cmd(ze_bin().to_str().unwrap());
    cmd.args(["start", "--config"])
        .arg(dir.path())
        .env("XDG_RUNTIME_DIR", &run_dir);
    let mut appliance = Logged::spawn(cmd);
    appliance.wait_for("ze: starting mode=active", Duration::from_secs(20));
    appliance.wait_for("sshserver: listening", Duration::from_secs(20));
    appliance.wait_for(
        "dhcpclient: lease interface=zc0 ip=198.51.100.5",
        Duration::from_secs(30),
    );
    let ip = leased_ip(&pair.client).expect("the lease is configured on zc0");
    assert!(ip.starts_with("198.51.100.5"), "{ip}");
    let routes =
        String::from_utf8_lossy(&pair.client.run("ip", &["-4", "route"]).stdout).into_owned();
    assert!(
        routes.contains(&format!("default via {SERVER_IP} dev zc0")),
        "{routes}"
    );

    // SSH from the provisioning side, with the database's credentials.
    let known = dir.path().join("known_hosts");
    let out = ssh(&pair.server, &known, &ip, 2222, "secret", "show version");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ze 0.1.0 (built "));
    let out = ssh(&pair.server, &known, &ip, 2222, "secret", "show interfaces");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("zc0") && l.contains(&format!("{ip}/24"))),
        "show interfaces lacks zc0 with {ip}/24:\n{table}"
    );
    let out = ssh(&pair.server, &known, &ip, 2222, "wrong", "show version");
    assert!(!out.status.success(), "a wrong password got in");
    appliance.wait_for(
        "login failed user=admin from=198.51.100.1 reason=bad-password",
        Duration::from_secs(5),
    );
    // A user name is the client's text: it is quoted in the log line, so
    // it cannot pass for fields of its own.
    let forged = "root from=203.0.113.9 reason=ok";
    let out = ssh_as(&pair.server, &known, forged, &ip, 2222, "x", "show version");
    assert!(!out.status.success(), "an unknown user got in");
    appliance.wait_for(
        "login failed user=\"root from=203.0.113.9 reason=ok\" from=198.51.100.1 reason=unknown-user",
        Duration::from_secs(5),
    );

    // The control socket: ze cli, one command and a script.
    let socket = run_dir.join("ze.socket");
    let out = Command::new(ze_bin())
        .args(["cli", "--socket"])
        .arg(&socket)
        .args(["show", "configuration"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        shown.contains("# configuration in force (from active)")
            && shown.contains("listen 0.0.0.0:2222;"),
        "{shown}"
    );

    // Commit a new config through the CLI; it is stored, not yet running.
    let new_config =
        "dhcpclient {\n    interface zc0;\n}\nsshserver {\n    listen 0.0.0.0:2223;\n}\n";
    let script = format!("config edit\n{new_config}.\ncommit\nexit\n");
    let mut cli = Command::new(ze_bin());
    cli.args(["cli", "--socket"]).arg(&socket);
    let out = run_with_input(cli, &script);
    assert!(out.contains("committed"), "{out}");
    let stored = Zefs::load(&db_path).unwrap();
    assert_eq!(
        stored.get(keys::ACTIVE_CONFIG).unwrap(),
        new_config.as_bytes()
    );
    // An invalid config is refused and the active config is unchanged.
    let mut cli = Command::new(ze_bin());
    cli.args(["cli", "--socket"]).arg(&socket);
    let out = run_with_input(cli, "config edit\nwebserver { }\n.\ncommit\n");
    assert!(
        out.contains("commit refused:") && out.contains("unknown plugin"),
        "{out}"
    );
    assert_eq!(
        Zefs::load(&db_path)
            .unwrap()
            .get(keys::ACTIVE_CONFIG)
            .unwrap(),
        new_config.as_bytes()
    );

    // SIGHUP: the committed config takes over.
    appliance.signal(rustix::process::Signal::HUP);
    appliance.wait_for("reloading the configuration", Duration::from_secs(10));
    wait_until(Duration::from_secs(30), || {
        ssh(
            &pair.server,
            &known,
            &ip,
            2223,
            "secret",
            "show configuration",
        )
        .status
        .success()
    });
    let out = ssh(
        &pair.server,
        &known,
        &ip,
        2223,
        "secret",
        "show configuration",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen 0.0.0.0:2223;"));
    assert!(
        !ssh(&pair.server, &known, &ip, 2222, "secret", "show version")
            .status
            .success(),
        "the old port still answers"
    );

    // SIGTERM: a clean stop that removes the socket.
    appliance.signal(rustix::process::Signal::TERM);
    assert_eq!(
        appliance.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        appliance.text()
    );
    assert!(!socket.exists(), "the control socket is removed");
    let _ = fs::remove_dir_all(dir.path());
}

#[test]
fn b1_bootstrap_mode_without_ethernet_refuses_clearly() {
    if !require("b1_bootstrap_refusal", &[("root", is_root())]) {
        return;
    }
    // A namespace holds only lo and veth links: no ethernet NIC.
    let pair = VethPair::new("rb", None);
    let dir = tempfile::tempdir().unwrap();
    appliance_database(dir.path(), None);
    let out = pair
        .client
        .cmd(ze_bin().to_str().unwrap())
        .args(["start", "--dry-run", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bootstrap mode needs an ethernet interface"),
        "{err}"
    );
    assert!(
        err.contains("zc0 (veth)") && err.contains("lo (loopback)"),
        "{err}"
    );
    assert!(err.contains("--web-only"), "{err}");
}

fn run_with_input(mut cmd: Command, input: &str) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("condition not met within {timeout:?}");
}
