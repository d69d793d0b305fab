//! Subnets behind DHCP relays (checklist N2, R4, R15): a udhcpc client on
//! 198.51.100.0/24 reaches ze (192.0.2.10) through ISC dhcrelay (adding
//! option 82) or dnsmasq's relay, each run from the command line
//! docs/install-remote.md shows, and gets an address from the relayed
//! pool, the relay as its router and its PXE bootfile. With
//! `--proxy-dhcp` the relay forwards to the site's server and to ze: the
//! address comes from the site's server, the bootfile from ze. Then a
//! fake relay sends relayed requests with a forged giaddr, a giaddr in no
//! subnet and a broken option 82: each is dropped with a log line, and a
//! good relayed request is still served, option 82 echoed.

mod pxe_support;

use pxe_support::{
    dhcp::*,
    remote::{Artifacts, install_remote, stop_install_remote},
    site::{RELAY_DOWN, Relay, RelayedSite, SITE_SERVER, SiteServer, ZE},
    *,
};
use std::{
    fs,
    net::{Ipv4Addr, UdpSocket},
    time::Duration,
};
use ze::wire::dhcp::{MessageType, Repr, opt};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn prerequisites(test: &str, tools: &[(&str, &str)]) -> bool {
    let mut tools = tools.to_vec();
    tools.push(("sysctl", "procps"));
    require_tools(
        test,
        &tools,
        &[(
            "/usr/lib/ipxe/ipxe.efi (ipxe)",
            std::path::Path::new("/usr/lib/ipxe/ipxe.efi").is_file(),
        )],
    )
}

/// udhcpc as a PXE client: option 60 `PXEClient:Arch:00007…`, option 93 = 7.
const PXE_UDHCPC: [&str; 4] = ["-V", "PXEClient:Arch:00007:UNDI:003000", "-x", "0x5d:0007"];

fn udhcpc_behind(relay: Relay, tag: &str) {
    let (program, package) = relay.program();
    if !prerequisites(
        &format!("udhcpc_behind_{program}"),
        &[(program, package), ("busybox", "busybox-static")],
    ) {
        return;
    }
    let net = RelayedSite::new(tag);
    let a = Artifacts::tiny(None);
    let ze = install_remote(
        &net.ze,
        "zs0",
        "192.0.2.0/24",
        &a,
        &["--relay-network", "198.51.100.0/24,router=198.51.100.1"],
    );
    let relay_proc = relay.start(&net.relay, "zr0", "br1", &[ZE]);
    net.client
        .ip(&["link", "set", "zc0", "address", "02:00:00:00:0a:01"]);
    let c = Udhcpc::start(
        &net.client,
        "zc0",
        &a.dir.path().join("udhcpc"),
        &PXE_UDHCPC,
    );
    let bound = c.wait_event("bound 198.51.100.", Duration::from_secs(20));
    let (events, out) = c.stop();
    let relay_log = relay_proc.text();
    drop(relay_proc);
    let log = stop_install_remote(ze);
    eprintln!(
        "--- udhcpc behind {program} ---\n{events}{out}--- ze ---\n{log}--- {program} ---\n{relay_log}--- end ---"
    );
    assert!(bound, "no lease through {program}");
    let line = events.lines().find(|l| l.starts_with("bound")).unwrap();
    assert_eq!(
        line,
        format!("bound 198.51.100.2 3600 {ZE} router={RELAY_DOWN} bootfile=ipxe.efi")
    );
    assert!(
        log.contains(
            "dhcpserver: lease request=DISCOVER reply=OFFER mac=02:00:00:00:0a:01 ip=198.51.100.2 bootfile=ipxe.efi giaddr=198.51.100.1\n"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "dhcpserver: lease request=REQUEST reply=ACK mac=02:00:00:00:0a:01 ip=198.51.100.2 bootfile=ipxe.efi giaddr=198.51.100.1\n"
        ),
        "{log}"
    );
    assert!(
        log.contains("relayed 198.51.100.0/24 pool 198.51.100.2-198.51.100.254"),
        "{log}"
    );
    let leases = fs::read_to_string(a.dir.path().join("pxe/state/dhcpserver-zs0.leases")).unwrap();
    assert!(leases.contains("198.51.100.2 01020000000a01 "), "{leases}");
}

