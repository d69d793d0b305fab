//! proxyDHCP (PXE 2.1 §2.2.5, RFC 4578): the site's DHCP server hands
//! out the addresses; this server only tells PXE clients what to boot.
//!
//! On port 67 it answers exactly one kind of message: a DHCPDISCOVER from
//! a PXE client (option 60 starting `PXEClient`; iPXE sends one too) with
//! no client address (`ciaddr` 0) and an architecture, or iPXE user class,
//! it has a bootfile for. The answer is a proxy offer: `yiaddr` 0.0.0.0,
//! no lease time or network settings, option 54, option 60 `PXEClient`,
//! `siaddr`/option 66 and `file`/option 67 with the bootfile, option 43
//! with PXE discovery control (sub-option 6) = 8 — "take the bootfile
//! from this offer" — and options 97 and 82 echoed. Everything else on
//! port 67 belongs to the client's conversation with the site's server
//! (its REQUEST, renewals, DECLINE, RELEASE, INFORM) and is never
//! answered; a PXE client's message naming this server in option 54 is
//! logged, since a proxy offer carries no address to request or decline.
//!
//! On port 4011 (the PXE boot server port) it answers a DHCPREQUEST from
//! a PXE client that already has its address (`ciaddr` set), sent to this
//! server (no option 54, or ours), not relayed: a DHCPACK like the proxy
//! offer, with `ciaddr` echoed, unicast back to where it came from.
//!
//! What the firmware does with these (read from their source):
//!
//! - EDK2 (OVMF's PXE base code, `PxeBcDhcp4.c`): an offer with `yiaddr`
//!   0 is a proxy offer; with `PXEClient` and option 43 holding sub-option
//!   6 it is a "PXE10" offer, and with bit 3 of sub-option 6 set and a
//!   bootfile present it boots that file from `siaddr` without a menu or
//!   boot server discovery. Without option 43 it is a "BINL" offer: EDK2
//!   then sends a DHCPREQUEST from its new address to port 4011 of the
//!   offer's `siaddr` (or option 54) and boots what the ACK names.
//! - iPXE (`net/udp/dhcp.c`): an offer with `PXEClient` and a server
//!   identifier is a proxy offer whatever its `yiaddr`; when it carries
//!   `siaddr` and a bootfile iPXE uses it directly, otherwise it sends a
//!   ProxyDHCPREQUEST to port 4011 and takes an OFFER or ACK from there.
//!   Option 43 is not needed.

use super::{
    relay,
    server::{Destination, DhcpServer, LeaseEvent, Outcome, Reply, is_pxe_client},
};
use crate::wire::dhcp::{MessageType, Repr, opt};
use std::net::SocketAddrV4;

/// The PXE boot server port (PXE 2.1), where EDK2 and iPXE ask a proxy
/// that sent no usable offer.
pub const PXE_PORT: u16 = 4011;
/// Option 43 for PXE clients: sub-option 6 (discovery control) = 8, "boot
/// the file named in the offer", then END.
pub const PXE_VENDOR_OPTIONS: [u8; 4] = [6, 1, 8, 255];

impl DhcpServer {
    /// Proxy mode, port 67: a proxy offer for a PXE client's DISCOVER.
    pub(super) fn proxy_answer(
        &self,
        req: &Repr,
        from: SocketAddrV4,
        mut event: LeaseEvent,
    ) -> Outcome {
        if !is_pxe_client(req) {
            return Outcome::nothing();
        }
        if event.request != MessageType::Discover {
            if req.options.server_id() == Some(self.settings().address) {
                event.note = Some(
                    "proxyDHCP hands out no addresses: ignored (the site's DHCP server answers this)",
                );
                return Outcome::silent(event);
            }
            return Outcome::nothing();
        }
        if let Err(dropped) = relay::select(req, from, self.settings().address, &self.networks()) {
            event.note = Some(dropped.reason());
            return Outcome::silent(event);
        }
        if !req.ciaddr.is_unspecified() {
            event.ip = Some(req.ciaddr);
            event.note = Some("DISCOVER with a client address: not a PXE boot, ignored");
            return Outcome::silent(event);
        }
        match self.boot_reply(req, MessageType::Offer, &mut event) {
            Some(r) => {
                event.reply = Some(Reply::ProxyOffer);
                Outcome {
                    reply: Some((r, Self::destination(req, false))),
                    event: Some(event),
                }
            }
            None => {
                event.note = Some("no bootfile for this client: no proxy offer");
                Outcome::silent(event)
            }
        }
    }

