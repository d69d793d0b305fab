//! The whole install, PID 1's life from mount to power, against
//! `ze_hal::fake::FakeOs`: a scripted machine whose clock moves only when
//! the installer waits. Checklist ids in the names.

mod common;

use common::in_order;

use std::{cell::RefCell, net::Ipv4Addr, rc::Rc};
use ze_hal::{
    PowerAction,
    fake::{FakeOs, FakeResponse, FakeSys},
    os::{LinkInfo, RouteInfo},
};
use ze_installer::{install::HEAD_LEN, recovery::password_digest};

const MIB: usize = 1 << 20;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const PORT: u16 = 8080;
const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

/// The image length in the tests.
const IMAGE_LEN: usize = 6 * MIB;

fn image() -> Vec<u8> {
    common::gpt_image(IMAGE_LEN, 0x1234_5678_9abc_def1)
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

const ZEFS: &[u8] = b"ZEFS\x00\r\n\x1a-test-database";

fn link(index: u32, name: &str, kind: u16, loopback: bool) -> LinkInfo {
    LinkInfo {
        index,
        name: name.try_into().unwrap(),
        mac: if loopback { [0; 6] } else { MAC },
        up: loopback,
        carrier: loopback,
        loopback,
        kind,
        link_kind: heapless::String::new(),
    }
}

struct Machine {
    os: FakeOs,
    image: Rc<Vec<u8>>,
}

/// A QEMU-like machine: lo, eth0, sit0; one 8 MiB disk vda; the kernel's
/// ip=dhcp route unless `kernel_route` is false; the server serving the
/// image and the database.
fn machine(extra: &str, kernel_route: bool) -> Machine {
    let mut sys = FakeSys::new();
    sys.file(
        "/proc/cmdline",
        &format!("console=tty0 console=ttyS0 ze.server=10.0.2.2 ze.port=8080 {extra}\n"),
    );
    sys.file("/sys/class/tty/console/active", "tty0 ttyS0\n");
    let mut os = FakeOs::new(sys);
    os.add_disk("vda", 8 * MIB as u64, "/dev/vda4");
    let image = Rc::new(image());
    {
        let mut st = os.st();
        st.links = vec![
            link(1, "lo", 772, true),
            link(2, "eth0", 1, false),
            link(3, "sit0", 776, false),
        ];
        if kernel_route {
            st.links[1].up = true;
            st.links[1].carrier = true;
            st.routes.push(RouteInfo {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                gateway: Some(SERVER),
                oif: 2,
            });
        }
        st.server = Some((SERVER, PORT));
        let img = image.clone();
        st.http = Some(Box::new(move |req| match req.path.as_str() {
            "/install/image/ze.img" => FakeResponse::file(&img, req.range_from.unwrap_or(0)),
            "/install/database.zefs" => FakeResponse::file(ZEFS, req.range_from.unwrap_or(0)),
            _ => FakeResponse::new(404, b"no", None),
        }));
    }
    Machine { os, image }
}

fn boot(m: &mut Machine) -> PowerAction {
    common::boot(&mut m.os)
}

fn disk(m: &Machine) -> Vec<u8> {
    m.os.st().disks["/dev/vda"].data.clone()
}

fn events(m: &Machine) -> Vec<String> {
    m.os.st().events.clone()
}

#[test]
fn i3_i5_i6_i7_i17_install_writes_the_first_mib_last_and_reboots() {
    let mut m = machine("ip=dhcp", true);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] ze-installer ",
            "[ze-install] kernel network: default route via 10.0.2.2 dev eth0",
            "[ze-install] probe 1/30 10.0.2.2:8080: reachable (HTTP 200)",
            "[ze-install] using the kernel's network configuration",
            "[ze-install] target disk /dev/vda (8388608 bytes)",
            "[ze-install] image: http://10.0.2.2:8080/install/image/ze.img (6291456 bytes)",
            "[ze-install] image: 6291456/6291456 bytes (100%)",
            &format!(
                "[ze-install] image written: 6291456 bytes, sha256 {}",
                sha(&m.image)
            ),
            "[ze-install] /dev/vda4: bytes 3145728..4194304 of /dev/vda, from the image's partition table (not on the disk yet)",
            "[ze-install] mounted /dev/vda4 (ext4) at /perm",
            &format!(
                "[ze-install] wrote /perm/ze/database.zefs ({} bytes)",
                ZEFS.len()
            ),
            "[ze-install] /dev/vda: partition table and boot code written last; the disk is complete",
            "[ze-install] install complete; rebooting",
        ],
    );
    let d = disk(&m);
    assert_eq!(&d[..m.image.len()], &m.image[..]);
    assert_eq!(m.os.st().files["/perm/ze/database.zefs"], ZEFS);
    // Order of effects (W8): zero the head, drop the old partitions,
    // write the rest, fsync, partition 4 from the held-back table, mount,
    // tmp file, fsync, rename, fsync dir, unmount, sync, forget partition
    // 4, and only then the head, fsync.
    let ev = events(&m);
    let (last_tail, head_final) = common::assert_head_written_last(&ev);
    let order = [
        "rrpart /dev/vda",
        "addpart /dev/vda 4 3145728+1048576",
        "mount /dev/vda4 /perm",
        "create /perm/ze/.database.zefs.tmp",
        "fsync /perm/ze/.database.zefs.tmp",
        "rename /perm/ze/.database.zefs.tmp /perm/ze/database.zefs",
        "fsync /perm/ze",
        "unmount /perm",
        "sync",
        "delpart /dev/vda 4",
    ];
    // Each effect after the one before it.
    let mut idx: Vec<usize> = Vec::new();
    for p in order {
        let from = idx.last().map_or(0, |i| i + 1);
        let i = ev[from..]
            .iter()
            .position(|e| e == p)
            .unwrap_or_else(|| panic!("no {p:?} after {from} in {ev:#?}"));
        idx.push(from + i);
    }
    assert!(idx[0] < last_tail, "old partitions dropped before writing");
    assert!(last_tail < idx[1], "the image is on the disk before /perm");
    assert!(
        *idx.last().unwrap() < head_final,
        "the database is durable before the partition table"
    );
    // I11: both consoles were opened.
    assert!(ev.contains(&"consoles tty0 ttyS0".to_string()));
}

