//! In-memory stand-ins for the hal, for tests (feature `fake`).
//!
//! [`FakeSys`] is a tree of small files, as captured from a real machine's
//! `/sys` and `/proc`; [`FakeClock`] is a clock the test moves by hand;
//! [`FakeOs`] is a whole scripted machine (consoles, links, a DHCP and an
//! HTTP server, disks, mounts, files, power) whose clock moves only when
//! the installer sleeps or waits.

use crate::{
    Error,
    os::{
        AddrInfo, BlockDev, BlockRead, ConsoleInput, FileOut, LinkInfo, NetError, Os, PacketConn,
        PowerAction, RouteInfo, TcpConn,
    },
    sysfs::SysFs,
    time::{Clock, Instant},
};
use core::net::Ipv4Addr;
use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    format,
    rc::Rc,
    string::{String, ToString},
    vec,
    vec::Vec,
};

/// A read-only tree of files held in memory. Directories exist implicitly
/// when some file lies below them.
#[derive(Debug, Default, Clone)]
pub struct FakeSys {
    files: BTreeMap<String, Vec<u8>>,
}

impl FakeSys {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the file at the absolute `path`.
    pub fn file(&mut self, path: &str, content: &str) -> &mut Self {
        self.bytes(path, content.as_bytes())
    }

    /// Add (or replace) a file with binary content.
    pub fn bytes(&mut self, path: &str, content: &[u8]) -> &mut Self {
        assert!(path.starts_with('/'), "fake paths are absolute: {path}");
        self.files.insert(path.into(), content.to_vec());
        self
    }

    /// Remove a file; returns whether it was there.
    pub fn remove(&mut self, path: &str) -> bool {
        self.files.remove(path).is_some()
    }
}

impl SysFs for FakeSys {
    fn read(&self, path: &str, buf: &mut [u8]) -> Result<usize, Error> {
        let content = self.files.get(path).ok_or(Error::NotFound)?;
        let dst = buf.get_mut(..content.len()).ok_or(Error::TooLarge)?;
        dst.copy_from_slice(content);
        Ok(content.len())
    }

    fn list(&self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Error> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let mut seen: Vec<&str> = Vec::new();
        for key in self.files.keys() {
            if let Some(rest) = key.strip_prefix(&prefix) {
                let child = rest.split('/').next().unwrap_or(rest);
                if !child.is_empty() && seen.last() != Some(&child) && !seen.contains(&child) {
                    seen.push(child);
                }
            }
        }
        if seen.is_empty() {
            return Err(Error::NotFound);
        }
        for child in seen {
            each(child);
        }
        Ok(())
    }
}

