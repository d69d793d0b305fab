//! `imageserver`: the HTTP/1.1 server of the install (RFC 9110/9112):
//! keep-alive, `GET` and `HEAD`, one byte `Range` (206/416), bodies sent
//! with `sendfile(2)`.
//!
//! ```text
//! imageserver {
//!     image-dir /home/op/.config/ze/appliances/prod;   # where the images are
//!     image ze-20260617-160000.img;   # optional: default the lexicographically last .img
//!     boot-dir /srv/pxe/boot;         # vmlinuz, initrd.img.gz, optional static boot.ipxe
//!     ssh-username admin;             # with ssh-password-hash: /install/database.zefs
//!     ssh-password-hash "$2b$10$…";
//!     interface br0;                  # optional: bind to this interface
//!     address 192.0.2.1;              # optional: listen address (default all)
//!     port 80;
//!     max-connections 64;
//!     idle-timeout 30;                # seconds a keep-alive connection may idle
//! }
//! ```
//!
//! Routes: `/install/image/<name>` (`.img` files of image-dir only; just
//! the configured one when `image` is set), `/install/boot/<file>` (files
//! of boot-dir), `/install/boot/boot.ipxe` (the file if boot-dir has one,
//! else generated per request), `/install/database.zefs` (built at start
//! from the credentials; the password is only ever a bcrypt hash here).
//! Nothing outside these roots is served: the path is percent-decoded per
//! segment with dot segments refused, and files are opened beneath their
//! root by the kernel (`openat2(RESOLVE_BENEATH)`).

pub mod bootscript;

use crate::{
    build,
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginKind, Service, Shutdown, Wake},
    manifest::Manifest,
    provision::servefs::{OpenError, Root},
    timefmt,
    wire::http::{self, Method, RangeRequest},
};
use anyhow::Context as _;
use bootscript::BootScript;
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    fs::File,
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

/// The plugin's name: its config block and log target.
pub const NAME: &str = "imageserver";
/// The registry entry.
pub const KIND: PluginKind = PluginKind {
    name: NAME,
    configure,
};
/// Connections at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// How long a keep-alive connection may idle, by default (seconds).
pub const DEFAULT_IDLE_SECS: u64 = 30;
/// How long a send may make no progress before the connection is dropped.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per `sendfile` call; between calls the drain deadline is checked.
pub const SENDFILE_CHUNK: usize = 8 << 20;
/// The file name of the database route.
pub const DATABASE_NAME: &str = "database.zefs";

/// An `imageserver { … }` block, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub image_dir: PathBuf,
    pub image: Option<String>,
    pub boot_dir: PathBuf,
    pub ssh_username: Option<String>,
    pub ssh_password_hash: Option<String>,
    pub interface: Option<String>,
    pub address: Ipv4Addr,
    pub port: u16,
    pub max_connections: usize,
    pub idle: Duration,
}

fn configure(
    block: &Block<'_>,
    _env: &crate::daemon::PluginEnv,
) -> Result<Box<dyn Plugin>, ConfigError> {
    Ok(Box::new(ImagePlugin {
        config: read_config(block)?,
    }))
}