#[test]
fn h3_http_install_adds_the_disk_after_the_network_entries() {
    use common::{boot_order, device_option, pxe_option, uefi};
    let mut m = machine("ip=dhcp", true);
    uefi(
        &mut m.os,
        &[1, 0, 2],
        &[
            (0, device_option("UEFI QEMU HARDDISK QM00001")),
            (1, pxe_option()),
            (2, device_option("EFI Internal Shell")),
        ],
    );
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] boot entry: Boot0003 \"ze appliance (vda)\" = HD(1,GPT,",
            "[ze-install] boot entry: BootOrder 0001,0003,0000,0002 (was 0001,0000,0002)",
            "[ze-install] install complete; rebooting",
        ],
    );
    assert_eq!(boot_order(&m.os), [1, 3, 0, 2]);

    // A firmware that refuses the write: logged, and the install still
    // completes.
    let mut m = machine("ip=dhcp", true);
    uefi(&mut m.os, &[1], &[(1, pxe_option())]);
    m.os.st().efivar_refuse = true;
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] boot entry: the firmware refused: os error 5 (I/O error); BootOrder left alone",
            "[ze-install] install complete; rebooting",
        ],
    );
    // No UEFI (a BIOS boot): said once, nothing touched.
    let mut m = machine("ip=dhcp", true);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    assert!(m.os.console_text().contains(
        "[ze-install] boot entry: not booted by UEFI (/sys/firmware/efi missing): the firmware's own disk order decides"
    ));
    assert!(m.os.st().efivars.is_empty());
}

#[test]
fn i11_progress_lines_at_most_once_a_second() {
    let mut m = machine("ip=dhcp", true);
    // Each receive takes 100 ms: 6 MiB in 96 chunks of 64 KiB.
    m.os.st().recv_ms = 100;
    boot(&mut m);
    let console = m.os.console_text();
    let lines: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("[ze-install] image: ") && l.contains(" MB/s"))
        .collect();
    // About 9.6 s of transfer: 9 timed lines plus the final one.
    assert!((9..=11).contains(&lines.len()), "{lines:#?}");
    assert!(lines[0].contains("bytes ("), "{}", lines[0]);
    assert!(lines[0].contains(", ETA 0:0"), "{}", lines[0]);
}