/// `/sys/block` of a QEMU 7.2 q35 machine under the hardware-profile
/// kernel, as read there (`ze_hal::block` module docs): `vda`
/// (`virtio-blk-pci,serial=VIRT0SERIAL1`), `nvme0n1`
/// (`nvme,serial=NVME0SERIAL1`), `sda` (`ide-hd` on `ahci`,
/// `serial=SATA0SERIAL1,model=Samsung SSD 870 EVO 1TB,wwn=0x5002538f4130a1b2`)
/// and `sdb` (`usb-storage,serial=USB0SERIAL1,removable=on` on `qemu-xhci`),
/// each 64 MiB. Paths through `..` are kept as the kernel resolves them
/// from `device`, literally: this tree does not follow links.
pub fn qemu_disk_ids(sys: &mut FakeSys) {
    for (name, removable) in [("vda", 0), ("nvme0n1", 0), ("sda", 0), ("sdb", 1)] {
        sys.file(&format!("/sys/block/{name}/size"), "131072\n")
            .file(
                &format!("/sys/block/{name}/removable"),
                &format!("{removable}\n"),
            )
            .file(&format!("/sys/block/{name}/ro"), "0\n");
    }
    sys.file("/sys/block/vda/serial", "VIRT0SERIAL1")
        .file("/sys/block/vda/device/vendor", "0x1af4\n");
    sys.file(
        "/sys/block/nvme0n1/wwid",
        "nvme.1b36-4e564d453053455249414c31-51454d55204e564d65204374726c-00000001\n",
    )
    .file("/sys/block/nvme0n1/nsid", "1\n")
    .file(
        "/sys/block/nvme0n1/device/model",
        &format!("{:<40}\n", "QEMU NVMe Ctrl"),
    )
    .file(
        "/sys/block/nvme0n1/device/serial",
        &format!("{:<20}\n", "NVME0SERIAL1"),
    )
    .file("/sys/block/nvme0n1/device/firmware_rev", "7.2.22  \n")
    .file("/sys/block/nvme0n1/device/transport", "pcie\n");
    let serial = format!("{:<20}", "SATA0SERIAL1");
    let model = format!("{:<40}", "Samsung SSD 870 EVO 1TB");
    let mut pg80 = vec![0x00, 0x80, 0x00, 0x14];
    pg80.extend_from_slice(serial.as_bytes());
    let mut pg83 = vec![0x00, 0x83, 0x00, 0x6c, 0x02, 0x00, 0x00, 0x14];
    pg83.extend_from_slice(serial.as_bytes());
    pg83.extend_from_slice(&[0x02, 0x01, 0x00, 0x44]);
    pg83.extend_from_slice(format!("ATA     {model}{serial}").as_bytes());
    pg83.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
    pg83.extend_from_slice(&[0x50, 0x02, 0x53, 0x8f, 0x41, 0x30, 0xa1, 0xb2]);
    sys.file("/sys/block/sda/device/vendor", "ATA     \n")
        .file(
            "/sys/block/sda/device/model",
            &format!("{}\n", &model[..16]),
        )
        .file("/sys/block/sda/device/rev", "2.5+\n")
        .file("/sys/block/sda/device/type", "0\n")
        .file("/sys/block/sda/device/wwid", "naa.5002538f4130a1b2\n")
        .bytes("/sys/block/sda/device/vpd_pg80", &pg80)
        .bytes("/sys/block/sda/device/vpd_pg83", &pg83)
        .file("/sys/block/sda/device/scsi_device/0:0:0:0/uevent", "");
    sys.file("/sys/block/sdb/device/vendor", "QEMU    \n")
        .file("/sys/block/sdb/device/model", "QEMU HARDDISK   \n")
        .file("/sys/block/sdb/device/rev", "2.5+\n")
        .file("/sys/block/sdb/device/type", "0\n")
        .file("/sys/block/sdb/device/scsi_device/12:0:0:0/uevent", "")
        .file("/sys/block/sdb/device/../../../bInterfaceClass", "08\n")
        .file("/sys/block/sdb/device/../../../../serial", "USB0SERIAL1\n")
        .file("/sys/block/sdb/device/../../../../manufacturer", "QEMU\n")
        .file(
            "/sys/block/sdb/device/../../../../product",
            "QEMU USB HARDDRIVE\n",
        );
}

/// A monotonic clock that only moves when the test says so.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: Cell<u64>,
}

impl FakeClock {
    /// A clock reading `millis`.
    pub fn at(millis: u64) -> Self {
        FakeClock {
            now: Cell::new(millis),
        }
    }

    /// Move the clock forward.
    pub fn advance(&self, by: core::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now.set(self.now.get().saturating_add(ms));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.now.get())
    }
}

/// A scripted HTTP response of [`FakeOs`]'s server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeResponse {
    /// The bytes sent, head and body.
    pub bytes: Vec<u8>,
    /// After this many bytes, close the connection (a cut).
    pub cut_at: Option<usize>,
    /// After this many bytes, go silent (a stall: every recv times out).
    pub stall_at: Option<usize>,
}

