//! proxyDHCP beside a site's own DHCP server (checklist N1, R4, R15):
//! Kea, ISC dhcpd and dnsmasq, each run from the configuration
//! docs/install-remote.md shows, hand out the addresses while
//! `ze install remote --proxy-dhcp` on the same bridge answers the PXE
//! part — a proxy offer on port 67, an ACK on port 4011 — and nothing
//! else: a plain udhcpc client gets its lease from the site's server and
//! never a word from ze. Then every kind of request ze must leave alone
//! is sent to it, after which a PXE client is still served.
//!
//! Namespaces: a LAN bridge with the site's server (192.0.2.2), ze
//! (192.0.2.10) and a client plugged in.

mod pxe_support;

use pxe_support::{
    dhcp::*,
    remote::{Artifacts, install_remote, stop_install_remote},
    site::{SITE_SERVER, SiteServer, ZE, plug},
    *,
};
use std::{net::Ipv4Addr, time::Duration};
use ze::wire::dhcp::{MessageType, Repr, opt};

const UDHCPC_DISCOVER: &[u8] = include_bytes!("../src/wire/testdata/udhcpc-discover.bin");

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn prerequisites(test: &str, site: Option<SiteServer>) -> bool {
    let mut tools = vec![("busybox", "busybox-static")];
    tools.extend(site.map(SiteServer::program));
    require_tools(
        test,
        &tools,
        &[(
            "/usr/lib/ipxe/ipxe.efi (ipxe)",
            std::path::Path::new("/usr/lib/ipxe/ipxe.efi").is_file(),
        )],
    )
}

/// The LAN: the site's server (when given), ze with `--proxy-dhcp`, and a
/// client namespace, all on one bridge.
struct Lan {
    _lan: Netns,
    _site: Netns,
    _ze_ns: Netns,
    client: Netns,
    site_server: Option<Logged>,
    ze: Logged,
    _artifacts: Artifacts,
    dir: tempfile::TempDir,
}

fn lan(tag: &str, site: Option<SiteServer>) -> Lan {
    let dir = tempfile::tempdir().unwrap();
    let lan = Netns::new(&format!("{tag}l"));
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    let site_ns = Netns::new(&format!("{tag}s"));
    let ze_ns = Netns::new(&format!("{tag}z"));
    let client = Netns::new(&format!("{tag}c"));
    plug(&lan, "br0", &site_ns, "site0", Some("192.0.2.2/24"));
    plug(&lan, "br0", &ze_ns, "zs0", Some("192.0.2.10/24"));
    plug(&lan, "br0", &client, "zc0", None);
    let site_server = site.map(|s| s.start(&site_ns, "site0", &dir.path().join("site")));
    let artifacts = Artifacts::tiny(None);
    let ze = install_remote(&ze_ns, "zs0", "192.0.2.0/24", &artifacts, &["--proxy-dhcp"]);
    Lan {
        _lan: lan,
        _site: site_ns,
        _ze_ns: ze_ns,
        client,
        site_server,
        ze,
        _artifacts: artifacts,
        dir,
    }
}

const PXE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0e, 0x01];

