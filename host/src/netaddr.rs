//! IPv4 networks in CIDR form and the provisioning pool the spec's table
//! derives from them (spec: "DHCP Pool").

use std::{fmt, net::Ipv4Addr, str::FromStr};

/// The shortest prefix `ze install remote` accepts.
pub const MIN_PROVISIONING_PREFIX: u8 = 8;
/// The longest prefix `ze install remote` accepts: a /30 has two hosts,
/// the server and one target.
pub const MAX_PROVISIONING_PREFIX: u8 = 30;

/// An IPv4 address with a prefix length, as written `192.0.2.0/24`. The
/// address need not be the network address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a text is not `a.b.c.d/len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetParseError(String);

impl fmt::Display for NetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetParseError {}

impl FromStr for Ipv4Net {
    type Err = NetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            NetParseError(format!(
                "{s:?} is not a network in CIDR form such as 192.0.2.0/24"
            ))
        })?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| NetParseError(format!("{a:?} is not an IPv4 address")))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|&p| p <= 32)
            .ok_or_else(|| NetParseError(format!("{p:?} is not a prefix length 0 to 32")))?;
        Ok(Ipv4Net { addr, prefix })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Ipv4Net {
    /// `addr/prefix`; `prefix` is capped at 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        Ipv4Net {
            addr,
            prefix: prefix.min(32),
        }
    }

    /// The address as written.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask_bits(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The subnet mask, e.g. 255.255.255.0.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The network address (host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    /// The broadcast address (host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    /// This network with the address replaced by the network address.
    pub fn trunc(&self) -> Ipv4Net {
        Ipv4Net::new(self.network(), self.prefix)
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network())
    }

    /// Whether the written address is the network address.
    pub fn is_network_address(&self) -> bool {
        self.addr == self.network()
    }

    /// The first and last usable host addresses (prefixes up to /30).
    pub fn hosts(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        if self.prefix > 30 {
            return None;
        }
        Some((
            Ipv4Addr::from(u32::from(self.network()) + 1),
            Ipv4Addr::from(u32::from(self.broadcast()) - 1),
        ))
    }
}

/// Why a network cannot be a provisioning network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisioningError {
    /// The prefix is outside /8 to /30.
    Prefix(u8),
    /// The address is the network's broadcast address.
    Broadcast(Ipv4Addr),
    /// The server address is not a host of the network.
    ServerOutside(Ipv4Addr, Ipv4Net),
}

impl fmt::Display for ProvisioningError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisioningError::Prefix(p) => write!(
                f,
                "prefix /{p} is not supported: use /{MIN_PROVISIONING_PREFIX} to /{MAX_PROVISIONING_PREFIX}"
            ),
            ProvisioningError::Broadcast(a) => {
                write!(f, "{a} is the broadcast address of the network")
            }
            ProvisioningError::ServerOutside(a, n) => {
                write!(f, "server address {a} is not a host of {}", n.trunc())
            }
        }
    }
}

impl std::error::Error for ProvisioningError {}

/// Check that `net` is /8 to /30.
pub fn check_provisioning_prefix(net: &Ipv4Net) -> Result<(), ProvisioningError> {
    if !(MIN_PROVISIONING_PREFIX..=MAX_PROVISIONING_PREFIX).contains(&net.prefix()) {
        return Err(ProvisioningError::Prefix(net.prefix()));
    }
    Ok(())
}

/// The server address `--network` implies when the interface has none: the
/// first host for a network address (`192.168.1.0/24` → 192.168.1.1),
/// else the address as written (`192.168.1.5/24` → 192.168.1.5).
pub fn server_address_for(net: &Ipv4Net) -> Result<Ipv4Addr, ProvisioningError> {
    check_provisioning_prefix(net)?;
    if net.is_network_address() {
        return Ok(net.hosts().map(|(first, _)| first).unwrap_or(net.addr()));
    }
    if net.addr() == net.broadcast() {
        return Err(ProvisioningError::Broadcast(net.addr()));
    }
    Ok(net.addr())
}

