//! The server's decisions against captured firmware packets and
//! hand-built requests: PXE bootfiles, the request states, relays.

use super::*;
use crate::wire::dhcp::{FLAG_BROADCAST, Packet};
use std::net::SocketAddrV4;

const OVMF_DISCOVER: &[u8] = include_bytes!("../../../wire/testdata/ovmf-discover.bin");
const OVMF_REQUEST: &[u8] = include_bytes!("../../../wire/testdata/ovmf-request.bin");
const IPXE_EFI_DISCOVER: &[u8] = include_bytes!("../../../wire/testdata/ipxe-efi-discover.bin");
const IPXE_EFI_REQUEST: &[u8] = include_bytes!("../../../wire/testdata/ipxe-efi-request.bin");
const IPXE_BIOS_DISCOVER: &[u8] = include_bytes!("../../../wire/testdata/ipxe-bios-discover.bin");
const UDHCPC_DISCOVER: &[u8] = include_bytes!("../../../wire/testdata/udhcpc-discover.bin");

const URL: &str = "http://192.0.2.1/install/boot/boot.ipxe";

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Where a client without an address sends from.
pub(crate) const CLIENT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);

pub(crate) fn settings(script: bool) -> ServerSettings {
    let mut bootfiles = BTreeMap::new();
    bootfiles.insert(0, "ipxe.pxe".to_string());
    for a in [6, 7, 9] {
        bootfiles.insert(a, "ipxe.efi".to_string());
    }
    ServerSettings {
        address: ip("192.0.2.1"),
        lease_secs: 3600,
        pxe: Some(PxeSettings {
            next_server: None,
            bootfiles,
            boot_script_url: script.then(|| URL.to_string()),
            script_mac: false,
        }),
    }
}

fn subnet(net: &str, first: &str, last: &str, router: Option<&str>) -> Subnet {
    Subnet {
        net: net.parse().unwrap(),
        routers: router.into_iter().map(ip).collect(),
        dns_servers: vec![],
        domain: None,
        pool: LeasePool::new(ip(first), ip(last), &[ip("192.0.2.1")], 1024),
    }
}

pub(crate) fn server(script: bool) -> DhcpServer {
    DhcpServer::new(
        settings(script),
        Mode::Full(vec![subnet(
            "192.0.2.0/24",
            "192.0.2.2",
            "192.0.2.254",
            None,
        )]),
    )
}

/// The interface's subnet and two relayed ones, each with its router.
fn relayed_server() -> DhcpServer {
    DhcpServer::new(
        settings(false),
        Mode::Full(vec![
            subnet("192.0.2.0/24", "192.0.2.2", "192.0.2.254", None),
            subnet(
                "198.51.100.0/25",
                "198.51.100.10",
                "198.51.100.20",
                Some("198.51.100.1"),
            ),
            subnet(
                "198.51.100.128/25",
                "198.51.100.140",
                "198.51.100.150",
                Some("198.51.100.129"),
            ),
        ]),
    )
}

fn handle(s: &mut DhcpServer, now: u64, bytes: &[u8]) -> Outcome {
    s.handle(now, &Repr::parse_bytes(bytes).unwrap(), CLIENT)
}

fn reply_of(o: &Outcome) -> &Repr {
    &o.reply.as_ref().expect("a reply").0
}

