//! The few rtnetlink calls the provisioning servers need (RFC 3549;
//! `rtnetlink(7)`): list an interface's IPv4 addresses, add one, remove it.
//!
//! ```text
//! nlmsghdr   len u32 | type u16 | flags u16 | seq u32 | pid u32
//! ifaddrmsg  family u8 | prefixlen u8 | flags u8 | scope u8 | index u32
//! rtattr     len u16 | type u16 | value, padded to 4 bytes
//! ```
//!
//! Messages are built and read by plain functions over byte vectors (host
//! byte order, as netlink uses) so they are tested without a kernel.

use rustix::net::{
    AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink::SocketAddrNetlink,
};
use std::{io, net::Ipv4Addr, path::Path};

const NLMSG_HDR: usize = 16;
const IFADDRMSG: usize = 8;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_MULTI: u16 = 0x2;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const AF_INET: u8 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
/// How many reply datagrams one request may take before we give up.
const MAX_REPLIES: usize = 4096;

/// An IPv4 address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// The index of interface `name` (from sysfs).
pub fn ifindex(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.contains('/') || name.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let path = Path::new("/sys/class/net").join(name).join("ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {name}"),
            )
        } else {
            e
        }
    })?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{} is not a number", path.display())))
}

/// The MTU of interface `name` (from sysfs).
pub fn mtu(name: &str) -> io::Result<u32> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("mtu"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other("mtu is not a number"))
}

/// Whether interface `name` is administratively up (sysfs `flags` & IFF_UP).
pub fn is_up(name: &str) -> io::Result<bool> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("flags"))?;
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|_| io::Error::other("flags is not a number"))?;
    Ok(flags & 1 != 0)
}

fn push_attr(msg: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    msg.extend_from_slice(value);
    while !msg.len().is_multiple_of(4) {
        msg.push(0);
    }
}

fn header(msg: &mut [u8], kind: u16, flags: u16, seq: u32) {
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    msg[12..16].copy_from_slice(&0u32.to_ne_bytes());
}

/// An RTM_GETADDR dump request for IPv4.
pub fn getaddr_request(seq: u32) -> Vec<u8> {
    let mut msg = vec![0u8; NLMSG_HDR + IFADDRMSG];
    msg[NLMSG_HDR] = AF_INET;
    header(&mut msg, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
    msg
}

/// An RTM_NEWADDR (add) or RTM_DELADDR request for `addr/prefix` on
/// interface `index`.
pub fn addr_request(add: bool, index: u32, a: IfAddr, seq: u32) -> Vec<u8> {
    let mut msg = vec![0u8; NLMSG_HDR + IFADDRMSG];
    msg[NLMSG_HDR] = AF_INET;
    msg[NLMSG_HDR + 1] = a.prefix;
    msg[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&index.to_ne_bytes());
    push_attr(&mut msg, IFA_LOCAL, &a.addr.octets());
    push_attr(&mut msg, IFA_ADDRESS, &a.addr.octets());
    if add && a.prefix < 31 {
        let net = crate::netaddr::Ipv4Net::new(a.addr, a.prefix);
        push_attr(&mut msg, IFA_BROADCAST, &net.broadcast().octets());
    }
    let (kind, flags) = if add {
        (
            RTM_NEWADDR,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
    } else {
        (RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK)
    };
    header(&mut msg, kind, flags, seq);
    msg
}

/// What one reply datagram said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// IPv4 addresses reported, with their interface index.
    pub addrs: Vec<(u32, IfAddr)>,
    /// NLMSG_DONE, or an ACK/error for our request, was seen.
    pub done: bool,
    /// The errno of an NLMSG_ERROR (0 is an ACK).
    pub errno: Option<i32>,
}

/// Parse one reply datagram. Malformed lengths end the parse with an error.
pub fn parse_reply(bytes: &[u8], seq: u32) -> io::Result<Reply> {
    let bad = || io::Error::other("malformed netlink reply");
    let mut out = Reply::default();
    let mut at = 0;
    while at + NLMSG_HDR <= bytes.len() {
        let h = &bytes[at..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let flags = u16::from_ne_bytes([h[6], h[7]]);
        let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDR || at + len > bytes.len() {
            return Err(bad());
        }
        let body = &h[NLMSG_HDR..len];
        if mseq == seq {
            match kind {
                NLMSG_DONE => out.done = true,
                NLMSG_ERROR => {
                    let code = body.get(..4).ok_or_else(bad)?;
                    out.errno = Some(-i32::from_ne_bytes([code[0], code[1], code[2], code[3]]));
                    out.done = true;
                }
                RTM_NEWADDR => {
                    if let Some(a) = parse_addr(body) {
                        out.addrs.push(a);
                    }
                }
                _ => {}
            }
            if flags & NLM_F_MULTI == 0 && kind != RTM_NEWADDR {
                out.done = true;
            }
        }
        at += len.div_ceil(4) * 4;
    }
    Ok(out)
}

fn parse_addr(body: &[u8]) -> Option<(u32, IfAddr)> {
    let m = body.get(..IFADDRMSG)?;
    if m[0] != AF_INET {
        return None;
    }
    let prefix = m[1];
    let index = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
    let (mut local, mut address) = (None, None);
    let mut at = IFADDRMSG;
    while at + 4 <= body.len() {
        let len = usize::from(u16::from_ne_bytes([body[at], body[at + 1]]));
        let kind = u16::from_ne_bytes([body[at + 2], body[at + 3]]);
        if len < 4 || at + len > body.len() {
            return None;
        }
        let value = &body[at + 4..at + len];
        if let Ok(v) = <[u8; 4]>::try_from(value) {
            match kind {
                IFA_LOCAL => local = Some(Ipv4Addr::from(v)),
                IFA_ADDRESS => address = Some(Ipv4Addr::from(v)),
                _ => {}
            }
        }
        at += len.div_ceil(4) * 4;
    }
    Some((
        index,
        IfAddr {
            addr: local.or(address)?,
            prefix,
        },
    ))
}

fn transact(request: &[u8], seq: u32) -> io::Result<Reply> {
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0))?;
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(5)),
    )?;
    rustix::net::sendto(
        &fd,
        request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut all = Reply::default();
    let mut buf = vec![0u8; 32 * 1024];
    for _ in 0..MAX_REPLIES {
        let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
        let r = parse_reply(&buf[..n], seq)?;
        all.addrs.extend(r.addrs);
        if r.errno.is_some() {
            all.errno = r.errno;
        }
        if r.done {
            all.done = true;
            return Ok(all);
        }
    }
    Err(io::Error::other("netlink reply did not end"))
}

