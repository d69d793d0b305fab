//! The imageserver's connections: who gets a slot, request heads under
//! deadlines, keep-alive, `GET`/`HEAD` with one byte `Range`, and bodies
//! sent with `sendfile(2)`.
//!
//! Each connection has its own thread. A connection that is only waiting
//! on its client costs a thread and a head buffer (at most
//! [`http::MAX_HEAD_LEN`]) and can be closed from the accept loop at any
//! moment (`shutdown(2)` on its socket wakes its thread), so threads stay
//! simple: blocking reads under deadlines and a blocking `sendfile`.
//!
//! - Admission ([`crate::provision::admission`]): at most
//!   `max-connections` at once and `max-connections-per-client` from one
//!   address. At a cap, the connection idle longest (waiting for its first
//!   request, trickling a head, or between keep-alive requests; never one
//!   sending a response) is closed for the new one; when every connection
//!   is busy sending, the new one waits up to [`QUEUE_WAIT`] for a slot
//!   and only then gets 503.
//! - Deadlines: a new connection must send its first byte within
//!   `head-timeout`, and the whole head within `head-timeout` of its first
//!   byte (else 408), however slowly it trickles in; between keep-alive
//!   requests a connection may idle `idle-timeout`.

use super::site::{Body, NAME, Resolved, Site, resolve};
use crate::{
    build,
    daemon::{Service, Shutdown, Wake},
    provision::admission::{Admission, Caps, Offer, Waited},
    wire::http::{self, Method, RangeRequest},
};
use std::{
    collections::HashMap,
    fs::File,
    io::{self, Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown as Both, SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    sync::{Arc, Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

/// How long a send may make no progress before the connection is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per `sendfile` call; between calls the drain deadline is checked.
pub const SENDFILE_CHUNK: usize = 8 << 20;
/// How long a connection waits for a slot when every slot is busy
/// sending, before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// The listen backlog: connections the kernel completes before we accept.
pub const LISTEN_BACKLOG: i32 = 1024;
/// Connections accepted per wake-up, so waiting ones are looked at even
/// under a flood.
const ACCEPT_BATCH: usize = 256;
/// How often waiting connections are looked at.
const QUEUE_TICK: Duration = Duration::from_millis(20);

/// The connection limits of one imageserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one client address.
    pub per_client: usize,
    /// For the first byte of a new connection, and for a whole request
    /// head from its first byte.
    pub head: Duration,
}

pub(crate) struct ImageService {
    listener: TcpListener,
    site: Arc<Site>,
    limits: Limits,
    conns: Arc<Mutex<Conns>>,
}

/// A connection waiting for a slot.
struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
}

/// A connection with a slot.
struct Live {
    client: IpAddr,
    stream: Arc<TcpStream>,
    /// Since when it has been waiting on its client; `None` while a
    /// response is being sent (such a connection is never evicted).
    idle_since: Option<Instant>,
}

/// Every connection with a slot, and who waits for one.
struct Conns {
    admission: Admission<Pending>,
    live: HashMap<u64, Live>,
    next_id: u64,
}

fn lock(conns: &Mutex<Conns>) -> MutexGuard<'_, Conns> {
    conns.lock().unwrap_or_else(|e| e.into_inner())
}

/// Close the connection idle longest (of `scope`'s address, or of anyone)
/// to make room; returns its address.
fn evict(live: &mut HashMap<u64, Live>, scope: Option<IpAddr>) -> Option<IpAddr> {
    let id = live
        .iter()
        .filter(|(_, l)| scope.is_none_or(|s| s == l.client))
        .filter_map(|(id, l)| l.idle_since.map(|t| (t, *id)))
        .min()?
        .1;
    let l = live.remove(&id)?;
    let _ = l.stream.shutdown(Both::Both);
    tracing::debug!(target: NAME, client = %l.client, "closed the connection idle longest to make room");
    Some(l.client)
}

/// One connection's hold on its slot, used by its thread.
struct Slot {
    conns: Arc<Mutex<Conns>>,
    id: u64,
    client: IpAddr,
}

