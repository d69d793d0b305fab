//! `dhcpserver`: DHCP (RFC 2131/2132) with PXE options on one interface,
//! for the interface's subnet and any number of subnets behind relay
//! agents — or, in `mode proxy;`, proxyDHCP beside the site's own DHCP
//! server. The config is described in [`config`].
//!
//! The socket is bound to the interface (SO_BINDTODEVICE) on port 67;
//! replies to clients without an address are broadcast on it, relayed
//! requests are answered to the relay. In proxy mode a second socket
//! listens on port 4011 for PXE boot server requests ([`proxy`]).

pub mod config;
pub mod leasefile;
pub mod pool;
pub mod proxy;
pub mod relay;
pub mod server;

use crate::{
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginKind, Service, Shutdown, Wake},
    fsutil, netlink,
    provision::{
        fleet::FleetLink,
        mac::Mac,
        machines::boot::{NextBoot, Silence},
        status::{self, DhcpClient, DhcpMessage},
    },
    wire::dhcp::{MessageType, Repr, opt},
};
use anyhow::Context as _;
use config::{DhcpConfig, ModeConfig, read_config};
use pool::LeasePool;
use server::{Destination, DhcpServer, LeaseEvent, Mode, ServerSettings, Subnet};
use socket2::{Domain, Protocol, Socket, Type};
use std::{
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
/// How often changed leases are written to the lease file, at most.
pub const LEASE_FILE_INTERVAL: Duration = Duration::from_secs(1);
/// Receive buffer: any UDP datagram fits.
const RECV_BUF: usize = 65_536;

fn configure(
    block: &Block<'_>,
    _env: &crate::daemon::PluginEnv,
) -> Result<Box<dyn Plugin>, ConfigError> {
    Ok(Box::new(DhcpPlugin {
        config: read_config(block)?,
    }))
}

#[derive(Debug)]
struct DhcpPlugin {
    config: DhcpConfig,
}

/// The server's address: `address`, else the interface's first IPv4
/// address in its subnet.
fn server_address(c: &DhcpConfig) -> anyhow::Result<Ipv4Addr> {
    if let Some(a) = c.address {
        return Ok(a);
    }
    let local = c.subnets[0].net;
    let index =
        netlink::ifindex(&c.interface).with_context(|| format!("interface {}", c.interface))?;
    netlink::ipv4_addrs(index)
        .with_context(|| format!("cannot read the addresses of {}", c.interface))?
        .into_iter()
        .map(|a| a.addr)
        .find(|&a| local.contains(a))
        .with_context(|| {
            format!(
                "{} has no IPv4 address in {local}: add one, or set `address`",
                c.interface
            )
        })
}

/// The server's mode with its subnets and pools. A pool never hands out
/// the server's address or a subnet's router.
fn mode(c: &DhcpConfig, address: Ipv4Addr) -> Mode {
    match c.mode {
        ModeConfig::Proxy => Mode::Proxy(c.subnets.iter().map(|s| s.net).collect()),
        ModeConfig::Full => Mode::Full(
            c.subnets
                .iter()
                .map(|s| {
                    let (first, last) = s.pool.expect("full mode subnets have pools");
                    let mut excluded = s.routers.clone();
                    excluded.push(address);
                    Subnet {
                        net: s.net,
                        routers: s.routers.clone(),
                        dns_servers: s.dns_servers.clone(),
                        domain: s.domain.clone(),
                        pool: LeasePool::new(first, last, &excluded, c.max_leases),
                    }
                })
                .collect(),
        ),
    }
}

impl Plugin for DhcpPlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let c = self.config;
        let address = server_address(&c)?;
        let settings = ServerSettings {
            address,
            lease_secs: c.lease_secs,
            pxe: c.pxe.clone(),
        };
        let mut server = DhcpServer::new(settings, mode(&c, address));
        let lease_file = (c.mode == ModeConfig::Full)
            .then_some(c.state_dir.as_ref())
            .flatten()
            .map(|d| d.join(format!("{NAME}-{}.leases", c.interface)));
        if let Some(path) = &lease_file {
            load_leases(path, &mut server)?;
        }
        let socket = bind(&c.interface, c.port)?;
        let pxe_socket = match c.mode {
            ModeConfig::Proxy => Some(bind(&c.interface, proxy::PXE_PORT)?),
            ModeConfig::Full => None,
        };
        let relayed: Vec<String> = c.subnets[1..].iter().map(|s| s.net.to_string()).collect();
        let relayed = (!relayed.is_empty()).then(|| relayed.join(","));
        match c.mode {
            ModeConfig::Full => {
                let pools: Vec<String> = c
                    .subnets
                    .iter()
                    .filter_map(|s| s.pool)
                    .map(|(a, b)| format!("{a}-{b}"))
                    .collect();
                tracing::info!(
                    target: NAME,
                    interface = c.interface,
                    address = %address,
                    pool = pools.join(","),
                    relayed,
                    lease_secs = c.lease_secs,
                    "listening"
                );
            }
            ModeConfig::Proxy => tracing::info!(
                target: NAME,
                interface = c.interface,
                address = %address,
                mode = "proxy",
                network = %c.subnets[0].net,
                relayed,
                ports = format!("{},{}", c.port, proxy::PXE_PORT),
                "listening"
            ),
        }
        let fleet = FleetLink::open(&c.fleet);
        if let Some(m) = &fleet.machines {
            tracing::info!(target: NAME, machines = %m.dir().display(), records = m.len(), unknown = c.fleet.unknown.as_str(), "per-machine answers");
        }
        Ok(Box::new(DhcpService {
            socket,
            pxe_socket,
            server,
            lease_file,
            fleet,
        }))
    }
}