#[test]
fn r5_ovmf_gets_ipxe_efi_and_next_server_without_option_60() {
    let mut s = server(true);
    let o = handle(&mut s, 1000, OVMF_DISCOVER);
    let (offer, to) = o.reply.as_ref().unwrap();
    assert_eq!(*to, Destination::Broadcast);
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr, ip("192.0.2.2"));
    assert_eq!(offer.siaddr, ip("192.0.2.1"));
    assert_eq!(offer.file, b"ipxe.efi");
    assert_eq!(
        offer.options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.efi"[..])
    );
    assert_eq!(
        offer.options.get(opt::TFTP_SERVER_NAME),
        Some(&b"192.0.2.1"[..])
    );
    assert_eq!(offer.options.get(opt::VENDOR_CLASS_ID), None);
    let req = Repr::parse_bytes(OVMF_DISCOVER).unwrap();
    assert_eq!(
        offer.options.get(opt::CLIENT_UUID),
        req.options.client_uuid(),
        "option 97 is echoed"
    );
    assert!(offer.options.get(opt::CLIENT_UUID).is_some());
    let e = o.event.unwrap();
    assert_eq!(
        (
            e.request,
            e.reply,
            e.mac.as_str(),
            e.ip,
            e.bootfile.as_deref()
        ),
        (
            MessageType::Discover,
            Some(Reply::Dhcp(MessageType::Offer)),
            "52:54:00:12:34:56",
            Some(ip("192.0.2.2")),
            Some("ipxe.efi")
        )
    );
    // The captured REQUEST selected 192.0.2.58 from a server at our
    // address: a free address in the pool, so it is acknowledged.
    let o = handle(&mut s, 1001, OVMF_REQUEST);
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(reply_of(&o).yiaddr, ip("192.0.2.58"));
    // The same REQUEST naming another server withdraws our offer.
    let mut other = Repr::parse_bytes(OVMF_REQUEST).unwrap();
    other.options.set(opt::SERVER_ID, ip("192.0.2.99").octets());
    let o = s.handle(1002, &other, CLIENT);
    assert!(o.reply.is_none());
    assert_eq!(o.event.unwrap().note, Some("client chose another server"));
}

/// Rewrite a captured REQUEST to select our OFFER.
fn retarget(bytes: &[u8], requested: Ipv4Addr) -> Repr {
    let mut r = Repr::parse_bytes(bytes).unwrap();
    r.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
    r.options.set(opt::REQUESTED_IP, requested.octets());
    r
}

#[test]
fn r6_ipxe_gets_the_boot_script_url_and_keeps_the_address() {
    let mut s = server(true);
    let first = reply_of(&handle(&mut s, 1000, OVMF_DISCOVER)).yiaddr;
    let o = s.handle(1001, &retarget(OVMF_REQUEST, first), CLIENT);
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(reply_of(&o).yiaddr, first);
    // iPXE, chainloaded on the same machine, sends option 61 = 01+MAC:
    // the same lease.
    let o = handle(&mut s, 1010, IPXE_EFI_DISCOVER);
    let offer = reply_of(&o);
    assert_eq!(offer.yiaddr, first);
    assert_eq!(offer.options.get(opt::BOOTFILE_NAME), Some(URL.as_bytes()));
    assert_eq!(o.event.unwrap().bootfile.as_deref(), Some(URL));
    let o = s.handle(1011, &retarget(IPXE_EFI_REQUEST, first), CLIENT);
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(
        reply_of(&o).options.get(opt::BOOTFILE_NAME),
        Some(URL.as_bytes())
    );
}

#[test]
fn f1_with_records_ipxe_gets_a_script_url_naming_its_mac() {
    let mut settings = settings(true);
    settings.pxe.as_mut().unwrap().script_mac = true;
    let mut s = DhcpServer::new(
        settings,
        Mode::Full(vec![subnet(
            "192.0.2.0/24",
            "192.0.2.2",
            "192.0.2.254",
            None,
        )]),
    );
    let o = handle(&mut s, 1010, IPXE_EFI_DISCOVER);
    let offer = reply_of(&o);
    let mac = dhcp::format_mac(offer.hardware_address()).replace(':', "-");
    let want = format!("{URL}?mac={mac}");
    assert_eq!(offer.options.get(opt::BOOTFILE_NAME), Some(want.as_bytes()));
    // The firmware still gets its bootfile, unchanged.
    let o = handle(&mut s, 1000, OVMF_DISCOVER);
    assert_eq!(
        reply_of(&o).options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.efi"[..])
    );
}