impl Slot {
    /// A response is being sent: not evictable. False if the connection
    /// was evicted already (its socket is shut down).
    fn busy(&self) -> bool {
        lock(&self.conns)
            .live
            .get_mut(&self.id)
            .map(|l| l.idle_since = None)
            .is_some()
    }

    /// Waiting on the client again.
    fn idle(&self) {
        if let Some(l) = lock(&self.conns).live.get_mut(&self.id) {
            l.idle_since = Some(Instant::now());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = lock(&self.conns);
        if c.live.remove(&self.id).is_some() {
            c.admission.finish(self.client);
        }
    }
}

impl ImageService {
    pub(crate) fn new(listener: TcpListener, site: Arc<Site>, limits: Limits) -> Self {
        let admission = Admission::new(Caps {
            total: limits.max_connections,
            per_client: limits.per_client,
            queue_wait: QUEUE_WAIT,
        });
        ImageService {
            listener,
            site,
            limits,
            conns: Arc::new(Mutex::new(Conns {
                admission,
                live: HashMap::new(),
                next_id: 0,
            })),
        }
    }

    /// A new connection: start it, let it wait, or refuse it.
    fn offer(&self, p: Pending, shutdown: &Shutdown, threads: &mut Vec<thread::JoinHandle<()>>) {
        let mut guard = lock(&self.conns);
        let Conns {
            admission, live, ..
        } = &mut *guard;
        let client = p.peer.ip();
        match admission.offer(client, Instant::now(), p, |scope| evict(live, scope)) {
            Offer::Start(p) => self.start(&mut guard, p, shutdown, threads),
            Offer::Queued => {
                tracing::debug!(target: NAME, %client, "every slot is busy: the connection waits for one")
            }
            Offer::Refused(p) => {
                drop(guard);
                refuse(p, "too many connections waiting");
            }
        }
    }

    /// Start what waits and fits now; refuse what waited too long.
    fn poll_queue(&self, shutdown: &Shutdown, threads: &mut Vec<thread::JoinHandle<()>>) {
        let mut guard = lock(&self.conns);
        let Conns {
            admission, live, ..
        } = &mut *guard;
        if admission.queued() == 0 {
            return;
        }
        let mut expired = Vec::new();
        for w in admission.poll(Instant::now(), |scope| evict(live, scope)) {
            match w {
                Waited::Start(_, p) => self.start(&mut guard, p, shutdown, threads),
                Waited::Expired(_, p) => expired.push(p),
            }
        }
        drop(guard);
        for p in expired {
            refuse(p, "no connection slot became free in time");
        }
    }

    /// Give an admitted connection its thread.
    fn start(
        &self,
        conns: &mut Conns,
        p: Pending,
        shutdown: &Shutdown,
        threads: &mut Vec<thread::JoinHandle<()>>,
    ) {
        let id = conns.next_id;
        conns.next_id += 1;
        let stream = Arc::new(p.stream);
        let client = p.peer.ip();
        conns.live.insert(
            id,
            Live {
                client,
                stream: stream.clone(),
                idle_since: Some(Instant::now()),
            },
        );
        let (conns_arc, site, stop) = (self.conns.clone(), self.site.clone(), shutdown.clone());
        let (peer, head) = (p.peer, self.limits.head);
        let spawned = thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                // Made here, so a failed spawn never runs its drop (which
                // takes the lock the caller holds).
                let slot = Slot {
                    conns: conns_arc,
                    id,
                    client,
                };
                if let Err(e) = serve_connection(&stream, peer, &site, &stop, &slot, head) {
                    tracing::debug!(target: NAME, client = %peer, "connection ended: {e}");
                }
            });
        match spawned {
            Ok(h) => threads.push(h),
            Err(e) => {
                if conns.live.remove(&id).is_some() {
                    conns.admission.finish(client);
                }
                tracing::warn!(target: NAME, "cannot start a connection thread: {e}");
            }
        }
    }
}

/// Answer 503 and close.
fn refuse(p: Pending, why: &str) {
    tracing::warn!(target: NAME, client = %p.peer, "server busy: {why}: refused");
    let _ = p.stream.set_nonblocking(false);
    let _ = p.stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut s = &p.stream;
    let _ = s.write_all(&simple_response(
        503,
        &format!("server busy: {why}; try again\n"),
        false,
        false,
    ));
}