fn load_leases(path: &std::path::Path, server: &mut DhcpServer) -> anyhow::Result<()> {
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
    let restored = leasefile::restore(server, leases);
    server.take_changed();
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
    /// Port 4011, in proxy mode.
    pxe_socket: Option<UdpSocket>,
    server: DhcpServer,
    lease_file: Option<PathBuf>,
    /// The machine records and the status table.
    fleet: FleetLink,
}

/// Who sent a request: PXE firmware, iPXE, or another DHCP client.
fn client_kind(req: &Repr) -> DhcpClient {
    if req.options.has_user_class(b"iPXE") {
        DhcpClient::Ipxe
    } else if server::is_pxe_client(req) {
        DhcpClient::Firmware
    } else {
        DhcpClient::Other
    }
}

/// What the records make of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    /// Answer as the config says.
    Answer,
    /// Answer with an address but no bootfile: an installed machine's
    /// firmware then boots its next boot entry, the disk.
    NoBootfile,
    /// No answer at all.
    Silent(Silence),
}

/// The policy for a request from `client` whose machine's next network
/// boot is `next` (checklist F1, F4). `install never` keeps the
/// appliance's own lease; only its network boot goes unanswered. An
/// installed machine's firmware gets no bootfile (iPXE's `exit` back to
/// UEFI firmware hangs on some, OVMF among them); iPXE itself still gets
/// the script, which boots the local disk.
fn policy(next: NextBoot<'_>, client: DhcpClient) -> Policy {
    match (next, client) {
        (NextBoot::Nothing(Silence::Unknown), _) => Policy::Silent(Silence::Unknown),
        (NextBoot::Nothing(why), DhcpClient::Firmware | DhcpClient::Ipxe) => Policy::Silent(why),
        (NextBoot::LocalDisk(_), DhcpClient::Firmware) => Policy::NoBootfile,
        _ => Policy::Answer,
    }
}