#[test]
fn i8_dhcp_fallback_over_captured_slirp_replies() {
    let mut m = machine("", false);
    let offer = include_bytes!("../testdata/dhcp/slirp-offer.bin").to_vec();
    let ack = include_bytes!("../testdata/dhcp/slirp-ack.bin").to_vec();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    m.os.st().packets = Some(Box::new(move |index, pkt| {
        s2.borrow_mut().push(index);
        // The DHCP message behind IPv4 + UDP; answer on eth0 only.
        let dhcp = &pkt[28..];
        if index != 2 {
            return vec![];
        }
        let kind = dhcp[240..]
            .windows(3)
            .find(|w| w[0] == 53 && w[1] == 1)
            .map(|w| w[2])
            .unwrap();
        let mut reply = if kind == 1 {
            offer.clone()
        } else {
            ack.clone()
        };
        reply[4..8].copy_from_slice(&dhcp[4..8]);
        vec![wrap(&reply)]
    }));
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] no default route from the kernel; trying DHCP on every interface",
            "[ze-install] eth0: lease 10.0.2.15/24 router 10.0.2.2 from 10.0.2.2 for 86400 s",
            "[ze-install] probe 1/30 10.0.2.2:8080: reachable (HTTP 200)",
            "[ze-install] eth0: reaches 10.0.2.2:8080; using it",
            "[ze-install] install complete; rebooting",
        ],
    );
    let ev = events(&m);
    assert!(ev.contains(&"link up 2".to_string()));
    assert!(
        !ev.contains(&"link up 3".to_string()),
        "sit0 is not ethernet"
    );
    assert!(ev.contains(&"addr add 2 10.0.2.15/24".to_string()));
    assert!(ev.contains(&"route add default via 10.0.2.2 dev 2".to_string()));
    assert!(seen.borrow().iter().all(|&i| i == 2));
}

/// An IPv4/UDP packet from 10.0.2.2:67 to broadcast:68.
fn wrap(payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 28 + payload.len()];
    buf[28..].copy_from_slice(payload);
    ze_installer::frame::wrap(&mut buf, SERVER, Ipv4Addr::BROADCAST, 67, 68, payload.len())
        .unwrap()
        .to_vec()
}

#[test]
fn i8_lease_that_cannot_reach_the_server_is_flushed() {
    let mut m = machine("ze.wait=5", false);
    let offer = include_bytes!("../testdata/dhcp/slirp-offer.bin").to_vec();
    let ack = include_bytes!("../testdata/dhcp/slirp-ack.bin").to_vec();
    m.os.st().packets = Some(Box::new(move |_, pkt| {
        let dhcp = &pkt[28..];
        let discover = dhcp[240..].windows(3).any(|w| w == [53, 1, 1]);
        let mut reply = if discover { offer.clone() } else { ack.clone() };
        reply[4..8].copy_from_slice(&dhcp[4..8]);
        vec![wrap(&reply)]
    }));
    // The server is somewhere else: every probe times out.
    m.os.st().server = Some((Ipv4Addr::new(192, 0, 2, 99), 80));
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] eth0: lease 10.0.2.15/24",
            "[ze-install] probe 3/5 10.0.2.2:8080: TCP unreachable: timed out",
            "[ze-install] eth0: cannot reach 10.0.2.2:8080 through this lease; flushed",
            "[ze-install] 10.0.2.2:8080 not reached yet; trying again (2 of 5 attempts left)",
            "[ze-install] eth0: lease 10.0.2.15/24",
            "[ze-install] probe 5/5",
            "[ze-install] FATAL: ze.server 10.0.2.2:8080 unreachable after 5 attempts (TCP unreachable: timed out); check ze.server/ze.port and the network",
            "rebooting in 30 s",
        ],
    );
    assert!(events(&m).contains(&"flush 2".to_string()));
}

