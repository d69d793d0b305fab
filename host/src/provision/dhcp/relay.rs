//! Relayed requests (RFC 2131 §4.1, RFC 1542, RFC 3046): which subnet a
//! request belongs to, and which relayed requests are dropped.
//!
//! A request with a non-zero `giaddr` came through a relay agent on the
//! client's subnet; it is served from the configured subnet that contains
//! `giaddr` and answered to `giaddr`, port 67. It is dropped when
//!
//! - it did not come from UDP port 67, where relay agents send from (a
//!   client setting `giaddr` itself sends from port 68);
//! - `giaddr` cannot be a relay's address: not a unicast host address
//!   (`0.0.0.0/8`, loopback, multicast, `240.0.0.0/4`, broadcast), the
//!   network or broadcast address of its subnet, or this server's own
//!   address;
//! - `giaddr` lies in no configured subnet;
//! - its relay agent information (option 82) is malformed.
//!
//! Option 82 must be a sequence of sub-options (code, length, value) that
//! fills it exactly, with at least one; it is echoed unchanged, as the
//! last option, in every reply (RFC 3046 §2.2).

use crate::{
    netaddr::Ipv4Net,
    wire::dhcp::{Repr, opt},
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// The port relay agents send from and are answered on.
pub const RELAY_PORT: u16 = 67;

/// Why a request is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// `giaddr` set, but not sent from port 67.
    NotFromRelayPort,
    /// `giaddr` is no address a relay agent can have.
    ForgedGiaddr,
    /// `giaddr` is in none of the configured subnets.
    UnknownSubnet,
    /// Option 82 does not parse as sub-options.
    BadAgentInfo,
}

impl Dropped {
    /// Text for the log.
    pub fn reason(self) -> &'static str {
        match self {
            Dropped::NotFromRelayPort => {
                "relayed request not from port 67: a relay agent sends from port 67, so giaddr is forged"
            }
            Dropped::ForgedGiaddr => {
                "giaddr is not a relay agent's address (not a unicast host, or this server's own)"
            }
            Dropped::UnknownSubnet => {
                "giaddr is in no subnet of this server: add a `subnet` block (or --relay-network) for the relay's network"
            }
            Dropped::BadAgentInfo => {
                "malformed relay agent information (option 82): its sub-options do not fill it"
            }
        }
    }
}

/// Whether `v` is a well-formed option 82: one or more sub-options, each
/// code, length and value, filling it exactly.
pub fn agent_info_ok(v: &[u8]) -> bool {
    let mut rest = v;
    if rest.is_empty() {
        return false;
    }
    while let [_code, len, tail @ ..] = rest {
        let Some(next) = tail.get(usize::from(*len)..) else {
            return false;
        };
        rest = next;
    }
    rest.is_empty()
}

/// Whether `ip` can be a host's unicast address.
fn unicast_host(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    first != 0 && !ip.is_loopback() && first < 224
}

