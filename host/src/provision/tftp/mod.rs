//! `tftpserver`: read-only TFTP (RFC 1350) in octet mode with the option
//! extension (RFC 2347), blksize (RFC 2348), timeout and tsize (RFC 2349)
//! and windowsize (RFC 7440).
//!
//! ```text
//! tftpserver {
//!     root /srv/pxe/tftp;       # files are served from here only
//!     interface br0;            # optional: bind to this interface
//!     address 192.0.2.1;        # optional: listen address (default all)
//!     port 69;
//!     max-transfers 256;        # transfers at once
//!     max-transfers-per-client 8;  # transfers at once for one address
//!     timeout 1;                # retransmission timeout (seconds) unless negotiated
//!     retries 5;                # timeouts in a row before a transfer fails
//!     max-blksize 1468;         # default: the interface MTU less 32, else 65464
//! }
//! ```
//!
//! Each transfer runs on its own thread with its own socket (its transfer
//! ID, RFC 1350 §4), connected to the client. Write requests and modes
//! other than `octet` are refused with an ERROR packet.
//!
//! The rooms: [`transfer`] (one transfer as a sans-IO state machine),
//! `runner` (a transfer on its thread and socket), `slots` (who holds a
//! slot).
//!
//! Sources are easily spoofed, so who gets a slot is decided with that in
//! mind ([`crate::provision::admission`]): at most `max-transfers` at
//! once and `max-transfers-per-client` for one address; at a cap, the
//! oldest transfer whose client never acknowledged anything gives up its
//! slot to the new request; when every slot holds an acknowledged
//! transfer, the request waits up to [`QUEUE_WAIT`] (its repeats from the
//! same address and port are ignored meanwhile) and only then gets
//! `ERROR 0 server busy`. See [`transfer`] for the timers.

mod runner;
mod slots;
pub mod transfer;

use crate::{
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginKind, Service, Shutdown, Wake},
    netlink,
    provision::{
        admission::{Admission, Caps, Offer, Waited},
        servefs::{OpenError, Root},
        status::{Counters, Event, Fleet},
    },
    wire::tftp::{ErrorCode, Repr},
};
use anyhow::Context as _;
use runner::{Flags, run_transfer, send_error};
use slots::{Running, Slots, Waiting, evict, lock};
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    os::fd::AsFd,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
    thread,
    time::{Duration, Instant},
};
use transfer::{Limits, Transfer};

/// The plugin's name: its config block and log target.
pub const NAME: &str = "tftpserver";
/// The registry entry.
pub const KIND: PluginKind = PluginKind {
    name: NAME,
    configure,
};
/// The TFTP port.
pub const DEFAULT_PORT: u16 = 69;
/// Transfers at once, by default.
pub const DEFAULT_MAX_TRANSFERS: usize = 256;
/// Transfers at once for one client address, by default.
pub const DEFAULT_MAX_PER_CLIENT: usize = 8;
/// How long a request waits for a slot before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How often waiting requests are looked at.
const QUEUE_TICK: Duration = Duration::from_millis(20);
/// IPv4 + UDP + TFTP DATA header bytes, subtracted from the MTU.
pub const HEADER_OVERHEAD: usize = 20 + 8 + 4;
/// Receive buffer for requests: any datagram fits, so a long one is seen
/// whole and refused rather than cut.
const RECV_BUF: usize = 65_536;
/// A `tftpserver { … }` block, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpConfig {
    pub root: PathBuf,
    pub interface: Option<String>,
    pub address: Ipv4Addr,
    pub port: u16,
    pub max_transfers: usize,
    pub max_per_client: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub max_blksize: Option<usize>,
    /// Where the fleet's status table is kept (optional).
    pub state_dir: Option<PathBuf>,
}

fn configure(
    block: &Block<'_>,
    _env: &crate::daemon::PluginEnv,
) -> Result<Box<dyn Plugin>, ConfigError> {
    Ok(Box::new(TftpPlugin {
        config: read_config(block)?,
    }))
}

