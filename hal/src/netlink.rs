//! rtnetlink messages (RFC 3549; `linux/rtnetlink.h`): the requests the
//! installer sends to bring links up, add addresses and routes, flush them,
//! and the parsers for the kernel's dumps of links, addresses and routes.
//!
//! Pure byte work, no syscalls: [`crate::linux`] sends and receives them.
//!
//! ```text
//! nlmsghdr (16)          ifinfomsg (16)            ifaddrmsg (8)        rtmsg (12)
//!  0 len     u32          0 family u8  1 pad        0 family  u8         0 family  u8
//!  4 type    u16          2 type   u16 (ARPHRD)     1 prefix  u8         1 dst_len u8
//!  6 flags   u16          4 index  i32              2 flags   u8         2 src_len u8
//!  8 seq     u32          8 flags  u32 (IFF_*)      3 scope   u8         3 tos     u8
//! 12 pid     u32         12 change u32              4 index   u32        4 table   u8
//!                                                                        5 proto   u8
//! rtattr: len u16, type u16, data, padded to 4                           6 scope   u8
//!                                                                        7 type    u8
//!                                                                        8 flags   u32
//! ```

use crate::os::{AddrInfo, LinkInfo, MacAddr, RouteInfo};
use core::net::Ipv4Addr;

/// Message types and flags from `linux/netlink.h` and `linux/rtnetlink.h`.
pub mod consts {
    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    pub const RTM_NEWLINK: u16 = 16;
    pub const RTM_GETLINK: u16 = 18;
    pub const RTM_NEWADDR: u16 = 20;
    pub const RTM_DELADDR: u16 = 21;
    pub const RTM_GETADDR: u16 = 22;
    pub const RTM_NEWROUTE: u16 = 24;
    pub const RTM_DELROUTE: u16 = 25;
    pub const RTM_GETROUTE: u16 = 26;

    pub const NLM_F_REQUEST: u16 = 0x1;
    pub const NLM_F_MULTI: u16 = 0x2;
    pub const NLM_F_DUMP_INTR: u16 = 0x10;
    pub const NLM_F_ACK: u16 = 0x4;
    pub const NLM_F_DUMP: u16 = 0x300;
    pub const NLM_F_REPLACE: u16 = 0x100;
    pub const NLM_F_EXCL: u16 = 0x200;
    pub const NLM_F_CREATE: u16 = 0x400;

    pub const AF_INET: u8 = 2;
    pub const IFF_UP: u32 = 0x1;
    pub const IFF_LOOPBACK: u32 = 0x8;
    pub const IFF_LOWER_UP: u32 = 0x1_0000;

    pub const IFLA_ADDRESS: u16 = 1;
    pub const IFLA_IFNAME: u16 = 3;
    pub const IFLA_LINKINFO: u16 = 18;
    pub const IFLA_INFO_KIND: u16 = 1;
    pub const IFA_ADDRESS: u16 = 1;
    pub const IFA_LOCAL: u16 = 2;
    pub const IFA_BROADCAST: u16 = 4;
    pub const RTA_DST: u16 = 1;
    pub const RTA_OIF: u16 = 4;
    pub const RTA_GATEWAY: u16 = 5;
    pub const RTA_TABLE: u16 = 15;

    pub const RT_TABLE_MAIN: u8 = 254;
    pub const RTPROT_DHCP: u8 = 16;
    pub const RT_SCOPE_UNIVERSE: u8 = 0;
    pub const RTN_UNICAST: u8 = 1;
}
use consts::*;

/// Bytes of a netlink message header.
pub const HEADER_LEN: usize = 16;

/// The request did not fit the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall;