#[test]
fn i9_n3_unreachable_server_logs_state_every_ten_probes() {
    let mut m = machine("ip=dhcp ze.wait=30", true);
    m.os.st().refuse = 1_000;
    let t0 = m.os.st().now;
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    // 3 probes on the kernel's route, DHCP finds no lease (no server on
    // the packet socket): the kernel's address is kept and probed again,
    // round after round, until all 30 attempts are spent.
    in_order(
        &console,
        &[
            "[ze-install] probe 1/30 10.0.2.2:8080: TCP unreachable: connection refused",
            "[ze-install] probe 3/30",
            "[ze-install] the kernel's route does not reach 10.0.2.2:8080; trying DHCP on every interface",
            "[ze-install] eth0: no DHCP lease in 10 s",
            "[ze-install] 10.0.2.2:8080 not reached yet; trying again (",
            "[ze-install] probe 9/30",
            "[ze-install] eth0: no DHCP lease in 10 s",
            "[ze-install] FATAL: ze.server 10.0.2.2:8080 unreachable after 30 attempts (TCP unreachable: connection refused)",
        ],
    );
    assert!(
        !events(&m).contains(&"flush 2".to_string()),
        "the kernel's address is never flushed without a lease to replace it"
    );
    assert!(m.os.st().now - t0 >= 55_000, "the whole budget was waited");
    // A longer wait on a route that stays: diagnostics at 10 and 20.
    let mut m = machine("ip=dhcp ze.wait=20", true);
    m.os.st().refuse = 1_000;
    let offer = include_bytes!("../testdata/dhcp/slirp-offer.bin").to_vec();
    let ack = include_bytes!("../testdata/dhcp/slirp-ack.bin").to_vec();
    m.os.st().packets = Some(Box::new(move |_, pkt| {
        let dhcp = &pkt[28..];
        let discover = dhcp[240..].windows(3).any(|w| w == [53, 1, 1]);
        let mut reply = if discover { offer.clone() } else { ack.clone() };
        reply[4..8].copy_from_slice(&dhcp[4..8]);
        vec![wrap(&reply)]
    }));
    boot(&mut m);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] probe 10/20",
            "[ze-install] link lo index 1 up carrier",
            "[ze-install] link eth0 index 2 up carrier 52:54:00:12:34:56",
            "[ze-install] addr eth0 10.0.2.15/24",
            "[ze-install] route default via 10.0.2.2 dev eth0",
            "[ze-install] probe 20/20",
            "[ze-install] link eth0",
            "[ze-install] FATAL: ze.server 10.0.2.2:8080 unreachable after 20 attempts",
        ],
    );
    // Probes are 2 s apart.
    let elapsed = m.os.st().now - t0;
    assert!(elapsed >= 19 * 2_000, "{elapsed} ms");
}

#[test]
fn i12_i14_image_404_is_fatal_then_reboot_after_30_seconds() {
    let mut m = machine("ip=dhcp", true);
    m.os.st().http = Some(Box::new(|_| FakeResponse::new(404, b"not found", None)));
    let t0 = m.os.st().now;
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "reachable (HTTP 404)",
            "[ze-install] FATAL: download of the image failed: HTTP 404 (not found)\n",
            "[ze-install] no recovery password (ze.shell-auth) on this network install: rebooting in 30 s",
            "[ze-install] rebooting in 20 s",
            "[ze-install] rebooting in 10 s",
        ],
    );
    assert_eq!(console.matches("FATAL").count(), 1, "one FATAL line");
    assert!(m.os.st().now - t0 >= 30_000);
    let d = disk(&m);
    assert!(d[..HEAD_LEN].iter().all(|&b| b == 0), "first MiB zeroed");
    // No attempt to retry a 404.
    let gets =
        m.os.st()
            .requests
            .iter()
            .filter(|r| r.method == "GET" && !r.path.starts_with("/install/report/"))
            .count();
    assert_eq!(gets, 1);
}

#[test]
fn i18_cut_download_resumes_with_range() {
    let mut m = machine("ip=dhcp", true);
    let img = m.image.clone();
    let mut first = true;
    m.os.st().http = Some(Box::new(move |req| match req.path.as_str() {
        "/install/image/ze.img" if req.method == "GET" && first => {
            first = false;
            let mut r = FakeResponse::file(&img, 0);
            r.cut_at = Some(1_500_000);
            r
        }
        "/install/image/ze.img" => FakeResponse::file(&img, req.range_from.unwrap_or(0)),
        _ => FakeResponse::file(ZEFS, 0),
    }));
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] image: attempt 1 failed at byte ",
            "connection closed ",
            "[ze-install] image: retrying in 2 s",
            "[ze-install] image: resuming at byte ",
            "[ze-install] install complete; rebooting",
        ],
    );
    let reqs = m.os.st().requests.clone();
    let ranged: Vec<_> = reqs.iter().filter(|r| r.range_from.is_some()).collect();
    assert_eq!(ranged.len(), 1, "{reqs:?}");
    let from = ranged[0].range_from.unwrap();
    assert!(from > 0 && from < 1_500_000);
    assert_eq!(&disk(&m)[..m.image.len()], &m.image[..]);
}