#[test]
fn r5_bios_arch_0_gets_ipxe_pxe_without_a_script_url() {
    let mut s = server(false);
    let o = handle(&mut s, 1000, IPXE_BIOS_DISCOVER);
    assert_eq!(
        reply_of(&o).options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.pxe"[..])
    );
    let mut s = server(true);
    let o = handle(&mut s, 1000, IPXE_BIOS_DISCOVER);
    assert_eq!(
        reply_of(&o).options.get(opt::BOOTFILE_NAME),
        Some(URL.as_bytes())
    );
    // A plain PXE client with arch 0 and no iPXE user class.
    let mut r = Repr::parse_bytes(IPXE_BIOS_DISCOVER).unwrap();
    r.options.remove(opt::USER_CLASS);
    let o = s.handle(1000, &r, CLIENT);
    assert_eq!(
        reply_of(&o).options.get(opt::BOOTFILE_NAME),
        Some(&b"ipxe.pxe"[..])
    );
    // Option 93 missing: the arch comes from the vendor class.
    r.options.remove(opt::CLIENT_ARCH);
    r.options.set(
        opt::VENDOR_CLASS_ID,
        b"PXEClient:Arch:00009:UNDI:003016".to_vec(),
    );
    assert_eq!(s.bootfile(&r).as_deref(), Some("ipxe.efi"));
    // Unknown architectures get a lease and no bootfile.
    r.options.set(opt::CLIENT_ARCH, [0, 11]);
    assert_eq!(s.bootfile(&r), None);
}

#[test]
fn plain_clients_get_no_bootfile() {
    let mut s = server(true);
    let o = handle(&mut s, 1000, UDHCPC_DISCOVER);
    let offer = reply_of(&o);
    assert_eq!(offer.options.get(opt::BOOTFILE_NAME), None);
    assert_eq!(offer.siaddr, Ipv4Addr::UNSPECIFIED);
    assert!(offer.file.is_empty());
    assert_eq!(o.event.unwrap().bootfile, None);
}

fn request(mac: u8, kind: MessageType) -> Repr {
    let mut r = Repr::parse_bytes(UDHCPC_DISCOVER).unwrap();
    r.chaddr[5] = mac;
    r.options.remove(opt::CLIENT_ID);
    r.options.set(opt::MESSAGE_TYPE, [kind.code()]);
    r
}

#[test]
fn request_states_nak_release_decline_inform() {
    let mut s = server(false);
    let a = reply_of(&s.handle(0, &request(1, MessageType::Discover), CLIENT)).yiaddr;
    // SELECTING.
    let mut r = request(1, MessageType::Request);
    r.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
    r.options.set(opt::REQUESTED_IP, a.octets());
    let o = s.handle(1, &r, CLIENT);
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(o.reply.as_ref().unwrap().1, Destination::Broadcast);
    // RENEWING: unicast to ciaddr, ciaddr echoed.
    let mut r = request(1, MessageType::Request);
    r.ciaddr = a;
    r.flags = 0;
    let o = s.handle(1800, &r, CLIENT);
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(reply_of(&o).ciaddr, a);
    assert_eq!(o.reply.as_ref().unwrap().1, Destination::Client(a));
    // INIT-REBOOT by another client for a taken address: NAK, broadcast.
    let mut r = request(2, MessageType::Request);
    r.options.set(opt::REQUESTED_IP, a.octets());
    let o = s.handle(1801, &r, CLIENT);
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Nak));
    assert_eq!(o.reply.as_ref().unwrap().1, Destination::Broadcast);
    assert_eq!(
        o.event.as_ref().unwrap().note,
        Some("address in use by another client")
    );
    // INIT-REBOOT off-subnet: NAK.
    r.options.set(opt::REQUESTED_IP, ip("10.0.0.1").octets());
    assert_eq!(
        reply_of(&s.handle(1802, &r, CLIENT)).message_type(),
        Some(MessageType::Nak)
    );
    // RELEASE then the same client gets its address again.
    let mut rel = request(1, MessageType::Release);
    rel.ciaddr = a;
    rel.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
    assert!(s.handle(1900, &rel, CLIENT).reply.is_none());
    assert_eq!(
        reply_of(&s.handle(1901, &request(1, MessageType::Discover), CLIENT)).yiaddr,
        a
    );
    // DECLINE from another client: ignored, the owner keeps it.
    let mut dec = request(9, MessageType::Decline);
    dec.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
    dec.options.set(opt::REQUESTED_IP, a.octets());
    let o = s.handle(1902, &dec, CLIENT);
    assert!(o.reply.is_none());
    assert_eq!(
        o.event.unwrap().note,
        Some("DECLINE ignored: the client neither holds nor was offered this address")
    );
    assert_eq!(
        reply_of(&s.handle(1902, &request(1, MessageType::Discover), CLIENT)).yiaddr,
        a
    );
    // DECLINE from the client offered it: the address is held out, the
    // client gets another.
    let mut dec = request(1, MessageType::Decline);
    dec.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
    dec.options.set(opt::REQUESTED_IP, a.octets());
    let o = s.handle(1902, &dec, CLIENT);
    assert!(o.reply.is_none());
    assert_eq!(
        o.event.unwrap().note,
        Some("address declined: held out of the pool")
    );
    let b = reply_of(&s.handle(1903, &request(1, MessageType::Discover), CLIENT)).yiaddr;
    assert_ne!(a, b);
    // INFORM: ACK without yiaddr or lease time, to ciaddr.
    let mut inf = request(3, MessageType::Inform);
    inf.ciaddr = ip("192.0.2.200");
    let o = s.handle(2000, &inf, CLIENT);
    let ack = reply_of(&o);
    assert_eq!(ack.message_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(ack.options.get(opt::LEASE_TIME), None);
    assert_eq!(
        o.reply.as_ref().unwrap().1,
        Destination::Client(ip("192.0.2.200"))
    );
}