/// A PXE client's boot, by hand: the DISCOVER gets an address offer from
/// the site's server and a proxy offer from ze; the REQUEST for the
/// site's address is ACKed by the site's server alone; ze's port 4011
/// answers the boot server REQUEST. Returns the leased address.
fn pxe_boot(l: &Lan, xid: u32) -> Ipv4Addr {
    let sock = dhcp_client(&l.client);
    let disc = discover(PXE_MAC, xid);
    sock.send_to(&disc.to_bytes(), "255.255.255.255:67")
        .unwrap();
    let got = replies(&sock, xid, Duration::from_secs(4), 2);
    let site_log = || l.site_server.as_ref().map(|s| s.text()).unwrap_or_default();
    let by = |server: &str| {
        reply_from(&got, ip(server)).cloned().unwrap_or_else(|| {
            panic!(
                "no offer from {server}: {got:#?}\n--- ze ---\n{}\n--- site ---\n{}",
                l.ze.text(),
                site_log()
            )
        })
    };
    let site = by(SITE_SERVER);
    let proxy = by(ZE);
    // The site's offer: an address, and no PXE option at all.
    assert_eq!(site.message_type(), Some(MessageType::Offer));
    assert!(
        (100..=199).contains(&site.yiaddr.octets()[3]),
        "{}",
        site.yiaddr
    );
    for code in [
        opt::VENDOR_CLASS_ID,
        opt::VENDOR_SPECIFIC,
        opt::BOOTFILE_NAME,
        opt::TFTP_SERVER_NAME,
    ] {
        assert_eq!(site.options.get(code), None, "the site sends option {code}");
    }
    assert!(site.file.is_empty(), "the site names a bootfile");
    assert_ne!(site.siaddr, ip(ZE));
    eprintln!(
        "the site's offer: yiaddr {} siaddr {} options {:?}",
        site.yiaddr,
        site.siaddr,
        site.options.iter().map(|(c, _)| c).collect::<Vec<u8>>()
    );
    // ze's proxy offer: no address, the bootfile.
    assert_eq!(proxy.message_type(), Some(MessageType::Offer));
    assert_eq!(proxy.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(proxy.siaddr, ip(ZE));
    assert_eq!(
        proxy.options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.efi"[..])
    );
    assert_eq!(
        proxy.options.get(opt::VENDOR_CLASS_ID),
        Some(&b"PXEClient"[..])
    );
    assert_eq!(proxy.options.get(opt::LEASE_TIME), None);

    // The REQUEST for the site's offer: the site's ACK, nothing from ze.
    let req = select(&site, PXE_MAC, xid + 1);
    sock.send_to(&req.to_bytes(), "255.255.255.255:67").unwrap();
    let acks = replies(&sock, xid + 1, Duration::from_secs(3), 2);
    assert_eq!(acks.len(), 1, "{acks:#?}");
    assert_eq!(acks[0].message_type(), Some(MessageType::Ack));
    assert_eq!(acks[0].options.server_id(), Some(ip(SITE_SERVER)));
    let leased = acks[0].yiaddr;
    assert_eq!(leased, site.yiaddr);
    drop(sock);

    // With its address, EDK2's boot server REQUEST: port 4011 to 4011.
    l.client
        .ip(&["addr", "add", &format!("{leased}/24"), "dev", "zc0"]);
    let bs = udp_in(&l.client, &format!("{leased}:4011"), Some("zc0"));
    let mut binl = with_type(discover(PXE_MAC, xid + 2), MessageType::Request, xid + 2);
    binl.ciaddr = leased;
    binl.flags = 0;
    bs.send_to(&binl.to_bytes(), format!("{ZE}:4011")).unwrap();
    let ack = first_reply(&bs, xid + 2, Duration::from_secs(3)).expect("an ACK from port 4011");
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.options.get(opt::BOOTFILE_NAME), Some(&b"ipxe.efi"[..]));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    l.client
        .ip(&["addr", "del", &format!("{leased}/24"), "dev", "zc0"]);
    leased
}

/// The whole N1 check against one site server.
fn proxy_beside(site: SiteServer, tag: &str) {
    let l = lan(tag, Some(site));
    let leased = pxe_boot(&l, 0x0e01_0000);
    // A plain client: its lease, router and no bootfile from the site.
    l.client
        .ip(&["link", "set", "zc0", "address", "02:00:00:00:0e:02"]);
    let c = Udhcpc::start(&l.client, "zc0", &l.dir.path().join("udhcpc"), &[]);
    let bound = c.wait_event("bound 192.0.2.1", Duration::from_secs(20));
    let (events, out) = c.stop();
    assert!(bound, "{events}\n{out}\n{}", l.ze.text());
    let line = events.lines().find(|l| l.starts_with("bound")).unwrap();
    assert!(
        line.contains(&format!(" {SITE_SERVER} router=192.0.2.1 bootfile=")),
        "{line}"
    );
    assert!(line.ends_with("bootfile="), "no bootfile for it: {line}");
    let log = stop_install_remote(l.ze);
    eprintln!(
        "--- {site:?} as the site's server: ze's log ---\n{log}--- udhcpc ---\n{events}--- end ---"
    );
    assert!(
        log.contains(&format!(
            "dhcpserver: listening interface=zs0 address={ZE} mode=proxy network=192.0.2.0/24 ports=67,4011"
        )),
        "{log}"
    );
    assert!(
        log.contains(
            "dhcpserver: lease request=DISCOVER reply=PROXY mac=02:00:00:00:0e:01 ip=- bootfile=ipxe.efi\n"
        ),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "dhcpserver: lease request=REQUEST reply=ACK mac=02:00:00:00:0e:01 ip={leased} bootfile=ipxe.efi port=4011\n"
        )),
        "{log}"
    );
    assert!(
        !log.contains("02:00:00:00:0e:02"),
        "ze logged the plain client: {log}"
    );
    assert!(
        log.contains("serving on zs0 (192.0.2.10): proxyDHCP for PXE clients on 192.0.2.0/24"),
        "{log}"
    );
    assert!(!log.contains("added address"), "{log}");
}