#[test]
fn i10_stall_times_out_and_resumes() {
    let mut m = machine("ip=dhcp", true);
    let img = m.image.clone();
    let mut first = true;
    m.os.st().http = Some(Box::new(move |req| match req.path.as_str() {
        "/install/image/ze.img" if req.method == "GET" && first => {
            first = false;
            let mut r = FakeResponse::file(&img, 0);
            r.stall_at = Some(2_000_000);
            r
        }
        "/install/image/ze.img" => FakeResponse::file(&img, req.range_from.unwrap_or(0)),
        _ => FakeResponse::file(ZEFS, 0),
    }));
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "failed at byte ",
            ": stalled: no data for 10 s",
            "[ze-install] image: resuming at byte ",
            "[ze-install] install complete",
        ],
    );
    assert_eq!(&disk(&m)[..m.image.len()], &m.image[..]);
}

#[test]
fn i10_three_failures_are_fatal_and_leave_the_disk_unbootable() {
    let mut m = machine("ip=dhcp", true);
    let img = m.image.clone();
    m.os.st().http = Some(Box::new(move |req| {
        if req.method == "HEAD" {
            return FakeResponse::file(&img, 0);
        }
        // Every GET is cut after 100 KB.
        let mut r = FakeResponse::file(&img, req.range_from.unwrap_or(0));
        r.cut_at = Some(100_000);
        r
    }));
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "attempt 1 failed",
            "attempt 2 failed",
            "attempt 3 failed",
            "[ze-install] FATAL: download of the image failed: failed 3 times, last: connection closed ",
        ],
    );
    assert!(disk(&m)[..HEAD_LEN].iter().all(|&b| b == 0));
}

#[test]
fn lying_content_length_counts_as_a_failure() {
    let mut m = machine("ip=dhcp", true);
    let img = m.image.clone();
    let mut n = 0;
    m.os.st().http = Some(Box::new(move |req| {
        if req.path != "/install/image/ze.img" {
            return FakeResponse::file(ZEFS, 0);
        }
        if req.method == "GET" {
            n += 1;
        }
        if n == 1 && req.method == "GET" {
            // Announces 1000 bytes, sends the whole image.
            let mut r = FakeResponse::new(200, &img, None);
            let text = String::from_utf8_lossy(&r.bytes[..60]).into_owned();
            let fixed = text.replacen(
                &format!("Content-Length: {}", img.len()),
                "Content-Length: 1000",
                1,
            );
            let mut bytes = fixed.into_bytes();
            bytes.extend_from_slice(&r.bytes[60..]);
            r.bytes = bytes;
            return r;
        }
        FakeResponse::file(&img, req.range_from.unwrap_or(0))
    }));
    boot(&mut m);
    let console = m.os.console_text();
    assert!(
        console.contains("server sent more bytes than its Content-Length")
            || console.contains("differs"),
        "{console}"
    );
}

#[test]
fn i17_wrong_sha256_zeroes_the_first_mib_and_the_operator_powers_off() {
    let wrong = sha(b"something else");
    let auth = hex(&password_digest(b"pw"));
    let mut m = machine(
        &format!("ip=dhcp ze.sha256={wrong} ze.shell-auth={auth}"),
        true,
    );
    {
        let mut st = m.os.st();
        let t = st.now + 100_000;
        st.input.push_back((t, b"pw\r".to_vec()));
        st.input.push_back((t + 1_000, b"4\r".to_vec()));
    }
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            &format!(
                "[ze-install] FATAL: image sha256 {} differs from ze.sha256={wrong}; disk left unbootable",
                sha(&m.image)
            ),
            "[ze-install] recovery password: ",
            "[ze-install] password accepted",
            "4) power off",
            "[ze-install] powering off",
        ],
    );
    let d = disk(&m);
    assert!(
        d[..HEAD_LEN].iter().all(|&b| b == 0),
        "first MiB must be zero"
    );
    assert_eq!(
        &d[HEAD_LEN..m.image.len()],
        &m.image[HEAD_LEN..],
        "the rest was written"
    );
    assert!(!m.os.st().raw, "consoles back in cooked mode");
}