/// `request(mac, kind)` as a relay at `giaddr` forwards it, option 82
/// added.
fn relayed(mac: u8, kind: MessageType, giaddr: &str) -> Repr {
    let mut r = request(mac, kind);
    r.giaddr = ip(giaddr);
    r.hops = 1;
    r.options
        .set(opt::RELAY_AGENT_INFO, vec![1, 4, b'p', b'o', b'r', b't']);
    r
}

fn from_relay() -> SocketAddrV4 {
    SocketAddrV4::new(ip("192.0.2.254"), 67)
}

#[test]
fn n2_relayed_requests_get_their_subnet_pool_router_and_the_relay_reply() {
    let mut s = relayed_server();
    let o = s.handle(
        0,
        &relayed(1, MessageType::Discover, "198.51.100.1"),
        from_relay(),
    );
    let (offer, to) = o.reply.as_ref().unwrap();
    assert_eq!(*to, Destination::Relay(ip("198.51.100.1")));
    assert_eq!(offer.giaddr, ip("198.51.100.1"));
    assert_eq!(offer.yiaddr, ip("198.51.100.10"));
    assert_eq!(offer.options.get(opt::ROUTER), Some(&[198, 51, 100, 1][..]));
    assert_eq!(
        offer.options.get(opt::SUBNET_MASK),
        Some(&[255, 255, 255, 128][..])
    );
    assert_eq!(
        offer.options.get(opt::BROADCAST_ADDRESS),
        Some(&[198, 51, 100, 127][..])
    );
    // Option 82 echoed unchanged, as the last option.
    let last = offer.options.iter().last().unwrap();
    assert_eq!(
        last,
        (opt::RELAY_AGENT_INFO, &[1, 4, b'p', b'o', b'r', b't'][..])
    );
    let e = o.event.unwrap();
    assert_eq!(e.giaddr, Some(ip("198.51.100.1")));
    // The other relay's subnet has its own pool: the same MAC gets an
    // address there too, and the first lease stays.
    let o = s.handle(
        1,
        &relayed(1, MessageType::Discover, "198.51.100.129"),
        from_relay(),
    );
    let offer = reply_of(&o);
    assert_eq!(offer.yiaddr, ip("198.51.100.140"));
    assert_eq!(
        offer.options.get(opt::ROUTER),
        Some(&[198, 51, 100, 129][..])
    );
    // SELECTING through the relay, then RENEWING by unicast from the
    // client's own address: served from the relayed subnet's pool.
    let mut req = relayed(1, MessageType::Request, "198.51.100.1");
    req.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
    req.options
        .set(opt::REQUESTED_IP, ip("198.51.100.10").octets());
    let o = s.handle(2, &req, from_relay());
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(
        o.reply.as_ref().unwrap().1,
        Destination::Relay(ip("198.51.100.1"))
    );
    let mut renew = request(1, MessageType::Request);
    renew.ciaddr = ip("198.51.100.10");
    let o = s.handle(1800, &renew, SocketAddrV4::new(ip("198.51.100.10"), 68));
    assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
    assert_eq!(
        o.reply.as_ref().unwrap().1,
        Destination::Client(ip("198.51.100.10"))
    );
    // A request for the other subnet's address through this relay:
    // NAK, to the relay, broadcast bit set.
    let mut wrong = relayed(2, MessageType::Request, "198.51.100.1");
    wrong
        .options
        .set(opt::REQUESTED_IP, ip("198.51.100.140").octets());
    let o = s.handle(1801, &wrong, from_relay());
    let (nak, to) = o.reply.as_ref().unwrap();
    assert_eq!(nak.message_type(), Some(MessageType::Nak));
    assert_eq!(*to, Destination::Relay(ip("198.51.100.1")));
    assert_eq!(nak.flags & dhcp::FLAG_BROADCAST, dhcp::FLAG_BROADCAST);
    // One lease in each relayed pool, none on the interface's subnet.
    let per_pool: Vec<usize> = s.pools().map(|p| p.len()).collect();
    assert_eq!(per_pool, [0, 1, 1]);
    assert!(s.pool_for(ip("198.51.100.145")).is_some());
    assert!(s.pool_for(ip("203.0.113.1")).is_none());
}