/// Read a `tftpserver` block.
pub fn read_config(block: &Block<'_>) -> Result<TftpConfig, ConfigError> {
    let root = block
        .abs_path("root")?
        .ok_or_else(|| block.error(block.pos(), "root", "missing: this setting is required"))?;
    Ok(TftpConfig {
        root,
        interface: block.str("interface")?.map(str::to_string),
        address: block.ipv4("address")?.unwrap_or(Ipv4Addr::UNSPECIFIED),
        port: block
            .number("port", 1..=65535)?
            .map_or(DEFAULT_PORT, |n| n as u16),
        max_transfers: block
            .number("max-transfers", 1..=4096)?
            .map_or(DEFAULT_MAX_TRANSFERS, |n| n as usize),
        max_per_client: block
            .number("max-transfers-per-client", 1..=4096)?
            .map_or(DEFAULT_MAX_PER_CLIENT, |n| n as usize),
        timeout: Duration::from_secs(block.number("timeout", 1..=255)?.unwrap_or(1)),
        retries: block.number("retries", 1..=100)?.map_or(5, |n| n as u32),
        max_blksize: block
            .number("max-blksize", transfer::MIN_BLKSIZE..=transfer::MAX_BLKSIZE)?
            .map(|n| n as usize),
        state_dir: block.abs_path("state-dir")?,
    })
}

#[derive(Debug)]
struct TftpPlugin {
    config: TftpConfig,
}

fn udp_socket(
    interface: Option<&str>,
    addr: SocketAddrV4,
    reuse: bool,
) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    if reuse {
        s.set_reuse_address(true)?;
    }
    if let Some(i) = interface {
        s.bind_device(Some(i.as_bytes())).with_context(|| {
            format!("cannot bind to interface {i} (does it exist? are you root?)")
        })?;
    }
    s.bind(&addr.into())
        .with_context(|| format!("cannot listen on UDP {addr}"))?;
    Ok(s.into())
}

impl Plugin for TftpPlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let c = self.config;
        let root = Root::open(&c.root).context("the TFTP root")?;
        let max_blksize = match (c.max_blksize, &c.interface) {
            (Some(b), _) => b,
            (None, Some(i)) => netlink::mtu(i)
                .map(|m| (m as usize).saturating_sub(HEADER_OVERHEAD))
                .unwrap_or(transfer::MAX_BLKSIZE as usize),
            (None, None) => transfer::MAX_BLKSIZE as usize,
        }
        .clamp(
            transfer::MIN_BLKSIZE as usize,
            transfer::MAX_BLKSIZE as usize,
        );
        let socket = udp_socket(
            c.interface.as_deref(),
            SocketAddrV4::new(c.address, c.port),
            true,
        )?;
        socket.set_nonblocking(true)?;
        tracing::info!(
            target: NAME,
            root = %c.root.display(),
            listen = %SocketAddrV4::new(c.address, c.port),
            max_blksize,
            "listening"
        );
        Ok(Box::new(TftpService {
            socket,
            root: Arc::new(root),
            interface: c.interface,
            address: c.address,
            limits: Limits {
                max_blksize,
                timeout: c.timeout,
                retries: c.retries,
            },
            slots: Arc::new(Mutex::new(Slots {
                admission: Admission::new(Caps {
                    total: c.max_transfers,
                    per_client: c.max_per_client,
                    queue_wait: QUEUE_WAIT,
                }),
                running: HashMap::new(),
                next_id: 0,
            })),
            fleet: c.state_dir.as_deref().map(Fleet::open),
        }))
    }
}

struct TftpService {
    socket: UdpSocket,
    root: Arc<Root>,
    interface: Option<String>,
    address: Ipv4Addr,
    limits: Limits,
    slots: Arc<Mutex<Slots>>,
    /// The fleet's status table: which machine took which bootfile.
    fleet: Option<Arc<Fleet>>,
}