impl FakeResponse {
    /// A complete response: `status` with `body` and a correct
    /// Content-Length (and Content-Range for 206).
    pub fn new(status: u16, body: &[u8], range: Option<(u64, u64)>) -> Self {
        let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
        if let Some((first, total)) = range {
            head.push_str(&format!(
                "Content-Range: bytes {first}-{}/{total}\r\n",
                total - 1
            ));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        FakeResponse {
            bytes,
            cut_at: None,
            stall_at: None,
        }
    }

    /// Serve `file` for a request from byte `from` (200 or 206).
    pub fn file(file: &[u8], from: u64) -> Self {
        if from == 0 {
            Self::new(200, file, None)
        } else {
            let body = file.get(from as usize..).unwrap_or_default();
            Self::new(206, body, Some((from, file.len() as u64)))
        }
    }

    /// Serve `file` for `req` as an HTTP/1.1 server does: its `Range`
    /// (`bytes=N-` or `bytes=N-M`: 206 with `Content-Range`; past the end:
    /// 416), and keep-alive unless the request asked to close.
    pub fn serve(file: &[u8], req: &FakeRequest) -> Self {
        let total = file.len() as u64;
        let from = req.range_from.unwrap_or(0);
        let last = req
            .range_to
            .unwrap_or(total.saturating_sub(1))
            .min(total.saturating_sub(1));
        let connection = if req.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        if req.range_from.is_some() && (from >= total || last < from) {
            let head = format!(
                "HTTP/1.1 416 X\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: {connection}\r\n\r\n"
            );
            return FakeResponse {
                bytes: head.into_bytes(),
                cut_at: None,
                stall_at: None,
            };
        }
        let (status, body, range) = match req.range_from {
            None => (200, file, String::new()),
            Some(_) => (
                206,
                file.get(from as usize..=last as usize).unwrap_or_default(),
                format!("Content-Range: bytes {from}-{last}/{total}\r\n"),
            ),
        };
        let mut bytes = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{range}Connection: {connection}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        FakeResponse {
            bytes,
            cut_at: None,
            stall_at: None,
        }
    }
}

/// One request the fake server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRequest {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The target.
    pub path: String,
    /// `Range: bytes=N-` or `bytes=N-M`: N.
    pub range_from: Option<u64>,
    /// `Range: bytes=N-M`: M.
    pub range_to: Option<u64>,
    /// No `Connection: close`: the client keeps the connection.
    pub keep_alive: bool,
    /// How many requests this connection carried before this one.
    pub on_connection: u32,
}

/// Answers a request.
pub type HttpHandler = Box<dyn FnMut(&FakeRequest) -> FakeResponse>;
/// Answers a packet sent on a packet socket with packets to receive.
pub type PacketHandler = Box<dyn FnMut(u32, &[u8]) -> Vec<Vec<u8>>>;

/// A block device of [`FakeOs`].
#[derive(Debug, Clone, Default)]
pub struct FakeDiskState {
    /// The content.
    pub data: Vec<u8>,
    /// The node of partition 4 that appears after `BLKRRPART`.
    pub partition_node: String,
    /// `BLKRRPART` fails with EBUSY this many times first.
    pub busy: u32,
    /// Reads reaching this offset fail with EIO (a scratched CD).
    pub bad_from: Option<u64>,
    /// `zero_range` fails with EOPNOTSUPP (a device without write-zeroes
    /// whose driver refuses the ioctl).
    pub no_zero_range: bool,
}

/// Everything [`FakeOs`] remembers.
pub struct FakeState {
    /// `/sys`, `/proc`.
    pub sys: FakeSys,
    /// Milliseconds on the monotonic clock.
    pub now: u64,
    /// Milliseconds each TCP receive or media read takes.
    pub recv_ms: u64,
    /// What was written to the consoles.
    pub console: Vec<u8>,
    /// Typed input: (at millis, bytes), in order.
    pub input: std::collections::VecDeque<(u64, Vec<u8>)>,
    /// Whether the consoles are in raw mode.
    pub raw: bool,
    /// Network interfaces.
    pub links: Vec<LinkInfo>,
    /// Routes.
    pub routes: Vec<RouteInfo>,
    /// Addresses.
    pub addrs: Vec<AddrInfo>,
    /// The install server's address; connecting elsewhere is unreachable.
    pub server: Option<(Ipv4Addr, u16)>,
    /// Connecting needs a default route.
    pub needs_route: bool,
    /// The next this-many connects are refused.
    pub refuse: u32,
    /// Connects before this time (ms) are refused: a server that starts late.
    pub up_at: Option<u64>,
    /// The HTTP server.
    pub http: Option<HttpHandler>,
    /// Every request seen.
    pub requests: Vec<FakeRequest>,
    /// TCP connections made to the server.
    pub connects: u32,
    /// The server silently closes a kept-alive connection after this many
    /// requests (its idle timeout, as the client sees it).
    pub drop_keepalive_after: Option<u32>,
    /// The DHCP (or other) server on packet sockets.
    pub packets: Option<PacketHandler>,
    /// Block devices by path.
    pub disks: BTreeMap<String, FakeDiskState>,
    /// Device nodes and directories that exist.
    pub nodes: Vec<String>,
    /// Files written, by path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// (device, target) mounted.
    pub mounts: Vec<(String, String)>,
    /// Every effect in order, for assertions: `write vda 0+512`,
    /// `sync /dev/vda`, `rrpart /dev/vda`, `mount`, `rename a b`, ...
    pub events: Vec<String>,
    /// The power action taken.
    pub power: Option<PowerAction>,
    /// The filesystem on a device node (`/dev/sdb1` → `exfat`): mounting
    /// it as another type fails with EINVAL, as the kernel does.
    pub fstypes: BTreeMap<String, String>,
    /// efivarfs files written, by path (attributes + data).
    pub efivars: BTreeMap<String, Vec<u8>>,
    /// efivarfs files removed, in order.
    pub efivars_removed: Vec<String>,
    /// The firmware refuses variable writes (EIO, as some do when their
    /// NVRAM is full or locked).
    pub efivar_refuse: bool,
}