#[test]
fn n2_r4_udhcpc_behind_dhcrelay_gets_the_relayed_pool_router_and_bootfile() {
    udhcpc_behind(Relay::Dhcrelay, "rdhr");
}

#[test]
fn n2_r4_udhcpc_behind_a_dnsmasq_relay_gets_the_relayed_pool_router_and_bootfile() {
    udhcpc_behind(Relay::Dnsmasq, "rdnm");
}

#[test]
fn n1_n2_proxy_dhcp_through_dhcrelay_beside_the_sites_server() {
    if !prerequisites(
        "proxy_through_dhcrelay",
        &[("dhcrelay", "isc-dhcp-relay"), ("dnsmasq", "dnsmasq-base")],
    ) {
        return;
    }
    let net = RelayedSite::new("rprx");
    let dir = tempfile::tempdir().unwrap();
    // The site's dnsmasq from the docs, with a range on the relayed subnet.
    let site = SiteServer::Dnsmasq.start_with(
        &net.site,
        "site0",
        dir.path(),
        "dhcp-range=198.51.100.100,198.51.100.199,255.255.255.0,1h\n",
    );
    let a = Artifacts::tiny(None);
    let ze = install_remote(
        &net.ze,
        "zs0",
        "192.0.2.0/24",
        &a,
        &["--proxy-dhcp", "--relay-network", "198.51.100.0/24"],
    );
    let relay = Relay::Dhcrelay.start(&net.relay, "zr0", "br1", &[SITE_SERVER, ZE]);
    let sock = dhcp_client(&net.client);
    let mac = [2, 0, 0, 0, 0x0a, 0x02];
    sock.send_to(&discover(mac, 0xa002).to_bytes(), "255.255.255.255:67")
        .unwrap();
    let got = replies(&sock, 0xa002, Duration::from_secs(5), 2);
    let from = |server: &str| {
        reply_from(&got, ip(server)).cloned().unwrap_or_else(|| {
                panic!(
                    "no offer from {server}: {got:#?}\n--- ze ---\n{}\n--- site ---\n{}\n--- relay ---\n{}",
                    ze.text(),
                    site.text(),
                    relay.text()
                )
            })
    };
    let offer = from(SITE_SERVER);
    let proxy = from(ZE);
    assert_eq!(&offer.yiaddr.octets()[..3], &[198, 51, 100]);
    assert_eq!(offer.options.get(opt::BOOTFILE_NAME), None);
    assert_eq!(proxy.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        proxy.options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.efi"[..])
    );
    assert_eq!(proxy.siaddr, ip(ZE));
    // The REQUEST for the site's address: only the site's server answers.
    sock.send_to(
        &select(&offer, mac, 0xa003).to_bytes(),
        "255.255.255.255:67",
    )
    .unwrap();
    let acks = replies(&sock, 0xa003, Duration::from_secs(3), 2);
    assert_eq!(acks.len(), 1, "{acks:#?}");
    assert_eq!(acks[0].options.server_id(), Some(ip(SITE_SERVER)));
    drop(relay);
    let log = stop_install_remote(ze);
    eprintln!("--- proxyDHCP through dhcrelay: ze ---\n{log}--- end ---");
    assert!(
        log.contains(
            "dhcpserver: lease request=DISCOVER reply=PROXY mac=02:00:00:00:0a:02 ip=- bootfile=ipxe.efi giaddr=198.51.100.1\n"
        ),
        "{log}"
    );
    assert!(
        !log.contains("request=REQUEST"),
        "ze answered the site's conversation: {log}"
    );
}

/// Send `req` from `sock` (in the relay's namespace) to ze's port 67;
/// the reply that comes back to the relay, if any, within a second.
fn relay_exchange(sock: &UdpSocket, req: &Repr) -> Option<Repr> {
    sock.send_to(&req.to_bytes(), format!("{ZE}:67")).unwrap();
    first_reply(sock, req.xid, Duration::from_secs(1))
}

/// A DISCOVER as a relay at 198.51.100.1 forwards it, with option 82.
fn relayed(mac_last: u8, xid: u32) -> Repr {
    let mut r = discover([2, 0, 0, 0, 0x0b, mac_last], xid);
    r.giaddr = ip(RELAY_DOWN);
    r.hops = 1;
    r.options.set(
        opt::RELAY_AGENT_INFO,
        vec![1, 4, b'b', b'r', b'1', 0, 2, 2, 0xab, 0xcd],
    );
    r
}