#[test]
fn i17_ze_size_mismatch_is_caught_before_writing() {
    let mut m = machine("ip=dhcp ze.size=12345", true);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: image size 6291456 bytes differs from ze.size=12345; disk left unbootable",
        ],
    );
    // Only the zeroing of the first MiB touched the disk.
    let beyond_head = events(&m)
        .iter()
        .filter_map(|e| e.strip_prefix("write /dev/vda "))
        .filter_map(|w| w.split('+').next()?.parse::<usize>().ok())
        .filter(|&offset| offset >= HEAD_LEN)
        .count();
    assert_eq!(beyond_head, 0);
}

#[test]
fn i13_i14_password_gate_diagnostics_and_retry() {
    let auth = hex(&password_digest(b"open sesame"));
    let mut m = machine(&format!("ip=dhcp ze.shell-auth={auth}"), true);
    m.os.st().http = Some(Box::new(|_| FakeResponse::new(404, b"", None)));
    {
        let mut st = m.os.st();
        let t = st.now + 60_000;
        st.input.push_back((t, b"guess\r".to_vec()));
        st.input.push_back((t + 5_000, b"open sesame\r".to_vec()));
        st.input.push_back((t + 6_000, b"2\r".to_vec()));
        st.input.push_back((t + 7_000, b"1\r".to_vec()));
        // After the retry fails again, reboot.
        st.input.push_back((t + 200_000, b"open sesame\r".to_vec()));
        st.input.push_back((t + 201_000, b"reboot\r".to_vec()));
    }
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] FATAL: download of the image failed: HTTP 404",
            "[ze-install] recovery password: ",
            "[ze-install] wrong password",
            "[ze-install] recovery password: ",
            "[ze-install] password accepted",
            "[ze-install] cmdline: console=tty0",
            "[ze-install] link eth0 index 2 up carrier 52:54:00:12:34:56",
            "[ze-install] route default via 10.0.2.2 dev eth0",
            "[ze-install] disk vda 8388608 bytes, candidate",
            "[ze-install] retrying the install",
            "[ze-install] installing ze.img from 10.0.2.2:8080",
            "[ze-install] FATAL: download of the image failed: HTTP 404",
            "[ze-install] recovery password: ",
            "[ze-install] rebooting",
        ],
    );
    assert!(!console.contains("guess") && !console.contains("open sesame"));
    assert!(!console.contains("rebooting in 30 s"));
}

#[test]
fn i14_iso_without_credential_opens_the_menu() {
    let mut sys = FakeSys::new();
    sys.file(
        "/proc/cmdline",
        "ze.source=iso ze.media-id=0123456789abcdef0123456789abcdef\n",
    );
    sys.file("/sys/class/tty/console/active", "ttyS0\n");
    let os = FakeOs::new(sys);
    os.st().input.push_back((30_000, b"4\r".to_vec()));
    let mut m = Machine {
        os,
        image: Rc::new(Vec::new()),
    };
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: installer media not found: none of 0 block devices holds the ISO with ze.media-id=0123456789abcdef0123456789abcdef (looked for 20 s)",
            "[ze-install] recovery menu:",
            "[ze-install] powering off",
        ],
    );
}

#[test]
fn i12_no_disk_is_fatal_before_any_download() {
    let mut m = machine("ip=dhcp", true);
    m.os.sys_file("/sys/block/sr0/size", "2097151\n");
    m.os.sys_file("/sys/block/sr0/removable", "1\n");
    m.os.sys_file("/sys/block/sr0/ro", "1\n");
    m.os.sys_file("/sys/block/vda/ro", "1\n");
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: no writable disk: none of the 2 block devices is a fixed, writable, non-empty disk",
        ],
    );
    assert!(
        !m.os
            .st()
            .requests
            .iter()
            .any(|r| r.method == "GET" && !r.path.starts_with("/install/report/"))
    );
}

#[test]
fn bad_target_is_fatal_with_the_reason() {
    let mut m = machine("ip=dhcp ze.target=/dev/sdz", true);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &["[ze-install] FATAL: ze.target=/dev/sdz: no such whole disk in /sys/block"],
    );
}