#[test]
fn n1_r15_proxy_beside_kea() {
    if prerequisites("proxy_beside_kea", Some(SiteServer::Kea)) {
        proxy_beside(SiteServer::Kea, "pkea");
    }
}

#[test]
fn n1_r15_proxy_beside_isc_dhcpd() {
    if prerequisites("proxy_beside_dhcpd", Some(SiteServer::Dhcpd)) {
        proxy_beside(SiteServer::Dhcpd, "pdhd");
    }
}

#[test]
fn n1_r15_proxy_beside_dnsmasq() {
    if prerequisites("proxy_beside_dnsmasq", Some(SiteServer::Dnsmasq)) {
        proxy_beside(SiteServer::Dnsmasq, "pdnm");
    }
}

/// Whether anything answers `bytes` sent to `to` within a second.
fn silence(sock: &std::net::UdpSocket, bytes: &[u8], to: &str, xid: u32) -> Option<Repr> {
    sock.send_to(bytes, to).unwrap();
    first_reply(sock, xid, Duration::from_secs(1))
}

#[test]
fn n1_bad_inputs_the_proxy_leaves_alone_what_is_not_a_pxe_boot() {
    if !prerequisites("proxy_bad_inputs", None) {
        return;
    }
    let l = lan("pbad", None);
    let sock = dhcp_client(&l.client);
    let bcast = "255.255.255.255:67";
    let mut cases: Vec<(&str, Vec<u8>, u32)> = Vec::new();
    let udhcpc = Repr::parse_bytes(UDHCPC_DISCOVER).unwrap();
    cases.push(("udhcpc's DISCOVER", UDHCPC_DISCOVER.to_vec(), udhcpc.xid));
    let mut windows = discover([2, 0, 0, 0, 0xbb, 1], 0xb001);
    windows
        .options
        .set(opt::VENDOR_CLASS_ID, b"MSFT 5.0".to_vec());
    windows.options.remove(opt::CLIENT_ARCH);
    cases.push(("a Windows client", windows.to_bytes(), 0xb001));
    let mut mine = with_type(discover(PXE_MAC, 0xb002), MessageType::Request, 0xb002);
    mine.options.set(opt::SERVER_ID, ip(ZE).octets());
    mine.options
        .set(opt::REQUESTED_IP, ip("192.0.2.150").octets());
    cases.push(("a REQUEST naming ze", mine.to_bytes(), 0xb002));
    let mut decline = with_type(discover(PXE_MAC, 0xb003), MessageType::Decline, 0xb003);
    decline.options.set(opt::SERVER_ID, ip(ZE).octets());
    decline
        .options
        .set(opt::REQUESTED_IP, ip("192.0.2.150").octets());
    cases.push(("a DECLINE naming ze", decline.to_bytes(), 0xb003));
    let mut site_req = with_type(discover(PXE_MAC, 0xb004), MessageType::Request, 0xb004);
    site_req
        .options
        .set(opt::SERVER_ID, ip(SITE_SERVER).octets());
    site_req
        .options
        .set(opt::REQUESTED_IP, ip("192.0.2.150").octets());
    cases.push((
        "a REQUEST for the site's server",
        site_req.to_bytes(),
        0xb004,
    ));
    let mut renew = with_type(discover(PXE_MAC, 0xb005), MessageType::Request, 0xb005);
    renew.ciaddr = ip("192.0.2.150");
    cases.push(("a renewal", renew.to_bytes(), 0xb005));
    let mut addressed = discover(PXE_MAC, 0xb006);
    addressed.ciaddr = ip("192.0.2.150");
    cases.push(("a DISCOVER with ciaddr", addressed.to_bytes(), 0xb006));
    let mut inform = with_type(discover(PXE_MAC, 0xb007), MessageType::Inform, 0xb007);
    inform.ciaddr = ip("192.0.2.150");
    cases.push(("an INFORM", inform.to_bytes(), 0xb007));
    let mut arm = discover(PXE_MAC, 0xb008);
    arm.options.set(opt::CLIENT_ARCH, [0, 11]);
    cases.push(("an architecture without a bootfile", arm.to_bytes(), 0xb008));
    let mut relayed = discover(PXE_MAC, 0xb009);
    relayed.giaddr = ip("203.0.113.1");
    cases.push(("a forged giaddr", relayed.to_bytes(), 0xb009));
    for (what, bytes, xid) in &cases {
        assert_eq!(silence(&sock, bytes, bcast, *xid), None, "{what}");
    }
    // Port 4011, from an address on the subnet: garbage, a DISCOVER, a
    // REQUEST without ciaddr, a plain client's REQUEST.
    l.client
        .ip(&["addr", "add", "192.0.2.150/24", "dev", "zc0"]);
    let bs = udp_in(&l.client, "192.0.2.150:4011", Some("zc0"));
    let to = format!("{ZE}:4011");
    let no_ciaddr = with_type(discover(PXE_MAC, 0xb010), MessageType::Request, 0xb010);
    let mut plain = with_type(discover(PXE_MAC, 0xb011), MessageType::Request, 0xb011);
    plain.options.remove(opt::VENDOR_CLASS_ID);
    plain.ciaddr = ip("192.0.2.150");
    for (what, bytes, xid) in [
        ("garbage", vec![0x41; 100], 0),
        ("a DISCOVER", discover(PXE_MAC, 0xb012).to_bytes(), 0xb012),
        ("a REQUEST without ciaddr", no_ciaddr.to_bytes(), 0xb010),
        ("a plain client's REQUEST", plain.to_bytes(), 0xb011),
    ] {
        assert_eq!(silence(&bs, &bytes, &to, xid), None, "port 4011: {what}");
    }
    let mut good = with_type(discover(PXE_MAC, 0xb013), MessageType::Request, 0xb013);
    good.ciaddr = ip("192.0.2.150");
    let ack = silence(&bs, &good.to_bytes(), &to, 0xb013).expect("port 4011 still answers");
    assert_eq!(ack.options.get(opt::BOOTFILE_NAME), Some(&b"ipxe.efi"[..]));
    drop(bs);
    l.client
        .ip(&["addr", "del", "192.0.2.150/24", "dev", "zc0"]);
    // Still serving: a PXE client's DISCOVER gets its proxy offer.
    let offer = exchange(&sock, &discover(PXE_MAC, 0xb0ff), Duration::from_secs(3))
        .expect("a proxy offer after the bad inputs");
    assert_eq!(offer.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        offer.options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.efi"[..])
    );
    let mut ze = l.ze;
    assert!(ze.child.try_wait().unwrap().is_none(), "ze died");
    let log = stop_install_remote(ze);
    assert!(
        !log.contains("mac=02:00:00:00:bb:01"),
        "the Windows client was logged: {log}"
    );
    assert!(
        !log.contains(&format!(
            "mac={}",
            ze::wire::dhcp::format_mac(udhcpc.hardware_address())
        )),
        "{log}"
    );
    for note in [
        "note=\"proxyDHCP hands out no addresses: ignored (the site's DHCP server answers this)\"",
        "note=\"DISCOVER with a client address: not a PXE boot, ignored\"",
        "note=\"no bootfile for this client: no proxy offer\"",
        "giaddr=203.0.113.1 note=\"relayed request not from port 67: a relay agent sends from port 67, so giaddr is forged\"",
        "port=4011 note=\"port 4011 answers a PXE client's REQUEST only\"",
        "port=4011 note=\"a boot server REQUEST comes from the client's own address\"",
    ] {
        assert!(log.contains(note), "{note}\n{log}");
    }
}
