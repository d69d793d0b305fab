//! The DHCP server's decisions (RFC 2131 §4.3, PXE per RFC 4578 and the
//! PXE 2.1 specification), without sockets or clocks: [`DhcpServer::handle`]
//! takes a parsed request and the time, and answers with the reply to send,
//! where to send it, and what to log.
//!
//! PXE: a client whose vendor class (option 60) starts `PXEClient` gets
//! `siaddr`/next-server, option 66 and option 67 with the bootfile its
//! architecture (option 93) maps to; a client whose user class (option 77)
//! is `iPXE` gets the boot script URL instead. Option 97 is echoed. Replies
//! never carry option 60: EDK2 treats an offer with `PXEClient` and no
//! option 43 as a BINL offer and asks a boot server on port 4011 first.

use super::pool::{LeasePool, Refusal};
use crate::wire::dhcp::{self, MessageType, Op, Options, Repr, opt};
use std::{collections::BTreeMap, net::Ipv4Addr};

/// PXE settings: which file each client architecture boots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PxeSettings {
    /// `siaddr` and option 66 (default: the server address).
    pub next_server: Option<Ipv4Addr>,
    /// Bootfile per option 93 architecture type (RFC 4578 §2.1: 0 BIOS,
    /// 6 EFI IA32, 7 EFI BC, 9 EFI x86-64, 11 EFI ARM64).
    pub bootfiles: BTreeMap<u16, String>,
    /// What iPXE (option 77 `iPXE`) gets as its bootfile.
    pub boot_script_url: Option<String>,
}

/// Everything the server hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Our address: option 54 and the source of replies.
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub broadcast: Ipv4Addr,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Lease time in seconds (option 51); T1 and T2 are 1/2 and 7/8 of it.
    pub lease_secs: u32,
    pub pxe: Option<PxeSettings>,
}

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:68 on the interface: the client has no address yet.
    Broadcast,
    /// The client's address, port 68.
    Client(Ipv4Addr),
    /// The relay agent (`giaddr`), port 67.
    Relay(Ipv4Addr),
}

/// What to log about one request (spec: `dhcpserver: lease request=…
/// reply=… mac=… ip=… bootfile=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEvent {
    pub request: MessageType,
    pub reply: Option<MessageType>,
    pub mac: String,
    pub ip: Option<Ipv4Addr>,
    pub bootfile: Option<String>,
    /// Why there is no reply, or why NAK.
    pub note: Option<&'static str>,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The reply and its destination.
    pub reply: Option<(Repr, Destination)>,
    /// What to log; `None` for datagrams that are not for us at all.
    pub event: Option<LeaseEvent>,
}

impl Outcome {
    fn nothing() -> Outcome {
        Outcome {
            reply: None,
            event: None,
        }
    }
}

/// The DHCP server for one subnet.
#[derive(Debug, Clone)]
pub struct DhcpServer {
    settings: ServerSettings,
    pool: LeasePool,
}

/// The key a client's lease is filed under: option 61, else hardware type
/// and address.
pub fn client_key(req: &Repr) -> Vec<u8> {
    match req.options.client_id() {
        Some(id) => id.to_vec(),
        None => {
            let mut k = Vec::with_capacity(1 + usize::from(req.hlen));
            k.push(req.htype);
            k.extend_from_slice(req.hardware_address());
            k
        }
    }
}

/// The architecture a PXE client names: option 93, else the `Arch:NNNNN`
/// field of a `PXEClient:Arch:NNNNN:UNDI:…` vendor class.
fn client_arch(req: &Repr) -> Option<u16> {
    if let Some(arch) = req.options.client_arch() {
        return arch.first().copied();
    }
    let vc = std::str::from_utf8(req.options.vendor_class()?).ok()?;
    vc.strip_prefix("PXEClient:Arch:")?.get(..5)?.parse().ok()
}

impl DhcpServer {
    /// A server handing out addresses from `pool`.
    pub fn new(settings: ServerSettings, pool: LeasePool) -> DhcpServer {
        DhcpServer { settings, pool }
    }

    /// The settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// The lease pool (for the lease file).
    pub fn pool(&self) -> &LeasePool {
        &self.pool
    }

