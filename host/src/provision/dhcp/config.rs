//! The `dhcpserver { … }` block:
//!
//! ```text
//! dhcpserver {
//!     interface br0;
//!     mode full;                      # or proxy (proxyDHCP: no addresses)
//!     address 192.0.2.1;              # default: the interface's first IPv4 in the subnet
//!     lease-time 3600;
//!     state-dir /var/lib/ze;          # lease file <state-dir>/dhcpserver-<interface>.leases
//!     max-leases 65536;               # per subnet
//!     shared-network provisioning {   # the interface's own segment
//!         subnet 192.0.2.0/24 {
//!             pool 192.0.2.2 192.0.2.254;
//!             router 192.0.2.1;        # optional, repeatable
//!             dns-server 192.0.2.1;    # optional, repeatable
//!             domain-name lab.example; # optional
//!         }
//!     }
//!     subnet 198.51.100.0/24 {        # behind a relay: chosen by giaddr; repeatable
//!         pool 198.51.100.10 198.51.100.200;
//!         router 198.51.100.1;
//!     }
//!     pxe {
//!         next-server 192.0.2.1;      # default: address
//!         bootfile 0 ipxe.pxe;        # option 93 architecture → file
//!         bootfile 7 ipxe.efi;
//!         boot-script-url http://192.0.2.1/install/boot/boot.ipxe;
//!     }
//! }
//! ```
//!
//! In `mode proxy;` the subnets are bare (`subnet 192.0.2.0/24 { }`): the
//! site's DHCP server hands out addresses, routers and the rest, and a
//! `pxe` block is required.

use super::{SERVER_PORT, pool::DEFAULT_MAX_LEASES, server::PxeSettings};
use crate::{
    config::schema::{Block, ConfigError, leaf_args, parse_value},
    netaddr::Ipv4Net,
};
use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

/// Default lease time (seconds).
pub const DEFAULT_LEASE_SECS: u32 = 3600;
/// Shortest lease time accepted (seconds).
pub const MIN_LEASE_SECS: u64 = 10;

/// `mode`: hand out addresses, or only PXE boot information.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeConfig {
    Full,
    Proxy,
}

/// One `subnet CIDR { … }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetConfig {
    /// The network (address bits below the prefix cleared).
    pub net: Ipv4Net,
    /// First and last address handed out; `None` in proxy mode.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
}

/// A `dhcpserver { … }` block, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    pub interface: String,
    pub mode: ModeConfig,
    pub address: Option<Ipv4Addr>,
    /// The interface's own subnet first (`shared-network`), then the ones
    /// behind relays (`subnet` blocks).
    pub subnets: Vec<SubnetConfig>,
    pub lease_secs: u32,
    pub max_leases: usize,
    pub state_dir: Option<PathBuf>,
    pub pxe: Option<PxeSettings>,
    /// Port to listen on (tests and benchmarks; 67 otherwise).
    pub port: u16,
    /// The status table and the machine records.
    pub fleet: crate::provision::fleet::FleetConfig,
}

/// Read a `dhcpserver` block.
pub fn read_config(block: &Block<'_>) -> Result<DhcpConfig, ConfigError> {
    let interface = block.required_str("interface")?.to_string();
    let mode = match block.str("mode")? {
        None | Some("full") => ModeConfig::Full,
        Some("proxy") => ModeConfig::Proxy,
        Some(other) => {
            return Err(block.error(
                block.pos(),
                "mode",
                format!("expected `full` or `proxy`, got {other:?}"),
            ));
        }
    };
    let address = block.ipv4("address")?;
    let lease_secs = block
        .number("lease-time", MIN_LEASE_SECS..=u64::from(u32::MAX))?
        .map_or(DEFAULT_LEASE_SECS, |n| n as u32);
    let max_leases = block
        .number("max-leases", 1..=1 << 24)?
        .map_or(DEFAULT_MAX_LEASES, |n| n as usize);
    let state_dir = block.abs_path("state-dir")?;
    let port = block
        .number("port", 1..=65535)?
        .map_or(SERVER_PORT, |n| n as u16);

    let Some(net) = block.block("shared-network")? else {
        return Err(block.error(
            block.pos(),
            "shared-network",
            "missing: a `shared-network <name> { subnet <cidr> { pool <first> <last>; } }` block is required",
        ));
    };
    net.own_args(1, "a name: `shared-network <name> { … }`")?;
    let local = match net.all("subnet").as_slice() {
        [one] => read_subnet(one, &net.child_key("subnet"), mode)?,
        [] => {
            return Err(net.error(
                net.pos(),
                "subnet",
                "missing: one `subnet <cidr> { … }` is required",
            ));
        }
        [_, second, ..] => {
            return Err(net.error(
                second.pos,
                "subnet",
                "only one subnet on the interface's segment is supported (a subnet behind a relay goes in a `subnet` block outside `shared-network`)",
            ));
        }
    };
    let net_pos = net.pos();
    net.finish()?;
    if let Some(a) = address
        && !local.net.contains(a)
    {
        return Err(block.error(
            block.pos(),
            "address",
            format!("{a} is not in subnet {}", local.net),
        ));
    }
    let mut subnets = vec![local];
    let mut positions = vec![net_pos];
    for node in block.all("subnet") {
        let s = read_subnet(node, &block.child_key("subnet"), mode)?;
        if let Some(i) = subnets
            .iter()
            .position(|o| o.net.contains(s.net.network()) || s.net.contains(o.net.network()))
        {
            return Err(block.error(
                node.pos,
                "subnet",
                format!(
                    "{} overlaps {} (at {}): subnets must not overlap",
                    s.net, subnets[i].net, positions[i]
                ),
            ));
        }
        subnets.push(s);
        positions.push(node.pos);
    }

    let fleet = crate::provision::fleet::read_config(block, state_dir.clone())?;
    let pxe = match block.block("pxe")? {
        None => None,
        Some(p) => Some(read_pxe(p)?),
    };
    if mode == ModeConfig::Proxy && pxe.is_none() {
        return Err(block.error(
            block.pos(),
            "pxe",
            "missing: `mode proxy;` only tells PXE clients what to boot, so a `pxe { bootfile …; }` block is required",
        ));
    }
    Ok(DhcpConfig {
        interface,
        mode,
        address,
        subnets,
        lease_secs,
        max_leases,
        state_dir,
        pxe,
        port,
        fleet,
    })
}

