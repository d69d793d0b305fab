//! How many at once (checklist R1): the imageserver holds its default cap
//! of 512 connections and the tftpserver 256 transfers at once, all busy,
//! none refused, and the memory that costs (`RSS` per connection and per
//! transfer; the figures in docs/PERFORMANCE.md).

mod pxe_support;

use pxe_support::*;
use std::{
    io::{Read, Write},
    time::Duration,
};

const SERVER: &str = "192.0.2.1";

#[test]
fn r1_512_http_connections_and_256_tftp_transfers_at_once() {
    if !prerequisites("capacity", &[]) {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let path = |p: &str| files.path().join(p);
    write(&path("tftp/ipxe.efi"), &pattern(1 << 20, 21));
    write(&path("img/ze-storm.img"), &pattern(32 << 20, 24));
    write(&path("boot/vmlinuz"), b"kernel");
    write(&path("boot/initrd.img.gz"), b"initrd");
    let pair = VethPair::new("cap", Some("192.0.2.1/24"));
    // 64 client addresses: the per-client caps (16 connections, 8
    // transfers) are not what this is about.
    let addrs: Vec<String> = (0..64).map(|i| format!("192.0.2.{}", 100 + i)).collect();
    pair.client.ip_batch(
        &addrs
            .iter()
            .map(|a| format!("addr add {a}/24 dev zc0"))
            .collect::<Vec<_>>(),
    );
    let config = format!(
        "tftpserver {{ interface zs0; address {SERVER}; root {}; }}
imageserver {{ interface zs0; address {SERVER}; image-dir {}; image ze-storm.img; boot-dir {}; }}
",
        path("tftp").display(),
        path("img").display(),
        path("boot").display()
    );
    let mut d = start_daemon_logging(&pair.server, &config, "info");
    let pid = d.child.id();
    let idle_kib = rss_kib(pid);
    // 512 connections at once (the default cap), each with a response of
    // 32 MiB in flight that it does not read: all busy, none refused.
    let mut conns: Vec<std::net::TcpStream> = (0..512)
        .map(|i| {
            let mut c = tcp_from(&pair.client, &addrs[i % 64], &format!("{SERVER}:80"));
            c.write_all(b"GET /install/image/ze-storm.img HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    for c in &mut conns {
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let http_kib = rss_kib(pid);
    // And 256 TFTP transfers, each acknowledged once and then stalled.
    let mut buf = [0u8; 2048];
    let socks: Vec<std::net::UdpSocket> = (0..256)
        .map(|i| {
            let s = udp_in(&pair.client, &format!("{}:0", addrs[i % 64]), None);
            // Capacity, not latency: a loaded machine may be slow to answer.
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    // One after the other, each answering at once as a client does; the
    // acknowledged ones stall and hold their slots (15 s at most).
    for (i, s) in socks.iter().enumerate() {
        s.send_to(
            b"\x00\x01ipxe.efi\x00octet\x00blksize\x001468\x00",
            (SERVER, 69),
        )
        .unwrap();
        let (n, tid) = s
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("transfer {i}: {e}\n{}", d.text()));
        assert!(buf[..n].starts_with(&[0, 6]), "an OACK, not an ERROR");
        s.send_to(&[0, 4, 0, 0], tid).unwrap();
        let n = s.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(&[0, 3, 0, 1]), "DATA 1");
    }
    let all_kib = rss_kib(pid);
    eprintln!(
        "RSS: {idle_kib} KiB idle, {http_kib} KiB with 512 connections sending ({} KiB each), {all_kib} KiB with 256 transfers too ({} KiB each)",
        (http_kib - idle_kib) / 512,
        all_kib.saturating_sub(http_kib) / 256
    );
    assert!(!d.text().contains("server busy"), "{}", d.text());
    // 512 MiB of it in flight is the kernel's, not ours: the process stays
    // small.
    assert!(all_kib < 256 * 1024, "{all_kib} KiB");
    drop(conns);
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(20)), Some(0));
}
