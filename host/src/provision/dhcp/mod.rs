//! `dhcpserver`: DHCP (RFC 2131/2132) with PXE options on one interface.
//!
//! ```text
//! dhcpserver {
//!     interface br0;
//!     address 192.0.2.1;              # default: the interface's first IPv4 in the subnet
//!     lease-time 3600;
//!     state-dir /var/lib/ze;          # lease file <state-dir>/dhcpserver-<interface>.leases
//!     max-leases 65536;
//!     shared-network provisioning {
//!         subnet 192.0.2.0/24 {
//!             pool 192.0.2.2 192.0.2.254;
//!             router 192.0.2.1;        # optional, repeatable
//!             dns-server 192.0.2.1;    # optional, repeatable
//!             domain-name lab.example; # optional
//!         }
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
//! The socket is bound to the interface (SO_BINDTODEVICE) on port 67;
//! replies to clients without an address are broadcast on it.

pub mod leasefile;
pub mod pool;
pub mod server;

use crate::{
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginKind, Service, Shutdown, Wake},
    fsutil,
    netaddr::Ipv4Net,
    netlink,
    wire::dhcp::{self, Repr},
};
use anyhow::Context as _;
use pool::{DEFAULT_MAX_LEASES, LeasePool};
use server::{Destination, DhcpServer, LeaseEvent, PxeSettings, ServerSettings};
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsFd,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The plugin's name: its config block and log target.
pub const NAME: &str = "dhcpserver";
/// The registry entry.
pub const KIND: PluginKind = PluginKind {
    name: NAME,
    configure,
};
/// The server port (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
/// The client port.
pub const CLIENT_PORT: u16 = 68;
/// Default lease time (seconds).
pub const DEFAULT_LEASE_SECS: u32 = 3600;
/// Shortest lease time accepted (seconds).
pub const MIN_LEASE_SECS: u64 = 10;
/// How often changed leases are written to the lease file, at most.
pub const LEASE_FILE_INTERVAL: Duration = Duration::from_secs(1);
/// Receive buffer: any UDP datagram fits.
const RECV_BUF: usize = 65_536;

/// A `dhcpserver { … }` block, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    pub interface: String,
    pub address: Option<Ipv4Addr>,
    pub subnet: Ipv4Net,
    pub pool: (Ipv4Addr, Ipv4Addr),
    pub routers: Vec<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub lease_secs: u32,
    pub max_leases: usize,
    pub state_dir: Option<PathBuf>,
    pub pxe: Option<PxeSettings>,
    /// Port to listen on (tests and benchmarks; 67 otherwise).
    pub port: u16,
}

fn configure(
    block: &Block<'_>,
    _env: &crate::daemon::PluginEnv,
) -> Result<Box<dyn Plugin>, ConfigError> {
    Ok(Box::new(DhcpPlugin {
        config: read_config(block)?,
    }))
}