    /// Proxy mode, port 4011: the ACK with the bootfile for a PXE client's
    /// boot server REQUEST, sent back to `from`.
    pub fn handle_pxe_port(&self, req: &Repr, from: SocketAddrV4) -> Outcome {
        let Some(mut event) = Self::event_for(req) else {
            return Outcome::nothing();
        };
        event.port = Some(PXE_PORT);
        if event.request != MessageType::Request || !is_pxe_client(req) {
            event.note = Some("port 4011 answers a PXE client's REQUEST only");
            return Outcome::silent(event);
        }
        if req
            .options
            .server_id()
            .is_some_and(|id| id != self.settings().address)
        {
            event.note = Some("not for this server");
            return Outcome::silent(event);
        }
        if !req.giaddr.is_unspecified() || req.ciaddr.is_unspecified() {
            event.note = Some("a boot server REQUEST comes from the client's own address");
            return Outcome::silent(event);
        }
        event.ip = Some(req.ciaddr);
        let Some(mut r) = self.boot_reply(req, MessageType::Ack, &mut event) else {
            event.note = Some("no bootfile for this client");
            return Outcome::silent(event);
        };
        r.ciaddr = req.ciaddr;
        event.reply = Some(Reply::Dhcp(MessageType::Ack));
        let to = if from.ip().is_unspecified() {
            SocketAddrV4::new(req.ciaddr, from.port())
        } else {
            from
        };
        Outcome {
            reply: Some((r, Destination::Peer(to))),
            event: Some(event),
        }
    }