/// The DHCP pool for a provisioning network with the server at `server`:
/// every host address, less the server when it sits at either end (a
/// server in the middle stays in the range and the DHCP server skips it).
/// Spec table: 10.0.0.0/24 with 10.0.0.1 → 10.0.0.2–10.0.0.254;
/// 192.168.1.0/28 → .2–.14; 10.1.1.0/30 → .2–.2.
pub fn provisioning_pool(
    net: &Ipv4Net,
    server: Ipv4Addr,
) -> Result<(Ipv4Addr, Ipv4Addr), ProvisioningError> {
    check_provisioning_prefix(net)?;
    let (first, last) = net.hosts().ok_or(ProvisioningError::Prefix(net.prefix()))?;
    let (s, f, l) = (u32::from(server), u32::from(first), u32::from(last));
    if !(f..=l).contains(&s) {
        return Err(ProvisioningError::ServerOutside(server, *net));
    }
    let start = if s == f { f + 1 } else { f };
    let stop = if s == l { l - 1 } else { l };
    Ok((Ipv4Addr::from(start), Ipv4Addr::from(stop)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(net: &str, server: &str) -> (String, String) {
        let (a, b) = provisioning_pool(&net.parse().unwrap(), server.parse().unwrap()).unwrap();
        (a.to_string(), b.to_string())
    }

    #[test]
    fn r4_pool_follows_the_spec_table() {
        assert_eq!(
            pool("10.0.0.0/24", "10.0.0.1"),
            ("10.0.0.2".into(), "10.0.0.254".into())
        );
        assert_eq!(
            pool("192.168.1.0/28", "192.168.1.1"),
            ("192.168.1.2".into(), "192.168.1.14".into())
        );
        assert_eq!(
            pool("10.1.1.0/30", "10.1.1.1"),
            ("10.1.1.2".into(), "10.1.1.2".into())
        );
        // Server at the top end, and in the middle.
        assert_eq!(
            pool("10.1.1.0/30", "10.1.1.2"),
            ("10.1.1.1".into(), "10.1.1.1".into())
        );
        assert_eq!(
            pool("10.0.0.0/24", "10.0.0.9"),
            ("10.0.0.1".into(), "10.0.0.254".into())
        );
        assert_eq!(
            pool("10.0.0.0/8", "10.0.0.1"),
            ("10.0.0.2".into(), "10.255.255.254".into())
        );
    }

    #[test]
    fn r3_prefixes_outside_8_to_30_are_refused() {
        for bad in ["10.0.0.0/7", "10.0.0.0/31", "10.0.0.0/32", "0.0.0.0/0"] {
            let net: Ipv4Net = bad.parse().unwrap();
            let err = provisioning_pool(&net, "10.0.0.1".parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("use /8 to /30"), "{bad}: {err}");
        }
        let err = provisioning_pool(&"10.0.0.0/24".parse().unwrap(), "10.0.1.1".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "server address 10.0.1.1 is not a host of 10.0.0.0/24"
        );
    }

    #[test]
    fn r2_server_address_from_network() {
        let s = |n: &str| server_address_for(&n.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(s("192.168.1.0/24").unwrap(), "192.168.1.1");
        assert_eq!(s("192.168.1.5/24").unwrap(), "192.168.1.5");
        assert!(s("192.168.1.255/24").is_err());
        assert!(s("192.168.1.0/31").is_err());
    }

    #[test]
    fn parsing() {
        let n: Ipv4Net = "192.0.2.77/24".parse().unwrap();
        assert_eq!(n.network().to_string(), "192.0.2.0");
        assert_eq!(n.broadcast().to_string(), "192.0.2.255");
        assert_eq!(n.netmask().to_string(), "255.255.255.0");
        assert!(n.contains("192.0.2.1".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        for bad in ["192.0.2.0", "192.0.2.0/33", "x/24", "192.0.2.0/", "/24"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }
}