impl core::fmt::Debug for FakeState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FakeState")
            .field("now", &self.now)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Default for FakeState {
    fn default() -> Self {
        FakeState {
            sys: FakeSys::new(),
            now: 1_000,
            recv_ms: 1,
            console: Vec::new(),
            input: Default::default(),
            raw: false,
            links: Vec::new(),
            routes: Vec::new(),
            addrs: Vec::new(),
            server: None,
            needs_route: true,
            refuse: 0,
            up_at: None,
            http: None,
            requests: Vec::new(),
            connects: 0,
            drop_keepalive_after: None,
            packets: None,
            disks: BTreeMap::new(),
            nodes: Vec::new(),
            files: BTreeMap::new(),
            mounts: Vec::new(),
            events: Vec::new(),
            power: None,
            fstypes: BTreeMap::new(),
            efivars: BTreeMap::new(),
            efivars_removed: Vec::new(),
            efivar_refuse: false,
        }
    }
}

/// An in-memory [`Os`]: a scripted machine for whole-install tests.
#[derive(Debug, Clone, Default)]
pub struct FakeOs {
    /// The shared state; tests set it up and inspect it.
    pub state: Rc<RefCell<FakeState>>,
    sys: FakeSys,
}

impl FakeOs {
    /// A machine with `sys` as its `/sys` and `/proc`.
    pub fn new(sys: FakeSys) -> Self {
        let state = FakeState {
            sys: sys.clone(),
            ..FakeState::default()
        };
        FakeOs {
            state: Rc::new(RefCell::new(state)),
            sys,
        }
    }

    /// Borrow the state.
    pub fn st(&self) -> std::cell::RefMut<'_, FakeState> {
        self.state.borrow_mut()
    }

    /// Add a whole disk `name` of `size` bytes with its `/sys/block` entry
    /// and its partition-4 node name.
    pub fn add_disk(&mut self, name: &str, size: u64, partition_node: &str) {
        self.add_device(name, vec![0xee; size as usize], false, false);
        let mut st = self.st();
        if let Some(d) = st.disks.get_mut(&format!("/dev/{name}")) {
            d.partition_node = partition_node.into();
        }
    }

    /// Add a whole block device `name` holding `data` (a CD with an ISO, a
    /// USB stick), with its `/sys/block` entry: `removable`, `ro`, and the
    /// size in 512-byte sectors (rounded up, as a CD's 2048-byte blocks are).
    pub fn add_device(&mut self, name: &str, data: Vec<u8>, removable: bool, ro: bool) {
        self.sys
            .file(
                &format!("/sys/block/{name}/size"),
                &format!("{}\n", (data.len() as u64).div_ceil(512)),
            )
            .file(
                &format!("/sys/block/{name}/removable"),
                &format!("{}\n", u8::from(removable)),
            )
            .file(
                &format!("/sys/block/{name}/ro"),
                &format!("{}\n", u8::from(ro)),
            );
        let mut st = self.st();
        st.sys = self.sys.clone();
        st.disks.insert(
            format!("/dev/{name}"),
            FakeDiskState {
                data,
                partition_node: String::new(),
                busy: 0,
                bad_from: None,
                no_zero_range: false,
            },
        );
        st.nodes.push(format!("/dev/{name}"));
    }

    /// Replace a file of `/sys` or `/proc`.
    pub fn sys_file(&mut self, path: &str, content: &str) {
        self.sys_bytes(path, content.as_bytes());
    }

    /// Replace a file of `/sys` with binary content (an efivarfs variable).
    pub fn sys_bytes(&mut self, path: &str, content: &[u8]) {
        self.sys.bytes(path, content);
        self.st().sys = self.sys.clone();
    }

    /// Everything written to the consoles, as text.
    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&self.state.borrow().console).into_owned()
    }
}