/// Read a `dhcpserver` block.
pub fn read_config(block: &Block<'_>) -> Result<DhcpConfig, ConfigError> {
    let interface = block.required_str("interface")?.to_string();
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
    let subnets = net.all("subnet");
    let subnet_node = match subnets.as_slice() {
        [one] => *one,
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
                "only one subnet per dhcpserver is supported (use another dhcpserver block for another interface)",
            ));
        }
    };
    let subnet_block = Block::new(subnet_node, net.child_key("subnet"))?;
    let cidr = subnet_block.own_args(1, "a network: `subnet 192.0.2.0/24 { … }`")?;
    let subnet: Ipv4Net = cidr[0]
        .parse()
        .map_err(|e: crate::netaddr::NetParseError| {
            ConfigError::new(subnet_node.pos, subnet_block.key(), e.to_string())
        })?;
    if subnet.prefix() > 30 {
        return Err(ConfigError::new(
            subnet_node.pos,
            subnet_block.key(),
            format!(
                "/{} has no room for a pool: use /30 or shorter",
                subnet.prefix()
            ),
        ));
    }
    let pool_node = subnet_block.one("pool")?.ok_or_else(|| {
        subnet_block.error(
            subnet_block.pos(),
            "pool",
            "missing: `pool <first> <last>;`",
        )
    })?;
    let pool_key = subnet_block.child_key("pool");
    let range =
        crate::config::schema::leaf_args(pool_node, &pool_key, 2, "two addresses: <first> <last>")?;
    let first: Ipv4Addr =
        crate::config::schema::parse_value(&range[0], pool_node.pos, &pool_key, "an IPv4 address")?;
    let last: Ipv4Addr =
        crate::config::schema::parse_value(&range[1], pool_node.pos, &pool_key, "an IPv4 address")?;
    let (lo, hi) = subnet.hosts().unwrap_or((first, last));
    if u32::from(first) > u32::from(last)
        || u32::from(first) < u32::from(lo)
        || u32::from(last) > u32::from(hi)
    {
        return Err(ConfigError::new(
            pool_node.pos,
            pool_key,
            format!(
                "{first}–{last} is not a range of host addresses of {}",
                subnet.trunc()
            ),
        ));
    }
    let addr_list = |name: &str| -> Result<Vec<Ipv4Addr>, ConfigError> {
        subnet_block
            .all(name)
            .into_iter()
            .map(|n| {
                let key = subnet_block.child_key(name);
                let a = crate::config::schema::leaf_args(n, &key, 1, "an IPv4 address")?;
                crate::config::schema::parse_value(&a[0], n.pos, &key, "an IPv4 address")
            })
            .collect()
    };
    let routers = addr_list("router")?;
    let dns_servers = addr_list("dns-server")?;
    let domain = subnet_block.str("domain-name")?.map(str::to_string);
    subnet_block.finish()?;
    net.finish()?;
    if let Some(a) = address
        && !subnet.contains(a)
    {
        return Err(block.error(
            block.pos(),
            "address",
            format!("{a} is not in subnet {}", subnet.trunc()),
        ));
    }

    let pxe = match block.block("pxe")? {
        None => None,
        Some(p) => {
            let next_server = p.ipv4("next-server")?;
            let mut bootfiles = BTreeMap::new();
            for n in p.all("bootfile") {
                let key = p.child_key("bootfile");
                let a = crate::config::schema::leaf_args(
                    n,
                    &key,
                    2,
                    "an architecture number and a file: `bootfile 7 ipxe.efi;`",
                )?;
                let arch: u16 = crate::config::schema::parse_value(
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
                    || !(u.starts_with("http://")
                        || u.starts_with("https://")
                        || u.starts_with("tftp://")))
            {
                return Err(p.error(
                    p.pos(),
                    "boot-script-url",
                    "expected an http://, https:// or tftp:// URL of at most 255 bytes",
                ));
            }
            p.finish()?;
            Some(PxeSettings {
                next_server,
                bootfiles,
                boot_script_url,
            })
        }
    };
    Ok(DhcpConfig {
        interface,
        address,
        subnet,
        pool: (first, last),
        routers,
        dns_servers,
        domain,
        lease_secs,
        max_leases,
        state_dir,
        pxe,
        port,
    })
}

#[derive(Debug)]
struct DhcpPlugin {
    config: DhcpConfig,
}

impl Plugin for DhcpPlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let c = self.config;
        let address = match c.address {
            Some(a) => a,
            None => {
                let index = netlink::ifindex(&c.interface)
                    .with_context(|| format!("interface {}", c.interface))?;
                netlink::ipv4_addrs(index)
                    .with_context(|| format!("cannot read the addresses of {}", c.interface))?
                    .into_iter()
                    .map(|a| a.addr)
                    .find(|&a| c.subnet.contains(a))
                    .with_context(|| {
                        format!(
                            "{} has no IPv4 address in {}: add one, or set `address`",
                            c.interface,
                            c.subnet.trunc()
                        )
                    })?
            }
        };
        let settings = ServerSettings {
            address,
            netmask: c.subnet.netmask(),
            broadcast: c.subnet.broadcast(),
            routers: c.routers.clone(),
            dns_servers: c.dns_servers.clone(),
            domain: c.domain.clone(),
            lease_secs: c.lease_secs,
            pxe: c.pxe.clone(),
        };
        let mut pool = LeasePool::new(c.pool.0, c.pool.1, &[address], c.max_leases);
        let lease_file = c
            .state_dir
            .as_ref()
            .map(|d| d.join(format!("{NAME}-{}.leases", c.interface)));
        if let Some(path) = &lease_file {
            load_leases(path, &mut pool)?;
        }
        let socket = bind(&c.interface, c.port)?;
        tracing::info!(
            target: NAME,
            interface = c.interface,
            address = %address,
            pool = format!("{}-{}", c.pool.0, c.pool.1),
            lease_secs = c.lease_secs,
            "listening"
        );
        Ok(Box::new(DhcpService {
            socket,
            server: DhcpServer::new(settings, pool),
            lease_file,
        }))
    }
}

