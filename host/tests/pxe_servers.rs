//! The provisioning servers against real clients and hostile input, in
//! network namespaces the tests create (docs/ARCHITECTURE.md, "Tests"):
//! busybox udhcpc gets and renews a lease; curl, tftp-hpa and atftp fetch
//! byte-identical files; curl's Range requests get the right bytes; and
//! every class of bad input is sent to the running daemon, after which a
//! good request is still served (drop-and-survive).

mod pxe_support;

use pxe_support::{dhcp::*, *};
use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use ze::wire::{
    dhcp::{self, MessageType, Repr, opt},
    tftp,
};

const SERVER: &str = "192.0.2.1";
const CANARY: &[u8] = b"CANARY-SECRET-NEVER-SERVED";

/// Roots with files to serve, a canary outside them, and symlinks in each
/// root pointing at the canary.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("canary"), CANARY);
        for (name, len) in [
            ("empty", 0usize),
            ("s511", 511),
            ("s512", 512),
            ("s1468", 1468),
            ("big.bin", 3 << 20),
        ] {
            write(&d.join("tftp").join(name), &pattern(len, len as u64 + 7));
        }
        write(&d.join("tftp/sub/inner.bin"), &pattern(1000, 3));
        write(&d.join("boot/vmlinuz"), &pattern(100_000, 11));
        write(&d.join("boot/initrd.img.gz"), &pattern(5000, 12));
        write(&d.join("img/ze-20260101-000000.img"), &pattern(2 << 20, 13));
        for root in ["tftp", "boot", "img"] {
            std::os::unix::fs::symlink("../canary", d.join(root).join("evil")).unwrap();
            std::os::unix::fs::symlink("../canary", d.join(root).join("evil.img")).unwrap();
        }
        Site { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn config(&self, extra_dhcp: &str) -> String {
        format!(
            "daemon {{ drain-timeout 2; }}
dhcpserver {{
    interface zs0; address {SERVER}; lease-time 600; max-leases 64; {extra_dhcp}
    shared-network t {{ subnet 192.0.2.0/24 {{ pool 192.0.2.10 192.0.2.250; }} }}
    pxe {{ bootfile 0 ipxe.pxe; bootfile 7 ipxe.efi; boot-script-url http://{SERVER}/install/boot/boot.ipxe; }}
}}
tftpserver {{ interface zs0; address {SERVER}; root {}; timeout 1; retries 3; max-transfers 8; }}
imageserver {{ interface zs0; address {SERVER}; image-dir {}; boot-dir {}; max-connections 4; head-timeout 3; idle-timeout 3; }}
",
            self.path("tftp").display(),
            self.path("img").display(),
            self.path("boot").display()
        )
    }
}

/// Server and client namespaces, the client at 192.0.2.200, the daemon
/// running with `site`'s config.
fn setup(tag: &str, site: &Site, extra_dhcp: &str) -> (VethPair, Logged) {
    let pair = VethPair::new(tag, Some("192.0.2.1/24"));
    pair.client
        .ip(&["addr", "add", "192.0.2.200/24", "dev", "zc0"]);
    let d = start_daemon(&pair.server, &site.config(extra_dhcp));
    (pair, d)
}

// ---------------------------------------------------------------- DHCP

#[test]
fn bad_inputs_dhcp_option_length_lies_overload_and_missing_end() {
    if !prerequisites("dhcp_option_lies", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("dopt", &site, "");
    let sock = dhcp_client(&pair.client);
    let good = dhcp_discover([2, 0, 0, 0, 0, 1], 1).to_bytes();
    let head = &good[..dhcp::HEADER_LEN];
    let expected = |code: u8| -> usize {
        match code {
            opt::MESSAGE_TYPE => 1,
            opt::MAX_MESSAGE_SIZE | opt::CLIENT_ARCH => 2,
            opt::CLIENT_ID => 7,
            opt::CLIENT_UUID => 17,
            opt::CLIENT_NDI => 3,
            _ => 4,
        }
    };
    let mut sent = 0;
    for code in 1..=254u8 {
        let e = expected(code);
        for len in [0usize, 1, e - 1, e + 1, 255] {
            let mut p = head.to_vec();
            p.extend_from_slice(&[opt::MESSAGE_TYPE, 1, 1, code, len as u8]);
            // Fewer value bytes than claimed for 255: the length lies.
            p.extend(std::iter::repeat_n(0x41, len.min(20)));
            p.push(opt::END);
            sock.send_to(&p, "255.255.255.255:67").unwrap();
            sent += 1;
        }
    }
    let mut odd: Vec<Vec<u8>> = Vec::new();
    // A tag as the last byte, with no length.
    let mut p = head.to_vec();
    p.extend_from_slice(&[opt::MESSAGE_TYPE, 1, 1, opt::HOST_NAME]);
    odd.push(p);
    // No END option at all.
    let mut p = head.to_vec();
    p.extend_from_slice(&[opt::MESSAGE_TYPE, 1, 1]);
    odd.push(p);
    // Overload into file and sname: valid, garbage, lying, nested, bad value.
    for (overload, file_bytes, sname_bytes) in [
        (
            3u8,
            &[12u8, 2, b'h', b'i', 255][..],
            &[15u8, 1, b'x', 255][..],
        ),
        (1, &[12, 200, 1, 2][..], &[][..]),
        (2, &[][..], &[52, 1, 1, 255][..]),
        (3, &[255u8; 4][..], &[0u8; 4][..]),
        (9, &[][..], &[][..]),
    ] {
        let mut p = good.clone();
        p[108..108 + file_bytes.len()].copy_from_slice(file_bytes);
        p[44..44 + sname_bytes.len()].copy_from_slice(sname_bytes);
        p.truncate(dhcp::HEADER_LEN);
        p.extend_from_slice(&[
            opt::OVERLOAD,
            1,
            overload,
            opt::MESSAGE_TYPE,
            1,
            1,
            opt::END,
        ]);
        odd.push(p);
    }
    let mut p = head.to_vec();
    p.extend_from_slice(&[opt::OVERLOAD, 0, opt::MESSAGE_TYPE, 1, 1]);
    odd.push(p);
    // Short datagrams, a wrong magic cookie, hlen 17, op 3.
    odd.push(good[..100].to_vec());
    odd.push(Vec::new());
    let mut bad_magic = good.clone();
    bad_magic[236] ^= 0xff;
    odd.push(bad_magic);
    let mut hlen = good.clone();
    hlen[2] = 17;
    odd.push(hlen);
    let mut op = good.clone();
    op[0] = 3;
    odd.push(op);
    for p in &odd {
        sock.send_to(p, "255.255.255.255:67").unwrap();
        sent += 1;
    }
    // Still serving.
    let offer = assert_offer(&sock, [2, 0, 0, 0, 0, 2], 0xfeed_0001);
    assert!((10..=250).contains(&offer.yiaddr.octets()[3]));
    assert_eq!(
        d.child.try_wait().unwrap(),
        None,
        "daemon died after {sent} bad datagrams"
    );
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        d.text()
    );
    assert!(
        d.text().contains("dropped malformed datagram"),
        "{}",
        d.text()
    );
}

#[test]
fn bad_inputs_discover_flood_stays_bounded_and_a_known_client_keeps_its_lease() {
    if !prerequisites("dhcp_exhaustion", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("dflood", &site, "");
    let sock = dhcp_client(&pair.client);
    // A known client binds first.
    let known = [2, 0, 0, 0, 0, 0x99];
    let offer = assert_offer(&sock, known, 7);
    let mut req = dhcp_discover(known, 8);
    req.options
        .set(opt::MESSAGE_TYPE, [MessageType::Request.code()]);
    req.options.set(opt::SERVER_ID, [192, 0, 2, 1]);
    req.options.set(opt::REQUESTED_IP, offer.yiaddr.octets());
    let ack = exchange(&sock, &req, Duration::from_secs(5)).expect("ACK");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    let rss_before = rss_kib(d.child.id());
    // 5000 DISCOVERs from random MACs against a table of 64 records.
    let mut seed = 0x1234_5678_9abc_def0u64;
    for i in 0..5000u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let b = seed.to_be_bytes();
        let mut p = dhcp_discover([0x02, b[1], b[2], b[3], b[4], b[5]], i).to_bytes();
        p[4..8].copy_from_slice(&(0x4000_0000 + i).to_be_bytes());
        sock.send_to(&p, "255.255.255.255:67").unwrap();
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Every OFFER that came back stays inside the pool.
    let mut buf = [0u8; 2048];
    let mut offers = 0;
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        if let Ok(r) = Repr::parse_bytes(&buf[..n])
            && r.message_type() == Some(MessageType::Offer)
        {
            let last = r.yiaddr.octets();
            assert_eq!(&last[..3], &[192, 0, 2]);
            assert!((10..=250).contains(&last[3]), "{}", r.yiaddr);
            offers += 1;
        }
    }
    assert!(offers <= 64, "table bounded at max-leases: {offers} offers");
    assert!(offers >= 32, "the pool was used: {offers} offers");
    // The known client still gets its address.
    let again = assert_offer(&sock, known, 0xabcd);
    assert_eq!(again.yiaddr, offer.yiaddr);
    let rss_after = rss_kib(d.child.id());
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(
        d.text().contains("note=\"no free address in the pool\""),
        "{}",
        d.text()
    );
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

#[test]
fn r4_r17_udhcpc_gets_a_lease_renews_it_and_keeps_it_across_a_restart() {
    if !prerequisites("udhcpc", &["busybox"]) {
        return;
    }
    let site = Site::new();
    let state = site.path("state");
    let pair = VethPair::new("udhcpc", Some("192.0.2.1/24"));
    let config = site
        .config(&format!("state-dir {};", state.display()))
        .replace("lease-time 600;", "lease-time 10;");
    let mut d = start_daemon(&pair.server, &config);
    pair.client
        .ip(&["link", "set", "zc0", "address", "02:00:00:00:00:42"]);
    let c = Udhcpc::start(&pair.client, "zc0", &site.path("udhcpc"), &[]);
    // T1 is half the lease: the renewal comes after about 5 s.
    c.wait_event("renew", Duration::from_secs(25));
    let (ev, out) = c.stop();
    assert!(ev.contains("bound 192.0.2.10 10 192.0.2.1"), "{ev}\n{out}");
    assert!(ev.contains("renew 192.0.2.10 10 192.0.2.1"), "{ev}\n{out}");
    let log = d.text();
    assert!(log.contains("dhcpserver: lease request=DISCOVER reply=OFFER mac=02:00:00:00:00:42 ip=192.0.2.10 bootfile=-"), "{log}");
    assert!(
        log.matches("request=REQUEST reply=ACK mac=02:00:00:00:00:42 ip=192.0.2.10")
            .count()
            >= 2,
        "{log}"
    );
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let leases = fs::read_to_string(state.join("dhcpserver-zs0.leases")).unwrap();
    assert!(leases.contains("192.0.2.10 01020000000042 "), "{leases}");

    // Restarted, the server remembers: a new client does not get .10, the
    // old one does.
    let mut d = start_daemon(&pair.server, &config);
    assert!(d.text().contains("leases restored"), "{}", d.text());
    pair.client.ip(&["addr", "flush", "dev", "zc0"]);
    let sock = dhcp_client(&pair.client);
    let other = assert_offer(&sock, [2, 0, 0, 0, 0, 0x43], 1);
    assert_ne!(other.yiaddr.to_string(), "192.0.2.10");
    let mine = assert_offer(&sock, [2, 0, 0, 0, 0, 0x42], 2);
    assert_eq!(mine.yiaddr.to_string(), "192.0.2.10");
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

// ---------------------------------------------------------------- TFTP

/// A minimal TFTP client: RRQ with `options`, ACK every block (twice when
/// `dup_acks`), stop after `stop_after` blocks by sending ERROR.
#[derive(Debug)]
struct Fetch {
    data: Vec<u8>,
    oack: Vec<(String, String)>,
    data_packets: usize,
}

fn tftp_get(
    sock: &UdpSocket,
    file: &[u8],
    options: &[(&str, &str)],
    dup_acks: bool,
) -> Result<Fetch, String> {
    let mut rrq = vec![0, 1];
    rrq.extend_from_slice(file);
    rrq.extend_from_slice(b"\0octet\0");
    for (k, v) in options {
        rrq.extend_from_slice(k.as_bytes());
        rrq.push(0);
        rrq.extend_from_slice(v.as_bytes());
        rrq.push(0);
    }
    sock.send_to(&rrq, (SERVER, 69)).unwrap();
    let mut out = Fetch {
        data: Vec::new(),
        oack: Vec::new(),
        data_packets: 0,
    };
    let mut blksize = 512;
    let mut expect: u16 = 1;
    let mut buf = vec![0u8; 70_000];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("timeout: {e}"))?;
        match tftp::Repr::parse(&buf[..n]).map_err(|e| e.to_string())? {
            tftp::Repr::OptionAck { options } => {
                for (k, v) in &options {
                    if k.eq_ignore_ascii_case("blksize") {
                        blksize = v.parse().unwrap();
                    }
                }
                out.oack = options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                sock.send_to(&tftp::Repr::Ack { block: 0 }.to_bytes(), from)
                    .unwrap();
            }
            tftp::Repr::Data { block, data } => {
                out.data_packets += 1;
                if block == expect {
                    out.data.extend_from_slice(data);
                    expect = expect.wrapping_add(1);
                }
                let ack = tftp::Repr::Ack { block }.to_bytes();
                sock.send_to(&ack, from).unwrap();
                if dup_acks {
                    sock.send_to(&ack, from).unwrap();
                }
                if block == expect.wrapping_sub(1) && data.len() < blksize {
                    return Ok(out);
                }
            }
            tftp::Repr::Error { code, message } => {
                return Err(format!("error {}: {message}", code.code()));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}

fn tftp_sock(ns: &Netns) -> UdpSocket {
    udp_in(ns, "192.0.2.200:0", None)
}

#[test]
fn bad_inputs_tftp_short_packets_strings_negotiation_and_state() {
    if !prerequisites("tftp_bad_inputs", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("tbad", &site, "");
    let sock = tftp_sock(&pair.client);
    let small = fs::read(site.path("tftp/s1468")).unwrap();
    let send = |p: &[u8]| {
        sock.send_to(p, (SERVER, 69)).unwrap();
    };
    // Short packets: every opcode with 0–4 payload bytes.
    for op in 0u16..=7 {
        for extra in 0..=4usize {
            let mut p = op.to_be_bytes().to_vec();
            p.extend(std::iter::repeat_n(b'a', extra));
            send(&p);
        }
    }
    send(&[]);
    send(&[9]);
    // Unterminated, huge and empty file names; option without value; NUL inside.
    send(b"\x00\x01s1468");
    send(b"\x00\x01s1468\x00octet");
    let mut huge = b"\x00\x01".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 65_000));
    huge.extend_from_slice(b"\x00octet\x00");
    send(&huge);
    send(b"\x00\x01\x00octet\x00");
    send(b"\x00\x01s1468\x00octet\x00blksize\x00");
    send(b"\x00\x01s14\x0068\x00octet\x00");
    // 1000 option pairs.
    let mut many = b"\x00\x01s1468\x00octet\x00".to_vec();
    for i in 0..1000 {
        many.extend_from_slice(format!("o{i}\x00v\x00").as_bytes());
    }
    send(&many);
    // ACK, DATA and OACK before any RRQ; a write request; netascii mode.
    send(&tftp::Repr::Ack { block: 1 }.to_bytes());
    send(
        &tftp::Repr::Data {
            block: 1,
            data: b"x",
        }
        .to_bytes(),
    );
    send(b"\x00\x06blksize\x00512\x00");
    send(b"\x00\x02upload\x00octet\x00");
    // Drain the error replies.
    let mut buf = [0u8; 2048];
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut errors = 0;
    while let Ok(n) = sock.recv(&mut buf) {
        assert!(
            matches!(tftp::Repr::parse(&buf[..n]), Ok(tftp::Repr::Error { .. })),
            "{:?}",
            &buf[..n]
        );
        errors += 1;
    }
    assert!(
        errors > 10,
        "bad requests are answered with ERROR packets ({errors})"
    );
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert!(
        tftp_get(&sock, b"upload", &[], false)
            .unwrap_err()
            .starts_with("error 1")
    );
    sock.send_to(b"\x00\x02s1468\x00octet\x00", (SERVER, 69))
        .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(
        tftp::Repr::parse(&buf[..n]).unwrap(),
        tftp::Repr::Error {
            code: tftp::ErrorCode::AccessViolation,
            message: "this server is read-only"
        }
    );
    sock.send_to(b"\x00\x01s1468\x00netascii\x00", (SERVER, 69))
        .unwrap();
    let n = sock.recv(&mut buf).unwrap();
    assert!(matches!(
        tftp::Repr::parse(&buf[..n]),
        Ok(tftp::Repr::Error {
            code: tftp::ErrorCode::IllegalOperation,
            ..
        })
    ));

    // Negotiation edges: invalid values are ignored, valid ones honoured.
    for (opts, want_blk) in [
        (&[("blksize", "0")][..], None),
        (&[("blksize", "7")][..], None),
        (&[("blksize", "8")][..], Some("8")),
        (&[("blksize", "65464")][..], Some("1468")),
        (&[("blksize", "65465")][..], None),
        (&[("blksize", "abc")][..], None),
        (&[("windowsize", "0")][..], None),
        (&[("windowsize", "65536")][..], None),
        (
            &[("windowsize", "4"), ("tsize", "0"), ("timeout", "2")][..],
            None,
        ),
    ] {
        let f = tftp_get(&sock, b"s1468", opts, false).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
        assert_eq!(f.data, small, "{opts:?}");
        let blk = f
            .oack
            .iter()
            .find(|(k, _)| k == "blksize")
            .map(|(_, v)| v.as_str());
        assert_eq!(blk, want_blk, "{opts:?}: {:?}", f.oack);
    }
    // Duplicate ACKs: no block is sent twice (Sorcerer's Apprentice).
    let big = fs::read(site.path("tftp/big.bin")).unwrap();
    // A fresh socket: late duplicates of the windowed transfer above must
    // not be counted.
    let fresh = tftp_sock(&pair.client);
    let f = tftp_get(&fresh, b"big.bin", &[("blksize", "1024")], true).unwrap();
    assert!(f.data == big);
    // Every block once, plus only what the server itself counts as
    // timeout retransmissions (a loaded machine may cause a few); the
    // Sorcerer's Apprentice bug would double the count.
    d.wait_for(
        "tftpserver: debug: sent file=big.bin",
        Duration::from_secs(5),
    );
    let log = d.text();
    let line = log
        .lines()
        .find(|l| l.contains("sent file=big.bin"))
        .unwrap();
    let retransmits: usize = line
        .split("retransmits=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap();
    let blocks = big.len() / 1024 + 1;
    assert_eq!(f.data_packets, blocks + retransmits, "{line}");
    assert!(retransmits < blocks / 100, "{line}");
    // Still serving.
    assert_eq!(
        tftp_get(&sock, b"s512", &[], false).unwrap().data,
        fs::read(site.path("tftp/s512")).unwrap()
    );
    assert_eq!(d.child.try_wait().unwrap(), None);
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

#[test]
fn bad_inputs_tftp_state_error_mid_transfer_data_on_read_and_silent_peer() {
    if !prerequisites("tftp_state", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("tstate", &site, "");
    let sock = tftp_sock(&pair.client);
    let mut buf = vec![0u8; 2048];
    // ERROR mid-transfer: the server stops sending.
    sock.send_to(b"\x00\x01big.bin\x00octet\x00", (SERVER, 69))
        .unwrap();
    let (_, tid) = sock.recv_from(&mut buf).unwrap();
    sock.send_to(&tftp::Repr::Ack { block: 1 }.to_bytes(), tid)
        .unwrap();
    sock.recv_from(&mut buf).unwrap();
    // DATA on a read transfer: ignored, the transfer goes on.
    sock.send_to(
        &tftp::Repr::Data {
            block: 2,
            data: b"junk",
        }
        .to_bytes(),
        tid,
    )
    .unwrap();
    sock.send_to(b"\x00\x04", tid).unwrap();
    sock.send_to(&tftp::Repr::Ack { block: 2 }.to_bytes(), tid)
        .unwrap();
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(matches!(
        tftp::Repr::parse(&buf[..n]),
        Ok(tftp::Repr::Data { block: 3, .. })
    ));
    sock.send_to(
        &tftp::Repr::Error {
            code: tftp::ErrorCode::Undefined,
            message: "bye",
        }
        .to_bytes(),
        tid,
    )
    .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let mut after = 0;
    while sock.recv(&mut buf).is_ok() {
        after += 1;
    }
    assert_eq!(after, 0, "nothing is sent after the client's ERROR");

    // Silent peer: DATA 1 and one resend (a client that never answered
    // gets no more, whatever `retries` says), then silence.
    let quiet = tftp_sock(&pair.client);
    quiet
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    quiet
        .send_to(b"\x00\x01s1468\x00octet\x00", (SERVER, 69))
        .unwrap();
    let start = Instant::now();
    let mut copies = 0;
    while start.elapsed() < Duration::from_secs(8) {
        if let Ok(n) = quiet.recv(&mut buf) {
            assert!(matches!(
                tftp::Repr::parse(&buf[..n]),
                Ok(tftp::Repr::Data { block: 1, .. })
            ));
            copies += 1;
        }
    }
    assert_eq!(copies, 2, "one send and one retransmission");
    d.wait_for(
        "tftpserver: warning: transfer timed out: no acknowledgement file=s1468",
        Duration::from_secs(5),
    );
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(
        tftp_get(&sock, b"s511", &[], false).unwrap().data,
        fs::read(site.path("tftp/s511")).unwrap()
    );
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

#[test]
fn bad_inputs_udp_length_disagreeing_with_the_datagram() {
    if !prerequisites("udp_length", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("ulen", &site, "");
    // Raw UDP: the header's length field lies about the payload.
    let raw = in_ns(&pair.client, || {
        rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::RAW,
            Some(rustix::net::ipproto::UDP),
        )
        .unwrap()
    });
    for port in [67u16, 69] {
        for (claimed, payload) in [
            (8u16, &b"\x00\x01s512\x00octet\x00"[..]),
            (200, b"\x00\x01s512\x00octet\x00"),
            (9, b""),
            (65535, b"\x00\x04\x00\x01"),
        ] {
            let mut p = Vec::new();
            p.extend_from_slice(&4444u16.to_be_bytes());
            p.extend_from_slice(&port.to_be_bytes());
            p.extend_from_slice(&claimed.to_be_bytes());
            p.extend_from_slice(&0u16.to_be_bytes());
            p.extend_from_slice(payload);
            let to = rustix::net::SocketAddrV4::new("192.0.2.1".parse().unwrap(), 0);
            rustix::net::sendto(&raw, &p, rustix::net::SendFlags::empty(), &to).unwrap();
        }
    }
    let sock = tftp_sock(&pair.client);
    assert_eq!(
        tftp_get(&sock, b"s512", &[], false).unwrap().data,
        fs::read(site.path("tftp/s512")).unwrap()
    );
    let dsock = dhcp_client(&pair.client);
    assert_offer(&dsock, [2, 0, 0, 0, 1, 1], 77);
    assert_eq!(d.child.try_wait().unwrap(), None);
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

// ----------------------------------------------------------- path escapes

fn http(ns: &Netns, request: &[u8]) -> Vec<u8> {
    let mut s = tcp_in(ns, &format!("{SERVER}:80"));
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn status(resp: &[u8]) -> u16 {
    String::from_utf8_lossy(resp)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn bad_inputs_path_escapes_never_serve_the_canary() {
    if !prerequisites("path_escape", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("pesc", &site, "");
    let sock = tftp_sock(&pair.client);
    let canary_rel = site.path("canary");
    for name in [
        &b"../canary"[..],
        b"/../canary",
        b"sub/../../canary",
        b"..\\canary",
        b"evil",
        b"/etc/passwd",
        canary_rel.to_str().unwrap().as_bytes(),
        b"sub",
        b"missing",
    ] {
        match tftp_get(&sock, name, &[], false) {
            Ok(f) => panic!(
                "{} was served: {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&f.data)
            ),
            Err(e) => assert!(
                e.starts_with("error 1") || e.starts_with("error 2"),
                "{}: {e}",
                String::from_utf8_lossy(name)
            ),
        }
    }
    // NUL inside the name ends it: "s5" then mode "12" — refused.
    assert!(tftp_get(&sock, b"s5\x0012", &[], false).is_err());
    // Leading '/' and '\' separators stay inside the root.
    assert_eq!(
        tftp_get(&sock, b"/sub\\inner.bin", &[], false)
            .unwrap()
            .data,
        fs::read(site.path("tftp/sub/inner.bin")).unwrap()
    );

    for target in [
        "/install/boot/../../canary",
        "/install/boot/%2e%2e/%2e%2e/canary",
        "/install/boot/%2e%2e%2fcanary",
        "/install/boot/..%5ccanary",
        "/install/boot/evil",
        "/install/image/evil.img",
        "/install/image/..%2fcanary",
        "/install/image/ze-20260101-000000.img%00.txt",
        "/install/boot/vmlinuz%00",
        "/install/../canary",
        "/canary",
        "//canary",
    ] {
        let resp = http(
            &pair.client,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(
            !resp.windows(CANARY.len()).any(|w| w == CANARY),
            "{target} served the canary"
        );
        assert!(
            matches!(status(&resp), 400 | 403 | 404),
            "{target}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    // Still serving.
    let ok = http(
        &pair.client,
        b"GET /install/boot/initrd.img.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&ok), 200);
    assert!(ok.ends_with(&fs::read(site.path("boot/initrd.img.gz")).unwrap()));
    assert_eq!(d.child.try_wait().unwrap(), None);
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

// ------------------------------------------------------------------ HTTP

#[test]
fn bad_inputs_http_heads_methods_and_idle_connections() {
    if !prerequisites("http_bad_inputs", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("hbad", &site, "");
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    for (req, want) in [
        (&b"GARBAGE\r\n\r\n"[..], 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET /install/boot/vmlinuz HTTP/3.0\r\nHost: x\r\n\r\n", 505),
        (b"POST /install/boot/vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405),
        (b"GET /install/boot/vmlinuz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", 400),
        (b"GET /install/boot/vmlinuz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"GET http://x/install/boot/vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        (&huge, 431),
        (&many, 431),
        (b"GET /install/boot/vmlinuz HTTP/1.1\r\nHost: x\r\nRange: bytes=999999999-\r\nConnection: close\r\n\r\n", 416),
    ] {
        let resp = http(&pair.client, req);
        assert_eq!(status(&resp), want, "{}", String::from_utf8_lossy(&req[..req.len().min(80)]));
    }
    // Idle connections fill the limit (4): the next one is served in the
    // place of the connection idle longest, which is closed.
    let mut idle: Vec<_> = (0..4)
        .map(|_| tcp_in(&pair.client, &format!("{SERVER}:80")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let served = http(
        &pair.client,
        b"GET /install/boot/initrd.img.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&served), 200);
    let mut byte = [0u8; 1];
    assert_eq!(
        idle[0].read(&mut byte).unwrap(),
        0,
        "the oldest idle connection was closed, unanswered"
    );
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    // A peer that sends half a head and stalls gets 408 after head-timeout.
    let mut slow = tcp_in(&pair.client, &format!("{SERVER}:80"));
    slow.write_all(b"GET /install/boot/vmlinuz HTTP/1.1\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let _ = slow.read_to_end(&mut resp);
    assert_eq!(status(&resp), 408);
    let ok = http(
        &pair.client,
        b"GET /install/boot/initrd.img.gz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&ok), 200);
    assert_eq!(d.child.try_wait().unwrap(), None);
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

// ------------------------------------------------------- real TFTP/HTTP clients

#[test]
fn r1_curl_tftp_hpa_and_atftp_fetch_byte_identical_files() {
    if !prerequisites("tftp_clients", &["curl", "tftp", "atftp"]) {
        return;
    }
    let site = Site::new();
    // A file past 65535 blocks at blksize 512: the block number wraps.
    write(&site.path("tftp/wrap.bin"), &pattern((33 << 20) + 1234, 99));
    let (pair, mut d) = setup("tcli", &site, "");
    let out = site.path("out");
    fs::create_dir_all(&out).unwrap();
    let check = |name: &str, got: &Path| {
        let want = fs::read(site.path("tftp").join(name)).unwrap();
        let have = fs::read(got).unwrap_or_default();
        assert!(
            have == want,
            "{name}: {} bytes, want {}",
            have.len(),
            want.len()
        );
    };
    for name in ["empty", "s511", "s512", "s1468", "big.bin"] {
        for blk in ["512", "1468", "8"] {
            if blk == "8" && name == "big.bin" {
                continue;
            }
            let dest = out.join(format!("curl-{name}-{blk}"));
            let r = pair.client.run(
                "curl",
                &[
                    "-sS",
                    "--fail",
                    "--tftp-blksize",
                    blk,
                    "-o",
                    dest.to_str().unwrap(),
                    &format!("tftp://{SERVER}/{name}"),
                ],
            );
            assert!(
                r.status.success(),
                "curl {name} {blk}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            check(name, &dest);
        }
        let dest = out.join(format!("hpa-{name}"));
        let r = pair.client.run(
            "tftp",
            &[
                "-m",
                "binary",
                SERVER,
                "-c",
                "get",
                name,
                dest.to_str().unwrap(),
            ],
        );
        assert!(
            r.status.success(),
            "tftp {name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        check(name, &dest);
        let dest = out.join(format!("atftp-{name}"));
        let r = pair.client.run(
            "atftp",
            &[
                "--option",
                "windowsize 16",
                "--option",
                "blksize 1468",
                "-g",
                "-r",
                name,
                "-l",
                dest.to_str().unwrap(),
                SERVER,
            ],
        );
        assert!(
            r.status.success(),
            "atftp {name}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        check(name, &dest);
    }
    let dest = out.join("wrap");
    let r = pair.client.run(
        "curl",
        &[
            "-sS",
            "--fail",
            "--tftp-blksize",
            "512",
            "-o",
            dest.to_str().unwrap(),
            &format!("tftp://{SERVER}/wrap.bin"),
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    check("wrap.bin", &dest);
    let missing = pair.client.run(
        "curl",
        &[
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            &format!("tftp://{SERVER}/nope"),
        ],
    );
    assert!(!missing.status.success());
    assert!(
        d.text()
            .contains("tftpserver: read request file=wrap.bin client=192.0.2.200:")
    );
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}

#[test]
fn r9_curl_range_head_and_keep_alive() {
    if !prerequisites("http_clients", &["curl"]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("hcli", &site, "");
    let img = fs::read(site.path("img/ze-20260101-000000.img")).unwrap();
    let url = format!("http://{SERVER}/install/image/ze-20260101-000000.img");
    let get = |extra: &[&str]| -> (Vec<u8>, String) {
        let mut args = vec!["-sS", "-D", "/dev/stderr"];
        args.extend_from_slice(extra);
        args.push(&url);
        let r = pair.client.run("curl", &args);
        (r.stdout, String::from_utf8_lossy(&r.stderr).into_owned())
    };
    let len = img.len();
    for (range, lo, hi) in [
        ("0-0", 0, 0),
        ("0-99", 0, 99),
        ("1000-", 1000, len - 1),
        ("-100", len - 100, len - 1),
        (&format!("{}-{}", len - 10, len + 10)[..], len - 10, len - 1),
    ] {
        let (body, head) = get(&["-r", range]);
        assert!(head.starts_with("HTTP/1.1 206"), "{range}: {head}");
        assert!(
            head.contains(&format!("Content-Range: bytes {lo}-{hi}/{len}")),
            "{range}: {head}"
        );
        assert!(body == img[lo..=hi], "{range}: wrong bytes");
    }
    let (body, head) = get(&["-r", &format!("{len}-")]);
    assert!(
        head.starts_with("HTTP/1.1 416") && head.contains(&format!("Content-Range: bytes */{len}")),
        "{head}"
    );
    assert!(body.is_empty());
    let (body, head) = get(&[]);
    assert!(head.starts_with("HTTP/1.1 200") && body == img);
    let (body, head) = get(&["-I"]);
    assert!(
        head.contains(&format!("Content-Length: {len}")) && head.contains("Accept-Ranges: bytes"),
        "{head}"
    );
    assert!(body.is_empty() || !body.starts_with(&img[..16]));
    // Keep-alive: two URLs on one connection.
    let r = pair.client.run(
        "curl",
        &[
            "-sv",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            &format!("http://{SERVER}/install/boot/vmlinuz"),
            &format!("http://{SERVER}/install/boot/boot.ipxe"),
        ],
    );
    let verbose = String::from_utf8_lossy(&r.stderr);
    assert!(
        verbose.contains("Re-using existing connection"),
        "{verbose}"
    );
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
    let log = d.text();
    assert!(log.contains("imageserver: request method=GET path=/install/image/ze-20260101-000000.img client=192.0.2.200:"), "{log}");
    assert!(log.contains("status=206 bytes=100"), "{log}");
}

#[test]
fn r17_shutdown_drains_a_transfer_in_flight_and_eof_stops_ze_dash() {
    if !prerequisites("shutdown_drain", &["curl"]) {
        return;
    }
    let site = Site::new();
    write(&site.path("img/big.img"), &pattern(64 << 20, 5));
    let (pair, mut d) = setup("drain", &site, "");
    // A slow download (1 MiB/s) is in flight when SIGTERM arrives: the
    // listener closes at once, the download may finish within drain-timeout
    // (2 s) and is then cut.
    let mut curl = pair.client.cmd("curl");
    curl.args([
        "-sS",
        "--limit-rate",
        "1M",
        "-o",
        "/dev/null",
        &format!("http://{SERVER}/install/image/big.img"),
    ]);
    let c = Logged::spawn(curl);
    std::thread::sleep(Duration::from_millis(700));
    d.signal(rustix::process::Signal::TERM);
    std::thread::sleep(Duration::from_millis(300));
    let refused = in_ns(&pair.client, || {
        std::net::TcpStream::connect_timeout(
            &"192.0.2.1:80".parse::<SocketAddr>().unwrap(),
            Duration::from_secs(2),
        )
        .is_err()
    });
    assert!(refused, "the listener is closed during the drain");
    let t0 = Instant::now();
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        d.text()
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "drain is bounded");
    assert!(
        d.text()
            .contains("ze: warning: drain timeout: stopping with work still in flight"),
        "{}",
        d.text()
    );
    drop(c);
    // `ze -`: closing its standard input stops it.
    let mut d = start_daemon(&pair.server, &site.config(""));
    drop(d.stdin.take());
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        d.text()
            .contains("ze: standard input closed: shutting down"),
        "{}",
        d.text()
    );
}

#[test]
fn bad_inputs_tftp_transfers_are_bounded() {
    if !prerequisites("tftp_limit", &[]) {
        return;
    }
    let site = Site::new();
    let (pair, mut d) = setup("tlim", &site, "");
    // max-transfers is 8: eight clients that never ACK hold every slot.
    let mut buf = vec![0u8; 2048];
    let silent: Vec<UdpSocket> = (0..8).map(|_| tftp_sock(&pair.client)).collect();
    for s in &silent {
        s.send_to(b"\x00\x01s1468\x00octet\x00", (SERVER, 69))
            .unwrap();
        let n = s.recv(&mut buf).unwrap();
        assert!(matches!(
            tftp::Repr::parse(&buf[..n]),
            Ok(tftp::Repr::Data { block: 1, .. })
        ));
    }
    // A ninth request takes the slot of the oldest of them, at once.
    let ninth = tftp_sock(&pair.client);
    let t0 = Instant::now();
    let f = tftp_get(&ninth, b"s512", &[], false).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(f.data, fs::read(site.path("tftp/s512")).unwrap());
    // Eight acknowledged transfers that stall are never evicted: a new
    // request waits for a slot, and starts as soon as one is free.
    let mut tids = Vec::new();
    let stalled: Vec<UdpSocket> = (0..8).map(|_| tftp_sock(&pair.client)).collect();
    for s in &stalled {
        s.send_to(b"\x00\x01big.bin\x00octet\x00", (SERVER, 69))
            .unwrap();
        let (_, tid) = s.recv_from(&mut buf).unwrap();
        s.send_to(&tftp::Repr::Ack { block: 1 }.to_bytes(), tid)
            .unwrap();
        s.recv_from(&mut buf).unwrap(); // DATA 2, never acknowledged
        tids.push(tid);
    }
    let waiter = tftp_sock(&pair.client);
    waiter
        .send_to(b"\x00\x01s512\x00octet\x00", (SERVER, 69))
        .unwrap();
    waiter
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert!(
        waiter.recv(&mut buf).is_err(),
        "no slot yet: it waits, unanswered"
    );
    d.wait_for(
        "every slot is busy: the request waits for one",
        Duration::from_secs(5),
    );
    stalled[0]
        .send_to(
            &tftp::Repr::Error {
                code: tftp::ErrorCode::Undefined,
                message: "bye",
            }
            .to_bytes(),
            tids[0],
        )
        .unwrap();
    waiter
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let n = waiter.recv(&mut buf).unwrap();
    let data = match tftp::Repr::parse(&buf[..n]) {
        Ok(tftp::Repr::Data { block: 1, data }) => data.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(data, fs::read(site.path("tftp/s512")).unwrap());
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
}