    /// The lease pool, mutably.
    pub fn pool_mut(&mut self) -> &mut LeasePool {
        &mut self.pool
    }

    /// The bootfile for this client, if it is a PXE client or iPXE.
    pub fn bootfile(&self, req: &Repr) -> Option<String> {
        let pxe = self.settings.pxe.as_ref()?;
        if req.options.has_user_class(b"iPXE")
            && let Some(url) = &pxe.boot_script_url
        {
            return Some(url.clone());
        }
        let is_pxe = req
            .options
            .vendor_class()
            .is_some_and(|v| v.starts_with(b"PXEClient"));
        if !is_pxe {
            return None;
        }
        pxe.bootfiles.get(&client_arch(req)?).cloned()
    }

    /// Answer one request at `now` (seconds since the epoch).
    pub fn handle(&mut self, now: u64, req: &Repr) -> Outcome {
        if req.op != Op::Request || (req.hlen == 0 && req.options.client_id().is_none()) {
            return Outcome::nothing();
        }
        let Some(kind) = req.message_type() else {
            return Outcome::nothing();
        };
        // A relayed request must come from a relay on our subnet.
        if !req.giaddr.is_unspecified() && !self.on_subnet(req.giaddr) {
            return Outcome::nothing();
        }
        let key = client_key(req);
        let mut event = LeaseEvent {
            request: kind,
            reply: None,
            mac: dhcp::format_mac(req.hardware_address()),
            ip: None,
            bootfile: None,
            note: None,
        };
        let ours = |id: Option<Ipv4Addr>| id == Some(self.settings.address);
        match kind {
            MessageType::Discover => match self.pool.offer(&key, req.options.requested_ip(), now) {
                Some(ip) => {
                    let reply = self.reply(req, MessageType::Offer, ip, &mut event);
                    return Outcome {
                        reply: Some(reply),
                        event: Some(event),
                    };
                }
                None => event.note = Some("no free address in the pool"),
            },
            MessageType::Request => {
                let server_id = req.options.server_id();
                let (ip, selecting) = match (server_id, req.options.requested_ip()) {
                    // SELECTING: the client answers an OFFER.
                    (Some(_), requested) => (requested, true),
                    // INIT-REBOOT: the client asks for its old address.
                    (None, Some(requested)) if req.ciaddr.is_unspecified() => {
                        (Some(requested), false)
                    }
                    // RENEWING / REBINDING.
                    (None, _) => (Some(req.ciaddr).filter(|a| !a.is_unspecified()), false),
                };
                if selecting && !ours(server_id) {
                    self.pool.withdraw_offer(&key);
                    event.note = Some("client chose another server");
                    return Outcome {
                        reply: None,
                        event: Some(event),
                    };
                }
                let Some(ip) = ip else {
                    event.note = Some("request names no address");
                    return Outcome {
                        reply: None,
                        event: Some(event),
                    };
                };
                event.ip = Some(ip);
                match self
                    .pool
                    .commit(&key, ip, now, u64::from(self.settings.lease_secs))
                {
                    Ok(()) => {
                        let reply = self.reply(req, MessageType::Ack, ip, &mut event);
                        return Outcome {
                            reply: Some(reply),
                            event: Some(event),
                        };
                    }
                    Err(refusal) => {
                        event.note = Some(refusal.reason());
                        let reply = self.nak(req, refusal, &mut event);
                        return Outcome {
                            reply: Some(reply),
                            event: Some(event),
                        };
                    }
                }
            }
            MessageType::Decline => {
                if let (true, Some(ip)) =
                    (ours(req.options.server_id()), req.options.requested_ip())
                {
                    event.ip = Some(ip);
                    event.note = Some(match self.pool.decline(&key, ip, now) {
                        Ok(()) => "address declined: held out of the pool",
                        Err(refused) => refused.reason(),
                    });
                } else {
                    event.note = Some("not for this server");
                }
            }
            MessageType::Release => {
                if ours(req.options.server_id()) {
                    event.ip = Some(req.ciaddr);
                    if !self.pool.release(&key, req.ciaddr, now) {
                        event.note = Some("no such lease");
                    }
                } else {
                    event.note = Some("not for this server");
                }
            }
            MessageType::Inform => {
                if req.ciaddr.is_unspecified() || !self.on_subnet(req.ciaddr) {
                    event.note = Some("INFORM without a client address on this subnet");
                } else {
                    let reply =
                        self.reply(req, MessageType::Ack, Ipv4Addr::UNSPECIFIED, &mut event);
                    event.ip = Some(req.ciaddr);
                    return Outcome {
                        reply: Some(reply),
                        event: Some(event),
                    };
                }
            }
            MessageType::Offer | MessageType::Ack | MessageType::Nak | MessageType::Other(_) => {
                return Outcome::nothing();
            }
        }
        Outcome {
            reply: None,
            event: Some(event),
        }
    }