/// One `subnet CIDR { … }` block, with the settings `mode` allows.
fn read_subnet(
    node: &crate::config::brace::Node,
    key: &str,
    mode: ModeConfig,
) -> Result<SubnetConfig, ConfigError> {
    let b = Block::new(node, key)?;
    let cidr = b.own_args(1, "a network: `subnet 192.0.2.0/24 { … }`")?;
    let net: Ipv4Net = cidr[0]
        .parse()
        .map_err(|e: crate::netaddr::NetParseError| {
            ConfigError::new(node.pos, b.key(), e.to_string())
        })?;
    if net.prefix() > 30 {
        return Err(ConfigError::new(
            node.pos,
            b.key(),
            format!(
                "/{} has no room for a pool: use /30 or shorter",
                net.prefix()
            ),
        ));
    }
    let net = net.trunc();
    if mode == ModeConfig::Proxy {
        for name in ["pool", "router", "dns-server", "domain-name"] {
            if let Some(n) = b.all(name).first() {
                return Err(b.error(
                    n.pos,
                    name,
                    "`mode proxy;` hands out no addresses or network settings (the site's DHCP server does): remove it",
                ));
            }
        }
        b.finish()?;
        return Ok(SubnetConfig {
            net,
            pool: None,
            routers: vec![],
            dns_servers: vec![],
            domain: None,
        });
    }
    let pool_node = b
        .one("pool")?
        .ok_or_else(|| b.error(b.pos(), "pool", "missing: `pool <first> <last>;`"))?;
    let pool_key = b.child_key("pool");
    let range = leaf_args(pool_node, &pool_key, 2, "two addresses: <first> <last>")?;
    let first: Ipv4Addr = parse_value(&range[0], pool_node.pos, &pool_key, "an IPv4 address")?;
    let last: Ipv4Addr = parse_value(&range[1], pool_node.pos, &pool_key, "an IPv4 address")?;
    let (lo, hi) = net.hosts().unwrap_or((first, last));
    if u32::from(first) > u32::from(last)
        || u32::from(first) < u32::from(lo)
        || u32::from(last) > u32::from(hi)
    {
        return Err(ConfigError::new(
            pool_node.pos,
            pool_key,
            format!("{first}–{last} is not a range of host addresses of {net}"),
        ));
    }
    let addr_list = |name: &str| -> Result<Vec<Ipv4Addr>, ConfigError> {
        b.all(name)
            .into_iter()
            .map(|n| {
                let key = b.child_key(name);
                let a = leaf_args(n, &key, 1, "an IPv4 address")?;
                parse_value(&a[0], n.pos, &key, "an IPv4 address")
            })
            .collect()
    };
    let routers = addr_list("router")?;
    let dns_servers = addr_list("dns-server")?;
    let domain = b.str("domain-name")?.map(str::to_string);
    b.finish()?;
    Ok(SubnetConfig {
        net,
        pool: Some((first, last)),
        routers,
        dns_servers,
        domain,
    })
}