fn parse_fake_request(bytes: &[u8]) -> Option<FakeRequest> {
    let text = core::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let (mut range_from, mut range_to, mut keep_alive) = (None, None, true);
    for l in lines {
        if let Some(v) = l.strip_prefix("Range: bytes=") {
            let (a, b) = v.split_once('-')?;
            range_from = a.parse().ok();
            range_to = b.parse().ok();
        }
        if l.eq_ignore_ascii_case("Connection: close") {
            keep_alive = false;
        }
    }
    Some(FakeRequest {
        method,
        path,
        range_from,
        range_to,
        keep_alive,
        on_connection: 0,
    })
}

/// A TCP connection to the fake server.
#[derive(Debug)]
pub struct FakeTcp {
    state: Rc<RefCell<FakeState>>,
    response: Option<FakeResponse>,
    at: usize,
    /// Requests on this connection so far.
    requests: u32,
    /// The server closed this connection after its last response.
    closed: bool,
}

impl TcpConn for FakeTcp {
    fn send_all(&mut self, bytes: &[u8], _timeout: core::time::Duration) -> Result<(), NetError> {
        if self.closed {
            // The kernel takes the bytes; the peer has gone: the next
            // receive sees the end of the stream.
            self.response = Some(FakeResponse {
                bytes: Vec::new(),
                cut_at: Some(0),
                stall_at: None,
            });
            self.at = 0;
            return Ok(());
        }
        let mut req = parse_fake_request(bytes).ok_or(NetError::Reset)?;
        req.on_connection = self.requests;
        self.requests += 1;
        let mut st = self.state.borrow_mut();
        st.requests.push(req.clone());
        let mut handler = st.http.take();
        drop(st);
        let mut resp = match handler.as_mut() {
            Some(h) => h(&req),
            None => FakeResponse::new(404, b"", None),
        };
        self.state.borrow_mut().http = handler;
        if req.method == "HEAD" {
            // Keep the head only.
            if let Some(end) = resp.bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                resp.bytes.truncate(end + 4);
            }
        }
        let head_end = resp
            .bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(resp.bytes.len());
        let head = String::from_utf8_lossy(&resp.bytes[..head_end]).to_ascii_lowercase();
        let drop_after = self.state.borrow().drop_keepalive_after;
        if !req.keep_alive
            || head.contains("connection: close")
            || drop_after.is_some_and(|n| self.requests >= n)
        {
            self.closed = true;
        }
        self.response = Some(resp);
        self.at = 0;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], timeout: core::time::Duration) -> Result<usize, NetError> {
        let ms = self.state.borrow().recv_ms;
        let Some(resp) = &self.response else {
            self.state.borrow_mut().now += timeout.as_millis() as u64;
            return Err(NetError::TimedOut);
        };
        if resp.cut_at.is_some_and(|c| self.at >= c) {
            return Ok(0);
        }
        if resp.stall_at.is_some_and(|c| self.at >= c) {
            self.state.borrow_mut().now += timeout.as_millis() as u64;
            return Err(NetError::TimedOut);
        }
        let mut end = resp.bytes.len();
        for limit in [resp.cut_at, resp.stall_at].into_iter().flatten() {
            end = end.min(limit);
        }
        let n = buf.len().min(64 * 1024).min(end.saturating_sub(self.at));
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), resp.bytes.get(self.at..self.at + n)) {
            dst.copy_from_slice(src);
        }
        self.at += n;
        self.state.borrow_mut().now += ms;
        Ok(n)
    }
}

/// A packet socket on a fake interface.
#[derive(Debug)]
pub struct FakePacket {
    state: Rc<RefCell<FakeState>>,
    index: u32,
    queue: std::collections::VecDeque<Vec<u8>>,
}

impl PacketConn for FakePacket {
    fn send(&mut self, packet: &[u8]) -> Result<(), NetError> {
        let mut handler = self.state.borrow_mut().packets.take();
        if let Some(h) = handler.as_mut() {
            self.queue.extend(h(self.index, packet));
        }
        self.state.borrow_mut().packets = handler;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], timeout: core::time::Duration) -> Result<usize, NetError> {
        match self.queue.pop_front() {
            Some(p) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Ok(n)
            }
            None => {
                self.state.borrow_mut().now += timeout.as_millis().max(1) as u64;
                Err(NetError::TimedOut)
            }
        }
    }
}

/// A fake block device.
#[derive(Debug)]
pub struct FakeDisk {
    state: Rc<RefCell<FakeState>>,
    path: String,
}