#[test]
fn i2_invalid_cmdline_is_fatal_and_names_the_key() {
    let mut m = machine("ze.port=99999", true);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: kernel command line: ze.port=\"99999\": not a TCP port (1-65535)",
            "rebooting in 30 s",
        ],
    );
}

#[test]
fn t1_w8_partition_node_wait() {
    // A busy re-read of the zeroed table is only a warning: partition 4
    // comes from BLKPG, not from the re-read.
    let mut m = machine("ip=dhcp", true);
    m.os.st().disks.get_mut("/dev/vda").unwrap().busy = 1;
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    assert!(m.os.console_text().contains(
        "[ze-install] warning: /dev/vda: re-reading the now empty partition table failed: os error 16 (device busy)"
    ));
    // The node never appears: FATAL, and the disk is made unbootable.
    let mut m = machine("ip=dhcp", true);
    m.os.st().disks.get_mut("/dev/vda").unwrap().partition_node = String::new();
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] first MiB of /dev/vda zeroed: the disk will not boot a partial install",
            "[ze-install] FATAL: /dev/vda4 did not appear within 10 s after the kernel was told about partition 4 (BLKPG)",
        ],
    );
    assert!(disk(&m)[..HEAD_LEN].iter().all(|&b| b == 0));
}

#[test]
fn database_404_leaves_the_disk_unbootable() {
    let mut m = machine("ip=dhcp", true);
    let img = m.image.clone();
    m.os.st().http = Some(Box::new(move |req| match req.path.as_str() {
        "/install/image/ze.img" => FakeResponse::file(&img, req.range_from.unwrap_or(0)),
        _ => FakeResponse::new(404, b"", None),
    }));
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] mounted /dev/vda4",
            "[ze-install] first MiB of /dev/vda zeroed: the disk will not boot a partial install",
            "[ze-install] FATAL: download of the database failed: HTTP 404 (not found)",
        ],
    );
    assert!(disk(&m)[..HEAD_LEN].iter().all(|&b| b == 0));
    assert!(m.os.st().mounts.is_empty(), "/perm unmounted");
    assert!(!m.os.st().files.contains_key("/perm/ze/database.zefs"));
}

/// DHCP answers from the fake server, once the clock is past `from` ms.
fn dhcp_from(m: &Machine, from: u64) {
    let offer = include_bytes!("../testdata/dhcp/slirp-offer.bin").to_vec();
    let ack = include_bytes!("../testdata/dhcp/slirp-ack.bin").to_vec();
    let state = m.os.state.clone();
    m.os.st().packets = Some(Box::new(move |_, pkt| {
        if state.borrow().now < from {
            return vec![];
        }
        let dhcp = &pkt[28..];
        let discover = dhcp[240..].windows(3).any(|w| w == [53, 1, 1]);
        let mut reply = if discover { offer.clone() } else { ack.clone() };
        reply[4..8].copy_from_slice(&dhcp[4..8]);
        vec![wrap(&reply)]
    }));
}

#[test]
fn n3_a_switch_port_that_forwards_only_after_40_s_still_installs() {
    // No kernel route (its ip=dhcp timed out while the port was blocking),
    // nothing answers DHCP for 40 s (STP listening and learning), then
    // everything does.
    let mut m = machine("", false);
    let t0 = m.os.st().now;
    dhcp_from(&m, t0 + 40_000);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] no default route from the kernel; trying DHCP on every interface",
            "[ze-install] eth0: no DHCP lease in 10 s",
            "[ze-install] 10.0.2.2:8080 not reached yet; trying again (25 of 30 attempts left)",
            "[ze-install] eth0: no DHCP lease in 10 s",
            "[ze-install] eth0: lease 10.0.2.15/24 router 10.0.2.2",
            "[ze-install] eth0: reaches 10.0.2.2:8080; using it",
            "[ze-install] install complete; rebooting",
        ],
    );
    assert_eq!(&disk(&m)[..m.image.len()], &m.image[..]);
}

#[test]
fn n3_a_server_that_starts_late_is_reached_through_the_kernels_address() {
    // The kernel's ip=dhcp lease is fine; the install server is refused for
    // 40 s; DHCP from the installer gets nothing (the site's server is
    // slow): the kernel's address is kept and probed until the server is up.
    let mut m = machine("ip=dhcp", true);
    let t0 = m.os.st().now;
    m.os.st().up_at = Some(t0 + 40_000);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] the kernel's route does not reach 10.0.2.2:8080; trying DHCP on every interface",
            "[ze-install] eth0: no DHCP lease in 10 s",
            "reachable (HTTP 200)",
            "[ze-install] using the current network configuration",
            "[ze-install] install complete; rebooting",
        ],
    );
    assert!(!events(&m).contains(&"flush 2".to_string()));
    assert!(m.os.st().now - t0 >= 40_000);
}

