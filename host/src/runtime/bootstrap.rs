//! Bootstrap mode (spec "Bootstrap Mode", checklist B1–B3, B5): an
//! appliance whose database holds neither `file/active/ze.conf` nor
//! `file/template/ze.conf` generates a minimal config: a DHCP client on
//! every ethernet interface and SSH on all interfaces.
//!
//! Only physical ethernet NICs get DHCP: links of ARP type ether without a
//! `rtnl_link_ops` kind. Bridge, veth, dummy, loopback, wireguard and xfrm
//! interfaces are skipped, as is every other virtual kind (vlan, bond,
//! macvlan, tun, vxlan, …): their addressing is the operator's decision.

use crate::config::brace::{Document, Node};

/// `ARPHRD_ETHER` from `<linux/if_arp.h>`.
pub const ARPHRD_ETHER: u16 = 1;
/// `ARPHRD_LOOPBACK`.
pub const ARPHRD_LOOPBACK: u16 = 772;
/// The SSH listen address of bootstrap mode: every IPv4 interface.
pub const SSH_LISTEN: &str = "0.0.0.0:22";

/// What kind of link an interface is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A physical ethernet NIC.
    Ethernet,
    /// `lo`.
    Loopback,
    /// A virtual link, by its kernel kind (`bridge`, `veth`, `dummy`,
    /// `wireguard`, `xfrm`, `vlan`, …), or `arphrd-<n>` for other link types.
    Virtual(String),
}

impl LinkKind {
    /// Classify by ARP hardware type and the `IFLA_INFO_KIND` string.
    pub fn classify(arphrd: u16, info_kind: Option<&str>) -> LinkKind {
        match (arphrd, info_kind) {
            (ARPHRD_LOOPBACK, _) => LinkKind::Loopback,
            (_, Some(kind)) if !kind.is_empty() => LinkKind::Virtual(kind.to_string()),
            (ARPHRD_ETHER, _) => LinkKind::Ethernet,
            (other, _) => LinkKind::Virtual(format!("arphrd-{other}")),
        }
    }

    /// A short name for `show interfaces`.
    pub fn label(&self) -> &str {
        match self {
            LinkKind::Ethernet => "ethernet",
            LinkKind::Loopback => "loopback",
            LinkKind::Virtual(k) => k,
        }
    }
}

/// An interface as discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Kernel name.
    pub name: String,
    /// Its kind.
    pub kind: LinkKind,
}

/// Why bootstrap mode cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoBootstrap {
    /// No interface is a physical ethernet NIC.
    #[error(
        "bootstrap mode needs an ethernet interface, and none was found (seen: {0}); \
         configure ze with a config file, or commit one to the database (ze has no --web-only mode)"
    )]
    NoEthernet(String),
}

/// The bootstrap config for these interfaces.
pub fn config_for(links: &[Link]) -> Result<Document, NoBootstrap> {
    let ethernet: Vec<&Link> = links
        .iter()
        .filter(|l| l.kind == LinkKind::Ethernet)
        .collect();
    if ethernet.is_empty() {
        let seen = if links.is_empty() {
            "no interfaces".to_string()
        } else {
            links
                .iter()
                .map(|l| format!("{} ({})", l.name, l.kind.label()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(NoBootstrap::NoEthernet(seen));
    }
    let dhcp = Node::block(
        "dhcpclient",
        &[],
        ethernet
            .iter()
            .map(|l| Node::leaf("interface", &[&l.name]))
            .collect(),
    );
    let ssh = Node::block("sshserver", &[], vec![Node::leaf("listen", &[SSH_LISTEN])]);
    Ok(Document {
        nodes: vec![dhcp, ssh],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::brace::write;

    fn link(name: &str, arphrd: u16, kind: Option<&str>) -> Link {
        Link {
            name: name.into(),
            kind: LinkKind::classify(arphrd, kind),
        }
    }

    #[test]
    fn b2_b3_dhcp_on_ethernet_only_ssh_everywhere() {
        let links = [
            link("lo", ARPHRD_LOOPBACK, None),
            link("eth0", ARPHRD_ETHER, None),
            link("br0", ARPHRD_ETHER, Some("bridge")),
            link("veth0", ARPHRD_ETHER, Some("veth")),
            link("dummy0", ARPHRD_ETHER, Some("dummy")),
            link("wg0", 65534, Some("wireguard")),
            link("xfrm0", 65534, Some("xfrm")),
            link("enp3s0", ARPHRD_ETHER, None),
        ];
        let doc = config_for(&links).unwrap();
        assert_eq!(
            write(&doc),
            "dhcpclient {\n    interface eth0;\n    interface enp3s0;\n}\nsshserver {\n    listen 0.0.0.0:22;\n}\n"
        );
    }

    #[test]
    fn b5_no_ethernet_means_no_bootstrap() {
        let err = config_for(&[
            link("lo", ARPHRD_LOOPBACK, None),
            link("br0", ARPHRD_ETHER, Some("bridge")),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("needs an ethernet interface"), "{text}");
        assert!(text.contains("lo (loopback), br0 (bridge)"), "{text}");
        assert!(text.contains("--web-only"), "{text}");
        assert!(
            config_for(&[])
                .unwrap_err()
                .to_string()
                .contains("no interfaces")
        );
    }

    #[test]
    fn classification() {
        assert_eq!(LinkKind::classify(ARPHRD_ETHER, None), LinkKind::Ethernet);
        assert_eq!(
            LinkKind::classify(ARPHRD_ETHER, Some("")),
            LinkKind::Ethernet
        );
        assert_eq!(
            LinkKind::classify(ARPHRD_ETHER, Some("vlan")),
            LinkKind::Virtual("vlan".into())
        );
        assert_eq!(
            LinkKind::classify(776, None),
            LinkKind::Virtual("arphrd-776".into())
        );
    }
}
