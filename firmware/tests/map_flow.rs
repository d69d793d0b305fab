//! The block-map install over HTTP (checklist W4–W6, W8) against
//! `ze_hal::fake::FakeOs`: a disk full of random bytes, a keep-alive
//! server that honours `Range: bytes=N-M`, and every way a map can lie.

mod common;

use common::in_order;

use sha2::{Digest, Sha256};
use std::{net::Ipv4Addr, rc::Rc};
use ze_hal::{
    PowerAction,
    fake::{FakeOs, FakeRequest, FakeResponse, FakeSys},
    os::{LinkInfo, RouteInfo},
};
use ze_installer::{bmap::Bmap, install::HEAD_LEN};

const MIB: usize = 1 << 20;
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const IMAGE_PATH: &str = "/install/image/ze.img";
const BMAP_PATH: &str = "/install/image/ze.img.bmap";
const ZEFS: &[u8] = b"ZEFS\x00\r\n\x1a-test-database";

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Machine {
    os: FakeOs,
    image: Rc<Vec<u8>>,
    bmap: Rc<Vec<u8>>,
}

/// lo and eth0 with the kernel's route, one 8 MiB disk `vda` full of
/// random bytes, the server serving the image, its map and the database
/// with keep-alive; `ze.bmap-sha256` is the map's unless `extra` says
/// otherwise.
fn machine(extra: &str) -> Machine {
    let image = common::gpt_image(6 * MIB, 0xfeed_5eed);
    let bmap = common::bmap_of(&image);
    let digest = hex(&Sha256::digest(&bmap));
    let mut sys = FakeSys::new();
    let line = if extra.contains("ze.bmap-sha256") {
        format!("console=ttyS0 ze.server=10.0.2.2 ze.port=8080 {extra}\n")
    } else {
        format!("console=ttyS0 ze.server=10.0.2.2 ze.port=8080 ze.bmap-sha256={digest} {extra}\n")
    };
    sys.file("/proc/cmdline", &line);
    sys.file("/sys/class/tty/console/active", "ttyS0\n");
    let mut os = FakeOs::new(sys);
    os.add_disk("vda", 8 * MIB as u64, "/dev/vda4");
    let m = Machine {
        os,
        image: Rc::new(image),
        bmap: Rc::new(bmap),
    };
    {
        let mut st = m.os.st();
        st.disks.get_mut("/dev/vda").unwrap().data = noise(8 * MIB, 0x5ca1ab1e);
        let eth = |index, name: &str, loopback| LinkInfo {
            index,
            name: name.try_into().unwrap(),
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            up: true,
            carrier: true,
            loopback,
            kind: if loopback { 772 } else { 1 },
            link_kind: heapless::String::new(),
        };
        st.links = vec![eth(1, "lo", true), eth(2, "eth0", false)];
        st.routes.push(RouteInfo {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(SERVER),
            oif: 2,
        });
        st.server = Some((SERVER, 8080));
    }
    serve(&m, |_| None);
    m
}

/// Serve the image, map and database, with `special` answering first.
fn serve(m: &Machine, mut special: impl FnMut(&FakeRequest) -> Option<FakeResponse> + 'static) {
    let (img, map) = (m.image.clone(), m.bmap.clone());
    m.os.st().http = Some(Box::new(move |req| {
        if let Some(r) = special(req) {
            return r;
        }
        match req.path.as_str() {
            IMAGE_PATH => FakeResponse::serve(&img, req),
            BMAP_PATH => FakeResponse::serve(&map, req),
            "/install/database.zefs" => FakeResponse::serve(ZEFS, req),
            _ => FakeResponse::new(404, b"no", None),
        }
    }));
}

fn boot(m: &mut Machine) -> PowerAction {
    common::boot(&mut m.os)
}

fn disk(m: &Machine) -> Vec<u8> {
    m.os.st().disks["/dev/vda"].data.clone()
}

fn image_gets(m: &Machine) -> Vec<FakeRequest> {
    m.os.st()
        .requests
        .iter()
        .filter(|r| r.path == IMAGE_PATH && r.method == "GET")
        .cloned()
        .collect()
}

fn map_of(m: &Machine) -> Bmap<'_> {
    Bmap::parse(&m.bmap).unwrap()
}