fn report_paths(m: &Machine) -> Vec<String> {
    m.os.st()
        .requests
        .iter()
        .filter(|r| r.path.starts_with("/install/report/"))
        .map(|r| r.path.clone())
        .collect()
}

/// Answer reports with 204 and everything else as `machine` does.
fn take_reports(m: &mut Machine, stall: bool) {
    let img = m.image.clone();
    m.os.st().http = Some(Box::new(move |req| {
        if req.path.starts_with("/install/report/") {
            let mut r = FakeResponse::new(204, b"", None);
            if stall {
                r.stall_at = Some(0);
            }
            return r;
        }
        match req.path.as_str() {
            "/install/image/ze.img" => FakeResponse::file(&img, req.range_from.unwrap_or(0)),
            "/install/database.zefs" => FakeResponse::file(ZEFS, req.range_from.unwrap_or(0)),
            _ => FakeResponse::new(404, b"no", None),
        }
    }));
}

#[test]
fn f5_every_stage_is_reported_in_order() {
    let mut m = machine("ip=dhcp", true);
    m.os.st().recv_ms = 100;
    take_reports(&mut m, false);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let paths = report_paths(&m);
    let mac = "/install/report/52-54-00-12-34-56/";
    let stages: Vec<&str> = paths
        .iter()
        .map(|p| p.strip_prefix(mac).unwrap().split('?').next().unwrap())
        .collect();
    let mut plain = stages.clone();
    plain.dedup();
    assert_eq!(
        plain,
        [
            "network", "disk", "progress", "verified", "database", "complete"
        ],
        "{paths:#?}"
    );
    assert!(
        paths[0].ends_with("/network?iface=eth0&ip="),
        "{}",
        paths[0]
    );
    assert!(paths[1].ends_with("/disk?name=vda&size=8388608"));
    // Progress at most every 2 s of a ~10 s transfer.
    let progress = stages.iter().filter(|s| **s == "progress").count();
    assert!((2..=6).contains(&progress), "{progress} progress reports");
    assert!(
        paths
            .iter()
            .any(|p| p.contains("/progress?bytes=") && p.contains("&total=6291456&map=0"))
    );
    assert!(paths.iter().any(|p| p.ends_with("/verified?bytes=6291456")));
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with(&format!("/database?bytes={}", ZEFS.len())))
    );
}

#[test]
fn f5_a_fatal_is_reported_with_its_line() {
    let mut m = machine("ip=dhcp", true);
    take_reports(&mut m, false);
    let img = m.image.clone();
    m.os.st().http = Some(Box::new(move |req| {
        if req.path.starts_with("/install/report/") {
            return FakeResponse::new(204, b"", None);
        }
        let _ = &img;
        FakeResponse::new(404, b"no", None)
    }));
    boot(&mut m);
    let paths = report_paths(&m);
    let fatal = paths.iter().find(|p| p.contains("/fatal?line=")).unwrap();
    assert!(
        fatal.ends_with(
            "/fatal?line=download%20of%20the%20image%20failed%3A%20HTTP%20404%20%28not%20found%29"
        ),
        "{fatal}"
    );
}

#[test]
fn f5_a_report_that_gets_no_answer_never_holds_the_install_up() {
    let mut m = machine("ip=dhcp", true);
    take_reports(&mut m, true);
    let t0 = m.os.st().now;
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    assert!(
        console.contains("[ze-install] reports to 10.0.2.2:8080: no answer in time; the install goes on without them"),
        "{console}"
    );
    // One report tried, then none: half a second lost in all.
    assert_eq!(report_paths(&m).len(), 1);
    let mut again = machine("ip=dhcp", true);
    let t1 = again.os.st().now;
    boot(&mut again);
    let (slow, fast) = (m.os.st().now - t0, again.os.st().now - t1);
    assert!(slow <= fast + 600, "{slow} ms against {fast} ms");
    assert_eq!(&disk(&m)[..m.image.len()], &m.image[..]);
}