#[test]
fn n2_relayed_requests_from_unknown_or_forged_relays_are_dropped_with_a_reason() {
    let mut s = relayed_server();
    for (giaddr, from, why) in [
        ("203.0.113.1", from_relay(), relay::Dropped::UnknownSubnet),
        ("192.0.2.1", from_relay(), relay::Dropped::ForgedGiaddr),
        (
            "198.51.100.1",
            SocketAddrV4::new(ip("192.0.2.77"), 68),
            relay::Dropped::NotFromRelayPort,
        ),
    ] {
        let o = s.handle(0, &relayed(1, MessageType::Discover, giaddr), from);
        assert!(o.reply.is_none(), "{giaddr}");
        assert_eq!(o.event.unwrap().note, Some(why.reason()), "{giaddr}");
    }
    let mut bad = relayed(1, MessageType::Discover, "198.51.100.1");
    bad.options.set(opt::RELAY_AGENT_INFO, vec![1, 200, 0]);
    let o = s.handle(0, &bad, from_relay());
    assert!(o.reply.is_none());
    assert_eq!(
        o.event.unwrap().note,
        Some(relay::Dropped::BadAgentInfo.reason())
    );
    // Nothing was taken from any pool; a good request is still served.
    assert_eq!(s.pools().map(|p| p.len()).sum::<usize>(), 0);
    let o = s.handle(
        1,
        &relayed(1, MessageType::Discover, "198.51.100.1"),
        from_relay(),
    );
    assert_eq!(reply_of(&o).yiaddr, ip("198.51.100.10"));
}

#[test]
fn replies_emit_within_the_client_limit() {
    let mut s = server(true);
    let o = handle(&mut s, 0, OVMF_DISCOVER);
    let bytes = reply_of(&o).to_bytes();
    assert!(bytes.len() >= dhcp::MIN_MESSAGE_LEN && bytes.len() <= dhcp::DEFAULT_MAX_MESSAGE_LEN);
    let back = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
    assert_eq!(&back, reply_of(&o));
    assert_eq!(back.flags & FLAG_BROADCAST, FLAG_BROADCAST);
}

#[test]
fn non_requests_and_untyped_messages_are_ignored() {
    let mut s = server(true);
    let mut r = Repr::parse_bytes(OVMF_DISCOVER).unwrap();
    r.op = Op::Reply;
    assert_eq!(s.handle(0, &r, CLIENT), Outcome::nothing());
    let mut r = Repr::parse_bytes(OVMF_DISCOVER).unwrap();
    r.options.remove(opt::MESSAGE_TYPE);
    assert_eq!(s.handle(0, &r, CLIENT), Outcome::nothing());
    r.options.set(opt::MESSAGE_TYPE, [2]);
    assert_eq!(s.handle(0, &r, CLIENT), Outcome::nothing());
}
