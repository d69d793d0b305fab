//! The test HTTP server: serves files from memory on host loopback (QEMU's
//! user network reaches it as 10.0.2.2), honours `Range: bytes=N-` and
//! `bytes=N-M`, keeps connections alive as HTTP/1.1 does, can send at a
//! set rate, logs every request with its connection, and injects faults
//! on demand:
//!
//! | fault | what the client sees |
//! |---|---|
//! | file not registered | `404 Not Found` |
//! | [`Fault::Status`] | that status code |
//! | [`Fault::Cut`] | the connection closes after N body bytes |
//! | [`Fault::Stall`] | N body bytes, then silence for a while, then close |
//! | [`Fault::Kill`] | N body bytes, then the server is gone (connection refused) for a while, then back |
//! | [`Fault::LongerThanSaid`] | more body bytes than `Content-Length` announced |
//!
//! Faults are queued per path and consumed by GET requests in order.

use std::{
    collections::{HashMap, VecDeque},
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

/// The largest request head read.
const MAX_REQUEST: usize = 8192;
/// Body bytes written per `write` call.
const CHUNK: usize = 64 * 1024;
/// How long a connection may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A fault to inject into the next GET of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a short body.
    Status(u16),
    /// Close the connection after this many body bytes.
    // Only the server's own tests cut connections; the QEMU cases kill
    // and restart the server instead, which also covers the resume.
    #[cfg_attr(not(test), allow(dead_code))]
    Cut(u64),
    /// Send this many body bytes, go silent for the duration, then close.
    Stall(u64, Duration),
    /// Send this many body bytes, then stop listening for the duration.
    Kill(u64, Duration),
    /// Announce the real length but send this many extra bytes.
    #[cfg_attr(not(test), allow(dead_code))]
    LongerThanSaid(u64),
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The request target.
    pub path: String,
    /// The first byte of a `Range: bytes=N-` request.
    pub range_from: Option<u64>,
    /// The last byte of a `Range: bytes=N-M` request.
    pub range_to: Option<u64>,
    /// Which connection carried it (counted from 1 in accept order).
    pub connection: u64,
    /// The status answered.
    pub status: u16,
    /// Body bytes sent.
    pub sent: u64,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

#[derive(Debug, Default)]
struct Shared {
    files: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    log: Mutex<Vec<Logged>>,
    /// Set by a Kill fault: the accept loop closes the listener until then.
    down_until: Mutex<Option<Instant>>,
    stop: AtomicBool,
    /// Print each request to stderr (the demo).
    verbose: AtomicBool,
    /// Body bytes per second, 0 for as fast as possible.
    rate: std::sync::atomic::AtomicU64,
    /// Connections accepted so far.
    connections: std::sync::atomic::AtomicU64,
}

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct Server {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// Listen on `127.0.0.1:<ephemeral>`.
    pub fn start() -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = thread::spawn(move || accept_loop(listener, port, s));
        Ok(Server {
            port,
            shared,
            thread: Some(thread),
        })
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serve `bytes` at `path`.
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        lock(&self.shared.files).insert(path.into(), Arc::new(bytes));
    }

    /// Queue a fault for the next GET of `path`.
    pub fn fault(&self, path: &str, fault: Fault) {
        lock(&self.shared.faults)
            .entry(path.into())
            .or_default()
            .push_back(fault);
    }

    /// Send bodies at about `bytes_per_sec` (0: as fast as possible), so
    /// that a test can act while a transfer is under way.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.shared.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Print each request to stderr as it completes.
    pub fn verbose(&self, on: bool) {
        self.shared.verbose.store(on, Ordering::Relaxed);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, port: u16, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    while !shared.stop.load(Ordering::Relaxed) {
        let down = *lock(&shared.down_until);
        match (down, &listener) {
            (Some(until), Some(_)) if Instant::now() < until => {
                listener = None; // killed: nobody listens
                continue;
            }
            (Some(until), None) if Instant::now() >= until => {
                match TcpListener::bind(("127.0.0.1", port)) {
                    Ok(l) => {
                        listener = Some(l);
                        *lock(&shared.down_until) = None;
                    }
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
                continue;
            }
            (_, None) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            _ => {}
        }
        let Some(l) = &listener else { continue };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((stream, _)) => {
                let s = shared.clone();
                let id = s.connections.fetch_add(1, Ordering::Relaxed) + 1;
                thread::spawn(move || {
                    let _ = serve(stream, id, &s);
                });
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The parts of a request the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Target.
    pub path: String,
    /// `Range: bytes=N-` start.
    pub range_from: Option<u64>,
    /// `Range: bytes=N-M` end (inclusive).
    pub range_to: Option<u64>,
    /// The connection stays open after the response (HTTP/1.1 without
    /// `Connection: close`).
    pub keep_alive: bool,
}

/// Parse a request head; `None` when it is not a request we serve.
pub fn parse_request(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    if !first.next()?.starts_with("HTTP/1.") || !path.starts_with('/') {
        return None;
    }
    let (mut range_from, mut range_to, mut keep_alive) = (None, None, true);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("range") {
            let spec = value.trim().strip_prefix("bytes=")?;
            let (from, to) = spec.split_once('-')?;
            range_from = Some(from.trim().parse().ok()?);
            range_to = match to.trim() {
                "" => None,
                t => Some(t.parse().ok()?),
            };
        }
        if name.trim().eq_ignore_ascii_case("connection")
            && value.trim().eq_ignore_ascii_case("close")
        {
            keep_alive = false;
        }
    }
    Some(Request {
        method,
        path,
        range_from,
        range_to,
        keep_alive,
    })
}

/// Serve requests on one connection until the client closes it, a
/// request asks to close, or a fault ends it.
fn serve(mut stream: TcpStream, connection: u64, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                buf.drain(..end + 4);
                break head;
            }
            if buf.len() > MAX_REQUEST {
                stream.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return Ok(());
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(req) = parse_request(&head) else {
            stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        };
        let is_head = req.method == "HEAD";
        let file = lock(&shared.files).get(&req.path).cloned();
        let fault = if is_head {
            None
        } else {
            lock(&shared.faults)
                .get_mut(&req.path)
                .and_then(|q| q.pop_front())
        };
        let mut logged = Logged {
            method: req.method.clone(),
            path: req.path.clone(),
            range_from: req.range_from,
            range_to: req.range_to,
            connection,
            status: 0,
            sent: 0,
            fault: fault.clone(),
        };
        // Every fault ends the connection; so does a client's close.
        let keep = req.keep_alive && fault.is_none();
        let result = respond(
            &mut stream,
            shared,
            &req,
            file,
            fault,
            is_head,
            keep,
            &mut logged,
        );
        if shared.verbose.load(Ordering::Relaxed) {
            eprintln!(
                "http: {} {}{} -> {} ({} bytes{})",
                logged.method,
                logged.path,
                logged
                    .range_from
                    .map(|r| format!(
                        " Range: bytes={r}-{}",
                        logged.range_to.map(|t| t.to_string()).unwrap_or_default()
                    ))
                    .unwrap_or_default(),
                logged.status,
                logged.sent,
                logged
                    .fault
                    .as_ref()
                    .map(|f| format!(", fault {f:?}"))
                    .unwrap_or_default()
            );
        }
        let status = logged.status;
        lock(&shared.log).push(logged);
        result?;
        if !keep || status >= 400 {
            return Ok(());
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn respond(
    stream: &mut TcpStream,
    shared: &Shared,
    req: &Request,
    file: Option<Arc<Vec<u8>>>,
    fault: Option<Fault>,
    is_head: bool,
    keep: bool,
    logged: &mut Logged,
) -> std::io::Result<()> {
    let connection = if keep { "keep-alive" } else { "close" };
    if req.method != "GET" && !is_head {
        logged.status = 405;
        return stream.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if let Some(Fault::Status(code)) = fault {
        logged.status = code;
        let body = format!("fault {code}\n");
        let head = format!(
            "HTTP/1.1 {code} Fault\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        return stream.write_all(body.as_bytes());
    }
    let Some(file) = file else {
        logged.status = 404;
        let body = b"not found\n";
        let head = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        if !is_head {
            stream.write_all(body)?;
        }
        return Ok(());
    };
    let len = file.len() as u64;
    let from = req.range_from.unwrap_or(0);
    let last = req.range_to.unwrap_or(u64::MAX).min(len.saturating_sub(1));
    if req.range_from.is_some() && (from >= len || last < from) {
        logged.status = 416;
        let head = format!(
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return stream.write_all(head.as_bytes());
    }
    let head = if req.range_from.is_some() {
        logged.status = 206;
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{last}/{len}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            last + 1 - from
        )
    } else {
        logged.status = 200;
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n")
    };
    let body = if req.range_from.is_some() {
        &file[from as usize..=last as usize]
    } else {
        &file[..]
    };
    stream.write_all(head.as_bytes())?;
    if is_head {
        return Ok(());
    }
    let limit = match &fault {
        Some(Fault::Cut(n)) | Some(Fault::Stall(n, _)) | Some(Fault::Kill(n, _)) => {
            (*n).min(body.len() as u64) as usize
        }
        _ => body.len(),
    };
    let rate = shared.rate.load(Ordering::Relaxed);
    let started = Instant::now();
    for part in body[..limit].chunks(CHUNK) {
        stream.write_all(part)?;
        logged.sent += part.len() as u64;
        if rate > 0 {
            let due = Duration::from_secs_f64(logged.sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                thread::sleep(wait);
            }
        }
    }
    match fault {
        Some(Fault::Stall(_, d)) => {
            thread::sleep(d);
        }
        Some(Fault::Kill(_, d)) => {
            *lock(&shared.down_until) = Some(Instant::now() + d);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Some(Fault::LongerThanSaid(extra)) => {
            let junk = vec![0x5a; extra as usize];
            stream.write_all(&junk)?;
            logged.sent += extra;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(port: u16, path: &str, range: Option<u64>) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let range = range
            .map(|r| format!("Range: bytes={r}-\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{range}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&all[..end]).into_owned(),
            all[end + 4..].to_vec(),
        )
    }

    #[test]
    fn serves_files_ranges_and_404() {
        let srv = Server::start().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        srv.put("/install/image/ze.img", data.clone());
        let (head, body) = get(srv.port(), "/install/image/ze.img", None);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("Content-Length: 200000"));
        assert_eq!(body, data);
        let (head, body) = get(srv.port(), "/install/image/ze.img", Some(150_000));
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(head.contains("Content-Range: bytes 150000-199999/200000"));
        assert_eq!(body, &data[150_000..]);
        let (head, _) = get(srv.port(), "/install/image/ze.img", Some(200_000));
        assert!(head.starts_with("HTTP/1.1 416"), "{head}");
        let (head, _) = get(srv.port(), "/nope", None);
        assert!(head.starts_with("HTTP/1.1 404"), "{head}");
        let log = srv.log();
        assert_eq!(log.len(), 4);
        assert_eq!(log[1].range_from, Some(150_000));
        assert_eq!(log[1].sent, 50_000);
    }

    #[test]
    fn w4_windows_over_one_kept_alive_connection() {
        let srv = Server::start().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        srv.put("/f", data.clone());
        let mut s = TcpStream::connect(("127.0.0.1", srv.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for (a, b) in [(0u64, 4095u64), (8192, 8192), (90_000, 99_999)] {
            write!(
                s,
                "GET /f HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{b}\r\n\r\n"
            )
            .unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut c = [0u8; 1];
                s.read_exact(&mut c).unwrap();
                head.push(c[0]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(head.starts_with("HTTP/1.1 206"), "{head}");
            assert!(head.contains(&format!("Content-Range: bytes {a}-{b}/100000")));
            assert!(head.contains("Connection: keep-alive"));
            let mut body = vec![0u8; (b - a + 1) as usize];
            s.read_exact(&mut body).unwrap();
            assert_eq!(body, &data[a as usize..=b as usize]);
        }
        drop(s);
        let log = srv.log();
        assert_eq!(log.len(), 3);
        assert!(log.iter().all(|l| l.connection == log[0].connection));
        assert_eq!(log[1].range_to, Some(8192));
    }

    #[test]
    fn faults_cut_and_kill_then_recover() {
        let srv = Server::start().unwrap();
        srv.put("/f", vec![1u8; 300_000]);
        srv.fault("/f", Fault::Cut(100_000));
        srv.fault("/f", Fault::Kill(10, Duration::from_millis(500)));
        let (_, body) = get(srv.port(), "/f", None);
        assert_eq!(body.len(), 100_000);
        let (_, body) = get(srv.port(), "/f", None);
        assert_eq!(body.len(), 10);
        // Killed: refused for a while.
        thread::sleep(Duration::from_millis(100));
        assert!(TcpStream::connect(("127.0.0.1", srv.port())).is_err());
        thread::sleep(Duration::from_millis(700));
        let (head, body) = get(srv.port(), "/f", Some(10));
        assert!(head.starts_with("HTTP/1.1 206"));
        assert_eq!(body.len(), 299_990);
    }

    #[test]
    fn status_and_lying_faults() {
        let srv = Server::start().unwrap();
        srv.put("/f", vec![1u8; 100]);
        srv.fault("/f", Fault::Status(503));
        srv.fault("/f", Fault::LongerThanSaid(7));
        let (head, _) = get(srv.port(), "/f", None);
        assert!(head.starts_with("HTTP/1.1 503"));
        let (head, body) = get(srv.port(), "/f", None);
        assert!(head.contains("Content-Length: 100"));
        assert_eq!(body.len(), 107);
    }

    #[test]
    fn request_parsing_rejects_garbage() {
        assert_eq!(parse_request("GET / HTTP/1.1").unwrap().path, "/");
        assert_eq!(
            parse_request("GET /a HTTP/1.1\r\nrange: bytes=5-")
                .unwrap()
                .range_from,
            Some(5)
        );
        for bad in [
            "",
            "GET",
            "GET x HTTP/1.1",
            "GET / FTP/1",
            "GET / HTTP/1.1\r\nRange: items=1-",
        ] {
            assert!(parse_request(bad).is_none(), "{bad:?}");
        }
    }
}
