//! A rack in network namespaces (checklist F1–F6), served by `ze install
//! remote` itself: 40 targets on one bridge, each with its own record
//! (image, disk, host name, install once or always), doing with real
//! clients what a PXE boot and an install do — DHCP as the firmware
//! (busybox udhcpc), `ipxe.efi` over TFTP (curl), DHCP as iPXE, the boot
//! script at the URL the DHCP server gave, the kernel and the initrd, the
//! installer's reports, the image the script names (its sha256 checked
//! against the script's `ze.sha256`), the database, `complete` — then a
//! second network boot (install once: the local-disk script) and the
//! appliance's own lease.
//!
//! Then, against the same live server: `/install/status` lists all 40 up
//! with their addresses, host names and timelines; `/metrics` parses with
//! Prometheus' own parser; headless Chromium shows the 40 rows (a
//! screenshot is saved as `target/tmp/fleet-rack.png`); a changed record
//! is seen within a second, and at once after SIGHUP.
//!
//! `f1_f5_bad_input_leaves_the_live_server_serving` attacks a live server
//! with what the fleet must survive and checks that a good machine is
//! still served.

mod common;
mod pxe_support;

use pxe_support::*;
use std::{
    collections::BTreeSet,
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

const SERVER: &str = SEGMENT_SERVER;
const RACK_LIMIT: Duration = Duration::from_secs(300);

fn mac(i: usize) -> String {
    format!("52:54:00:ab:00:{i:02x}")
}

fn dashed(i: usize) -> String {
    mac(i).replace(':', "-")
}

/// One target: a network boot and an install, then a second network boot
/// and the appliance's lease; every step a line in `$out`.
const TARGET_SCRIPT: &str = r#"#!/bin/bash
set -u -o pipefail
n=$1; out=$2/$n; hook=$3; mac=$4; srv=$5
ip link set lo up; ip link set eth0 address "$mac"; ip link set eth0 up
ip -4 addr flush dev eth0
dhcp() {
    phase=$1; shift
    for round in 1 2 3; do
        RACK_OUT=$out RACK_PHASE=$phase busybox udhcpc -i eth0 -f -q -n -t 5 -T 3 -A 1 \
            "$@" -O bootfile -O hostname -s "$hook" >> "$out.udhcpc" 2>&1 && return 0
    done
    echo "FAIL dhcp-$phase" >> "$out"; exit 1
}
get() {
    curl -sS --fail --max-time 60 --tftp-blksize 1468 "$1" -o "$2" 2>> "$out.curl" \
        || { echo "FAIL get $1" >> "$out"; exit 1; }
}
report() {
    curl -sS --fail --max-time 10 "http://$srv/install/report/${mac//:/-}/$1" -o /dev/null 2>> "$out.curl" \
        || { echo "FAIL report $1" >> "$out"; exit 1; }
}
netboot() {
    dhcp pxe-$1 -V PXEClient:Arch:00007:UNDI:003000 -x 0x5d:0007
    get "tftp://$srv/ipxe.efi" /dev/null
    dhcp ipxe-$1 -V PXEClient:Arch:00007:UNDI:003010 -x 0x5d:0007 -x 0x4d:69505845
    url=$(sed -n "s/^dhcp ipxe-$1 .* opt67=//p" "$out" | tail -1)
    get "$url" "$out.script-$1"
    echo "script-$1 $url" >> "$out"
}
netboot 1
image=$(grep -o 'ze\.image=[^ ]*' "$out.script-1" | cut -d= -f2)
sha=$(grep -o 'ze\.sha256=[^ ]*' "$out.script-1" | cut -d= -f2)
target=$(grep -o 'ze\.target=[^ ]*' "$out.script-1" | cut -d= -f2)
get "http://$srv/install/boot/vmlinuz" /dev/null
get "http://$srv/install/boot/initrd.img.gz" /dev/null
ip=$(ip -4 -o addr show dev eth0 | awk '{print $4}')
report "network?iface=eth0&ip=${ip//\//%2F}"
report "disk?name=vda&size=8589934592"
get "http://$srv/install/image/$image" "$out.img"
size=$(stat -c %s "$out.img")
report "progress?bytes=$((size / 2))&total=$size"
got=$(openssl dgst -sha256 -r "$out.img" | cut -d' ' -f1)
[ "$got" = "$sha" ] || { echo "FAIL sha256 $image $got != $sha" >> "$out"; exit 1; }
report "progress?bytes=$size&total=$size"
report "verified?bytes=$size"
get "http://$srv/install/database.zefs" "$out.db"
report "database?bytes=$(stat -c %s "$out.db")"
report complete
echo "installed $image sha256=$got target=$target" >> "$out"
rm -f "$out.img"
netboot 2
dhcp appliance
echo done >> "$out"
"#;

const HOOK_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
    bound|renew)
        ip -4 addr replace "$ip/$mask" dev "$interface"
        echo "dhcp $RACK_PHASE $ip hostname=${hostname:-} opt67=${bootfile:-}" >> "$RACK_OUT" ;;
