//! `ze machines` run for real (checklist F2): records written, listed,
//! shown with the status a server saved, marked installed by the
//! server's own writer, reinstalled and removed; dry runs change nothing;
//! every error names the file or the flag and what is wrong.

mod common;

use common::*;
use std::{fs, os::unix::fs::MetadataExt, path::Path, process::Command};
use ze::provision::{
    mac::Mac,
    machines::Machines,
    status::{DhcpClient, DhcpMessage, Event, Fetch, Fleet},
};

const MAC: &str = "52:54:00:12:34:56";
const FILE: &str = "build/pxe/machines/52-54-00-12-34-56.conf";

fn ze(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(ze_bin());
    c.args(args).current_dir(dir);
    c
}

fn out(o: &std::process::Output) -> (String, String) {
    (text(&o.stdout), text(&o.stderr))
}

#[test]
fn f2_add_list_mark_installed_reinstall_remove() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let o = run_ok(ze(
        dir,
        &[
            "machines",
            "add",
            "52-54-00-12-34-56",
            "--image",
            "ze-1.img",
            "--install",
            "once",
            "--hostname",
            "rack1-node3",
            "--target",
            "/dev/vda",
        ],
    ));
    assert!(
        out(&o)
            .0
            .starts_with(&format!("wrote {}:\n", dir.join(FILE).display())),
        "{}",
        out(&o).0
    );
    let text = fs::read_to_string(dir.join(FILE)).unwrap();
    assert!(
        text.contains("image ze-1.img;\ntarget /dev/vda;\nhostname rack1-node3;\ninstall once;\n"),
        "{text}"
    );
    assert_eq!(fs::metadata(dir.join(FILE)).unwrap().mode() & 0o777, 0o644);

    let o = run_ok(ze(dir, &["machines", "list"]));
    assert_eq!(
        out(&o).0,
        "MAC                IMAGE     INSTALL  INSTALLED  HOSTNAME     TARGET    STAGE\n\
         52:54:00:12:34:56  ze-1.img  once     -          rack1-node3  /dev/vda  -\n"
    );

    // The server marks it installed, with the same writer.
    let mac: Mac = MAC.parse().unwrap();
    let records = Machines::open(&dir.join("build/pxe/machines"));
    assert!(
        records
            .mark_installed(mac, "ze-1.img", 1_781_712_000)
            .unwrap()
    );
    let o = run_ok(ze(dir, &["machines", "list"]));
    assert!(
        out(&o)
            .0
            .contains("once     2026-06-17T16:00:00Z  rack1-node3"),
        "{}",
        out(&o).0
    );
    let o = run_ok(ze(dir, &["machines", "show", "52:54:00:12:34:56"]));
    assert!(
        out(&o)
            .0
            .contains("installed {\n    at 2026-06-17T16:00:00Z;\n    image ze-1.img;\n}\n"),
        "{}",
        out(&o).0
    );

    let o = run_ok(ze(dir, &["machines", "reinstall", "52:54:00:12:34:56"]));
    assert!(out(&o).0.starts_with("wrote "), "{}", out(&o).0);
    assert!(
        !fs::read_to_string(dir.join(FILE))
            .unwrap()
            .contains("installed")
    );
    let o = run_ok(ze(dir, &["machines", "reinstall", MAC]));
    assert!(
        out(&o)
            .0
            .starts_with("52:54:00:12:34:56 is not marked installed"),
        "{}",
        out(&o).0
    );

    let o = run_ok(ze(dir, &["machines", "remove", "52-54-00-12-34-56"]));
    assert_eq!(out(&o).0, format!("removed {}\n", dir.join(FILE).display()));
    assert!(!dir.join(FILE).exists());
    let o = run_ok(ze(dir, &["machines", "list"]));
    assert_eq!(
        out(&o).0,
        format!(
            "no machine records in {}\n",
            dir.join("build/pxe/machines").display()
        )
    );
}