impl BlockDev for FakeDisk {
    fn size(&mut self) -> Result<u64, Error> {
        let st = self.state.borrow();
        Ok(st.disks.get(&self.path).ok_or(Error::NotFound)?.data.len() as u64)
    }

    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let path = self.path.clone();
        let d = st.disks.get_mut(&path).ok_or(Error::NotFound)?;
        let at = offset as usize;
        let dst = d.data.get_mut(at..at + bytes.len()).ok_or(Error::Os(28))?;
        dst.copy_from_slice(bytes);
        st.events
            .push(format!("write {path} {offset}+{}", bytes.len()));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        let path = self.path.clone();
        self.state.borrow_mut().events.push(format!("sync {path}"));
        Ok(())
    }

    fn reread_partitions(&mut self) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let path = self.path.clone();
        st.events.push(format!("rrpart {path}"));
        let d = st.disks.get_mut(&path).ok_or(Error::NotFound)?;
        if d.busy > 0 {
            d.busy -= 1;
            return Err(Error::Os(16));
        }
        // The kernel finds partitions only where there is a table.
        let has_table = d.data.get(512..520) == Some(&b"EFI PART"[..]);
        let node = d.partition_node.clone();
        st.nodes.retain(|n| *n != node);
        if has_table && !node.is_empty() {
            st.nodes.push(node);
        }
        Ok(())
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let path = self.path.clone();
        let d = st.disks.get_mut(&path).ok_or(Error::NotFound)?;
        if d.no_zero_range {
            return Err(Error::Os(95));
        }
        let (at, n) = (offset as usize, len as usize);
        d.data.get_mut(at..at + n).ok_or(Error::Os(22))?.fill(0);
        st.events.push(format!("zero {path} {offset}+{len}"));
        Ok(())
    }

    fn add_partition(&mut self, number: u8, start: u64, len: u64) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let path = self.path.clone();
        st.events
            .push(format!("addpart {path} {number} {start}+{len}"));
        let d = st.disks.get(&path).ok_or(Error::NotFound)?;
        if start.saturating_add(len) > d.data.len() as u64 {
            return Err(Error::Os(22));
        }
        let node = d.partition_node.clone();
        if !node.is_empty() && !st.nodes.contains(&node) {
            st.nodes.push(node);
        }
        Ok(())
    }

    fn remove_partition(&mut self, number: u8) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        let path = self.path.clone();
        st.events.push(format!("delpart {path} {number}"));
        let node = st
            .disks
            .get(&path)
            .ok_or(Error::NotFound)?
            .partition_node
            .clone();
        st.nodes.retain(|n| *n != node);
        Ok(())
    }
}

/// A fake block device opened read-only.
#[derive(Debug)]
pub struct FakeMedia {
    state: Rc<RefCell<FakeState>>,
    path: String,
}

impl BlockRead for FakeMedia {
    fn size(&mut self) -> Result<u64, Error> {
        let st = self.state.borrow();
        Ok(st.disks.get(&self.path).ok_or(Error::NotFound)?.data.len() as u64)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let mut st = self.state.borrow_mut();
        st.now += st.recv_ms;
        let d = st.disks.get(&self.path).ok_or(Error::NotFound)?;
        if d.bad_from
            .is_some_and(|bad| offset.saturating_add(buf.len() as u64) > bad)
        {
            return Err(Error::Os(5));
        }
        let at = (offset as usize).min(d.data.len());
        let n = buf.len().min(d.data.len() - at);
        buf[..n].copy_from_slice(&d.data[at..at + n]);
        Ok(n)
    }
}

/// A file being written on a fake filesystem.
#[derive(Debug)]
pub struct FakeFile {
    state: Rc<RefCell<FakeState>>,
    path: String,
}

impl FileOut for FakeFile {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut st = self.state.borrow_mut();
        st.files
            .entry(self.path.clone())
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }
    fn sync(&mut self) -> Result<(), Error> {
        let path = self.path.clone();
        self.state.borrow_mut().events.push(format!("fsync {path}"));
        Ok(())
    }
}

impl Os for FakeOs {
    type Tcp = FakeTcp;
    type Packet = FakePacket;
    type Disk = FakeDisk;
    type Media = FakeMedia;
    type File = FakeFile;
    type Sys = FakeSys;