impl Service for ImageService {
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut threads: Vec<thread::JoinHandle<()>> = Vec::new();
        loop {
            // Checked first: under a flood the socket is always ready.
            if shutdown.is_triggered() {
                break;
            }
            let waiting = lock(&self.conns).admission.queued() > 0;
            let tick = if waiting {
                QUEUE_TICK
            } else {
                Duration::from_secs(5)
            };
            match shutdown.wait(self.listener.as_fd(), Some(tick))? {
                Wake::Shutdown => break,
                Wake::Timeout => {}
                Wake::Ready => {
                    for _ in 0..ACCEPT_BATCH {
                        match self.listener.accept() {
                            Ok((stream, peer)) => {
                                self.offer(Pending { stream, peer }, shutdown, &mut threads)
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                tracing::debug!(target: NAME, "accept failed: {e}");
                                break;
                            }
                        }
                    }
                }
            }
            self.poll_queue(shutdown, &mut threads);
            threads.retain(|h| !h.is_finished());
        }
        drop(self.listener);
        // Connections still waiting for a slot are closed unanswered.
        let _ = lock(&self.conns)
            .admission
            .poll(Instant::now() + QUEUE_WAIT, |_| None);
        for h in threads {
            let _ = h.join();
        }
        tracing::info!(target: NAME, "stopped");
        Ok(())
    }
}