#[test]
fn f2_ssh_credentials_are_stored_hashed_for_root_only() {
    let d = tempfile::tempdir().unwrap();
    let mut add = ze(
        d.path(),
        &[
            "machines",
            "add",
            MAC,
            "--machines",
            "recs",
            "--image",
            "a.img",
            "--ssh-username",
            "ops",
            "--ssh-password-stdin",
        ],
    );
    run_with_stdin(&mut add, b"correct horse\n", true);
    let file = d.path().join("recs/52-54-00-12-34-56.conf");
    let text = fs::read_to_string(&file).unwrap();
    assert!(!text.contains("correct horse"));
    let record = ze::provision::machines::read_record(&file).unwrap();
    let ssh = record.ssh.unwrap();
    assert_eq!(ssh.username, "ops");
    assert!(ze::credentials::verify_password(
        "correct horse",
        &ssh.password_hash
    ));
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn f2_dry_runs_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let o = run_ok(ze(
        dir,
        &["machines", "add", MAC, "--image", "a.img", "--dry-run"],
    ));
    assert!(
        out(&o)
            .0
            .ends_with("install always;\ndry run: nothing was changed\n"),
        "{}",
        out(&o).0
    );
    assert_eq!(
        fs::read_dir(dir).unwrap().count(),
        0,
        "not even a directory"
    );
    run_ok(ze(
        dir,
        &[
            "machines",
            "add",
            MAC,
            "--image",
            "a.img",
            "--install",
            "once",
        ],
    ));
    Machines::open(&dir.join("build/pxe/machines"))
        .mark_installed(MAC.parse().unwrap(), "a.img", 1)
        .unwrap();
    let before = snapshot(dir);
    for args in [
        &[
            "machines",
            "add",
            MAC,
            "--image",
            "b.img",
            "--force",
            "--dry-run",
        ][..],
        &["machines", "reinstall", MAC, "--dry-run"],
        &["machines", "remove", MAC, "--dry-run"],
    ] {
        let o = run_ok(ze(dir, args));
        assert!(
            out(&o).0.ends_with("dry run: nothing was changed\n"),
            "{args:?}: {}",
            out(&o).0
        );
        assert_eq!(snapshot(dir), before, "{args:?}");
    }
}

