//! On a network that is not ze's alone (checklist N1, N2): the server
//! address with `--proxy-dhcp`, where the site's network already has its
//! addresses, and the subnets `--relay-network` adds behind DHCP relays.

use crate::{
    netaddr::{self, Ipv4Net},
    netlink::IfAddr,
};
use anyhow::{Context as _, bail};
use std::net::Ipv4Addr;

/// A subnet behind a DHCP relay, from `--relay-network CIDR[,router=IP]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayNetwork {
    /// The network (host bits cleared).
    pub net: Ipv4Net,
    /// Full mode: option 3 for its clients, and kept out of its pool.
    pub router: Option<Ipv4Addr>,
    /// Full mode: the addresses handed out there.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// The server address with `--proxy-dhcp`: the site's network has its
/// addresses already, so none is added — `--address` must be on the
/// interface, else its first IPv4 address in `network` is used.
pub fn proxy_server_address(
    args_address: Option<Ipv4Addr>,
    network: &Ipv4Net,
    interface: &str,
    existing: &[IfAddr],
) -> anyhow::Result<Ipv4Addr> {
    let in_network: Vec<Ipv4Addr> = existing
        .iter()
        .map(|e| e.addr)
        .filter(|&a| network.contains(a))
        .collect();
    match args_address {
        Some(a) if in_network.contains(&a) => Ok(a),
        Some(a) => bail!(
            "--address {a} is not an address of {interface} in {}: with --proxy-dhcp ze adds no address to the site's network; put {a} on {interface} first, or leave --address out",
            network.trunc()
        ),
        None => in_network.first().copied().with_context(|| {
            format!(
                "--proxy-dhcp: {interface} has no IPv4 address in {}: on a network with its own DHCP server the interface needs its address first (from that server or static); ze adds none",
                network.trunc()
            )
        }),
    }
}