/// Builds one netlink message in a caller's buffer.
#[derive(Debug)]
pub struct Builder<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Builder<'a> {
    /// Start a message of `kind` with `flags` and sequence number `seq`.
    pub fn new(buf: &'a mut [u8], kind: u16, flags: u16, seq: u32) -> Self {
        let mut b = Builder {
            buf,
            len: 0,
            overflow: false,
        };
        b.push(&[0; 4]);
        b.push(&kind.to_ne_bytes());
        b.push(&flags.to_ne_bytes());
        b.push(&seq.to_ne_bytes());
        b.push(&[0; 4]);
        b
    }

    /// Append raw bytes (a fixed family header).
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
        self
    }

    fn pad(&mut self) {
        while !self.len.is_multiple_of(4) && !self.overflow {
            self.push(&[0]);
        }
    }

    /// Append one attribute, padded to 4 bytes.
    pub fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        self.push(&len.to_ne_bytes());
        self.push(&kind.to_ne_bytes());
        self.push(data);
        self.pad();
        self
    }

    /// Set the length field and return the message.
    pub fn finish(self) -> Result<&'a [u8], BufferTooSmall> {
        if self.overflow {
            return Err(BufferTooSmall);
        }
        let len = u32::try_from(self.len).map_err(|_| BufferTooSmall)?;
        let buf = self.buf;
        buf.get_mut(..4)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(&len.to_ne_bytes());
        buf.get(..self.len).ok_or(BufferTooSmall)
    }
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn ifaddrmsg(index: u32, prefix: u8) -> [u8; 8] {
    let mut m = [AF_INET, prefix, 0, 0, 0, 0, 0, 0];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m
}

fn rtmsg(dst_len: u8) -> [u8; 12] {
    [
        AF_INET,
        dst_len,
        0,
        0,
        RT_TABLE_MAIN,
        RTPROT_DHCP,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ]
}

/// `RTM_GETLINK` dump request.
pub fn get_links(buf: &mut [u8], seq: u32) -> Result<&[u8], BufferTooSmall> {
    let mut b = Builder::new(buf, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.push(&ifinfomsg(0, 0, 0));
    b.finish()
}

/// `RTM_GETADDR` dump request for IPv4.
pub fn get_addrs(buf: &mut [u8], seq: u32) -> Result<&[u8], BufferTooSmall> {
    let mut b = Builder::new(buf, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.push(&ifaddrmsg(0, 0));
    b.finish()
}

/// `RTM_GETROUTE` dump request for IPv4.
pub fn get_routes(buf: &mut [u8], seq: u32) -> Result<&[u8], BufferTooSmall> {
    let mut b = Builder::new(buf, RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq);
    b.push(&[AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.finish()
}

/// `RTM_NEWLINK` setting `IFF_UP`.
pub fn link_up(buf: &mut [u8], seq: u32, index: u32) -> Result<&[u8], BufferTooSmall> {
    let mut b = Builder::new(buf, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq);
    b.push(&ifinfomsg(index, IFF_UP, IFF_UP));
    b.finish()
}

/// The directed broadcast address of `addr/prefix`.
pub fn broadcast(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let host_bits = 32u32.saturating_sub(u32::from(prefix.min(32)));
    let mask = if host_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    Ipv4Addr::from(u32::from(addr) | mask)
}

/// `RTM_NEWADDR`: add (or replace) `addr/prefix` on the interface.
pub fn addr_add(
    buf: &mut [u8],
    seq: u32,
    index: u32,
    addr: Ipv4Addr,
    prefix: u8,
) -> Result<&[u8], BufferTooSmall> {
    new_addr(buf, seq, index, addr, prefix, NLM_F_REPLACE)
}

/// `RTM_NEWADDR` that fails with `EEXIST` when the interface already has
/// `addr`: for a caller that removes what it added, and must not remove
/// an address somebody else configured.
pub fn addr_create(
    buf: &mut [u8],
    seq: u32,
    index: u32,
    addr: Ipv4Addr,
    prefix: u8,
) -> Result<&[u8], BufferTooSmall> {
    new_addr(buf, seq, index, addr, prefix, NLM_F_EXCL)
}

fn new_addr(
    buf: &mut [u8],
    seq: u32,
    index: u32,
    addr: Ipv4Addr,
    prefix: u8,
    mode: u16,
) -> Result<&[u8], BufferTooSmall> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | mode;
    let mut b = Builder::new(buf, RTM_NEWADDR, flags, seq);
    b.push(&ifaddrmsg(index, prefix));
    b.attr(IFA_LOCAL, &addr.octets());
    b.attr(IFA_ADDRESS, &addr.octets());
    if prefix < 31 {
        b.attr(IFA_BROADCAST, &broadcast(addr, prefix).octets());
    }
    b.finish()
}

/// `RTM_DELADDR` for one address.
pub fn addr_del<'b>(buf: &'b mut [u8], seq: u32, a: &AddrInfo) -> Result<&'b [u8], BufferTooSmall> {
    let mut b = Builder::new(buf, RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq);
    b.push(&ifaddrmsg(a.index, a.prefix));
    b.attr(IFA_LOCAL, &a.addr.octets());
    b.finish()
}

/// `RTM_NEWROUTE`: default route through `gateway` on the interface.
pub fn route_add_default(
    buf: &mut [u8],
    seq: u32,
    index: u32,
    gateway: Ipv4Addr,
) -> Result<&[u8], BufferTooSmall> {
    let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    let mut b = Builder::new(buf, RTM_NEWROUTE, flags, seq);
    b.push(&rtmsg(0));
    b.attr(RTA_GATEWAY, &gateway.octets());
    b.attr(RTA_OIF, &index.to_ne_bytes());
    b.finish()
}

/// `RTM_DELROUTE` for one route.
pub fn route_del<'b>(
    buf: &'b mut [u8],
    seq: u32,
    r: &RouteInfo,
) -> Result<&'b [u8], BufferTooSmall> {
    let mut b = Builder::new(buf, RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq);
    b.push(&rtmsg(r.prefix));
    if r.prefix > 0 {
        b.attr(RTA_DST, &r.dst.octets());
    }
    if let Some(gw) = r.gateway {
        b.attr(RTA_GATEWAY, &gw.octets());
    }
    b.attr(RTA_OIF, &r.oif.to_ne_bytes());
    b.finish()
}