#[test]
fn w4_w5_w8_map_install_moves_only_the_mapped_bytes_and_the_disk_equals_the_image() {
    let mut m = machine("");
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    let map = map_of(&m);
    assert!(map.range_count >= 5, "the test image has several ranges");
    in_order(
        &console,
        &[
            &format!("[ze-install] block map: {} ranges, ", map.range_count),
            " MiB mapped of 6 MiB, sha256 ",
            " matches ze.bmap-sha256",
            "[ze-install] target disk /dev/vda (8388608 bytes)",
            "[ze-install] zeroing the ",
            "[ze-install] image: ",
            " MiB of the map (6 MiB image)",
            &format!(
                "[ze-install] image written: {} bytes in {} ranges, each sha256 verified ({} requests on 1 connection(s)); {} bytes of holes zeroed",
                map.mapped_bytes,
                map.range_count,
                map.range_count,
                map.image_size - map.mapped_bytes
            ),
            "[ze-install] mounted /dev/vda4 (ext4) at /perm",
            "[ze-install] /dev/vda: partition table and boot code written last; the disk is complete",
            "[ze-install] install complete; rebooting",
        ],
    );
    // The disk held random bytes: now it is the image, byte for byte.
    assert!(disk(&m)[..m.image.len()] == m.image[..], "disk != image");
    // Only the ranges went over the wire, each asked for exactly, all on
    // one connection.
    let gets = image_gets(&m);
    assert_eq!(gets.len(), map.range_count);
    let mut moved = 0u64;
    for (r, g) in map.ranges().zip(&gets) {
        let (start, end) = (r.start(4096), r.end(4096, map.image_size));
        assert_eq!((g.range_from, g.range_to), (Some(start), Some(end - 1)));
        moved += end - start;
    }
    assert_eq!(moved, map.mapped_bytes);
    assert_eq!(gets.iter().filter(|g| g.on_connection == 0).count(), 1);
    assert!(gets.iter().all(|g| g.keep_alive));
    // Nothing of the holes was written as data: they were zeroed.
    let ev = m.os.st().events.clone();
    assert!(
        ev.iter().any(|e| e.starts_with("zero /dev/vda ")),
        "{ev:#?}"
    );
    common::assert_head_written_last(&ev);
}

#[test]
fn w5_a_device_that_refuses_blkzeroout_gets_zeros_written() {
    let mut m = machine("");
    m.os.st().disks.get_mut("/dev/vda").unwrap().no_zero_range = true;
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    assert!(
        m.os.console_text()
            .contains("[ze-install] /dev/vda: the device refused BLKZEROOUT for "),
        "{}",
        m.os.console_text()
    );
    assert!(disk(&m)[..m.image.len()] == m.image[..]);
}

#[test]
fn w4_a_cut_and_a_stall_inside_ranges_resume_inside_them() {
    let mut m = machine("");
    let map = map_of(&m);
    // The second range is cut after 1000 bytes, the third stalls after 500.
    let second = map.ranges().nth(1).unwrap().start(4096);
    let third = map.ranges().nth(2).unwrap().start(4096);
    let img = m.image.clone();
    let (mut cut, mut stall) = (true, true);
    serve(&m, move |req| {
        if req.path != IMAGE_PATH {
            return None;
        }
        let mut r = FakeResponse::serve(&img, req);
        let head = r.bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        if req.range_from == Some(second) && std::mem::take(&mut cut) {
            r.cut_at = Some(head + 1000);
        } else if req.range_from == Some(third) && std::mem::take(&mut stall) {
            r.stall_at = Some(head + 500);
        }
        Some(r)
    });
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            &format!(
                "[ze-install] image: attempt 1 failed at byte {}: connection closed",
                second + 1000
            ),
            &format!("[ze-install] image: resuming at byte {} of", second + 1000),
            &format!(
                "[ze-install] image: attempt 2 failed at byte {}: stalled",
                third + 500
            ),
            &format!("[ze-install] image: resuming at byte {} of", third + 500),
            "[ze-install] install complete; rebooting",
        ],
    );
    let gets = image_gets(&m);
    assert!(gets.iter().any(|g| g.range_from == Some(second + 1000)));
    assert!(gets.iter().any(|g| g.range_from == Some(third + 500)));
    assert!(disk(&m)[..m.image.len()] == m.image[..]);
}

#[test]
fn w4_a_keepalive_connection_the_server_dropped_is_resent_without_a_failure() {
    let mut m = machine("");
    m.os.st().drop_keepalive_after = Some(2);
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    assert!(!console.contains("attempt 1 failed"), "{console}");
    assert!(disk(&m)[..m.image.len()] == m.image[..]);
    let fresh = image_gets(&m)
        .iter()
        .filter(|g| g.on_connection == 0)
        .count();
    assert!(fresh >= 2, "new connections after the server closed");
}

#[test]
fn w4_no_map_on_the_server_falls_back_to_the_whole_stream() {
    let mut m = machine("");
    let sha = hex(&Sha256::digest(&*m.image));
    m.os.sys_file(
        "/proc/cmdline",
        &format!(
            "console=ttyS0 ze.server=10.0.2.2 ze.port=8080 ze.bmap-sha256={} ze.sha256={sha}\n",
            hex(&Sha256::digest(&*m.bmap))
        ),
    );
    serve(&m, |req| {
        (req.path == BMAP_PATH).then(|| FakeResponse::new(404, b"no", None))
    });
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] no block map at http://10.0.2.2:8080/install/image/ze.img.bmap (HTTP 404): downloading the whole image",
            &format!("[ze-install] image written: 6291456 bytes, sha256 {sha}"),
            "[ze-install] install complete",
        ],
    );
    let gets = image_gets(&m);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].range_from, None);
    assert!(disk(&m)[..m.image.len()] == m.image[..]);
}