/// Read the `--relay-network` values: `CIDR[,router=IP]`, /8 to /30, not
/// overlapping `network` or each other. In full mode the router defaults
/// to the first host and the pool is every other host; with
/// `--proxy-dhcp` there is neither, and `router=` is refused.
pub fn relay_networks(
    values: &[String],
    network: &Ipv4Net,
    proxy: bool,
) -> anyhow::Result<Vec<RelayNetwork>> {
    let mut out: Vec<RelayNetwork> = Vec::new();
    for value in values {
        let flag = format!("--relay-network {value}");
        let mut parts = value.split(',');
        let cidr = parts.next().unwrap_or_default();
        let net: Ipv4Net = cidr.parse().map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        netaddr::check_provisioning_prefix(&net).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
        let mut router = None;
        for part in parts {
            match part.split_once('=') {
                Some(("router", ip)) => {
                    let ip: Ipv4Addr = ip.parse().map_err(|_| {
                        anyhow::anyhow!("{flag}: router={ip} is not an IPv4 address")
                    })?;
                    router = Some(ip);
                }
                _ => bail!("{flag}: unknown part {part:?}: expected CIDR[,router=IP]"),
            }
        }
        let net = net.trunc();
        for other in std::iter::once(network.trunc()).chain(out.iter().map(|r| r.net)) {
            if other.contains(net.network()) || net.contains(other.network()) {
                bail!("{flag}: overlaps {other}: each relayed subnet must be its own network");
            }
        }
        let relay = if proxy {
            if router.is_some() {
                bail!(
                    "{flag}: router= is for full mode; with --proxy-dhcp the network's own DHCP server hands out routers"
                );
            }
            RelayNetwork {
                net,
                router: None,
                pool: None,
            }
        } else {
            let router = match router {
                Some(r) => r,
                None => {
                    netaddr::server_address_for(&net).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?
                }
            };
            let pool = netaddr::provisioning_pool(&net, router)
                .map_err(|e| anyhow::anyhow!("{flag}: router: {e}"))?;
            RelayNetwork {
                net,
                router: Some(router),
                pool: Some(pool),
            }
        };
        out.push(relay);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str, p: u8) -> IfAddr {
        IfAddr {
            addr: s.parse().unwrap(),
            prefix: p,
        }
    }

    #[test]
    fn n1_proxy_dhcp_uses_the_interfaces_site_address_and_adds_none() {
        let net: Ipv4Net = "192.0.2.0/24".parse().unwrap();
        let on = [addr("10.9.9.9", 8), addr("192.0.2.77", 24)];
        assert_eq!(
            proxy_server_address(None, &net, "eth0", &on).unwrap(),
            "192.0.2.77".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            proxy_server_address(Some("192.0.2.77".parse().unwrap()), &net, "eth0", &on).unwrap(),
            "192.0.2.77".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            proxy_server_address(None, &net, "eth0", &[addr("10.9.9.9", 8)])
                .unwrap_err()
                .to_string(),
            "--proxy-dhcp: eth0 has no IPv4 address in 192.0.2.0/24: on a network with its own DHCP server the interface needs its address first (from that server or static); ze adds none"
        );
        assert_eq!(
            proxy_server_address(Some("192.0.2.5".parse().unwrap()), &net, "eth0", &on)
                .unwrap_err()
                .to_string(),
            "--address 192.0.2.5 is not an address of eth0 in 192.0.2.0/24: with --proxy-dhcp ze adds no address to the site's network; put 192.0.2.5 on eth0 first, or leave --address out"
        );
    }

    #[test]
    fn n2_relay_networks_parse_with_default_routers_and_refuse_overlaps() {
        let net: Ipv4Net = "192.0.2.0/24".parse().unwrap();
        let v = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r = relay_networks(
            &v(&["198.51.100.0/25", "198.51.100.128/25,router=198.51.100.254"]),
            &net,
            false,
        )
        .unwrap();
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(r[0].router, Some(ip("198.51.100.1")));
        assert_eq!(r[0].pool, Some((ip("198.51.100.2"), ip("198.51.100.126"))));
        assert_eq!(r[1].router, Some(ip("198.51.100.254")));
        assert_eq!(
            r[1].pool,
            Some((ip("198.51.100.129"), ip("198.51.100.253")))
        );
        let proxied = relay_networks(&v(&["198.51.100.7/24"]), &net, true).unwrap();
        assert_eq!(
            proxied,
            [RelayNetwork {
                net: "198.51.100.0/24".parse().unwrap(),
                router: None,
                pool: None
            }]
        );
        for (list, proxy, want) in [
            (
                &["198.51.100.0"][..],
                false,
                "--relay-network 198.51.100.0: \"198.51.100.0\" is not a network in CIDR form such as 192.0.2.0/24",
            ),
            (
                &["198.51.100.0/31"][..],
                false,
                "--relay-network 198.51.100.0/31: prefix /31 is not supported: use /8 to /30",
            ),
            (
                &["198.51.100.0/24,gw=1.2.3.4"][..],
                false,
                "--relay-network 198.51.100.0/24,gw=1.2.3.4: unknown part \"gw=1.2.3.4\": expected CIDR[,router=IP]",
            ),
            (
                &["198.51.100.0/24,router=x"][..],
                false,
                "--relay-network 198.51.100.0/24,router=x: router=x is not an IPv4 address",
            ),
            (
                &["198.51.100.0/24,router=192.0.2.1"][..],
                false,
                "--relay-network 198.51.100.0/24,router=192.0.2.1: router: server address 192.0.2.1 is not a host of 198.51.100.0/24",
            ),
            (
                &["192.0.2.128/25"][..],
                false,
                "--relay-network 192.0.2.128/25: overlaps 192.0.2.0/24: each relayed subnet must be its own network",
            ),
            (
                &["198.51.100.0/24", "198.51.100.64/26"][..],
                false,
                "--relay-network 198.51.100.64/26: overlaps 198.51.100.0/24: each relayed subnet must be its own network",
            ),
            (
                &["198.51.100.0/24,router=198.51.100.1"][..],
                true,
                "--relay-network 198.51.100.0/24,router=198.51.100.1: router= is for full mode; with --proxy-dhcp the network's own DHCP server hands out routers",
            ),
        ] {
            assert_eq!(
                relay_networks(&v(list), &net, proxy)
                    .unwrap_err()
                    .to_string(),
                want
            );
        }
    }
}