/// Read an `imageserver` block.
pub fn read_config(block: &Block<'_>) -> Result<ImageConfig, ConfigError> {
    let required = |name: &str| {
        block
            .abs_path(name)?
            .ok_or_else(|| block.error(block.pos(), name, "missing: this setting is required"))
    };
    let image_dir = required("image-dir")?;
    let boot_dir = required("boot-dir")?;
    let image = match block.one("image")? {
        None => None,
        Some(node) => {
            let key = block.child_key("image");
            let a = crate::config::schema::leaf_args(node, &key, 1, "one file name")?;
            if !bootscript::is_plain_name(&a[0]) {
                return Err(ConfigError::new(
                    node.pos,
                    key,
                    format!(
                        "{:?} must be a plain file name (letters, digits, '.', '-', '_', '+')",
                        a[0]
                    ),
                ));
            }
            Some(a[0].clone())
        }
    };
    let ssh_username = block.str("ssh-username")?.map(str::to_string);
    let hash_node = block.one("ssh-password-hash")?;
    let ssh_password_hash = match hash_node {
        None => None,
        Some(node) => {
            let key = block.child_key("ssh-password-hash");
            let a = crate::config::schema::leaf_args(node, &key, 1, "one bcrypt hash")?;
            if !(a[0].starts_with("$2b$") || a[0].starts_with("$2a$") || a[0].starts_with("$2y$"))
                || a[0].len() != 60
            {
                return Err(ConfigError::new(
                    node.pos,
                    key,
                    "expected a bcrypt hash ($2b$10$…, 60 characters); ze install remote writes it from --ssh-password",
                ));
            }
            Some(a[0].clone())
        }
    };
    if let Some(u) = &ssh_username
        && let Err(e) = crate::credentials::validate_username(u)
    {
        return Err(block.error(block.pos(), "ssh-username", e.to_string()));
    }
    if ssh_username.is_some() != ssh_password_hash.is_some() {
        return Err(block.error(
            block.pos(),
            if ssh_username.is_some() {
                "ssh-password-hash"
            } else {
                "ssh-username"
            },
            "ssh-username and ssh-password-hash go together",
        ));
    }
    Ok(ImageConfig {
        image_dir,
        image,
        boot_dir,
        ssh_username,
        ssh_password_hash,
        interface: block.str("interface")?.map(str::to_string),
        address: block.ipv4("address")?.unwrap_or(Ipv4Addr::UNSPECIFIED),
        port: block.number("port", 1..=65535)?.map_or(80, |n| n as u16),
        max_connections: block
            .number("max-connections", 1..=4096)?
            .map_or(DEFAULT_MAX_CONNECTIONS, |n| n as usize),
        idle: Duration::from_secs(
            block
                .number("idle-timeout", 1..=3600)?
                .unwrap_or(DEFAULT_IDLE_SECS),
        ),
    })
}

/// The image the server offers and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub sha256: String,
    pub built: Option<String>,
    pub ze_version: Option<String>,
}

/// The lexicographically last `.img` file (plain name, regular file) in `dir`.
pub fn latest_image(dir: &Path) -> io::Result<Option<String>> {
    let mut best: Option<String> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.ends_with(".img") || !bootscript::is_plain_name(&name) {
            continue;
        }
        if !entry.file_type()?.is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|b| name > *b) {
            best = Some(name);
        }
    }
    Ok(best)
}

/// The `database.zefs` served to installers: one admin user with the
/// given bcrypt hash, plus creation time and version (as `ze init` writes).
pub fn build_database(username: &str, password_hash: &str, now: i64) -> anyhow::Result<Vec<u8>> {
    Ok(crate::zefs::new_database_with_hash(username, password_hash, now)?.to_bytes())
}

#[derive(Debug)]
struct ImagePlugin {
    config: ImageConfig,
}

/// What the request handlers share.
struct Site {
    image_root: Root,
    boot_root: Root,
    configured_image: Option<String>,
    database: Option<Arc<Vec<u8>>>,
    port: u16,
    idle: Duration,
    /// The image last hashed, by (name, length, mtime).
    image_cache: Mutex<Option<ImageInfo>>,
}

impl Site {
    fn image_info(&self, name: &str) -> anyhow::Result<ImageInfo> {
        let (mut file, meta) = self.image_root.open_file(name).map_err(|e| {
            anyhow::anyhow!("image {name} in {}: {e}", self.image_root.path().display())
        })?;
        let modified = meta.modified().ok();
        if let Some(info) = self
            .image_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && info.name == name
            && info.len == meta.len()
            && info.modified == modified
        {
            return Ok(info.clone());
        }
        let (_, sha256) = crate::digest::sha256_stream(&mut file, &mut |_| Ok(()))
            .with_context(|| format!("cannot read image {name}"))?;
        let manifest_path = self.image_root.path().join("build.json");
        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => match Manifest::parse(&text) {
                Ok(m) if m.image == name => {
                    if let Some(sum) = &m.sha256
                        && !sum.eq_ignore_ascii_case(&sha256)
                    {
                        tracing::warn!(
                            target: NAME,
                            image = name,
                            manifest = %manifest_path.display(),
                            "build.json names another sha256 than the image has: the image changed after it was built"
                        );
                    }
                    Some(m)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(target: NAME, manifest = %manifest_path.display(), "build.json is not valid: {e}");
                    None
                }
            },
            Err(_) => None,
        };
        let info = ImageInfo {
            name: name.to_string(),
            len: meta.len(),
            modified,
            sha256,
            built: manifest.as_ref().map(|m| m.built.clone()),
            ze_version: manifest.as_ref().map(|m| m.ze_version.clone()),
        };
        *self.image_cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.clone());
        Ok(info)
    }

    /// The image `ze.image` names: the configured one, else the last `.img`.
    fn current_image(&self) -> anyhow::Result<String> {
        match &self.configured_image {
            Some(n) => Ok(n.clone()),
            None => latest_image(self.image_root.path())?
                .with_context(|| format!("no .img file in {}", self.image_root.path().display())),
        }
    }
}