    /// A proxy OFFER or ACK: no address, the bootfile and PXE options;
    /// `None` when there is no bootfile for the client.
    fn boot_reply(&self, req: &Repr, kind: MessageType, event: &mut LeaseEvent) -> Option<Repr> {
        let mut r = Self::header(req);
        r.options.set(opt::MESSAGE_TYPE, [kind.code()]);
        r.options
            .set(opt::SERVER_ID, self.settings().address.octets());
        r.options.set(opt::VENDOR_CLASS_ID, b"PXEClient".to_vec());
        r.options
            .set(opt::VENDOR_SPECIFIC, PXE_VENDOR_OPTIONS.to_vec());
        if !self.boot_fields(req, &mut r, event) {
            return None;
        }
        Self::echo(req, &mut r);
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::dhcp::server::{
        Mode,
        tests::{CLIENT, settings},
    };
    use std::net::Ipv4Addr;

    const OVMF_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/ovmf-discover.bin");
    const OVMF_REQUEST: &[u8] = include_bytes!("../../wire/testdata/ovmf-request.bin");
    const IPXE_EFI_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/ipxe-efi-discover.bin");
    const IPXE_BIOS_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/ipxe-bios-discover.bin");
    const UDHCPC_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/udhcpc-discover.bin");
    const URL: &str = "http://192.0.2.1/install/boot/boot.ipxe";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn proxy() -> DhcpServer {
        DhcpServer::new(
            settings(true),
            Mode::Proxy(vec![
                "192.0.2.0/24".parse().unwrap(),
                "198.51.100.0/24".parse().unwrap(),
            ]),
        )
    }

    fn parse(bytes: &[u8]) -> Repr {
        Repr::parse_bytes(bytes).unwrap()
    }

    /// The proxy reply's PXE part, the same on port 67 and 4011.
    fn assert_boot_reply(r: &Repr, bootfile: &str) {
        assert_eq!(r.yiaddr, Ipv4Addr::UNSPECIFIED, "no address, ever");
        assert_eq!(r.siaddr, ip("192.0.2.1"));
        assert_eq!(r.file, bootfile.as_bytes());
        assert_eq!(r.options.get(opt::BOOTFILE_NAME), Some(bootfile.as_bytes()));
        assert_eq!(r.options.get(opt::SERVER_ID), Some(&[192, 0, 2, 1][..]));
        assert_eq!(r.options.get(opt::VENDOR_CLASS_ID), Some(&b"PXEClient"[..]));
        assert_eq!(
            r.options.get(opt::VENDOR_SPECIFIC),
            Some(&PXE_VENDOR_OPTIONS[..])
        );
        for none in [
            opt::LEASE_TIME,
            opt::RENEWAL_TIME,
            opt::REBINDING_TIME,
            opt::SUBNET_MASK,
            opt::ROUTER,
            opt::DNS_SERVER,
            opt::BROADCAST_ADDRESS,
        ] {
            assert_eq!(r.options.get(none), None, "option {none}");
        }
        let back = Repr::parse_bytes(&r.to_bytes()).unwrap();
        assert_eq!(&back, r);
    }

    #[test]
    fn n1_pxe_discovers_get_a_proxy_offer_with_the_bootfile() {
        let mut s = proxy();
        for (bytes, bootfile) in [
            (OVMF_DISCOVER, "ipxe.efi"),
            (IPXE_EFI_DISCOVER, URL),
            (IPXE_BIOS_DISCOVER, URL),
        ] {
            let req = parse(bytes);
            let o = s.handle(0, &req, CLIENT);
            let (offer, to) = o.reply.as_ref().expect("a proxy offer");
            assert_eq!(*to, Destination::Broadcast);
            assert_eq!(offer.message_type(), Some(MessageType::Offer));
            assert_boot_reply(offer, bootfile);
            assert_eq!(
                offer.options.get(opt::CLIENT_UUID),
                req.options.client_uuid()
            );
            let e = o.event.unwrap();
            assert_eq!(
                (e.reply, e.ip, e.bootfile.as_deref()),
                (Some(Reply::ProxyOffer), None, Some(bootfile))
            );
        }
        assert!(parse(OVMF_DISCOVER).options.client_uuid().is_some());
    }

    #[test]
    fn n1_the_proxy_never_answers_what_is_the_site_servers() {
        let mut s = proxy();
        // Not a PXE client: not even logged.
        assert_eq!(
            s.handle(0, &parse(UDHCPC_DISCOVER), CLIENT),
            Outcome::nothing()
        );
        let mut linux = parse(OVMF_DISCOVER);
        linux
            .options
            .set(opt::VENDOR_CLASS_ID, b"Linux ipconfig".to_vec());
        assert_eq!(s.handle(0, &linux, CLIENT), Outcome::nothing());
        // The PXE client's REQUEST to the site's server, and its
        // renewal: not ours.
        let mut selecting = parse(OVMF_REQUEST);
        selecting
            .options
            .set(opt::SERVER_ID, ip("192.0.2.99").octets());
        assert_eq!(s.handle(0, &selecting, CLIENT), Outcome::nothing());
        let mut renew = parse(OVMF_REQUEST);
        renew.options.remove(opt::SERVER_ID);
        renew.options.remove(opt::REQUESTED_IP);
        renew.ciaddr = ip("192.0.2.50");
        assert_eq!(s.handle(0, &renew, CLIENT), Outcome::nothing());
        // A REQUEST, DECLINE or RELEASE naming us: there is no address of
        // ours to take, logged and ignored.
        for kind in [
            MessageType::Request,
            MessageType::Decline,
            MessageType::Release,
        ] {
            let mut r = parse(OVMF_REQUEST);
            r.options.set(opt::MESSAGE_TYPE, [kind.code()]);
            r.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
            let o = s.handle(0, &r, CLIENT);
            assert!(o.reply.is_none(), "{kind:?}");
            assert!(
                o.event
                    .unwrap()
                    .note
                    .unwrap()
                    .starts_with("proxyDHCP hands out no addresses")
            );
        }
        // A DISCOVER that carries a client address, or an architecture
        // without a bootfile: logged, no offer.
        let mut with_addr = parse(OVMF_DISCOVER);
        with_addr.ciaddr = ip("192.0.2.50");
        let o = s.handle(0, &with_addr, CLIENT);
        assert!(o.reply.is_none());
        assert_eq!(
            o.event.unwrap().note,
            Some("DISCOVER with a client address: not a PXE boot, ignored")
        );
        let mut arm = parse(OVMF_DISCOVER);
        arm.options.set(opt::CLIENT_ARCH, [0, 11]);
        let o = s.handle(0, &arm, CLIENT);
        assert!(o.reply.is_none());
        assert_eq!(
            o.event.unwrap().note,
            Some("no bootfile for this client: no proxy offer")
        );
        // Our own replies looping back are not requests.
        let offer = s.handle(0, &parse(OVMF_DISCOVER), CLIENT).reply.unwrap().0;
        assert_eq!(s.handle(0, &offer, CLIENT), Outcome::nothing());
    }

    #[test]
    fn n1_n2_relayed_pxe_discovers_are_answered_to_the_relay() {
        let mut s = proxy();
        let mut r = parse(OVMF_DISCOVER);
        r.giaddr = ip("198.51.100.1");
        r.options.set(opt::RELAY_AGENT_INFO, vec![1, 2, 0, 7]);
        let relay_at = SocketAddrV4::new(ip("192.0.2.254"), 67);
        let o = s.handle(0, &r, relay_at);
        let (offer, to) = o.reply.as_ref().unwrap();
        assert_eq!(*to, Destination::Relay(ip("198.51.100.1")));
        assert_boot_reply(offer, "ipxe.efi");
        assert_eq!(
            offer.options.iter().last(),
            Some((opt::RELAY_AGENT_INFO, &[1, 2, 0, 7][..]))
        );
        r.giaddr = ip("203.0.113.1");
        let o = s.handle(0, &r, relay_at);
        assert!(o.reply.is_none());
        assert_eq!(
            o.event.unwrap().note,
            Some(relay::Dropped::UnknownSubnet.reason())
        );
    }

    /// EDK2's BINL request: a REQUEST from its new address, port 4011 to
    /// port 4011, without option 54.
    fn binl_request() -> Repr {
        let mut r = parse(OVMF_REQUEST);
        r.options.remove(opt::SERVER_ID);
        r.options.remove(opt::REQUESTED_IP);
        r.ciaddr = ip("192.0.2.50");
        r.flags = 0;
        r
    }

    #[test]
    fn n1_port_4011_acks_a_boot_server_request_to_where_it_came_from() {
        let s = proxy();
        let from = SocketAddrV4::new(ip("192.0.2.50"), PXE_PORT);
        let o = s.handle_pxe_port(&binl_request(), from);
        let (ack, to) = o.reply.as_ref().expect("an ACK");
        assert_eq!(*to, Destination::Peer(from));
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        assert_eq!(ack.ciaddr, ip("192.0.2.50"));
        assert_boot_reply(ack, "ipxe.efi");
        let e = o.event.unwrap();
        assert_eq!(
            (e.reply, e.ip, e.port, e.bootfile.as_deref()),
            (
                Some(Reply::Dhcp(MessageType::Ack)),
                Some(ip("192.0.2.50")),
                Some(PXE_PORT),
                Some("ipxe.efi")
            )
        );
        // iPXE's ProxyDHCPREQUEST names us and comes from port 68.
        let mut ipxe = parse(IPXE_EFI_DISCOVER);
        ipxe.options
            .set(opt::MESSAGE_TYPE, [MessageType::Request.code()]);
        ipxe.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
        ipxe.ciaddr = ip("192.0.2.51");
        let from = SocketAddrV4::new(ip("192.0.2.51"), 68);
        let o = s.handle_pxe_port(&ipxe, from);
        assert_eq!(o.reply.as_ref().unwrap().1, Destination::Peer(from));
        assert_boot_reply(&o.reply.unwrap().0, URL);
    }

    #[test]
    fn n1_port_4011_drops_what_is_no_boot_server_request() {
        let s = proxy();
        let from = SocketAddrV4::new(ip("192.0.2.50"), PXE_PORT);
        let mut cases: Vec<(Repr, &str)> = Vec::new();
        let mut r = binl_request();
        r.options
            .set(opt::MESSAGE_TYPE, [MessageType::Discover.code()]);
        cases.push((r, "port 4011 answers a PXE client's REQUEST only"));
        let mut r = binl_request();
        r.options.remove(opt::VENDOR_CLASS_ID);
        cases.push((r, "port 4011 answers a PXE client's REQUEST only"));
        let mut r = binl_request();
        r.options.set(opt::SERVER_ID, ip("192.0.2.9").octets());
        cases.push((r, "not for this server"));
        let mut r = binl_request();
        r.ciaddr = Ipv4Addr::UNSPECIFIED;
        cases.push((
            r,
            "a boot server REQUEST comes from the client's own address",
        ));
        let mut r = binl_request();
        r.giaddr = ip("198.51.100.1");
        cases.push((
            r,
            "a boot server REQUEST comes from the client's own address",
        ));
        let mut r = binl_request();
        r.options.set(opt::CLIENT_ARCH, [0, 11]);
        cases.push((r, "no bootfile for this client"));
        for (req, why) in cases {
            let o = s.handle_pxe_port(&req, from);
            assert!(o.reply.is_none(), "{why}");
            let e = o.event.unwrap();
            assert_eq!((e.note, e.port), (Some(why), Some(PXE_PORT)));
        }
        // A client still gets its ACK afterwards.
        assert!(s.handle_pxe_port(&binl_request(), from).reply.is_some());
    }
}