/// The status table's name for a DHCP message type.
fn dhcp_message(kind: MessageType) -> Option<DhcpMessage> {
    Some(match kind {
        MessageType::Discover => DhcpMessage::Discover,
        MessageType::Offer => DhcpMessage::Offer,
        MessageType::Request => DhcpMessage::Request,
        MessageType::Ack => DhcpMessage::Ack,
        MessageType::Nak => DhcpMessage::Nak,
        _ => return None,
    })
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
        let text = leasefile::render(self.server.pools());
        if let Err(e) = (|| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            fsutil::write_atomic(path, text.as_bytes(), 0o644)
        })() {
            tracing::warn!(target: NAME, file = %path.display(), "cannot write the lease file: {e}");
        }
    }

    /// Handle one datagram that arrived on port 67 (`pxe_port` false) or
    /// 4011.
    fn handle_datagram(&mut self, bytes: &[u8], from: std::net::SocketAddr, pxe_port: bool) {
        let std::net::SocketAddr::V4(from) = from else {
            return;
        };
        let req = match Repr::parse_bytes(bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(target: NAME, client = %from, bytes = bytes.len(), "dropped malformed datagram: {e}");
                return;
            }
        };
        let mac = <[u8; 6]>::try_from(req.hardware_address())
            .ok()
            .filter(|_| req.htype == 1)
            .map(Mac);
        let client = client_kind(&req);
        let record = mac.and_then(|m| self.fleet.record(m));
        // With records, iPXE's script URL names the MAC; an empty records
        // directory changes nothing.
        let per_machine = self.fleet.per_machine();
        self.server.set_script_mac(per_machine);
        let policy = match mac {
            Some(_) if per_machine => policy(self.fleet.next_boot(record.as_ref()), client),
            _ => Policy::Answer,
        };
        if let (Policy::Silent(why), Some(mac)) = (policy, mac) {
            tracing::debug!(target: NAME, mac = %mac, "not answered: {why}");
            return;
        }
        let mut outcome = if pxe_port {
            self.server.handle_pxe_port(&req, from)
        } else {
            self.server.handle(unix_now(), &req, from)
        };
        if policy == Policy::NoBootfile {
            if let Some(event) = outcome.event.as_mut()
                && event.bootfile.take().is_some()
            {
                event.note = Some("installed: no bootfile, it boots its local disk");
            }
            if let Some((reply, _)) = outcome.reply.as_mut() {
                server::DhcpServer::strip_boot_fields(reply);
            }
            if matches!(
                outcome.event.as_ref().and_then(|e| e.reply),
                Some(server::Reply::ProxyOffer)
            ) {
                // proxyDHCP only ever says what to boot: say nothing.
                outcome.reply = None;
            }
        }
        if let Some(event) = &outcome.event {
            log_event(event);
            if let Some(mac) = mac {
                self.tell_fleet(mac, &req, client, record.as_ref(), event);
            }
        }
        let Some((mut reply, to)) = outcome.reply else {
            return;
        };
        // The record's host name (option 12), for the machine to use.
        if let Some(h) = record.as_ref().and_then(|r| r.hostname.as_deref())
            && matches!(
                reply.message_type(),
                Some(MessageType::Offer | MessageType::Ack)
            )
        {
            reply.options.set(opt::HOST_NAME, h.as_bytes().to_vec());
        }
        let dest = match to {
            Destination::Broadcast => SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT),
            Destination::Client(ip) => SocketAddrV4::new(ip, CLIENT_PORT),
            Destination::Relay(ip) => SocketAddrV4::new(ip, relay::RELAY_PORT),
            Destination::Peer(addr) => addr,
        };
        let Some(socket) = self.socket_for(pxe_port) else {
            return;
        };
        if let Err(e) = socket.send_to(&reply.to_bytes(), dest) {
            tracing::warn!(target: NAME, to = %dest, "cannot send reply: {e}");
        }
    }

    /// Tell the status table about a request and its reply.
    fn tell_fleet(
        &self,
        mac: Mac,
        req: &Repr,
        client: DhcpClient,
        record: Option<&crate::provision::machines::Record>,
        event: &LeaseEvent,
    ) {
        let hostname = record
            .and_then(|r| r.hostname.clone())
            .or_else(|| req.options.host_name().map(str::to_string));
        let dhcp = |message, ip| status::Event::Dhcp {
            message,
            ip,
            client,
            hostname: hostname.clone(),
        };
        if let Some(m) = dhcp_message(event.request) {
            self.fleet.event(mac, dhcp(m, None));
        }
        let answered = match event.reply {
            Some(server::Reply::Dhcp(kind)) => dhcp_message(kind),
            Some(server::Reply::ProxyOffer) => Some(DhcpMessage::Offer),
            None => None,
        };
        if let Some(m) = answered {
            self.fleet.event(mac, dhcp(m, event.ip));
        }
    }

    /// Set the leases-in-use gauge of the status table.
    fn count_leases(&self) {
        let Some(fleet) = &self.fleet.status else {
            return;
        };
        let now = unix_now();
        let bound = self
            .server
            .pools()
            .flat_map(|p| p.leases())
            .filter(|(_, l)| l.state == pool::LeaseState::Bound && l.active(now))
            .count();
        fleet
            .counters()
            .leases_in_use
            .store(bound as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The port 67 socket, or the port 4011 one (proxy mode only).
    fn socket_for(&self, pxe_port: bool) -> Option<&UdpSocket> {
        match pxe_port {
            false => Some(&self.socket),
            true => self.pxe_socket.as_ref(),
        }
    }

    /// Take everything queued on one socket, up to a bound per wake-up.
    fn drain(&mut self, buf: &mut [u8], pxe_port: bool) {
        for _ in 0..256 {
            let Some(socket) = self.socket_for(pxe_port) else {
                return;
            };
            match socket.recv_from(buf) {
                Ok((n, from)) => self.handle_datagram(&buf[..n], from, pxe_port),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(target: NAME, "receive failed: {e}");
                    return;
                }
            }
        }
    }
}