/// The index in `subnets` of the subnet `req` belongs to: the one holding
/// `giaddr` for a relayed request, else the one holding `ciaddr` (a
/// client renewing by unicast from behind a relay), else the first (the
/// interface's own). `server` is this server's address; `from` the
/// datagram's source.
pub fn select(
    req: &Repr,
    from: SocketAddrV4,
    server: Ipv4Addr,
    subnets: &[Ipv4Net],
) -> Result<usize, Dropped> {
    if let Some(info) = req.options.get(opt::RELAY_AGENT_INFO)
        && !agent_info_ok(info)
    {
        return Err(Dropped::BadAgentInfo);
    }
    let containing = |ip: Ipv4Addr| subnets.iter().position(|n| n.contains(ip));
    let g = req.giaddr;
    if g.is_unspecified() {
        return Ok((!req.ciaddr.is_unspecified())
            .then(|| containing(req.ciaddr))
            .flatten()
            .unwrap_or(0));
    }
    if from.port() != RELAY_PORT {
        return Err(Dropped::NotFromRelayPort);
    }
    if !unicast_host(g) || g == server {
        return Err(Dropped::ForgedGiaddr);
    }
    let i = containing(g).ok_or(Dropped::UnknownSubnet)?;
    let net = subnets[i];
    if g == net.network() || g == net.broadcast() {
        return Err(Dropped::ForgedGiaddr);
    }
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::dhcp::{MessageType, Op, Options};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn req(giaddr: &str, ciaddr: &str) -> Repr {
        let mut options = Options::new();
        options.set(opt::MESSAGE_TYPE, [MessageType::Discover.code()]);
        Repr {
            op: Op::Request,
            htype: 1,
            hlen: 6,
            hops: 1,
            xid: 1,
            secs: 0,
            flags: 0,
            ciaddr: ip(ciaddr),
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: ip(giaddr),
            chaddr: [2; 16],
            sname: vec![],
            file: vec![],
            options,
        }
    }

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn nets() -> Vec<Ipv4Net> {
        ["192.0.2.0/24", "198.51.100.0/25", "198.51.100.128/25"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect()
    }

    fn relay(a: &str) -> SocketAddrV4 {
        SocketAddrV4::new(ip(a), 67)
    }

    #[test]
    fn n2_giaddr_selects_the_subnet_and_ciaddr_a_renewal() {
        let n = nets();
        let r = |g, c| req(g, c);
        assert_eq!(
            select(&r("0.0.0.0", "0.0.0.0"), relay("0.0.0.0"), SERVER, &n),
            Ok(0)
        );
        assert_eq!(
            select(
                &r("198.51.100.1", "0.0.0.0"),
                relay("192.0.2.254"),
                SERVER,
                &n
            ),
            Ok(1)
        );
        assert_eq!(
            select(
                &r("198.51.100.129", "0.0.0.0"),
                relay("192.0.2.254"),
                SERVER,
                &n
            ),
            Ok(2)
        );
        // A relay on the interface's own subnet.
        assert_eq!(
            select(&r("192.0.2.9", "0.0.0.0"), relay("192.0.2.9"), SERVER, &n),
            Ok(0)
        );
        // RENEWING: unicast from the client itself, by its address.
        let renewing = r("0.0.0.0", "198.51.100.140");
        assert_eq!(
            select(
                &renewing,
                SocketAddrV4::new(ip("198.51.100.140"), 68),
                SERVER,
                &n
            ),
            Ok(2)
        );
        assert_eq!(
            select(
                &r("0.0.0.0", "203.0.113.5"),
                relay("203.0.113.5"),
                SERVER,
                &n
            ),
            Ok(0),
            "an address in no subnet falls to the interface's (and is NAKed there)"
        );
    }

    #[test]
    fn n2_forged_and_unknown_giaddrs_are_dropped() {
        let n = nets();
        let from = relay("192.0.2.254");
        for g in [
            "127.0.0.1",
            "0.1.2.3",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "192.0.2.0",
            "192.0.2.255",
            "198.51.100.127",
            "198.51.100.128",
        ] {
            assert_eq!(
                select(&req(g, "0.0.0.0"), from, SERVER, &n),
                Err(Dropped::ForgedGiaddr),
                "{g}"
            );
        }
        assert_eq!(
            select(&req("203.0.113.1", "0.0.0.0"), from, SERVER, &n),
            Err(Dropped::UnknownSubnet)
        );
        // From a client's port: giaddr set by the client itself.
        assert_eq!(
            select(
                &req("198.51.100.1", "0.0.0.0"),
                SocketAddrV4::new(ip("192.0.2.77"), 68),
                SERVER,
                &n
            ),
            Err(Dropped::NotFromRelayPort)
        );
    }

    #[test]
    fn n2_option_82_must_be_whole_sub_options() {
        assert!(agent_info_ok(&[1, 4, b'e', b't', b'h', b'0']));
        assert!(agent_info_ok(&[1, 0, 2, 3, 1, 2, 3]));
        for bad in [
            &[][..],
            &[1][..],
            &[1, 5, 1, 2, 3, 4][..],
            &[1, 1, 9, 2][..],
            &[1, 255][..],
        ] {
            assert!(!agent_info_ok(bad), "{bad:?}");
        }
        let mut r = req("198.51.100.1", "0.0.0.0");
        r.options.set(opt::RELAY_AGENT_INFO, vec![1, 9, 1]);
        assert_eq!(
            select(&r, relay("192.0.2.254"), SERVER, &nets()),
            Err(Dropped::BadAgentInfo)
        );
        // Also without giaddr (a snooping switch adds option 82 without
        // relaying): a broken one is dropped, a good one is accepted.
        let mut r = req("0.0.0.0", "0.0.0.0");
        r.options.set(opt::RELAY_AGENT_INFO, vec![2]);
        assert_eq!(
            select(&r, relay("0.0.0.0"), SERVER, &nets()),
            Err(Dropped::BadAgentInfo)
        );
        r.options.set(opt::RELAY_AGENT_INFO, vec![2, 1, 7]);
        assert_eq!(select(&r, relay("0.0.0.0"), SERVER, &nets()), Ok(0));
    }
}
