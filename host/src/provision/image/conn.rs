//! The imageserver's connections: the accept loop with its connection
//! cap, keep-alive request heads, `GET`/`HEAD` with one byte `Range`, and
//! bodies sent with `sendfile(2)`.

use super::site::{Body, NAME, Resolved, Site, resolve};
use crate::{
    build,
    daemon::{Service, Shutdown, Wake},
    wire::http::{self, Method, RangeRequest},
};
use std::{
    fs::File,
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsFd,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// How long a send may make no progress before the connection is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per `sendfile` call; between calls the drain deadline is checked.
pub const SENDFILE_CHUNK: usize = 8 << 20;

pub(crate) struct ImageService {
    pub listener: TcpListener,
    pub site: Arc<Site>,
    pub max_connections: usize,
    pub active: Arc<AtomicUsize>,
}

impl Service for ImageService {
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut threads: Vec<thread::JoinHandle<()>> = Vec::new();
        loop {
            // Checked first: under a flood the socket is always ready.
            if shutdown.is_triggered() {
                break;
            }
            match shutdown.wait(self.listener.as_fd(), Some(Duration::from_secs(5)))? {
                Wake::Shutdown => break,
                Wake::Timeout => {}
                Wake::Ready => loop {
                    let (stream, peer) = match self.listener.accept() {
                        Ok(c) => c,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            tracing::debug!(target: NAME, "accept failed: {e}");
                            break;
                        }
                    };
                    if self.active.load(Ordering::SeqCst) >= self.max_connections {
                        tracing::warn!(target: NAME, client = %peer, limit = self.max_connections, "too many connections: refused");
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                        let mut s = &stream;
                        let _ = s.write_all(&simple_response(
                            503,
                            "server busy: too many connections\n",
                            false,
                            false,
                        ));
                        continue;
                    }
                    self.active.fetch_add(1, Ordering::SeqCst);
                    let (site, active, stop) =
                        (self.site.clone(), self.active.clone(), shutdown.clone());
                    let spawned = thread::Builder::new().name("http-conn".into()).spawn(move || {
                        if let Err(e) = serve_connection(stream, peer, &site, &stop) {
                            tracing::debug!(target: NAME, client = %peer, "connection ended: {e}");
                        }
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                    match spawned {
                        Ok(h) => threads.push(h),
                        Err(e) => {
                            self.active.fetch_sub(1, Ordering::SeqCst);
                            tracing::warn!(target: NAME, "cannot start a connection thread: {e}");
                        }
                    }
                },
            }
            threads.retain(|h| !h.is_finished());
        }
        drop(self.listener);
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

/// Serve requests on one connection until it closes, idles out, or the
/// server shuts down.
fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    site: &Site,
    shutdown: &Shutdown,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(STALL_TIMEOUT))?;
    let local = match stream.local_addr()? {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(a) => a.ip().to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let conn = Conn {
        stream: &stream,
        site,
        local,
        shutdown,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        // Read until a whole head is buffered.
        loop {
            match http::parse_head(&buf) {
                Ok(Some(_)) => break,
                Ok(None) => {}
                Err(e) => {
                    let status = e.status();
                    let mut s = &stream;
                    s.write_all(&simple_response(status, &format!("{e}\n"), false, false))?;
                    log_request(peer, "-", "-", status, 0, Instant::now());
                    return Ok(());
                }
            }
            // Idle: wait for bytes, or shutdown when nothing is pending.
            let wake = if buf.is_empty() {
                shutdown.wait(stream.as_fd(), Some(site.idle))?
            } else {
                crate::daemon::shutdown::wait_fds(stream.as_fd(), None, Some(site.idle))?
            };
            match wake {
                Wake::Ready => {}
                Wake::Shutdown => return Ok(()),
                Wake::Timeout => {
                    if !buf.is_empty() {
                        let mut s = &stream;
                        let _ = s.write_all(&simple_response(
                            408,
                            "request head not received in time\n",
                            false,
                            false,
                        ));
                    }
                    return Ok(());
                }
            }
            let n = (&stream).read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let started = Instant::now();
        let Ok(Some(req)) = http::parse_head(&buf) else {
            return Ok(());
        };
        let keep_alive = req.keep_alive && !shutdown.is_triggered();
        let head_len = req.head_len;
        let (status, sent) = match req.method {
            Method::Get | Method::Head => respond(&conn, &req, keep_alive)?,
            Method::Other(_) => {
                let mut s = &stream;
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
    shutdown: &'a Shutdown,
}

/// Answer a GET or HEAD; returns the status and the body bytes sent.
fn respond(conn: &Conn<'_>, req: &http::Request<'_>, keep_alive: bool) -> io::Result<(u16, u64)> {
    let (stream, shutdown) = (conn.stream, conn.shutdown);
    let head_only = req.method == Method::Head;
    let range = req.range;
    let (body, ctype) = match resolve(conn.site, req.target, conn.local) {
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