esac
exit 0
"#;

/// The served files and the records.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new(n: usize) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("ipxe/ipxe.efi"), &pattern(300_000, 31));
        write(&d.join("ipxe/ipxe.pxe"), &pattern(90_000, 32));
        write(&d.join("kernel"), &pattern(900_000, 33));
        write(&d.join("initrd"), &pattern(100_000, 34));
        write(&d.join("img/ze-default.img"), &pattern(1 << 20, 35));
        write(&d.join("password"), b"rack-secret\n");
        fs::create_dir_all(d.join("pxe/machines")).unwrap();
        for i in 0..n {
            write(
                &d.join(format!("img/m{i:02}.img")),
                &pattern(256 << 10, 100 + i as u64),
            );
            let install = if i % 2 == 0 { "once" } else { "always" };
            write(
                &d.join(format!("pxe/machines/{}.conf", dashed(i))),
                format!(
                    "image m{i:02}.img;\ntarget /dev/disk/by-id/virtio-rack{i:02};\nhostname rack1-node{i:02};\ninstall {install};\n"
                )
                .as_bytes(),
            );
        }
        for (name, text) in [("target.sh", TARGET_SCRIPT), ("hook.sh", HOOK_SCRIPT)] {
            write(&d.join(name), text.as_bytes());
            sh("chmod", &["755", d.join(name).to_str().unwrap()]);
        }
        Site { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

/// `ze install remote` in the server namespace, serving `site`.
fn install_remote(seg: &Segment, site: &Site, extra: &[&str]) -> Logged {
    let mut cmd = seg.server.cmd(ze_bin().to_str().unwrap());
    cmd.args([
        "install",
        "remote",
        "--interface",
        "br0",
        "--network",
        "192.0.2.0/24",
        "--ssh-username",
        "admin",
    ])
    .arg("--ssh-password-file")
    .arg(site.path("password"))
    .arg("--image")
    .arg(site.path("img/ze-default.img"))
    .arg("--kernel")
    .arg(site.path("kernel"))
    .arg("--initrd")
    .arg(site.path("initrd"))
    .arg("--ipxe-dir")
    .arg(site.path("ipxe"))
    .arg("--pxe-dir")
    .arg(site.path("pxe"))
    .args(extra)
    .env("ZE_LOG", "info");
    let mut ze = Logged::spawn(cmd);
    ze.wait_for("ze: started", Duration::from_secs(60));
    ze
}

/// GET `path` from the probe namespace: (status, body).
fn get(seg: &Segment, path: &str) -> (u16, String) {
    let out = seg
        .probe
        .cmd("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            &format!("http://{SERVER}{path}"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn status_json(seg: &Segment) -> serde_json::Value {
    let (code, body) = get(seg, "/install/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn sample(families: &serde_json::Value, family: &str, label: Option<(&str, &str)>) -> f64 {
    families[family]["samples"]
        .as_array()
        .unwrap_or_else(|| panic!("no family {family}"))
        .iter()
        .find(|s| label.is_none_or(|(k, v)| s[1][k] == v))
        .unwrap_or_else(|| panic!("no sample {family} {label:?}"))[2]
        .as_f64()
        .unwrap()
}

/// Run every target at once; each one's lines.
fn boot_rack(seg: &Segment, site: &Site, n: usize) -> Vec<String> {
    let out = site.path("out");
    fs::create_dir_all(&out).unwrap();
    let mut children: Vec<_> = (0..n)
        .map(|i| {
            seg.targets
                .cmd(i, "bash")
                .arg(site.path("target.sh"))
                .arg(i.to_string())
                .arg(&out)
                .arg(site.path("hook.sh"))
                .arg(mac(i))
                .arg(SERVER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    for c in &mut children {
        loop {
            if c.try_wait().unwrap().is_some() {
                break;
            }
            if started.elapsed() > RACK_LIMIT {
                let _ = c.kill();
                let _ = c.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("rack of {n}: every target done in {:?}", started.elapsed());
    (0..n)
        .map(|i| fs::read_to_string(out.join(i.to_string())).unwrap_or_default())
        .collect()
}

/// What every rack test needs: root, iproute2 and the targets' clients.
fn rack_tools() -> Vec<(&'static str, bool)> {
    vec![
        ("root", is_root()),
        ("ip (iproute2)", have("ip")),
        ("busybox (udhcpc)", have("busybox")),
        ("curl", have("curl")),
        ("openssl", have("openssl")),
    ]
}

#[test]
fn f1_f4_f5_f6_a_rack_of_40_machines_each_from_its_own_record() {
    const TEST: &str = "f1_f4_f5_f6_a_rack_of_40_machines_each_from_its_own_record";
    let has_parser = common::have_prometheus_parser();
    if !require(
        TEST,
        &[
            rack_tools(),
            vec![
                ("chromium", have("chromium")),
                ("python3-prometheus-client", has_parser),
            ],
        ]
        .concat(),
    ) {
        return;
    }
    const N: usize = 40;
    let site = Site::new(N);
    let seg = Segment::new("rack", N);
    let mut ze = install_remote(&seg, &site, &[]);
    let lines = boot_rack(&seg, &site, N);
    let log = ze.text();

    // Every target got its own script, image and disk, and installed.
    for (i, text) in lines.iter().enumerate() {
        assert!(
            text.contains("done\n"),
            "target {i} did not finish:\n{text}\n{}\nserver log:\n{log}",
            fs::read_to_string(site.path(&format!("out/{i}.curl"))).unwrap_or_default()
        );
        assert!(
            text.contains(&format!(
                "script-1 http://{SERVER}/install/boot/boot.ipxe?mac={}\n",
                dashed(i)
            )),
            "target {i}: the DHCP server names its MAC in the boot script URL:\n{text}"
        );
        assert!(
            text.contains(&format!("installed m{i:02}.img sha256="))
                && text.contains(&format!("target=/dev/disk/by-id/virtio-rack{i:02}\n")),
            "target {i}: its own image and disk:\n{text}"
        );
        assert!(
            text.contains(&format!("hostname=rack1-node{i:02} ")),
            "target {i}: the record's host name in DHCP option 12:\n{text}"
        );
        let second =
            fs::read_to_string(site.path(&format!("out/{i}.script-2"))).unwrap_or_default();
        if i % 2 == 0 {
            assert!(
                second.contains("boot the local disk") && !second.contains("kernel "),
                "target {i} (install once): its second network boot goes to its disk:\n{second}"
            );
            let firmware = text
                .lines()
                .find(|l| l.starts_with("dhcp pxe-2 "))
                .unwrap_or_default();
            assert!(
                firmware.ends_with(" opt67="),
                "target {i} (install once, installed): its firmware gets no bootfile: {firmware}"
            );
            let record =
                fs::read_to_string(site.path(&format!("pxe/machines/{}.conf", dashed(i)))).unwrap();
            assert!(
                record.contains("installed {") && record.contains(&format!("image m{i:02}.img;")),
                "target {i}: its record is marked installed:\n{record}"
            );
        } else {
            assert!(
                second.contains(&format!(" ze.image=m{i:02}.img ")),
                "target {i} (install always): installs again:\n{second}"
            );
        }
    }

    // The status table: all 40 up, each at its address, with its host
    // name and the whole chain in its timeline.
    let status = status_json(&seg);
    let machines = status["machines"].as_array().unwrap();
    assert_eq!(machines.len(), N, "{status:#}");
    for (i, text) in lines.iter().enumerate() {
        let m = machines
            .iter()
            .find(|m| m["mac"] == mac(i))
            .unwrap_or_else(|| panic!("{} missing from /install/status", mac(i)));
        let leased = text
            .lines()
            .find_map(|l| l.strip_prefix("dhcp appliance "))
            .and_then(|l| l.split(' ').next())
            .unwrap();
        assert_eq!(m["stage"], "up", "{m:#}");
        assert_eq!(m["ip"], leased, "{m:#}");
        assert_eq!(m["hostname"], format!("rack1-node{i:02}"), "{m:#}");
        let stages: BTreeSet<&str> = m["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stage"].as_str().unwrap())
            .collect();
        for want in [
            "dhcp", "pxe", "ipxe", "kernel", "initrd", "network", "disk", "image", "verified",
            "database", "complete", "up",
        ] {
            assert!(stages.contains(want), "{}: no {want} in {m:#}", mac(i));
        }
    }

    // The metrics, through Prometheus' parser.
    let (code, text) = get(&seg, "/metrics");
    assert_eq!(code, 200);
    let families = common::prometheus_families(&text);
    assert_eq!(
        sample(&families, "ze_fleet_machines", Some(("stage", "up"))),
        N as f64
    );
    assert_eq!(sample(&families, "ze_installs_completed", None), N as f64);
    assert_eq!(sample(&families, "ze_installs_failed", None), 0.0);
    assert!(
        sample(&families, "ze_tftp_transfers", None) >= 2.0 * N as f64,
        "{text}"
    );
    assert!(
        sample(&families, "ze_dhcp_leases_in_use", None) >= N as f64,
        "{text}"
    );
    let served = sample(
        &families,
        "ze_served_bytes",
        Some(("server", "imageserver")),
    );
    assert!(served >= (N * (256 << 10)) as f64, "{text}");
    assert!(
        sample(&families, "ze_served_bytes", Some(("server", "tftpserver")))
            >= (2 * N * 300_000) as f64,
        "{text}"
    );

    // The page, in headless Chromium against the live server.
    let dom = chromium(
        &seg.probe,
        &format!("http://{SERVER}/"),
        &["--dump-dom"],
        3000,
    );
    assert_eq!(dom.matches("<tr class=\"machine ").count(), N, "{dom}");
    assert!(dom.contains(&format!("{N} machines:")), "{dom}");
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-rack.png");
    let _ = fs::remove_file(&shot);
    chromium(
        &seg.probe,
        &format!("http://{SERVER}/"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1400",
            "--hide-scrollbars",
        ],
        3000,
    );
    let png = fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    eprintln!("screenshot of the live status page: {}", shot.display());

    // A changed record is seen within a second; after SIGHUP at once.
    let record = site.path(&format!("pxe/machines/{}.conf", dashed(1)));
    fs::write(&record, "image m02.img;\nhostname rack1-node01;\n").unwrap();
    let path = format!("/install/boot/boot.ipxe?mac={}", dashed(1));
    let t0 = Instant::now();
    while !get(&seg, &path).1.contains(" ze.image=m02.img ") {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the changed record was not seen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("a changed record was seen after {:?}", t0.elapsed());
    fs::write(&record, "image m03.img;\n").unwrap();
    ze.signal(rustix::process::Signal::HUP);
    ze.wait_for(
        "reloading: the machine records are read again",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(get(&seg, &path).1.contains(" ze.image=m03.img "));
    assert_eq!(
        get(&seg, "/install/status").0,
        200,
        "SIGHUP stopped the server"
    );

    // (Machine 1 asked for its script again above: it is back at ipxe.)
    let live = status_json(&seg);
    let stages = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["machines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["mac"].to_string(), m["stage"].to_string()))
            .collect()
    };
    ze.signal(rustix::process::Signal::TERM);
    assert_eq!(
        ze.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        ze.text()
    );
    // The table is kept for a restart: the file holds what was served.
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(site.path("pxe/state/fleet.json")).unwrap())
            .unwrap();
    assert_eq!(stages(&saved), stages(&live));
    let up = stages(&live).iter().filter(|(_, s)| s == "\"up\"").count();
    assert_eq!(up, N - 1);
}

/// Send `count` GETs of `target(i)` from the probe on one keep-alive
/// connection, pipelined, never faster than `rate` a second; returns the
/// status code of every answer.
fn flood(seg: &Segment, count: usize, rate: usize, target: fn(usize) -> String) -> Vec<u16> {
    in_ns(&seg.probe, move || {
        let mut s = TcpStream::connect((SERVER, 80)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut codes, mut buf, mut at) = (Vec::new(), Vec::new(), 0usize);
        let mut chunk = [0u8; 65536];
        let start = Instant::now();
        let mut sent = 0;
        while codes.len() < count {
            let due = ((start.elapsed().as_millis() as usize + 1) * rate / 1000).min(count);
            if due > sent {
                let batch: String = (sent..due)
                    .map(|i| format!("GET {} HTTP/1.1\r\nHost: {SERVER}\r\n\r\n", target(i)))
                    .collect();
                s.write_all(batch.as_bytes()).unwrap();
                sent = due;
            }
            if codes.len() < sent {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
                at = parse_codes(&buf, at, &mut codes);
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        eprintln!(
            "{} answers to {sent} requests in {:?}",
            codes.len(),
            start.elapsed()
        );
        codes
    })
}

/// Take the complete responses (each with a Content-Length body) in
/// `buf` from `at` on; returns where the next one starts.
fn parse_codes(buf: &[u8], mut at: usize, codes: &mut Vec<u16>) -> usize {
    while let Some(end) = buf[at..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|e| at + e + 4)
    {
        let head = String::from_utf8_lossy(&buf[at..end]);
        let code = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() < end + len {
            break;
        }
        codes.push(code);
        at = end + len;
    }
    at
}

#[test]
fn f1_f5_bad_input_leaves_the_live_server_serving() {
    const TEST: &str = "f1_f5_bad_input_leaves_the_live_server_serving";
    if !require(TEST, &rack_tools()) {
        return;
    }
    // Two good machines (0 and 1), one whose record names a missing image
    // (2), and a machine without a record that calls itself <b>.
    let site = Site::new(2);
    write(
        &site.path(&format!("pxe/machines/{}.conf", dashed(2))),
        b"image not-there.img;\n",
    );
    let seg = Segment::new("rack", 4);
    let mut ze = install_remote(&seg, &site, &[]);
    let probe_ok = |seg: &Segment| {
        let (code, s) = get(seg, &format!("/install/boot/boot.ipxe?mac={}", dashed(0)));
        assert_eq!(code, 200, "{s}");
        assert!(s.contains(" ze.image=m00.img "), "{s}");
    };

    // A record naming a missing image: an error that names the record.
    let (code, body) = get(&seg, &format!("/install/boot/boot.ipxe?mac={}", dashed(2)));
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains("the record of 52:54:00:ab:00:02 names image not-there.img"),
        "{body}"
    );
    probe_ok(&seg);

    // Reports for unknown MACs, forged and oversized fields.
    for (path, want) in [
        (
            "/install/report/52-54-00-ee-ee-ee/complete".to_string(),
            200,
        ),
        (
            format!(
                "/install/report/{}/fatal?line={}",
                dashed(0),
                "x".repeat(5000)
            ),
            400,
        ),
        (
            format!("/install/report/{}/progress?bytes=9&total=2", dashed(0)),
            400,
        ),
        (
            format!(
                "/install/report/{}/network?iface=eth0&ip=192.0.2.77%2F24",
                dashed(0)
            ),
            400,
        ),
        (
            format!(
                "/install/report/{}/disk?name=%3Cscript%3E&size=1",
                dashed(0)
            ),
            400,
        ),
        ("/install/report/nope/complete".to_string(), 400),
        (format!("/install/report/{}/launch", dashed(0)), 400),
    ] {
        let (code, body) = get(&seg, &path);
        assert_eq!(code, want, "{path}: {body}");
    }
    probe_ok(&seg);

    // 10,000 reports a second for 5 s, forged MACs, on one connection.
    let codes = flood(&seg, 50_000, 10_000, |i| {
        let b = (i as u32).to_be_bytes();
        format!(
            "/install/report/52-55-{:02x}-{:02x}-{:02x}-{:02x}/progress?bytes=1&total=2",
            b[0], b[1], b[2], b[3]
        )
    });
    assert_eq!(codes.len(), 50_000, "every report answered");
    assert!(
        codes.iter().all(|c| matches!(c, 200 | 503)),
        "{:?}",
        &codes[..10]
    );
    let status = status_json(&seg);
    assert!(status["machines"].as_array().unwrap().len() <= 4096);
    probe_ok(&seg);

    // A machine without a record with HTML in its DHCP host name: the
    // page shows it as text.
    seg.targets
        .cmd(3, "ip")
        .args(["link", "set", "eth0", "up"])
        .status()
        .unwrap();
    let hostile = seg
        .targets
        .cmd(3, "busybox")
        .args([
            "udhcpc",
            "-i",
            "eth0",
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "2",
            "-s",
            "/bin/true",
            "-V",
            "PXEClient:Arch:00007:UNDI:003000",
            "-x",
            "hostname:<b>bold</b>",
        ])
        .output()
        .unwrap();
    assert!(hostile.status.success(), "{hostile:?}");
    let (code, page) = get(&seg, "/");
    assert_eq!(code, 200);
    assert!(page.contains("&lt;b&gt;bold&lt;/b&gt;"), "{page}");
    assert!(
        !page.contains("<b>bold</b>"),
        "the host name reached the page as markup"
    );

    // The records directory becomes unreadable (a file in its place): the
    // records read before stay in force and the server keeps serving.
    let dir = site.path("pxe/machines");
    fs::rename(&dir, site.path("pxe/machines.away")).unwrap();
    fs::write(&dir, b"not a directory").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    probe_ok(&seg);
    assert!(
        ze.text().contains("cannot read the machine records"),
        "the unreadable directory is logged:\n{}",
        ze.text()
    );
    fs::remove_file(&dir).unwrap();
    fs::rename(site.path("pxe/machines.away"), &dir).unwrap();

    // And a good machine still boots and installs, whole.
    let lines = boot_rack(&seg, &site, 1);
    assert!(lines[0].contains("done\n"), "{}\n{}", lines[0], ze.text());
    assert!(lines[0].contains("installed m00.img"), "{}", lines[0]);
    let status = status_json(&seg);
    let m = status["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mac"] == mac(0))
        .unwrap()
        .clone();
    assert_eq!(m["stage"], "up", "{m:#}");
    ze.signal(rustix::process::Signal::TERM);
    assert_eq!(ze.wait_exit(Duration::from_secs(30)), Some(0));
}