fn seq() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ std::process::id())
        .unwrap_or(1)
}

/// The IPv4 addresses of interface `index`, in the kernel's order (the
/// first is the primary address).
pub fn ipv4_addrs(index: u32) -> io::Result<Vec<IfAddr>> {
    let seq = seq();
    let r = transact(&getaddr_request(seq), seq)?;
    if let Some(e) = r.errno.filter(|&e| e != 0) {
        return Err(io::Error::from_raw_os_error(e));
    }
    Ok(r.addrs
        .into_iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, a)| a)
        .collect())
}

/// Add `a` to interface `index`.
pub fn add_ipv4(index: u32, a: IfAddr) -> io::Result<()> {
    let seq = seq();
    match transact(&addr_request(true, index, a, seq), seq)?.errno {
        Some(0) | None => Ok(()),
        Some(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Remove `a` from interface `index`.
pub fn del_ipv4(index: u32, a: IfAddr) -> io::Result<()> {
    let seq = seq();
    match transact(&addr_request(false, index, a, seq), seq)?.errno {
        Some(0) | None => Ok(()),
        Some(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_rtnetlink_layout() {
        let a = IfAddr {
            addr: Ipv4Addr::new(192, 0, 2, 1),
            prefix: 24,
        };
        let m = addr_request(true, 7, a, 42);
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWADDR);
        assert_eq!((m[16], m[17]), (AF_INET, 24));
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(&m[28..32], &[192, 0, 2, 1]);
        assert_eq!(&m[m.len() - 4..], &[192, 0, 2, 255], "broadcast attribute");
        let d = addr_request(false, 7, a, 43);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_DELADDR);
    }

    #[test]
    fn replies_parse_and_lies_are_errors() {
        // A NEWADDR for index 3 (192.0.2.1/24) followed by DONE.
        let mut msg = vec![0u8; 16 + 8];
        msg[16] = AF_INET;
        msg[17] = 24;
        msg[20..24].copy_from_slice(&3u32.to_ne_bytes());
        push_attr(&mut msg, IFA_ADDRESS, &[192, 0, 2, 1]);
        header(&mut msg, RTM_NEWADDR, NLM_F_MULTI, 9);
        let mut done = vec![0u8; 20];
        header(&mut done, NLMSG_DONE, NLM_F_MULTI, 9);
        let mut both = msg.clone();
        both.extend_from_slice(&done);
        let r = parse_reply(&both, 9).unwrap();
        assert!(r.done);
        assert_eq!(
            r.addrs,
            [(
                3,
                IfAddr {
                    addr: Ipv4Addr::new(192, 0, 2, 1),
                    prefix: 24
                }
            )]
        );
        // Another sequence number is not ours.
        assert_eq!(parse_reply(&both, 10).unwrap(), Reply::default());
        // A length running past the datagram.
        let mut lie = msg.clone();
        lie[0..4].copy_from_slice(&999u32.to_ne_bytes());
        assert!(parse_reply(&lie, 9).is_err());
        // An error reply carries the errno.
        let mut err = vec![0u8; 16 + 4 + 16];
        err[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        header(&mut err, NLMSG_ERROR, 0, 9);
        assert_eq!(parse_reply(&err, 9).unwrap().errno, Some(17));
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(ifindex("").is_err());
        assert!(ifindex("../etc").is_err());
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert_eq!(
            ifindex("ze-no-such-if").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(mtu("lo").unwrap() >= 1500);
        assert!(is_up("lo").unwrap());
    }
}