#[test]
fn n2_bad_inputs_forged_unknown_and_broken_relayed_requests_are_dropped() {
    if !prerequisites("relay_bad_inputs", &[]) {
        return;
    }
    let net = RelayedSite::new("rbad");
    let a = Artifacts::tiny(None);
    let ze = install_remote(
        &net.ze,
        "zs0",
        "192.0.2.0/24",
        &a,
        &["--relay-network", "198.51.100.0/24"],
    );
    let agent = udp_in(&net.relay, "0.0.0.0:67", None);
    let good = |xid| {
        let offer = relay_exchange(&agent, &relayed(1, xid)).expect("an OFFER to the relay");
        assert_eq!(offer.message_type(), Some(MessageType::Offer));
        assert_eq!(offer.giaddr, ip(RELAY_DOWN));
        assert_eq!(&offer.yiaddr.octets()[..3], &[198, 51, 100]);
        assert_eq!(offer.options.get(opt::ROUTER), Some(&[198, 51, 100, 1][..]));
        // Option 82 comes back unchanged, as the last option.
        assert_eq!(
            offer.options.iter().last(),
            Some((
                opt::RELAY_AGENT_INFO,
                &[1, 4, b'b', b'r', b'1', 0, 2, 2, 0xab, 0xcd][..]
            ))
        );
    };
    good(0xc000);
    let mut cases: Vec<(&str, Repr)> = Vec::new();
    let mut r = relayed(2, 0xc001);
    r.giaddr = ip("203.0.113.7");
    cases.push(("a giaddr in no subnet", r));
    let mut r = relayed(3, 0xc002);
    r.giaddr = ip(ZE);
    cases.push(("ze's own address as giaddr", r));
    let mut r = relayed(4, 0xc003);
    r.giaddr = ip("198.51.100.255");
    cases.push(("the subnet's broadcast address as giaddr", r));
    let mut r = relayed(5, 0xc004);
    r.options.set(opt::RELAY_AGENT_INFO, vec![1, 9, b'x']);
    cases.push(("option 82 whose sub-option runs past it", r));
    let mut r = relayed(6, 0xc005);
    r.options.set(opt::RELAY_AGENT_INFO, vec![]);
    cases.push(("an empty option 82", r));
    for (what, req) in &cases {
        assert_eq!(relay_exchange(&agent, req), None, "{what}");
    }
    // giaddr set by a client: sent from port 68.
    let forger = udp_in(&net.relay, "0.0.0.0:68", None);
    forger
        .send_to(&relayed(7, 0xc006).to_bytes(), format!("{ZE}:67"))
        .unwrap();
    assert_eq!(first_reply(&agent, 0xc006, Duration::from_secs(1)), None);
    assert_eq!(
        first_reply(&forger, 0xc006, Duration::from_millis(200)),
        None
    );
    // Still serving through the relay.
    good(0xc0ff);
    let log = stop_install_remote(ze);
    for (mac, note) in [
        (
            "02",
            "giaddr is in no subnet of this server: add a `subnet` block (or --relay-network) for the relay's network",
        ),
        (
            "03",
            "giaddr is not a relay agent's address (not a unicast host, or this server's own)",
        ),
        (
            "04",
            "giaddr is not a relay agent's address (not a unicast host, or this server's own)",
        ),
        (
            "05",
            "malformed relay agent information (option 82): its sub-options do not fill it",
        ),
        (
            "06",
            "malformed relay agent information (option 82): its sub-options do not fill it",
        ),
        (
            "07",
            "relayed request not from port 67: a relay agent sends from port 67, so giaddr is forged",
        ),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("mac=02:00:00:00:0b:{mac} ")))
            .unwrap_or_else(|| panic!("no line for :{mac}\n{log}"));
        assert!(
            line.contains("reply=none") && line.ends_with(&format!("note=\"{note}\"")),
            "{line}"
        );
    }
    assert_eq!(log.matches("mac=02:00:00:00:0b:01").count(), 2, "{log}");
}