#[test]
fn f2_errors_name_the_file_or_flag_and_what_is_wrong() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let file = dir.join(FILE).display().to_string();
    let fails = |args: &[&str]| out(&run_fails(ze(dir, args))).1;
    assert_eq!(
        fails(&["machines", "add", "52:54:00:12:34", "--image", "a.img"]),
        "ze: error: \"52:54:00:12:34\" is not a MAC address: expected six two-digit hex pairs such as 52:54:00:12:34:56 or 52-54-00-12-34-56\n"
    );
    assert!(
        fails(&["machines", "add", MAC, "--image", "../a.img"])
            .starts_with("ze: error: --image \"../a.img\" must be a plain file name")
    );
    assert!(
        fails(&[
            "machines",
            "add",
            MAC,
            "--image",
            "a.img",
            "--target",
            "/dev/vda1 x"
        ])
        .starts_with("ze: error: --target \"/dev/vda1 x\" is not a ze.target")
    );
    assert!(
        fails(&[
            "machines",
            "add",
            MAC,
            "--image",
            "a.img",
            "--hostname",
            "a_b"
        ])
        .starts_with("ze: error: --hostname \"a_b\" is not a host name")
    );
    assert_eq!(
        fails(&[
            "machines",
            "add",
            MAC,
            "--image",
            "a.img",
            "--ssh-username",
            "ops"
        ]),
        "ze: error: no terminal to ask for the SSH password: pass --ssh-password-file FILE or --ssh-password-stdin (--ssh-password PW works too, but shows in `ps`)\n"
    );
    assert_eq!(
        fails(&["machines", "reinstall", MAC]),
        format!(
            "ze: error: {file}: no record: a machine without one installs on every network boot already\n"
        )
    );
    assert_eq!(
        fails(&["machines", "remove", MAC]),
        format!("ze: error: {file}: no record to remove\n")
    );
    assert_eq!(
        fails(&["machines", "show", MAC]),
        format!(
            "ze: error: 52:54:00:12:34:56: no record ({file} does not exist) and no status in {}\n",
            dir.join("build/pxe/state/fleet.json").display()
        )
    );
    run_ok(ze(dir, &["machines", "add", MAC, "--image", "a.img"]));
    assert_eq!(
        fails(&["machines", "add", MAC, "--image", "b.img"]),
        format!(
            "ze: error: {file}: a record exists: pass --force to replace it (its installed mark goes too), or edit the file\n"
        )
    );
    // A bad record: listed with file:line:column, the good ones still
    // listed, and the exit status says so.
    let bad = dir.join("build/pxe/machines/52-54-00-00-00-09.conf");
    fs::write(&bad, "image a.img;\n\n  install twice;\n").unwrap();
    let o = run_fails(ze(dir, &["machines", "list"]));
    let (stdout, stderr) = out(&o);
    assert!(stdout.contains("52:54:00:12:34:56  a.img"), "{stdout}");
    assert_eq!(
        stderr,
        format!(
            "ze: warning: {}:3:3: machine.install: \"twice\": expected once, always or never\n\
             ze: error: 1 bad record(s) in {}: the servers ignore them until they are fixed\n",
            bad.display(),
            dir.join("build/pxe/machines").display()
        )
    );
    assert!(
        fails(&["machines", "reinstall", "52:54:00:00:00:09"])
            .contains("3:3: machine.install: \"twice\"")
    );
    // --force replaces a bad record.
    run_ok(ze(
        dir,
        &[
            "machines",
            "add",
            "52:54:00:00:00:09",
            "--image",
            "a.img",
            "--force",
        ],
    ));
    run_ok(ze(dir, &["machines", "list"]));
}

#[test]
fn f2_f5_show_prints_the_status_a_server_saved() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let mac: Mac = MAC.parse().unwrap();
    {
        let fleet = Fleet::open(&dir.join("build/pxe/state"));
        let ack = Event::Dhcp {
            message: DhcpMessage::Ack,
            ip: Some("192.0.2.2".parse().unwrap()),
            client: DhcpClient::Firmware,
            hostname: Some("from-dhcp".into()),
        };
        fleet.event_at(mac, ack, 1_781_712_000_000).unwrap();
        fleet
            .event_at(mac, Event::Fetch(Fetch::Kernel), 1_781_712_005_000)
            .unwrap();
    }
    let o = run_ok(ze(dir, &["machines", "show", MAC]));
    let (stdout, _) = out(&o);
    assert!(
        stdout.starts_with("52:54:00:12:34:56: no record: it follows the command line"),
        "{stdout}"
    );
    for want in [
        "  stage    kernel\n",
        "  ip       192.0.2.2\n",
        "  hostname from-dhcp\n",
        "  started  2026-06-17T16:00:00Z\n",
        "    2026-06-17T16:00:00Z  dhcp      ACK 192.0.2.2 (PXE firmware)\n",
        "    2026-06-17T16:00:05Z  kernel    the installer kernel\n",
    ] {
        assert!(stdout.contains(want), "{want:?} in:\n{stdout}");
    }
    // The terminal view of the same saved table (F6).
    let o = run_ok(ze(dir, &["machines", "status", "--width", "100"]));
    let (table, _) = out(&o);
    assert!(table.starts_with("1 machine"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("52:54:00:12:34:56  192.0.2.2")
                && l.contains("from-dhcp")
                && l.contains("kernel")),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    run_ok(ze(dir, &["machines", "add", MAC, "--image", "a.img"]));
    let o = run_ok(ze(dir, &["machines", "list"]));
    assert!(
        out(&o)
            .0
            .contains("a.img  always   -          -         -       kernel"),
        "{}",
        out(&o).0
    );
}
