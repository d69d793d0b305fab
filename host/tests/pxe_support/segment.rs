//! A segment of many hosts: a server namespace with bridge `br0`
//! (192.0.2.1/24), `n` target namespaces and a probe namespace with a
//! fixed address, each joined to the bridge by a veth pair (`eth0`
//! inside). The storm and the rack tests run on one.

use super::{Netns, NetnsGroup, ip_batch};

/// The server's address on the bridge.
pub const SEGMENT_SERVER: &str = "192.0.2.1";
/// The probe's fixed address, outside the pools.
pub const SEGMENT_PROBE: &str = "192.0.2.251";

/// The namespaces of one segment; removed on drop.
pub struct Segment {
    pub server: Netns,
    pub probe: Netns,
    pub targets: NetnsGroup,
}

impl Segment {
    /// `n` targets; `tag` names the namespaces and the bridge ports.
    pub fn new(tag: &str, n: usize) -> Segment {
        let server = Netns::new(tag);
        server.ip(&["link", "add", "br0", "type", "bridge"]);
        server.ip(&["addr", "add", &format!("{SEGMENT_SERVER}/24"), "dev", "br0"]);
        server.ip(&["link", "set", "br0", "up"]);
        let targets = NetnsGroup::new(&format!("{tag}t"), n);
        let probe = Netns::new(&format!("{tag}p"));
        let mut root = Vec::new();
        let mut bridge = Vec::new();
        for (i, t) in targets
            .names
            .iter()
            .chain(std::iter::once(&probe.name))
            .enumerate()
        {
            root.push(format!(
                "link add z{tag}{i} netns {} type veth peer name eth0 netns {t}",
                server.name
            ));
            bridge.push(format!("link set z{tag}{i} master br0"));
            bridge.push(format!("link set z{tag}{i} up"));
        }
        ip_batch(None, &root);
        server.ip_batch(&bridge);
        probe.ip(&["addr", "add", &format!("{SEGMENT_PROBE}/24"), "dev", "eth0"]);
        probe.ip(&["link", "set", "eth0", "up"]);
        probe.ip(&["link", "set", "lo", "up"]);
        Segment {
            server,
            probe,
            targets,
        }
    }
}