    fn sys(&self) -> &FakeSys {
        &self.sys
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.state.borrow().now)
    }

    fn sleep(&mut self, duration: core::time::Duration) {
        self.st().now += duration.as_millis() as u64;
    }

    fn mount_kernel_filesystems(&mut self) -> Result<(), Error> {
        self.st().events.push("mount kernel filesystems".into());
        Ok(())
    }

    fn consoles_open(&mut self, names: &[&str]) -> usize {
        let text = names.join(" ");
        self.st().events.push(format!("consoles {text}"));
        names.len()
    }

    fn consoles_write(&mut self, bytes: &[u8]) {
        self.st().console.extend_from_slice(bytes);
    }

    fn consoles_raw(&mut self, raw: bool) {
        self.st().raw = raw;
    }

    fn consoles_read(
        &mut self,
        buf: &mut [u8],
        timeout: core::time::Duration,
    ) -> Option<ConsoleInput> {
        let mut st = self.st();
        let due = st.input.front().is_some_and(|(at, _)| *at <= st.now);
        if !due {
            let step = timeout.as_millis() as u64;
            let next = st.input.front().map(|(at, _)| *at);
            st.now = match next {
                Some(at) if at < st.now + step => at,
                _ => st.now + step,
            };
            if st.input.is_empty() && st.now > 1_000_000_000 {
                panic!("console read with no input scripted: the menu would wait forever");
            }
            return None;
        }
        let (_, bytes) = st.input.pop_front()?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Some(ConsoleInput { console: 0, len: n })
    }

    fn links(&mut self, each: &mut dyn FnMut(&LinkInfo)) -> Result<(), Error> {
        let links = self.st().links.clone();
        links.iter().for_each(each);
        Ok(())
    }

    fn routes(&mut self, each: &mut dyn FnMut(&RouteInfo)) -> Result<(), Error> {
        let routes = self.st().routes.clone();
        routes.iter().for_each(each);
        Ok(())
    }

    fn addrs(&mut self, each: &mut dyn FnMut(&AddrInfo)) -> Result<(), Error> {
        let addrs = self.st().addrs.clone();
        addrs.iter().for_each(each);
        Ok(())
    }

    fn link_up(&mut self, index: u32) -> Result<(), Error> {
        let mut st = self.st();
        st.events.push(format!("link up {index}"));
        for l in st.links.iter_mut().filter(|l| l.index == index) {
            l.up = true;
            l.carrier = true;
        }
        Ok(())
    }

    fn addr_add(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let mut st = self.st();
        st.events.push(format!("addr add {index} {addr}/{prefix}"));
        st.addrs.push(AddrInfo {
            index,
            addr,
            prefix,
        });
        Ok(())
    }

    fn route_add_default(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), Error> {
        let mut st = self.st();
        st.events
            .push(format!("route add default via {gateway} dev {index}"));
        st.routes.push(RouteInfo {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(gateway),
            oif: index,
        });
        Ok(())
    }

    fn flush(&mut self, index: u32) -> Result<(), Error> {
        let mut st = self.st();
        st.events.push(format!("flush {index}"));
        st.routes.retain(|r| r.oif != index);
        st.addrs.retain(|a| a.index != index);
        Ok(())
    }

    fn packet_open(&mut self, index: u32) -> Result<FakePacket, NetError> {
        Ok(FakePacket {
            state: self.state.clone(),
            index,
            queue: Default::default(),
        })
    }

    fn tcp_connect(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        timeout: core::time::Duration,
    ) -> Result<FakeTcp, NetError> {
        let mut st = self.st();
        if st.needs_route && !st.routes.iter().any(|r| r.prefix == 0) {
            return Err(NetError::Unreachable);
        }
        if st.server != Some((addr, port)) {
            st.now += timeout.as_millis() as u64;
            return Err(NetError::TimedOut);
        }
        if st.refuse > 0 {
            st.refuse -= 1;
            return Err(NetError::Refused);
        }
        if st.up_at.is_some_and(|t| st.now < t) {
            return Err(NetError::Refused);
        }
        st.connects += 1;
        Ok(FakeTcp {
            state: self.state.clone(),
            response: None,
            at: 0,
            requests: 0,
            closed: false,
        })
    }

    fn exists(&mut self, path: &str) -> bool {
        self.st().nodes.iter().any(|n| n == path)
    }

    fn disk_open(&mut self, path: &str) -> Result<FakeDisk, Error> {
        if !self.st().disks.contains_key(path) {
            return Err(Error::NotFound);
        }
        self.st().events.push(format!("open {path}"));
        Ok(FakeDisk {
            state: self.state.clone(),
            path: path.into(),
        })
    }

    fn media_open(&mut self, path: &str) -> Result<FakeMedia, Error> {
        if !self.st().disks.contains_key(path) {
            return Err(Error::NotFound);
        }
        self.st().events.push(format!("open-ro {path}"));
        Ok(FakeMedia {
            state: self.state.clone(),
            path: path.into(),
        })
    }

    fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        let mut st = self.st();
        if !st.nodes.iter().any(|n| n == path) {
            st.nodes.push(path.into());
        }
        Ok(())
    }

    fn mount_ext4(&mut self, device: &str, target: &str) -> Result<(), Error> {
        let mut st = self.st();
        if !st.nodes.iter().any(|n| n == device) {
            return Err(Error::NotFound);
        }
        st.events.push(format!("mount {device} {target}"));
        st.mounts.push((device.into(), target.into()));
        Ok(())
    }

    fn mount_fs(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        read_only: bool,
    ) -> Result<(), Error> {
        let mut st = self.st();
        let is_device = source.starts_with("/dev/");
        if is_device && !st.nodes.iter().any(|n| n == source) && !st.files.contains_key(source) {
            return Err(Error::NotFound);
        }
        if st.mounts.iter().any(|(_, t)| t == target) {
            return Err(Error::Os(16));
        }
        if is_device && st.fstypes.get(source).is_some_and(|t| t != fstype) {
            return Err(Error::Os(22));
        }
        let ro = if read_only { " ro" } else { "" };
        st.events
            .push(format!("mount {fstype} {source} {target}{ro}"));
        st.mounts.push((source.into(), target.into()));
        Ok(())
    }

    fn efivar_write(&mut self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut st = self.st();
        if st.efivar_refuse {
            return Err(Error::Os(5));
        }
        st.events.push(format!("efivar-write {path}"));
        st.efivars.insert(path.into(), bytes.to_vec());
        Ok(())
    }

    fn efivar_remove(&mut self, path: &str) -> Result<(), Error> {
        let mut st = self.st();
        if st.efivar_refuse {
            return Err(Error::Os(5));
        }
        st.events.push(format!("efivar-remove {path}"));
        st.efivars.remove(path);
        st.efivars_removed.push(path.into());
        Ok(())
    }

    fn unmount(&mut self, target: &str) -> Result<(), Error> {
        let mut st = self.st();
        let before = st.mounts.len();
        st.mounts.retain(|(_, t)| t != target);
        if st.mounts.len() == before {
            return Err(Error::Os(22));
        }
        st.events.push(format!("unmount {target}"));
        Ok(())
    }

    fn file_create(&mut self, path: &str) -> Result<FakeFile, Error> {
        let mut st = self.st();
        st.events.push(format!("create {path}"));
        st.files.insert(path.into(), Vec::new());
        Ok(FakeFile {
            state: self.state.clone(),
            path: path.into(),
        })
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        let mut st = self.st();
        let data = st.files.remove(from).ok_or(Error::NotFound)?;
        st.files.insert(to.into(), data);
        st.events.push(format!("rename {from} {to}"));
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result<(), Error> {
        self.st().files.remove(path);
        Ok(())
    }

    fn sync_dir(&mut self, path: &str) -> Result<(), Error> {
        self.st().events.push(format!("fsync {path}"));
        Ok(())
    }

    fn sync_all(&mut self) {
        self.st().events.push("sync".into());
    }

    fn power(&mut self, action: PowerAction) -> Error {
        self.st().power = Some(action);
        Error::Os(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_direct_children_once() {
        let mut sys = FakeSys::new();
        sys.file("/sys/block/sda/size", "1\n")
            .file("/sys/block/sda/ro", "0\n")
            .file("/sys/block/vda/size", "1\n");
        let mut names = Vec::new();
        sys.list("/sys/block", &mut |n| names.push(n.to_string()))
            .unwrap();
        assert_eq!(names, ["sda", "vda"]);
        assert!(sys.exists("/sys/block/sda"));
        assert!(!sys.exists("/sys/block/sdb"));
    }

    #[test]
    fn read_reports_too_large() {
        let mut sys = FakeSys::new();
        sys.file("/proc/cmdline", "ze.server=192.0.2.1\n");
        let mut small = [0u8; 4];
        assert_eq!(sys.read("/proc/cmdline", &mut small), Err(Error::TooLarge));
    }

    #[test]
    fn clock_moves_only_when_told() {
        let clock = FakeClock::at(5);
        assert_eq!(clock.now().as_millis(), 5);
        clock.advance(core::time::Duration::from_secs(1));
        assert_eq!(clock.now().as_millis(), 1_005);
    }
}