fn load_leases(path: &std::path::Path, pool: &mut LeasePool) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read lease file {}", path.display()));
        }
    };
    let (leases, bad) = leasefile::parse(&text);
    for b in bad {
        tracing::warn!(target: NAME, file = %path.display(), line = b.line, "skipped lease line: {}", b.why);
    }
    let mut restored = 0;
    for (key, lease) in leases {
        if pool.restore(key, lease) {
            restored += 1;
        }
    }
    tracing::info!(target: NAME, file = %path.display(), leases = restored, "leases restored");
    Ok(())
}

/// A UDP socket on `0.0.0.0:port`, bound to `interface`, allowed to
/// broadcast.
fn bind(interface: &str, port: u16) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    s.bind_device(Some(interface.as_bytes())).with_context(|| {
        format!("cannot bind to interface {interface} (does it exist? are you root?)")
    })?;
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
        .with_context(|| format!("cannot listen on UDP port {port} on {interface}"))?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

struct DhcpService {
    socket: UdpSocket,
    server: DhcpServer,
    lease_file: Option<PathBuf>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl DhcpService {
    fn save_leases(&mut self) {
        let Some(path) = &self.lease_file else {
            return;
        };
        let text = leasefile::render(self.server.pool());
        if let Err(e) = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            fsutil::write_atomic(path, text.as_bytes(), 0o644)
        })() {
            tracing::warn!(target: NAME, file = %path.display(), "cannot write the lease file: {e}");
        }
    }

    fn handle_datagram(&mut self, bytes: &[u8], from: std::net::SocketAddr) {
        let req = match Repr::parse_bytes(bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(target: NAME, client = %from, bytes = bytes.len(), "dropped malformed datagram: {e}");
                return;
            }
        };
        let outcome = self.server.handle(unix_now(), &req);
        if let Some(event) = &outcome.event {
            log_event(event);
        }
        let Some((reply, to)) = outcome.reply else {
            return;
        };
        let dest = match to {
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
            Destination::Client(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
            Destination::Relay(ip) => SocketAddrV4::new(ip, SERVER_PORT),
        };
        let bytes = reply.to_bytes();
        if let Err(e) = self.socket.send_to(&bytes, dest) {
            tracing::warn!(target: NAME, to = %dest, "cannot send reply: {e}");
        }
    }
}

fn log_event(e: &LeaseEvent) {
    let reply = e.reply.map_or("none", dhcp::MessageType::name);
    let ip = e.ip.map_or_else(|| "-".to_string(), |a| a.to_string());
    let bootfile = e.bootfile.as_deref().unwrap_or("-");
    match e.note {
        None => tracing::info!(
            target: NAME,
            request = e.request.name(),
            reply,
            mac = e.mac.as_str(),
            ip = ip.as_str(),
            bootfile,
            "lease"
        ),
        Some(note) => tracing::info!(
            target: NAME,
            request = e.request.name(),
            reply,
            mac = e.mac.as_str(),
            ip = ip.as_str(),
            bootfile,
            note,
            "lease"
        ),
    }
}

impl Service for DhcpService {
    fn run(mut self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut buf = vec![0u8; RECV_BUF];
        let mut last_save = Instant::now();
        let mut pending = false;
        loop {
            // Checked first: under a flood the socket is always ready.
            if shutdown.is_triggered() {
                break;
            }
            let timeout = pending.then(|| LEASE_FILE_INTERVAL.saturating_sub(last_save.elapsed()));
            match shutdown.wait(self.socket.as_fd(), timeout)? {
                Wake::Shutdown => break,
                Wake::Timeout => {}
                Wake::Ready => {
                    // Take everything queued before polling again.
                    for _ in 0..256 {
                        match self.socket.recv_from(&mut buf) {
                            Ok((n, from)) => self.handle_datagram(&buf[..n], from),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::warn!(target: NAME, "receive failed: {e}");
                                break;
                            }
                        }
                    }
                }
            }
            if self.server.pool_mut().take_changed() {
                pending = true;
            }
            if pending && last_save.elapsed() >= LEASE_FILE_INTERVAL {
                self.save_leases();
                last_save = Instant::now();
                pending = false;
            }
        }
        if pending || self.server.pool_mut().take_changed() {
            self.save_leases();
        }
        tracing::info!(target: NAME, "stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::brace;

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
        assert_eq!(
            c.pool,
            ("192.0.2.2".parse().unwrap(), "192.0.2.254".parse().unwrap())
        );
        assert_eq!(c.lease_secs, 600);
        assert_eq!(c.routers.len(), 1);
        let pxe = c.pxe.unwrap();
        assert_eq!(pxe.bootfiles[&7], "ipxe.efi");
        assert_eq!(
            pxe.boot_script_url.as_deref(),
            Some("http://192.0.2.1/install/boot/boot.ipxe")
        );
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
}