/// The file name a client sent, as a path under the root: leading `/`
/// dropped, `\` read as `/` (Windows-style clients).
fn relative_name(filename: &str) -> String {
    filename
        .replace('\\', "/")
        .trim_start_matches('/')
        .to_string()
}

impl TftpService {
    fn handle(
        &self,
        bytes: &[u8],
        from: SocketAddr,
        shutdown: &Shutdown,
        threads: &mut Vec<thread::JoinHandle<()>>,
    ) {
        let req = match Repr::parse(bytes) {
            Ok(Repr::Read(r)) => r,
            Ok(Repr::Write(r)) => {
                tracing::info!(target: NAME, file = r.filename, client = %from, "write request refused");
                send_error(
                    &self.socket,
                    Some(from),
                    ErrorCode::AccessViolation,
                    "this server is read-only",
                );
                return;
            }
            Ok(Repr::Error { .. }) => return,
            Ok(other) => {
                tracing::debug!(target: NAME, client = %from, "unexpected packet on the request port: {other:?}");
                send_error(
                    &self.socket,
                    Some(from),
                    ErrorCode::IllegalOperation,
                    "expected a read request",
                );
                return;
            }
            Err(e) => {
                tracing::debug!(target: NAME, client = %from, bytes = bytes.len(), "malformed request: {e}");
                send_error(
                    &self.socket,
                    Some(from),
                    ErrorCode::IllegalOperation,
                    &format!("malformed request: {e}"),
                );
                return;
            }
        };
        tracing::info!(target: NAME, file = req.filename, client = %from, "read request");
        if !req.mode.eq_ignore_ascii_case("octet") {
            send_error(
                &self.socket,
                Some(from),
                ErrorCode::IllegalOperation,
                "only octet mode is supported",
            );
            return;
        }
        if lock(&self.slots).repeats(from) {
            tracing::debug!(target: NAME, file = req.filename, client = %from, "repeated request ignored: the first is not answered yet");
            return;
        }
        let (file, meta) = match self.root.open_file(&relative_name(req.filename)) {
            Ok(f) => f,
            Err(e) => {
                let code = match e {
                    OpenError::NotFound | OpenError::NotAFile => ErrorCode::FileNotFound,
                    OpenError::Forbidden => ErrorCode::AccessViolation,
                    OpenError::Io(_) => ErrorCode::Undefined,
                };
                tracing::debug!(target: NAME, file = req.filename, client = %from, "refused: {e}");
                send_error(&self.socket, Some(from), code, &e.to_string());
                return;
            }
        };
        let w = Waiting {
            from,
            name: req.filename.to_string(),
            file,
            negotiated: transfer::negotiate(&req, meta.len(), &self.limits),
            size: meta.len(),
        };
        let mut guard = lock(&self.slots);
        let Slots {
            admission, running, ..
        } = &mut *guard;
        match admission.offer(from.ip(), Instant::now(), w, |scope| evict(running, scope)) {
            Offer::Start(w) => self.start(&mut guard, w, shutdown, threads),
            Offer::Queued => {
                tracing::debug!(target: NAME, file = req.filename, client = %from, "every slot is busy: the request waits for one")
            }
            Offer::Refused(w) => {
                drop(guard);
                self.refuse(&w, "too many requests waiting");
            }
        }
    }

    /// Answer a request that gets no slot.
    fn refuse(&self, w: &Waiting, why: &str) {
        tracing::warn!(target: NAME, file = w.name.as_str(), client = %w.from, "server busy: {why}: refused");
        send_error(
            &self.socket,
            Some(w.from),
            ErrorCode::Undefined,
            "server busy: too many transfers, try again",
        );
    }

    /// Start what waits and fits now; refuse what waited too long.
    fn poll_queue(&self, shutdown: &Shutdown, threads: &mut Vec<thread::JoinHandle<()>>) {
        let mut guard = lock(&self.slots);
        let Slots {
            admission, running, ..
        } = &mut *guard;
        if admission.queued() == 0 {
            return;
        }
        let mut expired = Vec::new();
        for w in admission.poll(Instant::now(), |scope| evict(running, scope)) {
            match w {
                Waited::Start(_, w) => self.start(&mut guard, w, shutdown, threads),
                Waited::Expired(_, w) => expired.push(w),
            }
        }
        drop(guard);
        for w in &expired {
            self.refuse(w, "no transfer slot became free in time");
        }
    }