/// One message of a netlink reply.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// `nlmsg_type`.
    pub kind: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// The bytes after the header.
    pub payload: &'a [u8],
}

impl Message<'_> {
    /// For `NLMSG_ERROR`: the error (0 is an ACK, else a negative errno).
    pub fn error_code(&self) -> Option<i32> {
        if self.kind != NLMSG_ERROR {
            return None;
        }
        Some(i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?))
    }
}

/// The messages in one datagram. Stops at the first malformed header.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// Iterate the messages of a datagram.
pub fn messages(bytes: &[u8]) -> Messages<'_> {
    Messages { rest: bytes }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;
    fn next(&mut self) -> Option<Message<'a>> {
        let len = u32_at(self.rest, 0)? as usize;
        if len < HEADER_LEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let msg = Message {
            kind: u16_at(self.rest, 4)?,
            flags: u16_at(self.rest, 6)?,
            seq: u32_at(self.rest, 8)?,
            payload: self.rest.get(HEADER_LEN..len)?,
        };
        self.rest = self.rest.get(align4(len)..).unwrap_or_default();
        Some(msg)
    }
}

/// The attributes after a family header. Stops at the first malformed one.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

/// Iterate the attributes of `payload` after `fixed` bytes of family header.
pub fn attrs(payload: &[u8], fixed: usize) -> Attrs<'_> {
    Attrs {
        rest: payload.get(fixed..).unwrap_or_default(),
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let len = usize::from(u16_at(self.rest, 0)?);
        if len < 4 || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let kind = u16_at(self.rest, 2)? & 0x3fff;
        let data = self.rest.get(4..len)?;
        self.rest = self.rest.get(align4(len)..).unwrap_or_default();
        Some((kind, data))
    }
}