/// A complete small response with a text body.
fn simple_response(status: u16, body: &str, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n",
        http::reason(status),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

/// Serve requests on one connection until it closes, misses a deadline,
/// is evicted, or the server shuts down.
fn serve_connection(
    stream: &TcpStream,
    peer: SocketAddr,
    site: &Site,
    shutdown: &Shutdown,
    slot: &Slot,
    head_timeout: Duration,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(STALL_TIMEOUT))?;
    let local = match stream.local_addr()? {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let peer_v4 = match peer {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let conn = Conn {
        stream,
        site,
        local,
        peer: peer_v4,
        shutdown,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    // A new connection gets head-timeout for its first byte; between
    // keep-alive requests the connection may idle idle-timeout.
    let mut first_byte_wait = head_timeout;
    loop {
        if buf.is_empty() {
            match shutdown.wait(stream.as_fd(), Some(first_byte_wait))? {
                Wake::Ready => {}
                Wake::Shutdown | Wake::Timeout => return Ok(()),
            }
            let n = (&*stream).read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        // The whole head within head-timeout of its first byte, however
        // slowly it trickles in.
        let deadline = Instant::now() + head_timeout;
        loop {
            match http::parse_head(&buf) {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => {
                    let status = e.status();
                    let mut s = stream;
                    s.write_all(&simple_response(status, &format!("{e}\n"), false, false))?;
                    log_request(peer, "-", "-", status, 0, Instant::now());
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let wake = if left.is_zero() {
                Wake::Timeout
            } else {
                crate::daemon::shutdown::wait_fds(stream.as_fd(), None, Some(left))?
            };
            if wake != Wake::Ready {
                let mut s = stream;
                let _ = s.write_all(&simple_response(
                    408,
                    "request head not received in time\n",
                    false,
                    false,
                ));
                log_request(peer, "-", "-", 408, 0, Instant::now());
                return Ok(());
            }
            let n = (&*stream).read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let started = Instant::now();
        let Ok(Some(req)) = http::parse_head(&buf) else {
            return Ok(());
        };
        if !slot.busy() {
            return Ok(()); // evicted while the head completed
        }
        let keep_alive = req.keep_alive && !shutdown.is_triggered();
        let head_len = req.head_len;
        let (status, sent) = match req.method {
            Method::Get | Method::Head => respond(&conn, &req, keep_alive)?,
            Method::Other(_) => {
                let mut s = stream;
                s.write_all(&simple_response(
                    405,
                    "only GET and HEAD\n",
                    keep_alive,
                    false,
                ))?;
                (405, 0)
            }
        };
        log_request(peer, req.method.as_str(), req.target, status, sent, started);
        buf.drain(..head_len);
        if !keep_alive || status >= 500 {
            return Ok(());
        }
        slot.idle();
        first_byte_wait = site.idle;
    }
}

fn log_request(
    peer: SocketAddr,
    method: &str,
    target: &str,
    status: u16,
    bytes: u64,
    started: Instant,
) {
    // The installers' reports are many and small: the status table
    // keeps what they say.
    if target.starts_with(crate::provision::status::report::PREFIX) && status == 200 {
        tracing::debug!(target: NAME, path = target, client = %peer, "report");
        return;
    }
    tracing::info!(
        target: NAME,
        method,
        path = target,
        client = %peer,
        status,
        bytes,
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
}

/// What a request is answered with and from where.
struct Conn<'a> {
    stream: &'a TcpStream,
    site: &'a Site,
    /// Our address as the client reached it (for the boot script).
    local: Ipv4Addr,
    /// The client's address (which machine is asking).
    peer: Ipv4Addr,
    shutdown: &'a Shutdown,
}

/// Answer a GET or HEAD; returns the status and the body bytes sent.
fn respond(conn: &Conn<'_>, req: &http::Request<'_>, keep_alive: bool) -> io::Result<(u16, u64)> {
    let (stream, shutdown) = (conn.stream, conn.shutdown);
    let head_only = req.method == Method::Head;
    let range = req.range;
    let (body, ctype) = match resolve(conn.site, req.target, conn.local, conn.peer) {
        Resolved::Error(status, text) => {
            let mut s = stream;
            s.write_all(&simple_response(status, &text, keep_alive, head_only))?;
            return Ok((status, 0));
        }
        Resolved::Body { body, content_type } => (body, content_type),
    };
    let len = body.len();
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let (status, start, count, extra) = match http::parse_range(range, len) {
        RangeRequest::Full => (200, 0, len, String::new()),
        RangeRequest::Partial { start, end } => (
            206,
            start,
            end - start + 1,
            format!("Content-Range: bytes {start}-{end}/{len}\r\n"),
        ),
        RangeRequest::Unsatisfiable => {
            let head = format!(
                "HTTP/1.1 416 {}\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: {connection}\r\n\r\n",
                http::reason(416)
            );
            let mut s = stream;
            s.write_all(head.as_bytes())?;
            return Ok((416, 0));
        }
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nServer: ze/{}\r\nContent-Type: {ctype}\r\nContent-Length: {count}\r\nAccept-Ranges: bytes\r\n{extra}Connection: {connection}\r\n\r\n",
        http::reason(status),
        build::VERSION
    );
    if head_only {
        let mut s = stream;
        s.write_all(head.as_bytes())?;
        return Ok((status, 0));
    }
    // The head goes out with the first body bytes (MSG_MORE).
    send_all(stream, head.as_bytes(), count > 0)?;
    let sent = match body {
        Body::Bytes(bytes) => {
            let slice = &bytes[start as usize..(start + count) as usize];
            send_all(stream, slice, false)?;
            count
        }
        Body::File(file, _) => send_file(stream, &file, start, count, shutdown)?,
    };
    if let Some(fleet) = &conn.site.fleet.status {
        crate::provision::status::Counters::add(&fleet.counters().http_bytes, sent);
    }
    Ok((status, sent))
}

fn send_all(stream: &TcpStream, mut bytes: &[u8], more: bool) -> io::Result<()> {
    use rustix::net::SendFlags;
    let flags = if more {
        SendFlags::MORE | SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL
    };
    while !bytes.is_empty() {
        match rustix::net::send(stream, bytes, flags) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Send `count` bytes of `file` from `offset` with sendfile(2).
fn send_file(
    stream: &TcpStream,
    file: &File,
    offset: u64,
    count: u64,
    shutdown: &Shutdown,
) -> io::Result<u64> {
    let mut off = offset;
    let end = offset + count;
    while off < end {
        if shutdown.drain_expired() {
            return Err(io::Error::other("server shutting down"));
        }
        let want = ((end - off) as usize).min(SENDFILE_CHUNK);
        match rustix::fs::sendfile(stream, file, Some(&mut off), want) {
            Ok(0) => {
                return Err(io::Error::other(format!(
                    "file ended at {off} of {end} bytes (it shrank while being sent)"
                )));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "client stalled"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(count)
}