/// The `pxe { … }` block.
fn read_pxe(p: Block<'_>) -> Result<PxeSettings, ConfigError> {
    let next_server = p.ipv4("next-server")?;
    let mut bootfiles = BTreeMap::new();
    for n in p.all("bootfile") {
        let key = p.child_key("bootfile");
        let a = leaf_args(
            n,
            &key,
            2,
            "an architecture number and a file: `bootfile 7 ipxe.efi;`",
        )?;
        let arch: u16 = parse_value(
            &a[0],
            n.pos,
            &key,
            "an architecture number (RFC 4578: 0 BIOS, 6/7/9 EFI x86, 11 EFI arm64)",
        )?;
        if a[1].is_empty() || a[1].len() > 255 {
            return Err(ConfigError::new(
                n.pos,
                key,
                "the file name must be 1 to 255 bytes",
            ));
        }
        if bootfiles.insert(arch, a[1].clone()).is_some() {
            return Err(ConfigError::new(
                n.pos,
                key,
                format!("architecture {arch} is mapped twice"),
            ));
        }
    }
    let boot_script_url = p.str("boot-script-url")?.map(str::to_string);
    if let Some(u) = &boot_script_url
        && (u.len() > 255
            || !(u.starts_with("http://") || u.starts_with("https://") || u.starts_with("tftp://")))
    {
        return Err(p.error(
            p.pos(),
            "boot-script-url",
            "expected an http://, https:// or tftp:// URL of at most 255 bytes",
        ));
    }
    p.finish()?;
    Ok(PxeSettings {
        next_server,
        bootfiles,
        boot_script_url,
        script_mac: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::brace, provision::dhcp::NAME};

    fn read(text: &str) -> Result<DhcpConfig, ConfigError> {
        let doc = brace::parse(text).unwrap();
        let b = Block::new(&doc.nodes[0], NAME).unwrap();
        let c = read_config(&b)?;
        b.finish()?;
        Ok(c)
    }

    const GOOD: &str = "dhcpserver {
    interface br0;
    address 192.0.2.1;
    lease-time 600;
    shared-network lab {
        subnet 192.0.2.0/24 {
            pool 192.0.2.2 192.0.2.254;
            router 192.0.2.1;
        }
    }
    pxe {
        bootfile 0 ipxe.pxe;
        bootfile 7 ipxe.efi;
        boot-script-url http://192.0.2.1/install/boot/boot.ipxe;
    }
}";

    #[test]
    fn r13_reads_the_generated_shape() {
        let c = read(GOOD).unwrap();
        assert_eq!(c.interface, "br0");
        assert_eq!(c.mode, ModeConfig::Full);
        assert_eq!(c.subnets.len(), 1);
        assert_eq!(
            c.subnets[0].pool,
            Some(("192.0.2.2".parse().unwrap(), "192.0.2.254".parse().unwrap()))
        );
        assert_eq!(c.lease_secs, 600);
        assert_eq!(c.subnets[0].routers.len(), 1);
        let pxe = c.pxe.unwrap();
        assert_eq!(pxe.bootfiles[&7], "ipxe.efi");
        assert_eq!(
            pxe.boot_script_url.as_deref(),
            Some("http://192.0.2.1/install/boot/boot.ipxe")
        );
    }

    #[test]
    fn n2_subnets_behind_relays() {
        let text = GOOD.replace(
            "    pxe {",
            "    subnet 198.51.100.0/25 { pool 198.51.100.10 198.51.100.100; router 198.51.100.1; }
    subnet 198.51.100.128/25 { pool 198.51.100.130 198.51.100.200; }
    pxe {",
        );
        let c = read(&text).unwrap();
        let nets: Vec<String> = c.subnets.iter().map(|s| s.net.to_string()).collect();
        assert_eq!(
            nets,
            ["192.0.2.0/24", "198.51.100.0/25", "198.51.100.128/25"]
        );
        assert_eq!(
            c.subnets[1].routers,
            ["198.51.100.1".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(c.subnets[2].routers.is_empty());
        for (extra, want) in [
            (
                "subnet 192.0.2.128/25 { pool 192.0.2.130 192.0.2.140; }",
                "11:5: dhcpserver.subnet: 192.0.2.128/25 overlaps 192.0.2.0/24 (at 5:5): subnets must not overlap",
            ),
            (
                "subnet 198.51.100.0/24 { pool 198.51.100.1 198.51.100.9; } subnet 198.51.100.64/26 { pool 198.51.100.65 198.51.100.70; }",
                "11:64: dhcpserver.subnet: 198.51.100.64/26 overlaps 198.51.100.0/24 (at 11:5): subnets must not overlap",
            ),
            (
                "subnet 198.51.100.0/24 { router 198.51.100.1; }",
                "11:5: dhcpserver.subnet.pool: missing: `pool <first> <last>;`",
            ),
            (
                "subnet 198.51.100.0/24 { pool 198.51.100.1 192.0.2.9; }",
                "11:30: dhcpserver.subnet.pool: 198.51.100.1–192.0.2.9 is not a range of host addresses of 198.51.100.0/24",
            ),
        ] {
            let text = GOOD.replace("    pxe {", &format!("    {extra}\n    pxe {{"));
            assert_eq!(read(&text).unwrap_err().to_string(), want, "{extra}");
        }
    }

    const PROXY: &str = "dhcpserver {
    interface br0;
    mode proxy;
    shared-network site {
        subnet 192.0.2.0/24 { }
    }
    subnet 198.51.100.0/24 { }
    pxe {
        bootfile 7 ipxe.efi;
    }
}";

    #[test]
    fn n1_proxy_mode_has_bare_subnets_and_needs_pxe() {
        let c = read(PROXY).unwrap();
        assert_eq!(c.mode, ModeConfig::Proxy);
        assert_eq!(c.subnets.len(), 2);
        assert!(c.subnets.iter().all(|s| s.pool.is_none()));
        for (edit, want) in [
            (
                (
                    "subnet 192.0.2.0/24 { }",
                    "subnet 192.0.2.0/24 { pool 192.0.2.2 192.0.2.9; }",
                ),
                "5:31: dhcpserver.shared-network.subnet.pool: `mode proxy;` hands out no addresses or network settings (the site's DHCP server does): remove it",
            ),
            (
                (
                    "subnet 198.51.100.0/24 { }",
                    "subnet 198.51.100.0/24 { router 198.51.100.1; }",
                ),
                "7:30: dhcpserver.subnet.router: `mode proxy;` hands out no addresses or network settings (the site's DHCP server does): remove it",
            ),
            (
                ("    pxe {\n        bootfile 7 ipxe.efi;\n    }\n", ""),
                "1:1: dhcpserver.pxe: missing: `mode proxy;` only tells PXE clients what to boot, so a `pxe { bootfile …; }` block is required",
            ),
            (
                ("mode proxy;", "mode relay;"),
                "1:1: dhcpserver.mode: expected `full` or `proxy`, got \"relay\"",
            ),
        ] {
            let text = PROXY.replace(edit.0, edit.1);
            assert_ne!(text, PROXY, "{}", edit.0);
            assert_eq!(read(&text).unwrap_err().to_string(), want, "{}", edit.1);
        }
    }

    #[test]
    fn errors_name_the_key() {
        for (edit, want) in [
            (
                ("lease-time 600;", "lease-time 5;"),
                "4:5: dhcpserver.lease-time: expected a number from 10 to 4294967295, got 5",
            ),
            (
                ("pool 192.0.2.2 192.0.2.254;", "pool 192.0.2.2 192.0.3.254;"),
                "7:13: dhcpserver.shared-network.subnet.pool: 192.0.2.2–192.0.3.254 is not a range of host addresses of 192.0.2.0/24",
            ),
            (
                ("subnet 192.0.2.0/24", "subnet 192.0.2.0/31"),
                "6:9: dhcpserver.shared-network.subnet: /31 has no room for a pool: use /30 or shorter",
            ),
            (
                ("bootfile 7 ipxe.efi;", "bootfile x ipxe.efi;"),
                "13:9: dhcpserver.pxe.bootfile: expected an architecture number (RFC 4578: 0 BIOS, 6/7/9 EFI x86, 11 EFI arm64), got \"x\"",
            ),
            (
                ("bootfile 7 ipxe.efi;", "bootfile 0 again;"),
                "13:9: dhcpserver.pxe.bootfile: architecture 0 is mapped twice",
            ),
            (
                ("address 192.0.2.1;", "address 10.0.0.1;"),
                "1:1: dhcpserver.address: 10.0.0.1 is not in subnet 192.0.2.0/24",
            ),
            (
                ("router 192.0.2.1;", "router 192.0.2.1; colour blue;"),
                "8:31: dhcpserver.shared-network.subnet.colour: unknown setting",
            ),
            (
                ("interface br0;", ""),
                "1:1: dhcpserver.interface: missing: this setting is required",
            ),
        ] {
            let text = GOOD.replace(edit.0, edit.1);
            assert_eq!(read(&text).unwrap_err().to_string(), want, "{}", edit.1);
        }
    }

    #[test]
    fn the_daemon_docs_example_reads() {
        let doc = include_str!("../../../../docs/daemon.md");
        let example = doc
            .split("A complete example")
            .nth(1)
            .and_then(|rest| rest.split("```").nth(1))
            .expect("docs/daemon.md has its complete example");
        let parsed = brace::parse(example).unwrap();
        let node = parsed.get("dhcpserver").expect("a dhcpserver block");
        let c = read_config(&Block::new(node, NAME).unwrap()).unwrap();
        assert_eq!(c.subnets.len(), 2);
        assert_eq!(c.subnets[1].net.to_string(), "10.20.30.0/24");
    }
}
