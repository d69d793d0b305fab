//! Interface discovery through rtnetlink (checklist B2, B3, B5): the links
//! with their kinds, for bootstrap mode, and their state and IPv4
//! addresses, for `show interfaces`.

use super::{
    bootstrap::{Link, LinkKind},
    shell::InterfaceInfo,
};
use ze_hal::{
    netlink::{self, Message, consts::RTM_NEWLINK},
    os::{AddrInfo, LinkInfo},
};

/// Every link in a dump's messages.
pub fn links_in(messages: &[Message<'_>]) -> Vec<LinkInfo> {
    messages
        .iter()
        .filter(|m| m.kind == RTM_NEWLINK)
        .filter_map(|m| netlink::parse_link(m.payload))
        .collect()
}

/// How bootstrap mode sees a link.
pub fn as_link(info: &LinkInfo) -> Link {
    let kind = if info.loopback {
        LinkKind::Loopback
    } else {
        LinkKind::classify(info.kind, Some(info.link_kind.as_str()))
    };
    Link {
        name: info.name.as_str().to_string(),
        kind,
    }
}

/// How `show interfaces` shows a link.
pub fn as_interface(info: &LinkInfo, addrs: &[AddrInfo]) -> InterfaceInfo {
    let link = as_link(info);
    InterfaceInfo {
        name: link.name,
        kind: link.kind.label().to_string(),
        up: info.up,
        carrier: info.carrier,
        mac: if info.mac == [0; 6] {
            String::new()
        } else {
            crate::wire::dhcp::format_mac(&info.mac)
        },
        addresses: addrs
            .iter()
            .filter(|a| a.index == info.index)
            .map(|a| format!("{}/{}", a.addr, a.prefix))
            .collect(),
    }
}

/// The links of this machine (or network namespace).
pub fn links() -> anyhow::Result<Vec<Link>> {
    Ok(crate::netlink::links()?.iter().map(as_link).collect())
}

/// The interfaces with their IPv4 addresses.
pub fn interfaces() -> anyhow::Result<Vec<InterfaceInfo>> {
    let links = crate::netlink::links()?;
    let addrs = crate::netlink::addresses()?;
    Ok(links.iter().map(|l| as_interface(l, &addrs)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bootstrap::{self, ARPHRD_ETHER, ARPHRD_LOOPBACK};

    /// One RTM_NEWLINK message as the kernel sends it in a dump.
    fn newlink(index: u32, arphrd: u16, flags: u32, name: &str, kind: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&[0, 0]); // family, pad
        body.extend_from_slice(&arphrd.to_ne_bytes());
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&flags.to_ne_bytes());
        body.extend_from_slice(&0u32.to_ne_bytes());
        let mut attr = |t: u16, data: &[u8]| {
            body.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(data);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        };
        attr(3, format!("{name}\0").as_bytes()); // IFLA_IFNAME
        attr(1, &[0x52, 0x54, 0, 0x12, 0x34, index as u8]); // IFLA_ADDRESS
        if let Some(kind) = kind {
            let k = format!("{kind}\0");
            let mut nested = Vec::new();
            nested.extend_from_slice(&((4 + k.len()) as u16).to_ne_bytes());
            nested.extend_from_slice(&1u16.to_ne_bytes()); // IFLA_INFO_KIND
            nested.extend_from_slice(k.as_bytes());
            while nested.len() % 4 != 0 {
                nested.push(0);
            }
            attr(18 | 0x8000, &nested); // IFLA_LINKINFO, NLA_F_NESTED
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        msg.extend_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn b3_fake_dump_with_every_skipped_kind() {
        const LOOPBACK: u32 = 0x8;
        let mut dump = Vec::new();
        for m in [
            newlink(1, ARPHRD_LOOPBACK, LOOPBACK | 1, "lo", None),
            newlink(2, ARPHRD_ETHER, 0x1_0001, "eth0", None),
            newlink(3, ARPHRD_ETHER, 1, "br0", Some("bridge")),
            newlink(4, ARPHRD_ETHER, 1, "veth0", Some("veth")),
            newlink(5, ARPHRD_ETHER, 1, "dummy0", Some("dummy")),
            newlink(6, 65534, 1, "wg0", Some("wireguard")),
            newlink(7, 65534, 1, "xfrm0", Some("xfrm")),
            newlink(8, ARPHRD_ETHER, 0, "enp3s0", None),
        ] {
            dump.extend_from_slice(&m);
        }
        let messages: Vec<Message<'_>> = netlink::messages(&dump).collect();
        assert_eq!(messages.len(), 8);
        let links: Vec<Link> = links_in(&messages).iter().map(as_link).collect();
        let kinds: Vec<&str> = links.iter().map(|l| l.kind.label()).collect();
        assert_eq!(
            kinds,
            [
                "loopback",
                "ethernet",
                "bridge",
                "veth",
                "dummy",
                "wireguard",
                "xfrm",
                "ethernet"
            ]
        );
        let config = crate::config::brace::write(&bootstrap::config_for(&links).unwrap());
        assert_eq!(
            config,
            "dhcpclient {\n    interface eth0;\n    interface enp3s0;\n}\nsshserver {\n    listen 0.0.0.0:22;\n}\n"
        );
        let eth0 = as_interface(
            &links_in(&messages)[1],
            &[AddrInfo {
                index: 2,
                addr: core::net::Ipv4Addr::new(192, 0, 2, 10),
                prefix: 24,
            }],
        );
        assert_eq!(eth0.mac, "52:54:00:12:34:02");
        assert!(eth0.up && eth0.carrier);
        assert_eq!(eth0.addresses, ["192.0.2.10/24"]);
    }
}

#[cfg(test)]
mod live {
    #[test]
    fn live_interfaces_include_loopback() {
        let list = super::interfaces().unwrap();
        assert!(
            list.iter().any(|i| i.name == "lo" && i.kind == "loopback"),
            "{list:?}"
        );
    }
}
