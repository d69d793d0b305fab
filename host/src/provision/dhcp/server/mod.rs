//! The DHCP server's decisions (RFC 2131 §4.3, PXE per RFC 4578 and the
//! PXE 2.1 specification), without sockets or clocks: [`DhcpServer::handle`]
//! takes a parsed request, where it came from and the time, and answers
//! with the reply to send, where to send it, and what to log.
//!
//! Subnets: the interface's own, and any number behind relay agents; a
//! request is served from the one its `giaddr` (or, renewing, its
//! `ciaddr`) lies in, each with its own pool ([`super::relay`]).
//!
//! PXE: a client whose vendor class (option 60) starts `PXEClient` gets
//! `siaddr`/next-server, option 66 and option 67 with the bootfile its
//! architecture (option 93) maps to; a client whose user class (option 77)
//! is `iPXE` gets the boot script URL instead. Option 97 is echoed, and
//! option 82 from a relay. In full mode replies never carry option 60:
//! EDK2 treats an offer with `PXEClient` and no option 43 as a BINL offer
//! and asks a boot server on port 4011 first. In proxy mode the server
//! hands out no addresses and answers only PXE clients ([`super::proxy`]).

use super::{
    pool::{LeasePool, Refusal},
    relay,
};
use crate::{
    netaddr::Ipv4Net,
    wire::dhcp::{self, MessageType, Op, Options, Repr, opt},
};
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
};

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
    /// Add `?mac=<the client's MAC>` to the boot script URL, so the
    /// imageserver answers each machine with its own script (set per
    /// request by the plugin: when there are machine records).
    pub script_mac: bool,
}

/// What every reply shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Our address: option 54 and the source of replies.
    pub address: Ipv4Addr,
    /// Lease time in seconds (option 51); T1 and T2 are 1/2 and 7/8 of it.
    pub lease_secs: u32,
    pub pxe: Option<PxeSettings>,
}

/// A subnet whose clients get addresses: the interface's own, or one
/// behind a relay agent.
#[derive(Debug, Clone)]
pub struct Subnet {
    pub net: Ipv4Net,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub pool: LeasePool,
}

/// How the server answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// DHCP with addresses, one pool per subnet; the interface's subnet
    /// first.
    Full(Vec<Subnet>),
    /// proxyDHCP (PXE 2.1): the site's DHCP server hands out the
    /// addresses; PXE clients on these subnets (the interface's first)
    /// learn what to boot.
    Proxy(Vec<Ipv4Net>),
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
    /// Back where the request came from (a PXE boot server request on
    /// port 4011).
    Peer(SocketAddrV4),
}

/// What was answered, as the log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A DHCP message of this type.
    Dhcp(MessageType),
    /// A proxyDHCP offer: no address, the PXE bootfile.
    ProxyOffer,
}

impl Reply {
    /// `OFFER`, `ACK`, …, `PROXY`.
    pub fn name(self) -> &'static str {
        match self {
            Reply::Dhcp(kind) => kind.name(),
            Reply::ProxyOffer => "PROXY",
        }
    }
}

/// What to log about one request (spec: `dhcpserver: lease request=…
/// reply=… mac=… ip=… bootfile=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEvent {
    pub request: MessageType,
    pub reply: Option<Reply>,
    pub mac: String,
    pub ip: Option<Ipv4Addr>,
    pub bootfile: Option<String>,
    /// The relay agent, for a relayed request.
    pub giaddr: Option<Ipv4Addr>,
    /// The port the request came in on, when it is not 67.
    pub port: Option<u16>,
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
    pub(super) fn nothing() -> Outcome {
        Outcome {
            reply: None,
            event: None,
        }
    }

    /// Log `event`, send nothing.
    pub(super) fn silent(event: LeaseEvent) -> Outcome {
        Outcome {
            reply: None,
            event: Some(event),
        }
    }

    fn answer(reply: (Repr, Destination), event: LeaseEvent) -> Outcome {
        Outcome {
            reply: Some(reply),
            event: Some(event),
        }
    }
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

/// Whether the vendor class (option 60) starts `PXEClient`: PXE firmware,
/// and iPXE, which sends one too.
pub fn is_pxe_client(req: &Repr) -> bool {
    req.options
        .vendor_class()
        .is_some_and(|v| v.starts_with(b"PXEClient"))
}