fn ipv4(data: &[u8]) -> Option<Ipv4Addr> {
    let o: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// Parse an `RTM_NEWLINK` payload.
pub fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
    let kind = u16_at(payload, 2)?;
    let index = u32_at(payload, 4)?;
    let flags = u32_at(payload, 8)?;
    let mut info = LinkInfo {
        index,
        name: heapless::String::new(),
        mac: [0; 6],
        up: flags & IFF_UP != 0,
        carrier: flags & IFF_LOWER_UP != 0,
        loopback: flags & IFF_LOOPBACK != 0,
        kind,
        link_kind: heapless::String::new(),
    };
    for (t, data) in attrs(payload, 16) {
        match t {
            IFLA_IFNAME => {
                let name = data.split(|&b| b == 0).next().unwrap_or_default();
                let name = core::str::from_utf8(name).ok()?;
                info.name.push_str(name).ok()?;
            }
            IFLA_LINKINFO => {
                for (nested, value) in attrs(data, 0) {
                    if nested == IFLA_INFO_KIND {
                        let kind = value.split(|&b| b == 0).next().unwrap_or_default();
                        for c in core::str::from_utf8(kind).unwrap_or_default().chars() {
                            if info.link_kind.push(c).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            IFLA_ADDRESS if data.len() == 6 => {
                let mut mac: MacAddr = [0; 6];
                mac.copy_from_slice(data);
                info.mac = mac;
            }
            _ => {}
        }
    }
    Some(info)
}

/// Parse an `RTM_NEWADDR` payload (IPv4 only).
pub fn parse_addr(payload: &[u8]) -> Option<AddrInfo> {
    if *payload.first()? != AF_INET {
        return None;
    }
    let prefix = *payload.get(1)?;
    let index = u32_at(payload, 4)?;
    let mut local = None;
    let mut address = None;
    for (t, data) in attrs(payload, 8) {
        match t {
            IFA_LOCAL => local = ipv4(data),
            IFA_ADDRESS => address = ipv4(data),
            _ => {}
        }
    }
    Some(AddrInfo {
        index,
        addr: local.or(address)?,
        prefix,
    })
}

/// Parse an `RTM_NEWROUTE` payload; `None` for non-IPv4 routes and routes
/// outside the main table.
pub fn parse_route(payload: &[u8]) -> Option<RouteInfo> {
    if *payload.first()? != AF_INET {
        return None;
    }
    let prefix = *payload.get(1)?;
    let mut table = u32::from(*payload.get(4)?);
    let mut route = RouteInfo {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix,
        gateway: None,
        oif: 0,
    };
    for (t, data) in attrs(payload, 12) {
        match t {
            RTA_DST => route.dst = ipv4(data)?,
            RTA_GATEWAY => route.gateway = ipv4(data),
            RTA_OIF => route.oif = u32_at(data, 0)?,
            RTA_TABLE => table = u32_at(data, 0)?,
            _ => {}
        }
    }
    (table == u32::from(RT_TABLE_MAIN)).then_some(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_addr_add_with_padding() {
        let mut buf = [0u8; 128];
        let msg = addr_add(&mut buf, 7, 2, Ipv4Addr::new(10, 0, 2, 15), 24).unwrap();
        // header 16 + ifaddrmsg 8 + three 8-byte attributes
        assert_eq!(msg.len(), 16 + 8 + 24);
        assert_eq!(u32_at(msg, 0), Some(48));
        assert_eq!(u16_at(msg, 4), Some(RTM_NEWADDR));
        assert_eq!(u32_at(msg, 8), Some(7));
        let m = messages(msg).next().unwrap();
        let parsed = parse_addr(m.payload).unwrap();
        assert_eq!(parsed.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(parsed.prefix, 24);
        assert_eq!(parsed.index, 2);
        let bcast: std::vec::Vec<_> = attrs(m.payload, 8)
            .filter(|(t, _)| *t == IFA_BROADCAST)
            .map(|(_, d)| ipv4(d).unwrap())
            .collect();
        assert_eq!(bcast, [Ipv4Addr::new(10, 0, 2, 255)]);
    }

    #[test]
    fn addr_create_refuses_an_existing_address_and_addr_add_replaces_it() {
        let mut buf = [0u8; 128];
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let create = addr_create(&mut buf, 1, 2, a, 24).unwrap().to_vec();
        let replace = addr_add(&mut buf, 1, 2, a, 24).unwrap().to_vec();
        let flags = |m: &[u8]| u16_at(m, 6).unwrap();
        assert_eq!(flags(&create) & (NLM_F_EXCL | NLM_F_REPLACE), NLM_F_EXCL);
        assert_eq!(
            flags(&replace) & (NLM_F_EXCL | NLM_F_REPLACE),
            NLM_F_REPLACE
        );
        assert_eq!(create[16..], replace[16..], "the same address either way");
    }

    #[test]
    fn route_round_trips_through_the_parser() {
        let mut buf = [0u8; 128];
        let msg = route_add_default(&mut buf, 1, 3, Ipv4Addr::new(192, 0, 2, 1)).unwrap();
        let m = messages(msg).next().unwrap();
        assert_eq!(
            parse_route(m.payload),
            Some(RouteInfo {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                oif: 3
            })
        );
    }

    #[test]
    fn too_small_buffer_is_an_error_not_a_panic() {
        let mut buf = [0u8; 20];
        assert_eq!(
            addr_add(&mut buf, 1, 1, Ipv4Addr::LOCALHOST, 8),
            Err(BufferTooSmall)
        );
    }

    #[test]
    fn parses_a_link_message_and_ignores_junk_attributes() {
        let mut buf = [0u8; 256];
        let mut b = Builder::new(&mut buf, RTM_NEWLINK, NLM_F_MULTI, 9);
        let mut info = ifinfomsg(2, IFF_UP | IFF_LOWER_UP, 0);
        info[2..4].copy_from_slice(&1u16.to_ne_bytes());
        b.push(&info);
        b.attr(IFLA_IFNAME, b"eth0\0");
        b.attr(IFLA_ADDRESS, &[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        b.attr(999, &[1, 2, 3]);
        let msg = b.finish().unwrap();
        let m = messages(msg).next().unwrap();
        let link = parse_link(m.payload).unwrap();
        assert_eq!(link.name.as_str(), "eth0");
        assert_eq!(link.mac, [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        assert!(link.up && link.carrier && !link.loopback);
        assert_eq!(link.kind, 1);
    }

    #[test]
    fn malformed_datagrams_end_iteration() {
        // Length longer than the datagram.
        let mut bad = [0u8; 20];
        bad[..4].copy_from_slice(&100u32.to_ne_bytes());
        assert_eq!(messages(&bad).count(), 0);
        // Length shorter than a header.
        bad[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(messages(&bad).count(), 0);
        // Attribute length 0 and attribute longer than the payload.
        assert_eq!(attrs(&[0, 0, 1, 0, 9, 9], 0).count(), 0);
        assert_eq!(attrs(&[40, 0, 1, 0, 9, 9], 0).count(), 0);
        // Truncated family headers.
        assert_eq!(parse_link(&[0; 5]), None);
        assert_eq!(parse_route(&[AF_INET]), None);
        assert_eq!(parse_addr(&[]), None);
    }

    #[test]
    fn error_messages_carry_the_errno() {
        let mut buf = [0u8; 64];
        let mut b = Builder::new(&mut buf, NLMSG_ERROR, 0, 1);
        b.push(&(-17i32).to_ne_bytes());
        let msg = b.finish().unwrap();
        assert_eq!(messages(msg).next().unwrap().error_code(), Some(-17));
    }

    #[test]
    fn broadcast_addresses() {
        let a = Ipv4Addr::new(198, 51, 100, 7);
        assert_eq!(broadcast(a, 24), Ipv4Addr::new(198, 51, 100, 255));
        assert_eq!(broadcast(a, 0), Ipv4Addr::BROADCAST);
        assert_eq!(broadcast(a, 32), a);
    }
}