    fn on_subnet(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.settings.netmask);
        u32::from(ip) & mask == u32::from(self.settings.address) & mask
    }

    fn header(&self, req: &Repr) -> Repr {
        Repr {
            op: Op::Reply,
            htype: req.htype,
            hlen: req.hlen,
            hops: 0,
            xid: req.xid,
            secs: 0,
            flags: req.flags,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options: Options::new(),
        }
    }

    /// OFFER or ACK for `yiaddr` (unspecified for an INFORM ACK).
    fn reply(
        &self,
        req: &Repr,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        event: &mut LeaseEvent,
    ) -> (Repr, Destination) {
        let s = &self.settings;
        let inform = req.message_type() == Some(MessageType::Inform);
        let mut r = self.header(req);
        r.yiaddr = yiaddr;
        if kind == MessageType::Ack {
            r.ciaddr = req.ciaddr;
        }
        let o = &mut r.options;
        o.set(opt::MESSAGE_TYPE, [kind.code()]);
        o.set(opt::SERVER_ID, s.address.octets());
        if !inform {
            let lease = s.lease_secs;
            o.set(opt::LEASE_TIME, lease.to_be_bytes());
            o.set(opt::RENEWAL_TIME, (lease / 2).to_be_bytes());
            o.set(opt::REBINDING_TIME, (lease / 8 * 7).to_be_bytes());
        }
        o.set(opt::SUBNET_MASK, s.netmask.octets());
        o.set(opt::BROADCAST_ADDRESS, s.broadcast.octets());
        if !s.routers.is_empty() {
            o.set(
                opt::ROUTER,
                s.routers
                    .iter()
                    .flat_map(|a| a.octets())
                    .collect::<Vec<u8>>(),
            );
        }
        if !s.dns_servers.is_empty() {
            o.set(
                opt::DNS_SERVER,
                s.dns_servers
                    .iter()
                    .flat_map(|a| a.octets())
                    .collect::<Vec<u8>>(),
            );
        }
        if let Some(d) = &s.domain {
            o.set(opt::DOMAIN_NAME, d.as_bytes().to_vec());
        }
        if let Some(bootfile) = self.bootfile(req) {
            let next = s
                .pxe
                .as_ref()
                .and_then(|p| p.next_server)
                .unwrap_or(s.address);
            r.siaddr = next;
            o.set(opt::TFTP_SERVER_NAME, next.to_string().into_bytes());
            o.set(opt::BOOTFILE_NAME, bootfile.clone().into_bytes());
            if bootfile.len() <= dhcp::FILE_MAX {
                r.file = bootfile.clone().into_bytes();
            }
            event.bootfile = Some(bootfile);
        }
        if let Some(uuid) = req.options.client_uuid() {
            o.set(opt::CLIENT_UUID, uuid.to_vec());
        }
        event.reply = Some(kind);
        event.ip = Some(yiaddr).filter(|a| !a.is_unspecified());
        (r, self.destination(req, false))
    }

    fn nak(&self, req: &Repr, why: Refusal, event: &mut LeaseEvent) -> (Repr, Destination) {
        let mut r = self.header(req);
        r.options.set(opt::MESSAGE_TYPE, [MessageType::Nak.code()]);
        r.options
            .set(opt::SERVER_ID, self.settings.address.octets());
        r.options
            .set(opt::MESSAGE, why.reason().as_bytes().to_vec());
        event.reply = Some(MessageType::Nak);
        (r, self.destination(req, true))
    }

    /// RFC 2131 §4.1: to the relay if relayed; a NAK is broadcast; to
    /// `ciaddr` when the client has an address; else broadcast.
    fn destination(&self, req: &Repr, nak: bool) -> Destination {
        if !req.giaddr.is_unspecified() {
            Destination::Relay(req.giaddr)
        } else if nak || req.ciaddr.is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Client(req.ciaddr)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dhcp::{FLAG_BROADCAST, Packet};

    const OVMF_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/ovmf-discover.bin");
    const OVMF_REQUEST: &[u8] = include_bytes!("../../wire/testdata/ovmf-request.bin");
    const IPXE_EFI_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/ipxe-efi-discover.bin");
    const IPXE_EFI_REQUEST: &[u8] = include_bytes!("../../wire/testdata/ipxe-efi-request.bin");
    const IPXE_BIOS_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/ipxe-bios-discover.bin");
    const UDHCPC_DISCOVER: &[u8] = include_bytes!("../../wire/testdata/udhcpc-discover.bin");

    const URL: &str = "http://192.0.2.1/install/boot/boot.ipxe";

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    pub(crate) fn server(script: bool) -> DhcpServer {
        let mut bootfiles = BTreeMap::new();
        bootfiles.insert(0, "ipxe.pxe".to_string());
        for a in [6, 7, 9] {
            bootfiles.insert(a, "ipxe.efi".to_string());
        }
        DhcpServer::new(
            ServerSettings {
                address: ip("192.0.2.1"),
                netmask: ip("255.255.255.0"),
                broadcast: ip("192.0.2.255"),
                routers: vec![],
                dns_servers: vec![],
                domain: None,
                lease_secs: 3600,
                pxe: Some(PxeSettings {
                    next_server: None,
                    bootfiles,
                    boot_script_url: script.then(|| URL.to_string()),
                }),
            },
            LeasePool::new(ip("192.0.2.2"), ip("192.0.2.254"), &[ip("192.0.2.1")], 1024),
        )
    }

    fn handle(s: &mut DhcpServer, now: u64, bytes: &[u8]) -> Outcome {
        s.handle(now, &Repr::parse_bytes(bytes).unwrap())
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
                Some(MessageType::Offer),
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
        let o = s.handle(1002, &other);
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
        let o = s.handle(1001, &retarget(OVMF_REQUEST, first));
        assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
        assert_eq!(reply_of(&o).yiaddr, first);
        // iPXE, chainloaded on the same machine, sends option 61 = 01+MAC:
        // the same lease.
        let o = handle(&mut s, 1010, IPXE_EFI_DISCOVER);
        let offer = reply_of(&o);
        assert_eq!(offer.yiaddr, first);
        assert_eq!(offer.options.get(opt::BOOTFILE_NAME), Some(URL.as_bytes()));
        assert_eq!(o.event.unwrap().bootfile.as_deref(), Some(URL));
        let o = s.handle(1011, &retarget(IPXE_EFI_REQUEST, first));
        assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
        assert_eq!(
            reply_of(&o).options.get(opt::BOOTFILE_NAME),
            Some(URL.as_bytes())
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
        let o = s.handle(1000, &r);
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
        let a = reply_of(&s.handle(0, &request(1, MessageType::Discover))).yiaddr;
        // SELECTING.
        let mut r = request(1, MessageType::Request);
        r.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
        r.options.set(opt::REQUESTED_IP, a.octets());
        let o = s.handle(1, &r);
        assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
        assert_eq!(o.reply.as_ref().unwrap().1, Destination::Broadcast);
        // RENEWING: unicast to ciaddr, ciaddr echoed.
        let mut r = request(1, MessageType::Request);
        r.ciaddr = a;
        r.flags = 0;
        let o = s.handle(1800, &r);
        assert_eq!(reply_of(&o).message_type(), Some(MessageType::Ack));
        assert_eq!(reply_of(&o).ciaddr, a);
        assert_eq!(o.reply.as_ref().unwrap().1, Destination::Client(a));
        // INIT-REBOOT by another client for a taken address: NAK, broadcast.
        let mut r = request(2, MessageType::Request);
        r.options.set(opt::REQUESTED_IP, a.octets());
        let o = s.handle(1801, &r);
        assert_eq!(reply_of(&o).message_type(), Some(MessageType::Nak));
        assert_eq!(o.reply.as_ref().unwrap().1, Destination::Broadcast);
        assert_eq!(
            o.event.as_ref().unwrap().note,
            Some("address in use by another client")
        );
        // INIT-REBOOT off-subnet: NAK.
        r.options.set(opt::REQUESTED_IP, ip("10.0.0.1").octets());
        assert_eq!(
            reply_of(&s.handle(1802, &r)).message_type(),
            Some(MessageType::Nak)
        );
        // RELEASE then the same client gets its address again.
        let mut rel = request(1, MessageType::Release);
        rel.ciaddr = a;
        rel.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
        assert!(s.handle(1900, &rel).reply.is_none());
        assert_eq!(
            reply_of(&s.handle(1901, &request(1, MessageType::Discover))).yiaddr,
            a
        );
        // DECLINE from another client: ignored, the owner keeps it.
        let mut dec = request(9, MessageType::Decline);
        dec.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
        dec.options.set(opt::REQUESTED_IP, a.octets());
        let o = s.handle(1902, &dec);
        assert!(o.reply.is_none());
        assert_eq!(
            o.event.unwrap().note,
            Some("DECLINE ignored: the client neither holds nor was offered this address")
        );
        assert_eq!(
            reply_of(&s.handle(1902, &request(1, MessageType::Discover))).yiaddr,
            a
        );
        // DECLINE from the client offered it: the address is held out, the
        // client gets another.
        let mut dec = request(1, MessageType::Decline);
        dec.options.set(opt::SERVER_ID, ip("192.0.2.1").octets());
        dec.options.set(opt::REQUESTED_IP, a.octets());
        let o = s.handle(1902, &dec);
        assert!(o.reply.is_none());
        assert_eq!(
            o.event.unwrap().note,
            Some("address declined: held out of the pool")
        );
        let b = reply_of(&s.handle(1903, &request(1, MessageType::Discover))).yiaddr;
        assert_ne!(a, b);
        // INFORM: ACK without yiaddr or lease time, to ciaddr.
        let mut inf = request(3, MessageType::Inform);
        inf.ciaddr = ip("192.0.2.200");
        let o = s.handle(2000, &inf);
        let ack = reply_of(&o);
        assert_eq!(ack.message_type(), Some(MessageType::Ack));
        assert_eq!(ack.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(ack.options.get(opt::LEASE_TIME), None);
        assert_eq!(
            o.reply.as_ref().unwrap().1,
            Destination::Client(ip("192.0.2.200"))
        );
    }

    #[test]
    fn relayed_requests_answer_the_relay_and_foreign_relays_are_ignored() {
        let mut s = server(false);
        let mut r = request(1, MessageType::Discover);
        r.giaddr = ip("192.0.2.9");
        let o = s.handle(0, &r);
        assert_eq!(
            o.reply.as_ref().unwrap().1,
            Destination::Relay(ip("192.0.2.9"))
        );
        assert_eq!(reply_of(&o).giaddr, ip("192.0.2.9"));
        r.giaddr = ip("10.9.9.9");
        assert_eq!(s.handle(0, &r), Outcome::nothing());
    }

    #[test]
    fn replies_emit_within_the_client_limit() {
        let mut s = server(true);
        let o = handle(&mut s, 0, OVMF_DISCOVER);
        let bytes = reply_of(&o).to_bytes();
        assert!(
            bytes.len() >= dhcp::MIN_MESSAGE_LEN && bytes.len() <= dhcp::DEFAULT_MAX_MESSAGE_LEN
        );
        let back = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(&back, reply_of(&o));
        assert_eq!(back.flags & FLAG_BROADCAST, FLAG_BROADCAST);
    }

    #[test]
    fn non_requests_and_untyped_messages_are_ignored() {
        let mut s = server(true);
        let mut r = Repr::parse_bytes(OVMF_DISCOVER).unwrap();
        r.op = Op::Reply;
        assert_eq!(s.handle(0, &r), Outcome::nothing());
        let mut r = Repr::parse_bytes(OVMF_DISCOVER).unwrap();
        r.options.remove(opt::MESSAGE_TYPE);
        assert_eq!(s.handle(0, &r), Outcome::nothing());
        r.options.set(opt::MESSAGE_TYPE, [2]);
        assert_eq!(s.handle(0, &r), Outcome::nothing());
    }
}