fn log_event(e: &LeaseEvent) {
    let ip = e.ip.map_or_else(|| "-".to_string(), |a| a.to_string());
    tracing::info!(
        target: NAME,
        request = e.request.name(),
        reply = e.reply.map_or("none", server::Reply::name),
        mac = e.mac.as_str(),
        ip = ip.as_str(),
        bootfile = e.bootfile.as_deref().unwrap_or("-"),
        giaddr = e.giaddr.map(tracing::field::display),
        port = e.port,
        note = e.note,
        "lease"
    );
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
            let mut fds = vec![self.socket.as_fd()];
            fds.extend(self.pxe_socket.as_ref().map(|s| s.as_fd()));
            match shutdown.wait_any(&fds, timeout)? {
                Wake::Shutdown => break,
                Wake::Timeout => {}
                Wake::Ready => {
                    // Both sockets are non-blocking: take what each has.
                    self.drain(&mut buf, false);
                    self.drain(&mut buf, true);
                }
            }
            if self.server.take_changed() {
                pending = true;
                self.count_leases();
            }
            if pending && last_save.elapsed() >= LEASE_FILE_INTERVAL {
                self.save_leases();
                last_save = Instant::now();
                pending = false;
            }
        }
        if pending || self.server.take_changed() {
            self.save_leases();
        }
        tracing::info!(target: NAME, "stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::machines::record::Installed;

    #[test]
    fn f1_f4_what_the_records_make_of_a_request() {
        let done = Installed {
            at: 0,
            image: "a.img".into(),
        };
        let all = [DhcpClient::Firmware, DhcpClient::Ipxe, DhcpClient::Other];
        for c in all {
            assert_eq!(policy(NextBoot::Install(None), c), Policy::Answer);
            assert_eq!(
                policy(NextBoot::Nothing(Silence::Unknown), c),
                Policy::Silent(Silence::Unknown)
            );
        }
        let never = NextBoot::Nothing(Silence::InstallNever);
        assert_eq!(
            policy(never, DhcpClient::Firmware),
            Policy::Silent(Silence::InstallNever)
        );
        assert_eq!(
            policy(never, DhcpClient::Ipxe),
            Policy::Silent(Silence::InstallNever)
        );
        assert_eq!(
            policy(never, DhcpClient::Other),
            Policy::Answer,
            "its appliance keeps a lease"
        );
        let installed = NextBoot::LocalDisk(&done);
        assert_eq!(policy(installed, DhcpClient::Firmware), Policy::NoBootfile);
        assert_eq!(
            policy(installed, DhcpClient::Ipxe),
            Policy::Answer,
            "the local-disk script"
        );
        assert_eq!(policy(installed, DhcpClient::Other), Policy::Answer);
    }
}