    /// Give an admitted request its socket and thread.
    fn start(
        &self,
        slots: &mut Slots,
        w: Waiting,
        shutdown: &Shutdown,
        threads: &mut Vec<thread::JoinHandle<()>>,
    ) {
        let client = w.from.ip();
        let socket = match self.transfer_socket(w.from) {
            Ok(s) => s,
            Err(e) => {
                slots.admission.finish(client);
                tracing::warn!(target: NAME, client = %w.from, "cannot open a transfer socket: {e:#}");
                send_error(
                    &self.socket,
                    Some(w.from),
                    ErrorCode::Undefined,
                    "server error",
                );
                return;
            }
        };
        let id = slots.next_id;
        slots.next_id += 1;
        let (acked, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        slots.running.insert(
            id,
            Running {
                from: w.from,
                started: Instant::now(),
                acked: acked.clone(),
                stop: stop.clone(),
            },
        );
        let t = Transfer::new(w.negotiated, w.size, &self.limits);
        let (all, halt) = (self.slots.clone(), shutdown.clone());
        let from = w.from;
        let fleet = self.fleet.clone();
        if let Some(f) = &fleet {
            Counters::add(&f.counters().tftp_transfers, 1);
            if let std::net::IpAddr::V4(ip) = from.ip()
                && let Some(mac) = f.mac_of(ip)
            {
                let _ = f.event(
                    mac,
                    Event::Bootfile {
                        file: w.name.clone(),
                    },
                );
            }
        }
        let spawned = thread::Builder::new()
            .name("tftp-transfer".into())
            .spawn(move || {
                let flags = Flags { acked, stop };
                let size = w.size;
                if run_transfer(socket, w.file, t, &w.name, from, &halt, &flags)
                    && let Some(f) = &fleet
                {
                    Counters::add(&f.counters().tftp_bytes, size);
                }
                let mut s = lock(&all);
                if s.running.remove(&id).is_some() {
                    s.admission.finish(client);
                }
            });
        match spawned {
            Ok(h) => threads.push(h),
            Err(e) => {
                slots.running.remove(&id);
                slots.admission.finish(client);
                tracing::warn!(target: NAME, "cannot start a transfer thread: {e}");
            }
        }
    }

    fn transfer_socket(&self, client: SocketAddr) -> anyhow::Result<UdpSocket> {
        let s = udp_socket(
            self.interface.as_deref(),
            SocketAddrV4::new(self.address, 0),
            false,
        )?;
        s.connect(client)?;
        Ok(s)
    }
}

impl Service for TftpService {
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut threads: Vec<thread::JoinHandle<()>> = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            // Checked first: under a flood the socket is always ready.
            if shutdown.is_triggered() {
                break;
            }
            let waiting = lock(&self.slots).admission.queued() > 0;
            let tick = if waiting {
                QUEUE_TICK
            } else {
                Duration::from_secs(5)
            };
            match shutdown.wait(self.socket.as_fd(), Some(tick))? {
                Wake::Shutdown => break,
                Wake::Timeout => {}
                Wake::Ready => {
                    for _ in 0..64 {
                        match self.socket.recv_from(&mut buf) {
                            Ok((n, from)) => self.handle(&buf[..n], from, shutdown, &mut threads),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::debug!(target: NAME, "receive failed: {e}");
                                break;
                            }
                        }
                    }
                }
            }
            self.poll_queue(shutdown, &mut threads);
            threads.retain(|h| !h.is_finished());
        }
        drop(self.socket);
        for h in threads {
            let _ = h.join();
        }
        tracing::info!(target: NAME, "stopped");
        Ok(())
    }
}