impl DhcpServer {
    /// A server answering in `mode`.
    pub fn new(settings: ServerSettings, mode: Mode) -> DhcpServer {
        DhcpServer { settings, mode }
    }

    /// The settings.
    pub fn settings(&self) -> &ServerSettings {
        &self.settings
    }

    /// Whether iPXE's boot-script URL names the client's MAC (the server
    /// has machine records: see [`PxeSettings::script_mac`]).
    pub fn set_script_mac(&mut self, on: bool) {
        if let Some(pxe) = self.settings.pxe.as_mut() {
            pxe.script_mac = on;
        }
    }

    /// Every subnet's network, the interface's first.
    pub fn networks(&self) -> Vec<Ipv4Net> {
        match &self.mode {
            Mode::Full(subnets) => subnets.iter().map(|s| s.net).collect(),
            Mode::Proxy(nets) => nets.clone(),
        }
    }

    /// Every lease pool (none in proxy mode), for the lease file.
    pub fn pools(&self) -> impl Iterator<Item = &LeasePool> {
        let subnets: &[Subnet] = match &self.mode {
            Mode::Full(s) => s,
            Mode::Proxy(_) => &[],
        };
        subnets.iter().map(|s| &s.pool)
    }

    /// The pool that may hand out `ip`.
    pub fn pool_for(&mut self, ip: Ipv4Addr) -> Option<&mut LeasePool> {
        match &mut self.mode {
            Mode::Full(subnets) => subnets
                .iter_mut()
                .map(|s| &mut s.pool)
                .find(|p| p.in_pool(ip)),
            Mode::Proxy(_) => None,
        }
    }