/// Boot with the server's map replaced by `map` (and `ze.bmap-sha256` the
/// digest of `claimed`); returns the console. The image is never streamed
/// whole.
fn lie(map: Vec<u8>, claimed: &[u8]) -> (Machine, String) {
    let mut m = machine(&format!("ze.bmap-sha256={}", hex(&Sha256::digest(claimed))));
    let map = Rc::new(map);
    serve(&m, move |req| {
        (req.path == BMAP_PATH).then(|| FakeResponse::serve(&map, req))
    });
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    assert!(
        image_gets(&m).iter().all(|g| g.range_from.is_some()),
        "no fallback to the unverified stream:\n{console}"
    );
    (m, console)
}

/// The test image's map with `from` replaced by `to`, resealed.
fn edited(m: &Machine, from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(m.bmap.to_vec()).unwrap();
    assert!(text.contains(from), "{from}");
    let mut t = text.replacen(from, to, 1);
    let at = t.find("<BmapFileChecksum> ").unwrap() + 19;
    t.replace_range(at..at + 64, &"0".repeat(64));
    let mut b = t.into_bytes();
    assert!(ze_installer::bmap::seal(&mut b));
    b
}

#[test]
fn w6_a_map_that_fails_its_digest_is_fatal_before_the_disk_is_touched() {
    let m = machine("");
    let (m, console) = lie(m.bmap.to_vec(), b"the map that was meant");
    assert!(
        console.contains("[ze-install] FATAL: block map sha256 "),
        "{console}"
    );
    assert!(console.contains(" differs from ze.bmap-sha256="));
    assert!(console.contains("the disk was not touched"));
    assert!(image_gets(&m).is_empty());
    assert!(
        !m.os
            .st()
            .events
            .iter()
            .any(|e| e.starts_with("open /dev/vda"))
    );
}

#[test]
fn w6_lying_maps_are_fatal_and_name_the_lie() {
    let base = machine("");
    let ranges: Vec<_> = map_of(&base).ranges().collect();
    let (r1, r2) = (ranges[1], ranges[2]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            edited(
                &base,
                &format!("> {}-{} <", r2.first, r2.last),
                &format!("> {}-{} <", r1.first, r2.last - (r1.last - r1.first) - 1),
            ),
            "block map: range 3 starts before the end of the one before",
        ),
        (
            edited(&base, "<ImageSize> 6291456 <", "<ImageSize> 6287360 <"),
            "<BlocksCount> 1536 does not fit <ImageSize>",
        ),
        (
            edited(&base, "> sha256 <", "> md5 <"),
            "<ChecksumType> is not sha256",
        ),
        (
            {
                let mut t = base.bmap.to_vec();
                t.truncate(t.len() / 2);
                t
            },
            "block map is truncated",
        ),
        (b"\x89PNG not a map at all".to_vec(), "block map is not XML"),
        (
            vec![b' '; ze_installer::bmap::MAX_BMAP + 1],
            "over the 2097152-byte limit",
        ),
    ];
    for (map, why) in cases {
        let (m, console) = lie(map.clone(), &map);
        assert!(
            console.contains("[ze-install] FATAL: ") && console.contains(why),
            "{why}:\n{console}"
        );
        assert!(image_gets(&m).is_empty(), "{why}: nothing downloaded");
    }
}

#[test]
fn w6_a_range_whose_bytes_differ_from_its_chksum_is_fatal_and_the_disk_unbootable() {
    let m = machine("");
    let r = map_of(&m).ranges().nth(3).unwrap();
    let wrong = format!("chksum=\"{}\"", hex(&[0x42; 32]));
    let map = edited(&m, &format!("chksum=\"{}\"", hex(&r.sha256)), &wrong);
    let (m, console) = lie(map.clone(), &map);
    assert!(
        console.contains(&format!(
            "[ze-install] FATAL: image range 4 (bytes {}..{}) has sha256 ",
            r.start(4096),
            r.end(4096, 6 * MIB as u64)
        )),
        "{console}"
    );
    assert!(console.contains("first MiB of /dev/vda zeroed"));
    assert!(disk(&m)[..HEAD_LEN].iter().all(|&b| b == 0));
    assert!(!m.os.st().files.contains_key("/perm/ze/database.zefs"));
}

#[test]
fn w6_a_server_that_ignores_range_is_fatal_not_a_silent_stream() {
    let mut m = machine("");
    let img = m.image.clone();
    serve(&m, move |req| {
        (req.path == IMAGE_PATH).then(|| FakeResponse::new(200, &img, None))
    });
    assert_eq!(boot(&mut m), PowerAction::Reboot);
    let console = m.os.console_text();
    assert!(
        console.contains("the server ignored Range and sent the whole file"),
        "{console}"
    );
    assert!(disk(&m)[..HEAD_LEN].iter().all(|&b| b == 0));
}