fn log_image(info: &ImageInfo) {
    tracing::info!(
        target: NAME,
        image = info.name.as_str(),
        built = info.built.as_deref().unwrap_or("unknown"),
        "ze-version" = info.ze_version.as_deref().unwrap_or("unknown"),
        sha256 = info.sha256.as_str(),
        "image to install"
    );
}

impl Plugin for ImagePlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let c = self.config;
        let image_root = Root::open(&c.image_dir).context("the image directory")?;
        let boot_root = Root::open(&c.boot_dir).context("the boot directory")?;
        let database = match (&c.ssh_username, &c.ssh_password_hash) {
            (Some(u), Some(h)) => Some(Arc::new(build_database(u, h, timefmt::now())?)),
            _ => None,
        };
        let site = Site {
            image_root,
            boot_root,
            configured_image: c.image.clone(),
            database,
            port: c.port,
            idle: c.idle,
            image_cache: Mutex::new(None),
        };
        let name = site.current_image()?;
        let info = site.image_info(&name)?;
        log_image(&info);
        for f in [bootscript::KERNEL, bootscript::INITRD] {
            if let Err(e) = site.boot_root.open_file(f) {
                tracing::warn!(
                    target: NAME,
                    file = %c.boot_dir.join(f).display(),
                    "boot file not servable: {e}"
                );
            }
        }
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        if let Some(i) = &c.interface {
            s.bind_device(Some(i.as_bytes())).with_context(|| {
                format!("cannot bind to interface {i} (does it exist? are you root?)")
            })?;
        }
        let addr = SocketAddrV4::new(c.address, c.port);
        s.bind(&addr.into())
            .with_context(|| format!("cannot listen on TCP {addr}"))?;
        s.listen(128)?;
        let listener: TcpListener = s.into();
        listener.set_nonblocking(true)?;
        tracing::info!(target: NAME, listen = %addr, "listening");
        Ok(Box::new(ImageService {
            listener,
            site: Arc::new(site),
            max_connections: c.max_connections,
            active: Arc::new(AtomicUsize::new(0)),
        }))
    }
}

struct ImageService {
    listener: TcpListener,
    site: Arc<Site>,
    max_connections: usize,
    active: Arc<AtomicUsize>,
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

/// A response body.
enum Body {
    File(File, u64),
    Bytes(Arc<Vec<u8>>),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::File(_, n) => *n,
            Body::Bytes(b) => b.len() as u64,
        }
    }
}

/// What a request resolved to.
enum Resolved {
    Body {
        body: Body,
        content_type: &'static str,
    },
    Error(u16, String),
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".ipxe") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

fn open_error(e: OpenError) -> Resolved {
    match e {
        OpenError::NotFound | OpenError::NotAFile => Resolved::Error(404, "not found\n".into()),
        OpenError::Forbidden => Resolved::Error(403, "forbidden\n".into()),
        OpenError::Io(e) => Resolved::Error(500, format!("{e}\n")),
    }
}

