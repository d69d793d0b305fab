//! DHCPDECLINE from strangers (issue 14): a DECLINE counts only from the
//! client that holds or was offered the address. A flood of forged
//! DECLINEs for every address of a /24 — the attack that used to hold
//! the whole pool out for 10 minutes and NAK the owners' renewals — is
//! ignored: udhcpc renews its lease, a new client still gets one, and a
//! client declining its own address still has it held out.

mod pxe_support;

use pxe_support::{dhcp::*, *};
use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};
use ze::wire::dhcp::{MessageType, opt};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn config() -> String {
    "dhcpserver { interface zs0; address 192.0.2.1; lease-time 30;
        shared-network t { subnet 192.0.2.0/24 { pool 192.0.2.2 192.0.2.254; } } }"
        .to_string()
}

/// A DECLINE of `ip` to us, from `mac`.
fn decline(mac: [u8; 6], ip: Ipv4Addr, xid: u32) -> ze::wire::dhcp::Repr {
    let mut d = with_type(discover(mac, xid), MessageType::Decline, xid);
    d.options.remove(opt::VENDOR_CLASS_ID);
    d.options.remove(opt::CLIENT_ARCH);
    d.options.set(opt::SERVER_ID, SERVER.octets());
    d.options.set(opt::REQUESTED_IP, ip.octets());
    d
}

#[test]
fn decline_from_strangers_is_ignored_the_owner_renews_and_new_clients_get_leases() {
    if !require(
        "decline_flood",
        &[
            ("root", is_root()),
            ("busybox (busybox-static)", have("busybox")),
        ],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pair = VethPair::new("decl", Some("192.0.2.1/24"));
    let mut d = start_daemon(&pair.server, &config());
    pair.client
        .ip(&["link", "set", "zc0", "address", "02:00:00:00:00:42"]);
    let c = Udhcpc::start(&pair.client, "zc0", dir.path(), &[]);
    assert!(
        c.wait_event("bound 192.0.2.2 30 192.0.2.1", Duration::from_secs(15)),
        "{}\n{}",
        c.events(),
        d.text()
    );

    // 253 DECLINEs, one for every address of the pool (the bound one
    // included), each from another MAC, in well under half a second.
    let attacker = udp_in(&pair.client, "0.0.0.0:0", Some("zc0"));
    let started = Instant::now();
    for (i, last) in (2..=254u8).enumerate() {
        let mac = [0x02, 0xde, 0xc1, 0x1e, 0, last];
        let p = decline(mac, Ipv4Addr::new(192, 0, 2, last), 0x5000_0000 + i as u32);
        attacker
            .send_to(&p.to_bytes(), "255.255.255.255:67")
            .unwrap();
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "the attack took {took:?}"
    );
    drop(attacker);

    // T1 is half the lease, 15 s after the bind: the owner renews and
    // keeps its address.
    assert!(
        c.wait_event("renew 192.0.2.2 30 192.0.2.1", Duration::from_secs(30)),
        "the owner's renewal failed after the DECLINE flood:\n{}\n{}",
        c.events(),
        d.text()
    );
    let (events, out) = c.stop();
    // No NAK, and no deconfig after the first one (udhcpc's start).
    assert!(
        !events.lines().any(|l| l.starts_with("nak")),
        "{events}\n{out}"
    );
    assert_eq!(
        events.lines().filter(|l| l.starts_with("deconfig")).count(),
        1,
        "{events}\n{out}"
    );

    // A new client gets an address and its ACK.
    pair.client.ip(&["addr", "flush", "dev", "zc0"]);
    let sock = dhcp_client(&pair.client);
    let mac = [2, 0, 0, 0, 0, 0x77];
    let offer = assert_offer(&sock, mac, 0x77);
    assert!(
        (3..=254).contains(&offer.yiaddr.octets()[3]),
        "{}",
        offer.yiaddr
    );
    let ack = exchange(&sock, &select(&offer, mac, 0x78), Duration::from_secs(5)).expect("ACK");
    assert_eq!(ack.message_type(), Some(MessageType::Ack), "{}", d.text());
    assert_eq!(ack.yiaddr, offer.yiaddr);

    // The same client declining its own address is believed: the address
    // is held out and the client is offered another one.
    sock.send_to(
        &decline(mac, ack.yiaddr, 0x79).to_bytes(),
        "255.255.255.255:67",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let again = assert_offer(&sock, mac, 0x7a);
    assert_ne!(again.yiaddr, ack.yiaddr, "{}", d.text());

    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(0));
    let log = d.text();
    let ignored = log
        .matches("request=DECLINE reply=none mac=02:de:c1:1e:00:")
        .count();
    assert_eq!(ignored, 253, "{log}");
    assert_eq!(
        log.matches(
            "note=\"DECLINE ignored: the client neither holds nor was offered this address\""
        )
        .count(),
        253,
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "request=DECLINE reply=none mac=02:00:00:00:00:77 ip={} bootfile=- note=\"address declined: held out of the pool\"",
            ack.yiaddr
        )),
        "{log}"
    );
    eprintln!("--- udhcpc events ---\n{events}--- server log (DECLINE lines: first 3) ---");
    for l in log.lines().filter(|l| l.contains("DECLINE")).take(3) {
        eprintln!("{l}");
    }
}