    /// Whether any bound lease changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        match &mut self.mode {
            Mode::Full(subnets) => subnets
                .iter_mut()
                .fold(false, |any, s| s.pool.take_changed() | any),
            Mode::Proxy(_) => false,
        }
    }

    /// The bootfile for this client, if it is a PXE client or iPXE.
    pub fn bootfile(&self, req: &Repr) -> Option<String> {
        let pxe = self.settings.pxe.as_ref()?;
        if req.options.has_user_class(b"iPXE")
            && let Some(url) = &pxe.boot_script_url
        {
            if pxe.script_mac && req.hlen == 6 {
                let mac = dhcp::format_mac(req.hardware_address()).replace(':', "-");
                let sep = if url.contains('?') { '&' } else { '?' };
                return Some(format!("{url}{sep}mac={mac}"));
            }
            return Some(url.clone());
        }
        if !is_pxe_client(req) {
            return None;
        }
        pxe.bootfiles.get(&client_arch(req)?).cloned()
    }

    /// The request's message type and the event to log about it; `None`
    /// for datagrams that are no client request.
    pub(super) fn event_for(req: &Repr) -> Option<LeaseEvent> {
        if req.op != Op::Request || (req.hlen == 0 && req.options.client_id().is_none()) {
            return None;
        }
        Some(LeaseEvent {
            request: req.message_type()?,
            reply: None,
            mac: dhcp::format_mac(req.hardware_address()),
            ip: None,
            bootfile: None,
            giaddr: Some(req.giaddr).filter(|g| !g.is_unspecified()),
            port: None,
            note: None,
        })
    }

    /// Answer one request that arrived on port 67 from `from`, at `now`
    /// (seconds since the epoch).
    pub fn handle(&mut self, now: u64, req: &Repr, from: SocketAddrV4) -> Outcome {
        let Some(mut event) = Self::event_for(req) else {
            return Outcome::nothing();
        };
        if matches!(self.mode, Mode::Proxy(_)) {
            return self.proxy_answer(req, from, event);
        }
        if matches!(
            event.request,
            MessageType::Offer | MessageType::Ack | MessageType::Nak | MessageType::Other(_)
        ) {
            return Outcome::nothing();
        }
        let subnet = match relay::select(req, from, self.settings.address, &self.networks()) {
            Ok(i) => i,
            Err(dropped) => {
                event.note = Some(dropped.reason());
                return Outcome::silent(event);
            }
        };
        self.full(now, req, subnet, event)
    }

    /// Subnet `i` of a full-mode server.
    fn subnet(&mut self, i: usize) -> &mut Subnet {
        match &mut self.mode {
            Mode::Full(subnets) => &mut subnets[i],
            Mode::Proxy(_) => unreachable!("proxy mode has no pools"),
        }
    }

    /// Full mode: DISCOVER, REQUEST, DECLINE, RELEASE, INFORM against the
    /// pool of subnet `i`.
    fn full(&mut self, now: u64, req: &Repr, i: usize, mut event: LeaseEvent) -> Outcome {
        let key = client_key(req);
        let address = self.settings.address;
        let ours = |id: Option<Ipv4Addr>| id == Some(address);
        match event.request {
            MessageType::Discover => {
                match self
                    .subnet(i)
                    .pool
                    .offer(&key, req.options.requested_ip(), now)
                {
                    Some(ip) => {
                        let reply = self.reply(req, i, MessageType::Offer, ip, &mut event);
                        return Outcome::answer(reply, event);
                    }
                    None => event.note = Some("no free address in the pool"),
                }
            }
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
                    self.subnet(i).pool.withdraw_offer(&key);
                    event.note = Some("client chose another server");
                    return Outcome::silent(event);
                }
                let Some(ip) = ip else {
                    event.note = Some("request names no address");
                    return Outcome::silent(event);
                };
                event.ip = Some(ip);
                let lease_secs = u64::from(self.settings.lease_secs);
                return match self.subnet(i).pool.commit(&key, ip, now, lease_secs) {
                    Ok(()) => {
                        let reply = self.reply(req, i, MessageType::Ack, ip, &mut event);
                        Outcome::answer(reply, event)
                    }
                    Err(refusal) => {
                        event.note = Some(refusal.reason());
                        let reply = self.nak(req, refusal, &mut event);
                        Outcome::answer(reply, event)
                    }
                };
            }
            MessageType::Decline => {
                if let (true, Some(ip)) =
                    (ours(req.options.server_id()), req.options.requested_ip())
                {
                    event.ip = Some(ip);
                    event.note = Some(match self.subnet(i).pool.decline(&key, ip, now) {
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
                    if !self.subnet(i).pool.release(&key, req.ciaddr, now) {
                        event.note = Some("no such lease");
                    }
                } else {
                    event.note = Some("not for this server");
                }
            }
            MessageType::Inform => {
                if req.ciaddr.is_unspecified() || !self.subnet(i).net.contains(req.ciaddr) {
                    event.note = Some("INFORM without a client address on this subnet");
                } else {
                    let reply =
                        self.reply(req, i, MessageType::Ack, Ipv4Addr::UNSPECIFIED, &mut event);
                    event.ip = Some(req.ciaddr);
                    return Outcome::answer(reply, event);
                }
            }
            MessageType::Offer | MessageType::Ack | MessageType::Nak | MessageType::Other(_) => {
                return Outcome::nothing();
            }
        }
        Outcome::silent(event)
    }

    /// The reply's fixed fields, taken from the request.
    pub(super) fn header(req: &Repr) -> Repr {
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

    /// `siaddr`, `file`, options 66 and 67 for a PXE client or iPXE;
    /// returns whether it is one.
    pub(super) fn boot_fields(&self, req: &Repr, r: &mut Repr, event: &mut LeaseEvent) -> bool {
        let Some(bootfile) = self.bootfile(req) else {
            return false;
        };
        let next = self
            .settings
            .pxe
            .as_ref()
            .and_then(|p| p.next_server)
            .unwrap_or(self.settings.address);
        r.siaddr = next;
        r.options
            .set(opt::TFTP_SERVER_NAME, next.to_string().into_bytes());
        r.options
            .set(opt::BOOTFILE_NAME, bootfile.clone().into_bytes());
        if bootfile.len() <= dhcp::FILE_MAX {
            r.file = bootfile.clone().into_bytes();
        }
        event.bootfile = Some(bootfile);
        true
    }

    /// Take the PXE boot fields out of a reply (`siaddr`, `file`,
    /// options 66, 67 and 60), leaving the address and the rest.
    pub fn strip_boot_fields(r: &mut Repr) {
        r.siaddr = Ipv4Addr::UNSPECIFIED;
        r.file.clear();
        r.sname.clear();
        for code in [
            opt::TFTP_SERVER_NAME,
            opt::BOOTFILE_NAME,
            opt::VENDOR_CLASS_ID,
        ] {
            r.options.remove(code);
        }
    }

    /// Options 97 and 82 copied from the request, 82 last (RFC 3046 §2.2).
    pub(super) fn echo(req: &Repr, r: &mut Repr) {
        if let Some(uuid) = req.options.client_uuid() {
            r.options.set(opt::CLIENT_UUID, uuid.to_vec());
        }
        if let Some(info) = req.options.get(opt::RELAY_AGENT_INFO) {
            r.options.set(opt::RELAY_AGENT_INFO, info.to_vec());
        }
    }

    /// OFFER or ACK for `yiaddr` on subnet `i` (unspecified for an INFORM
    /// ACK).
    fn reply(
        &self,
        req: &Repr,
        i: usize,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        event: &mut LeaseEvent,
    ) -> (Repr, Destination) {
        let Mode::Full(subnets) = &self.mode else {
            unreachable!("addresses are offered in full mode only");
        };
        let subnet = &subnets[i];
        let inform = req.message_type() == Some(MessageType::Inform);
        let mut r = Self::header(req);
        r.yiaddr = yiaddr;
        if kind == MessageType::Ack {
            r.ciaddr = req.ciaddr;
        }
        let o = &mut r.options;
        o.set(opt::MESSAGE_TYPE, [kind.code()]);
        o.set(opt::SERVER_ID, self.settings.address.octets());
        if !inform {
            let lease = self.settings.lease_secs;
            o.set(opt::LEASE_TIME, lease.to_be_bytes());
            o.set(opt::RENEWAL_TIME, (lease / 2).to_be_bytes());
            o.set(opt::REBINDING_TIME, (lease / 8 * 7).to_be_bytes());
        }
        o.set(opt::SUBNET_MASK, subnet.net.netmask().octets());
        o.set(opt::BROADCAST_ADDRESS, subnet.net.broadcast().octets());
        let addrs = |list: &[Ipv4Addr]| list.iter().flat_map(|a| a.octets()).collect::<Vec<u8>>();
        if !subnet.routers.is_empty() {
            o.set(opt::ROUTER, addrs(&subnet.routers));
        }
        if !subnet.dns_servers.is_empty() {
            o.set(opt::DNS_SERVER, addrs(&subnet.dns_servers));
        }
        if let Some(d) = &subnet.domain {
            o.set(opt::DOMAIN_NAME, d.as_bytes().to_vec());
        }
        self.boot_fields(req, &mut r, event);
        Self::echo(req, &mut r);
        event.reply = Some(Reply::Dhcp(kind));
        event.ip = Some(yiaddr).filter(|a| !a.is_unspecified());
        (r, Self::destination(req, false))
    }

    fn nak(&self, req: &Repr, why: Refusal, event: &mut LeaseEvent) -> (Repr, Destination) {
        let mut r = Self::header(req);
        r.options.set(opt::MESSAGE_TYPE, [MessageType::Nak.code()]);
        r.options
            .set(opt::SERVER_ID, self.settings.address.octets());
        r.options
            .set(opt::MESSAGE, why.reason().as_bytes().to_vec());
        Self::echo(req, &mut r);
        // RFC 2131 §4.3.2: a relayed NAK asks the relay to broadcast it.
        if !req.giaddr.is_unspecified() {
            r.flags |= dhcp::FLAG_BROADCAST;
        }
        event.reply = Some(Reply::Dhcp(MessageType::Nak));
        (r, Self::destination(req, true))
    }

    /// RFC 2131 §4.1: to the relay if relayed; a NAK is broadcast; to
    /// `ciaddr` when the client has an address; else broadcast.
    pub(super) fn destination(req: &Repr, nak: bool) -> Destination {
        if !req.giaddr.is_unspecified() {
            Destination::Relay(req.giaddr)
        } else if nak || req.ciaddr.is_unspecified() {
            Destination::Broadcast
        } else {
            Destination::Client(req.ciaddr)
        }
    }
}

/// The DHCP server for one interface and the subnets relayed to it.
#[derive(Debug, Clone)]
pub struct DhcpServer {
    settings: ServerSettings,
    mode: Mode,
}

#[cfg(test)]
pub(crate) mod tests;