fn resolve(site: &Site, target: &str, local: Ipv4Addr) -> Resolved {
    let segments = match http::path_segments(target) {
        Ok(s) => s,
        Err(e) => return Resolved::Error(400, format!("{e}\n")),
    };
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    match parts.as_slice() {
        ["install", "image", name] => {
            let allowed = match &site.configured_image {
                Some(c) => c == name,
                None => name.ends_with(".img"),
            };
            if !allowed {
                return Resolved::Error(404, "not found\n".into());
            }
            match site.image_root.open_file(name) {
                Ok((f, m)) => Resolved::Body {
                    body: Body::File(f, m.len()),
                    content_type: "application/octet-stream",
                },
                Err(e) => open_error(e),
            }
        }
        ["install", "boot", name] => match site.boot_root.open_file(name) {
            Ok((f, m)) => Resolved::Body {
                body: Body::File(f, m.len()),
                content_type: content_type(name),
            },
            Err(OpenError::NotFound) if *name == "boot.ipxe" => match generated_script(site, local)
            {
                Ok(text) => Resolved::Body {
                    body: Body::Bytes(Arc::new(text.into_bytes())),
                    content_type: "text/plain; charset=utf-8",
                },
                Err(e) => {
                    tracing::warn!(target: NAME, "cannot generate boot.ipxe: {e:#}");
                    Resolved::Error(500, format!("cannot generate boot.ipxe: {e:#}\n"))
                }
            },
            Err(e) => open_error(e),
        },
        ["install", db] if *db == DATABASE_NAME => match &site.database {
            Some(bytes) => Resolved::Body {
                body: Body::Bytes(bytes.clone()),
                content_type: "application/octet-stream",
            },
            None => Resolved::Error(
                404,
                "no credentials configured (ssh-username, ssh-password-hash)\n".into(),
            ),
        },
        _ => Resolved::Error(404, "not found\n".into()),
    }
}

fn generated_script(site: &Site, local: Ipv4Addr) -> anyhow::Result<String> {
    let name = site.current_image()?;
    let info = site.image_info(&name)?;
    Ok(BootScript {
        server: local,
        port: site.port,
        image: &info.name,
        sha256: Some(&info.sha256),
    }
    .render())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::brace;

    #[test]
    fn latest_image_is_the_lexicographically_last_plain_img() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "ze-20260101-000000.img",
            "ze-20261231-235959.img",
            "zz bad.img",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        std::fs::create_dir(d.path().join("zzz.img")).unwrap();
        assert_eq!(
            latest_image(d.path()).unwrap().as_deref(),
            Some("ze-20261231-235959.img")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(latest_image(empty.path()).unwrap(), None);
    }

    #[test]
    fn r9_r12_database_holds_the_hash_never_a_plaintext() {
        let hash = crate::credentials::hash_password("hunter2").unwrap();
        let bytes = build_database("admin", &hash, 1_781_712_000).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
        let db = crate::zefs::Zefs::parse(&bytes).unwrap();
        let user = db.user("admin").unwrap();
        assert_eq!(user.role, "admin");
        assert!(crate::credentials::verify_password(
            "hunter2",
            &user.password_hash
        ));
    }

    #[test]
    fn config_errors() {
        let read = |t: &str| {
            let doc = brace::parse(t).unwrap();
            let b = Block::new(&doc.nodes[0], NAME).unwrap();
            read_config(&b).and_then(|c| b.finish().map(|_| c))
        };
        let ok = "imageserver { image-dir /i; boot-dir /b; }";
        assert_eq!(read(ok).unwrap().port, 80);
        assert_eq!(
            read("imageserver { image-dir /i; boot-dir /b; image \"a b.img\"; }")
                .unwrap_err()
                .to_string(),
            "1:42: imageserver.image: \"a b.img\" must be a plain file name (letters, digits, '.', '-', '_', '+')"
        );
        assert_eq!(
            read("imageserver { image-dir /i; boot-dir /b; ssh-username admin; }")
                .unwrap_err()
                .to_string(),
            "1:1: imageserver.ssh-password-hash: ssh-username and ssh-password-hash go together"
        );
        assert_eq!(
            read("imageserver { image-dir /i; boot-dir /b; ssh-username admin; ssh-password-hash plain; }").unwrap_err().to_string(),
            "1:62: imageserver.ssh-password-hash: expected a bcrypt hash ($2b$10$…, 60 characters); ze install remote writes it from --ssh-password"
        );
        assert_eq!(
            read("imageserver { boot-dir /b; }")
                .unwrap_err()
                .to_string(),
            "1:1: imageserver.image-dir: missing: this setting is required"
        );
    }
}
