//! The real hal: Linux through rustix's `linux_raw` backend (no libc).

use crate::{
    Error,
    sysfs::SysFs,
    time::{Clock, Instant},
};
use crate::{
    console::MAX_CONSOLES,
    netlink,
    os::{
        AddrInfo, BlockDev, BlockRead, ConsoleInput, FileOut, LinkInfo, NetError, Os, PacketConn,
        PowerAction, RouteInfo, TcpConn,
    },
    syscalls::LinkAddr,
};
use core::mem::MaybeUninit;
use core::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};
use rustix::{
    event::{PollFd, PollFlags, Timespec},
    fd::{AsFd, BorrowedFd, OwnedFd},
    fs::{Mode, OFlags, RawDir},
    io::Errno,
    net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType},
    termios::Termios,
};

/// Bytes of directory entries read per `getdents64` call.
const DIRENT_BUFFER: usize = 2048;

impl From<Errno> for Error {
    fn from(e: Errno) -> Self {
        if e == Errno::NOENT {
            Error::NotFound
        } else {
            Error::Os(e.raw_os_error())
        }
    }
}

/// The running Linux kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

impl SysFs for Linux {
    fn read(&self, path: &str, buf: &mut [u8]) -> Result<usize, Error> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..) {
            if rest.is_empty() {
                // Full: the file fits only if the next read sees its end.
                let mut probe = [0u8; 1];
                return match rustix::io::read(&fd, &mut probe)? {
                    0 => Ok(filled),
                    _ => Err(Error::TooLarge),
                };
            }
            match rustix::io::read(&fd, rest) {
                Ok(0) => return Ok(filled),
                Ok(n) => filled += n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(filled)
    }

    fn list(&self, path: &str, each: &mut dyn FnMut(&str)) -> Result<(), Error> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut buf = [MaybeUninit::<u8>::uninit(); DIRENT_BUFFER];
        let mut dir = RawDir::new(&fd, &mut buf);
        while let Some(entry) = dir.next() {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name != "." && name != ".." {
                each(name);
            }
        }
        Ok(())
    }
}

impl Clock for Linux {
    fn now(&self) -> Instant {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
        let millis = u64::try_from(ts.tv_nsec / 1_000_000).unwrap_or(0);
        Instant::from_millis(secs.saturating_mul(1_000).saturating_add(millis))
    }
}

/// Write all of `bytes` to `fd`, retrying short writes and `EINTR`.
pub fn write_all<Fd: AsFd>(fd: Fd, mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(0) => return Err(Error::Os(Errno::IO.raw_os_error())),
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Standard error, for messages before any console is open.
pub fn stderr() -> BorrowedFd<'static> {
    crate::syscalls::stderr()
}

/// This process's id (1 when running as init).
pub fn pid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// Flush every filesystem's dirty data to disk.
pub fn sync() {
    rustix::fs::sync();
}

/// End this process with `status` (never returns).
pub fn exit(status: i32) -> ! {
    crate::syscalls::exit_group(status)
}

/// Sync, then reboot or power off. Returns only if the kernel refused
/// (e.g. not PID 1 without CAP_SYS_BOOT).
pub fn power(action: PowerAction) -> Error {
    sync();
    let cmd = match action {
        PowerAction::Reboot => rustix::system::RebootCommand::Restart,
        PowerAction::PowerOff => rustix::system::RebootCommand::PowerOff,
    };
    match rustix::system::reboot(cmd) {
        Ok(()) => Error::Os(0),
        Err(e) => e.into(),
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Wait until `fd` is ready for `flags`; `Ok(false)` on timeout.
fn wait_ready(fd: BorrowedFd<'_>, flags: PollFlags, timeout: Duration) -> Result<bool, Errno> {
    let ts = timespec(timeout);
    loop {
        let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl From<Errno> for NetError {
    fn from(e: Errno) -> Self {
        match e {
            Errno::CONNREFUSED => NetError::Refused,
            Errno::NETUNREACH | Errno::HOSTUNREACH | Errno::NETDOWN | Errno::HOSTDOWN => {
                NetError::Unreachable
            }
            Errno::TIMEDOUT => NetError::TimedOut,
            Errno::CONNRESET | Errno::PIPE | Errno::CONNABORTED => NetError::Reset,
            other => NetError::Os(other.into()),
        }
    }
}

/// A connected TCP stream (non-blocking fd, waits through `poll`).
#[derive(Debug)]
pub struct Tcp {
    fd: OwnedFd,
}

impl TcpConn for Tcp {
    fn send_all(&mut self, mut bytes: &[u8], timeout: Duration) -> Result<(), NetError> {
        while !bytes.is_empty() {
            match rustix::net::send(&self.fd, bytes, SendFlags::NOSIGNAL) {
                Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !wait_ready(self.fd.as_fd(), PollFlags::OUT, timeout)? {
                        return Err(NetError::TimedOut);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, NetError> {
        loop {
            match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !wait_ready(self.fd.as_fd(), PollFlags::IN, timeout)? {
                        return Err(NetError::TimedOut);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Tcp {
    /// Connect to `addr:port`, giving up after `timeout`.
    pub fn connect(addr: Ipv4Addr, port: u16, timeout: Duration) -> Result<Tcp, NetError> {
        let fd = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        match rustix::net::connect(&fd, &SocketAddrV4::new(addr, port)) {
            Ok(()) => {}
            Err(Errno::INPROGRESS) | Err(Errno::INTR) => {
                if !wait_ready(fd.as_fd(), PollFlags::OUT, timeout)? {
                    return Err(NetError::TimedOut);
                }
                if let Err(e) = rustix::net::sockopt::socket_error(&fd)? {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Tcp { fd })
    }
}

/// An AF_PACKET socket carrying IPv4 on one interface.
#[derive(Debug)]
pub struct Packet {
    fd: OwnedFd,
    ifindex: u32,
}

impl Packet {
    /// Open on interface `ifindex`.
    pub fn open(ifindex: u32) -> Result<Packet, NetError> {
        let fd = rustix::net::socket_with(
            AddressFamily::PACKET,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(rustix::net::eth::IP),
        )?;
        rustix::net::bind(&fd, &LinkAddr::ipv4(ifindex, [0; 6]))?;
        Ok(Packet { fd, ifindex })
    }
}

impl PacketConn for Packet {
    fn send(&mut self, packet: &[u8]) -> Result<(), NetError> {
        let to = LinkAddr::ipv4(self.ifindex, [0xff; 6]);
        rustix::net::sendto(&self.fd, packet, SendFlags::empty(), &to)?;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, NetError> {
        loop {
            match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => return Ok(n),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !wait_ready(self.fd.as_fd(), PollFlags::IN, timeout)? {
                        return Err(NetError::TimedOut);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Bytes of the netlink receive buffer (the kernel's dump messages fit).
const NETLINK_BUFFER: usize = 8192;
/// How long the kernel may take to answer a netlink request.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(2);

/// A `NETLINK_ROUTE` socket.
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    /// Open and bind a route netlink socket.
    pub fn open() -> Result<Netlink, Error> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        rustix::net::bind(&fd, &rustix::net::netlink::SocketAddrNetlink::new(0, 0))?;
        Ok(Netlink { fd, seq: 1 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn recv<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
        loop {
            match rustix::net::recv(&self.fd, &mut *buf, RecvFlags::empty()) {
                Ok((n, _)) => return buf.get(..n).ok_or(Error::TooLarge),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => {
                    if !wait_ready(self.fd.as_fd(), PollFlags::IN, NETLINK_TIMEOUT)? {
                        return Err(Error::Os(Errno::TIMEDOUT.raw_os_error()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Send a request built by `build` and wait for its ACK.
    pub fn request(
        &mut self,
        build: impl FnOnce(&mut [u8], u32) -> Result<&[u8], netlink::BufferTooSmall>,
    ) -> Result<(), Error> {
        let seq = self.next_seq();
        let mut out = [0u8; 256];
        let msg = build(&mut out, seq).map_err(|_| Error::TooLarge)?;
        rustix::net::send(&self.fd, msg, SendFlags::empty())?;
        let mut buf = [0u8; NETLINK_BUFFER];
        loop {
            let datagram = self.recv(&mut buf)?;
            for m in netlink::messages(datagram) {
                if m.seq != seq {
                    continue;
                }
                if let Some(code) = m.error_code() {
                    return match code {
                        0 => Ok(()),
                        e if e == -Errno::NOENT.raw_os_error() => Err(Error::NotFound),
                        e => Err(Error::Os(-e)),
                    };
                }
            }
        }
    }

    /// Send a dump request built by `build` and call `each` with every
    /// message of the reply until `NLMSG_DONE`. A dump the kernel marks
    /// `NLM_F_DUMP_INTR` (the table changed meanwhile) ends in
    /// `Error::Os(EINTR)`: the caller should dump again.
    pub fn dump(
        &mut self,
        build: impl FnOnce(&mut [u8], u32) -> Result<&[u8], netlink::BufferTooSmall>,
        each: &mut dyn FnMut(&netlink::Message<'_>),
    ) -> Result<(), Error> {
        let seq = self.next_seq();
        let mut out = [0u8; 64];
        let msg = build(&mut out, seq).map_err(|_| Error::TooLarge)?;
        rustix::net::send(&self.fd, msg, SendFlags::empty())?;
        let mut buf = [0u8; NETLINK_BUFFER];
        let mut interrupted = false;
        loop {
            let datagram = self.recv(&mut buf)?;
            for m in netlink::messages(datagram) {
                if m.seq != seq {
                    continue;
                }
                interrupted |= m.flags & netlink::consts::NLM_F_DUMP_INTR != 0;
                match m.kind {
                    netlink::consts::NLMSG_DONE if interrupted => {
                        // The table changed during the dump: what was
                        // seen may be inconsistent (netlink(7)).
                        return Err(Error::Os(Errno::INTR.raw_os_error()));
                    }
                    netlink::consts::NLMSG_DONE => return Ok(()),
                    netlink::consts::NLMSG_ERROR => {
                        return match m.error_code() {
                            Some(0) | None => Ok(()),
                            Some(e) => Err(Error::Os(-e)),
                        };
                    }
                    _ => each(&m),
                }
            }
        }
    }
}

/// The size of a block device in bytes, or of a regular file (host
/// benchmarks and tests read and write files) when `fd` is one.
fn device_size(fd: BorrowedFd<'_>) -> Result<u64, Error> {
    match crate::syscalls::block_size(fd) {
        Ok(n) => Ok(n),
        Err(Errno::NOTTY) | Err(Errno::INVAL) => {
            Ok(rustix::fs::fstat(fd)?.st_size.try_into().unwrap_or(0))
        }
        Err(e) => Err(e.into()),
    }
}

/// A block device (or, for host benchmarks, a regular file).
#[derive(Debug)]
pub struct Disk {
    fd: OwnedFd,
}

impl Disk {
    /// Open `path` read-write.
    pub fn open(path: &str) -> Result<Disk, Error> {
        let fd = rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Disk { fd })
    }
}

impl BlockDev for Disk {
    fn size(&mut self) -> Result<u64, Error> {
        device_size(self.fd.as_fd())
    }

    fn write_at(&mut self, mut offset: u64, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            match rustix::io::pwrite(&self.fd, bytes, offset) {
                Ok(0) => return Err(Error::Os(Errno::NOSPC.raw_os_error())),
                Ok(n) => {
                    bytes = bytes.get(n..).unwrap_or_default();
                    offset += n as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Error> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    fn reread_partitions(&mut self) -> Result<(), Error> {
        match crate::syscalls::block_reread_partitions(self.fd.as_fd()) {
            // A regular file (host benchmarks, tests) has no partition
            // table for the kernel to read.
            Err(Errno::NOTTY) => Ok(()),
            r => Ok(r?),
        }
    }

    fn zero_range(&mut self, offset: u64, len: u64) -> Result<(), Error> {
        match crate::syscalls::block_zero_out(self.fd.as_fd(), offset, len) {
            Ok(()) => Ok(()),
            // A regular file (host benchmarks, tests): a hole reads as zeros.
            Err(Errno::NOTTY) => {
                use rustix::fs::FallocateFlags;
                Ok(rustix::fs::fallocate(
                    &self.fd,
                    FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                    offset,
                    len,
                )?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn add_partition(&mut self, number: u8, start: u64, len: u64) -> Result<(), Error> {
        Ok(crate::syscalls::block_partition(
            self.fd.as_fd(),
            true,
            number,
            start,
            len,
        )?)
    }

    fn remove_partition(&mut self, number: u8) -> Result<(), Error> {
        Ok(crate::syscalls::block_partition(
            self.fd.as_fd(),
            false,
            number,
            0,
            0,
        )?)
    }
}

/// A block device opened read-only (the installer media).
#[derive(Debug)]
pub struct Media {
    fd: OwnedFd,
}

impl Media {
    /// Open `path` read-only.
    pub fn open(path: &str) -> Result<Media, Error> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Media { fd })
    }
}

impl BlockRead for Media {
    fn size(&mut self) -> Result<u64, Error> {
        device_size(self.fd.as_fd())
    }

    fn read_at(&mut self, mut offset: u64, mut buf: &mut [u8]) -> Result<usize, Error> {
        let mut done = 0;
        while !buf.is_empty() {
            match rustix::io::pread(&self.fd, &mut *buf, offset) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    offset += n as u64;
                    buf = buf.get_mut(n..).unwrap_or_default();
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(done)
    }
}

/// A regular file being written.
#[derive(Debug)]
pub struct File {
    fd: OwnedFd,
}

impl FileOut for File {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        write_all(&self.fd, bytes)
    }
    fn sync(&mut self) -> Result<(), Error> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }
}

/// One open console: its fd and, while in raw mode, its saved settings.
#[derive(Debug)]
struct ConsoleFd {
    fd: OwnedFd,
    saved: Option<Termios>,
}

/// The real [`Os`]: Linux syscalls through rustix.
#[derive(Debug, Default)]
pub struct LinuxOs {
    sys: Linux,
    consoles: heapless::Vec<ConsoleFd, MAX_CONSOLES>,
    netlink: Option<Netlink>,
}

impl LinuxOs {
    /// A fresh handle; nothing is opened until used.
    pub fn new() -> Self {
        Self::default()
    }

    fn netlink(&mut self) -> Result<&mut Netlink, Error> {
        if self.netlink.is_none() {
            self.netlink = Some(Netlink::open()?);
        }
        self.netlink.as_mut().ok_or(Error::NotFound)
    }
}

/// Clear the immutable flag (`chattr -i`, `FS_IOC_SETFLAGS`) of `path`
/// if it exists and has it.
fn clear_immutable(path: &str) -> Result<(), Error> {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let fd = match rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let flags = ioctl_getflags(&fd)?;
    if flags.contains(IFlags::IMMUTABLE) {
        ioctl_setflags(&fd, flags.difference(IFlags::IMMUTABLE))?;
    }
    Ok(())
}

fn ignore_exists(r: rustix::io::Result<()>) -> Result<(), Error> {
    match r {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

impl Os for LinuxOs {
    type Tcp = Tcp;
    type Packet = Packet;
    type Disk = Disk;
    type Media = Media;
    type File = File;
    type Sys = Linux;

    fn sys(&self) -> &Linux {
        &self.sys
    }

    fn now(&self) -> Instant {
        self.sys.now()
    }

    fn sleep(&mut self, duration: Duration) {
        let mut ts = timespec(duration);
        while let rustix::thread::NanosleepRelativeResult::Interrupted(rest) =
            rustix::thread::nanosleep(&ts)
        {
            ts = rest;
        }
    }

    fn mount_kernel_filesystems(&mut self) -> Result<(), Error> {
        use rustix::mount::{MountFlags, mount};
        for (src, target, fstype) in [
            ("proc", "/proc", "proc"),
            ("sysfs", "/sys", "sysfs"),
            ("devtmpfs", "/dev", "devtmpfs"),
        ] {
            ignore_exists(rustix::fs::mkdir(target, Mode::from_raw_mode(0o755)))?;
            match mount(src, target, fstype, MountFlags::NOSUID, None) {
                Ok(()) | Err(Errno::BUSY) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn consoles_open(&mut self, names: &[&str]) -> usize {
        let mut path: heapless::String<32> = heapless::String::new();
        for name in names {
            path.clear();
            if path.push_str("/dev/").is_err() || path.push_str(name).is_err() {
                continue;
            }
            let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
            if let Ok(fd) = rustix::fs::open(path.as_str(), flags, Mode::empty()) {
                // The kernel lists a console even when its device is dead
                // (a VGA tty without a screen still accepts writes, which
                // is fine); a console we cannot open is skipped.
                let _ = self.consoles.push(ConsoleFd { fd, saved: None });
            }
        }
        self.consoles.len()
    }

    fn consoles_write(&mut self, bytes: &[u8]) {
        if self.consoles.is_empty() {
            let _ = write_all(stderr(), bytes);
        }
        for c in &self.consoles {
            let _ = write_all(&c.fd, bytes);
        }
    }

    fn consoles_raw(&mut self, raw: bool) {
        for c in &mut self.consoles {
            if raw {
                let Ok(saved) = rustix::termios::tcgetattr(&c.fd) else {
                    continue;
                };
                let mut t = saved.clone();
                t.make_raw();
                // Keep "\n" → "\r\n" so lines still start at column 0.
                t.output_modes |=
                    rustix::termios::OutputModes::OPOST | rustix::termios::OutputModes::ONLCR;
                if rustix::termios::tcsetattr(&c.fd, rustix::termios::OptionalActions::Now, &t)
                    .is_ok()
                {
                    c.saved = Some(saved);
                }
            } else if let Some(saved) = c.saved.take() {
                let _ = rustix::termios::tcsetattr(
                    &c.fd,
                    rustix::termios::OptionalActions::Now,
                    &saved,
                );
            }
        }
    }

    fn consoles_read(&mut self, buf: &mut [u8], timeout: Duration) -> Option<ConsoleInput> {
        if self.consoles.is_empty() {
            self.sleep(timeout);
            return None;
        }
        let mut fds: heapless::Vec<PollFd<'_>, MAX_CONSOLES> = self
            .consoles
            .iter()
            .map(|c| PollFd::new(&c.fd, PollFlags::IN))
            .collect();
        let ts = timespec(timeout);
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => {}
            _ => return None,
        }
        let ready = fds
            .iter()
            .position(|p| p.revents().contains(PollFlags::IN))?;
        drop(fds);
        let fd = &self.consoles.get(ready)?.fd;
        match rustix::io::read(fd, &mut *buf) {
            Ok(len) if len > 0 => Some(ConsoleInput {
                console: ready,
                len,
            }),
            _ => None,
        }
    }

    fn links(&mut self, each: &mut dyn FnMut(&LinkInfo)) -> Result<(), Error> {
        self.netlink()?.dump(netlink::get_links, &mut |m| {
            if m.kind == netlink::consts::RTM_NEWLINK
                && let Some(link) = netlink::parse_link(m.payload)
            {
                each(&link);
            }
        })
    }

    fn routes(&mut self, each: &mut dyn FnMut(&RouteInfo)) -> Result<(), Error> {
        self.netlink()?.dump(netlink::get_routes, &mut |m| {
            if m.kind == netlink::consts::RTM_NEWROUTE
                && let Some(route) = netlink::parse_route(m.payload)
            {
                each(&route);
            }
        })
    }

    fn addrs(&mut self, each: &mut dyn FnMut(&AddrInfo)) -> Result<(), Error> {
        self.netlink()?.dump(netlink::get_addrs, &mut |m| {
            if m.kind == netlink::consts::RTM_NEWADDR
                && let Some(addr) = netlink::parse_addr(m.payload)
            {
                each(&addr);
            }
        })
    }

    fn link_up(&mut self, index: u32) -> Result<(), Error> {
        self.netlink()?
            .request(|buf, seq| netlink::link_up(buf, seq, index))
    }

    fn addr_add(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        self.netlink()?
            .request(|buf, seq| netlink::addr_add(buf, seq, index, addr, prefix))
    }

    fn route_add_default(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), Error> {
        self.netlink()?
            .request(|buf, seq| netlink::route_add_default(buf, seq, index, gateway))
    }

    fn flush(&mut self, index: u32) -> Result<(), Error> {
        const MAX_FLUSH: usize = 32;
        let mut routes: heapless::Vec<RouteInfo, MAX_FLUSH> = heapless::Vec::new();
        self.routes(&mut |r| {
            if r.oif == index {
                let _ = routes.push(*r);
            }
        })?;
        for r in &routes {
            match self
                .netlink()?
                .request(|buf, seq| netlink::route_del(buf, seq, r))
            {
                Ok(()) | Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let mut addrs: heapless::Vec<AddrInfo, MAX_FLUSH> = heapless::Vec::new();
        self.addrs(&mut |a| {
            if a.index == index {
                let _ = addrs.push(*a);
            }
        })?;
        for a in &addrs {
            match self
                .netlink()?
                .request(|buf, seq| netlink::addr_del(buf, seq, a))
            {
                Ok(()) | Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn packet_open(&mut self, index: u32) -> Result<Packet, NetError> {
        Packet::open(index)
    }

    fn tcp_connect(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        timeout: Duration,
    ) -> Result<Tcp, NetError> {
        Tcp::connect(addr, port, timeout)
    }

    fn exists(&mut self, path: &str) -> bool {
        rustix::fs::stat(path).is_ok()
    }

    fn disk_open(&mut self, path: &str) -> Result<Disk, Error> {
        Disk::open(path)
    }

    fn media_open(&mut self, path: &str) -> Result<Media, Error> {
        Media::open(path)
    }

    fn mkdir(&mut self, path: &str) -> Result<(), Error> {
        ignore_exists(rustix::fs::mkdir(path, Mode::from_raw_mode(0o755)))
    }

    fn mount_ext4(&mut self, device: &str, target: &str) -> Result<(), Error> {
        Ok(rustix::mount::mount(
            device,
            target,
            "ext4",
            rustix::mount::MountFlags::empty(),
            None,
        )?)
    }

    fn mount_fs(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        read_only: bool,
    ) -> Result<(), Error> {
        let flags = if read_only {
            rustix::mount::MountFlags::RDONLY
        } else {
            rustix::mount::MountFlags::empty()
        };
        Ok(rustix::mount::mount(source, target, fstype, flags, None)?)
    }

    fn efivar_write(&mut self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        clear_immutable(path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o644))?;
        // efivarfs takes a variable in one write; a short one is an error.
        let n = rustix::io::write(&fd, bytes)?;
        if n != bytes.len() {
            return Err(Error::Os(Errno::IO.raw_os_error()));
        }
        Ok(())
    }

    fn efivar_remove(&mut self, path: &str) -> Result<(), Error> {
        clear_immutable(path)?;
        self.remove(path)
    }

    fn unmount(&mut self, target: &str) -> Result<(), Error> {
        Ok(rustix::mount::unmount(
            target,
            rustix::mount::UnmountFlags::empty(),
        )?)
    }

    fn file_create(&mut self, path: &str) -> Result<File, Error> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::from_raw_mode(0o600))?;
        Ok(File { fd })
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        Ok(rustix::fs::rename(from, to)?)
    }

    fn remove(&mut self, path: &str) -> Result<(), Error> {
        match rustix::fs::unlink(path) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn sync_dir(&mut self, path: &str) -> Result<(), Error> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(rustix::fs::fsync(&fd)?)
    }

    fn sync_all(&mut self) {
        sync();
    }

    fn power(&mut self, action: PowerAction) -> Error {
        power(action)
    }
}

/// Run `f` on a new thread moved into a fresh network namespace (only
/// `lo`, down), so that tests of netlink and sockets never touch the
/// host's interfaces; the namespace goes away with the thread. Needs
/// `CAP_SYS_ADMIN` (root), as every test tier here does. A panic in `f`
/// is passed on.
#[cfg(any(test, feature = "fake"))]
pub fn in_new_network_namespace<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let thread = std::thread::spawn(move || {
        crate::syscalls::unshare_network_namespace()
            .map_err(|e| std::io::Error::from_raw_os_error(e.raw_os_error()))?;
        Ok(f())
    });
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_and_reports_missing_files() {
        let mut buf = [0u8; 4096];
        let n = Linux.read("/proc/self/stat", &mut buf).unwrap();
        assert!(n > 10);
        assert_eq!(
            Linux.read("/proc/self/does-not-exist", &mut buf),
            Err(Error::NotFound)
        );
        let mut tiny = [0u8; 2];
        assert_eq!(
            Linux.read("/proc/self/stat", &mut tiny),
            Err(Error::TooLarge)
        );
    }

    #[test]
    fn lists_a_directory() {
        let dir = std::env::temp_dir().join(format!("ze-hal-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("one"), b"1").unwrap();
        std::fs::write(dir.join("two"), b"2").unwrap();
        let mut names = std::vec::Vec::new();
        Linux
            .list(dir.to_str().unwrap(), &mut |n| names.push(n.to_string()))
            .unwrap();
        names.sort();
        assert_eq!(names, ["one", "two"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        in_new_network_namespace(f).expect("unshare(CLONE_NEWNET) (tests run as root)")
    }

    fn lo(os: &mut LinuxOs) -> LinkInfo {
        let mut links = std::vec::Vec::new();
        os.links(&mut |l| links.push(l.clone())).unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        links.remove(0)
    }

    #[test]
    fn t1_netlink_lease_apply_and_flush_in_a_private_namespace() {
        in_netns(|| {
            let mut os = LinuxOs::new();
            let l = lo(&mut os);
            assert_eq!(l.name.as_str(), "lo");
            assert!(l.loopback && !l.up);
            os.link_up(l.index).unwrap();
            assert!(lo(&mut os).up);
            let addr = Ipv4Addr::new(192, 0, 2, 1);
            let gw = Ipv4Addr::new(192, 0, 2, 254);
            os.addr_add(l.index, addr, 24).unwrap();
            os.route_add_default(l.index, gw).unwrap();
            let mut addrs = std::vec::Vec::new();
            os.addrs(&mut |a| addrs.push(*a)).unwrap();
            assert!(
                addrs.contains(&AddrInfo {
                    index: l.index,
                    addr,
                    prefix: 24
                }),
                "{addrs:?}"
            );
            let mut routes = std::vec::Vec::new();
            os.routes(&mut |r| routes.push(*r)).unwrap();
            assert!(
                routes
                    .iter()
                    .any(|r| r.prefix == 0 && r.gateway == Some(gw) && r.oif == l.index),
                "{routes:?}"
            );
            os.flush(l.index).unwrap();
            let mut left = 0;
            os.routes(&mut |r| left += usize::from(r.oif == l.index && r.prefix == 0))
                .unwrap();
            assert_eq!(left, 0);
            let mut still = false;
            os.addrs(&mut |a| still |= a.addr == addr).unwrap();
            assert!(!still);
            // A request the kernel refuses is an error, not a hang.
            assert!(
                os.route_add_default(l.index, Ipv4Addr::new(203, 0, 113, 1))
                    .is_err()
            );
        });
    }

    #[test]
    fn tcp_refused_unreachable_data_timeout_and_end_of_stream() {
        in_netns(|| {
            let mut os = LinuxOs::new();
            let l = lo(&mut os);
            os.link_up(l.index).unwrap();
            let t = Duration::from_millis(500);
            let refused = os.tcp_connect(Ipv4Addr::LOCALHOST, 1, t).unwrap_err();
            assert_eq!(refused, NetError::Refused);
            let unreachable = os
                .tcp_connect(Ipv4Addr::new(192, 0, 2, 9), 80, t)
                .unwrap_err();
            assert_eq!(unreachable, NetError::Unreachable);
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let mut c = os.tcp_connect(Ipv4Addr::LOCALHOST, port, t).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            c.send_all(b"GET / HTTP/1.1\r\n\r\n", t).unwrap();
            use std::io::{Read, Write};
            let mut got = [0u8; 18];
            server.read_exact(&mut got).unwrap();
            server.write_all(b"hi").unwrap();
            let mut buf = [0u8; 16];
            assert_eq!(c.recv(&mut buf, t).unwrap(), 2);
            let start = std::time::Instant::now();
            assert_eq!(
                c.recv(&mut buf, Duration::from_millis(200)),
                Err(NetError::TimedOut)
            );
            assert!(start.elapsed() >= Duration::from_millis(190));
            drop(server);
            assert_eq!(c.recv(&mut buf, t).unwrap(), 0);
        });
    }

    #[test]
    fn packet_sockets_carry_ipv4_on_an_interface() {
        in_netns(|| {
            let mut os = LinuxOs::new();
            let l = lo(&mut os);
            os.link_up(l.index).unwrap();
            let mut tx = os.packet_open(l.index).unwrap();
            let mut rx = os.packet_open(l.index).unwrap();
            // A minimal IPv4 header (the socket does not check it).
            let mut pkt = [0u8; 28];
            pkt[0] = 0x45;
            pkt[2..4].copy_from_slice(&28u16.to_be_bytes());
            pkt[9] = 17;
            pkt[20..28].copy_from_slice(b"ze-probe");
            tx.send(&pkt).unwrap();
            let mut buf = [0u8; 64];
            let n = rx.recv(&mut buf, Duration::from_secs(1)).unwrap();
            assert_eq!(&buf[..n], &pkt);
            assert_eq!(
                rx.recv(&mut buf, Duration::from_millis(50))
                    .and_then(|_| rx.recv(&mut buf, Duration::from_millis(50))),
                Err(NetError::TimedOut)
            );
        });
    }

    #[test]
    fn disk_on_a_regular_file() {
        let path = std::env::temp_dir().join(format!("ze-hal-disk-{}", std::process::id()));
        std::fs::File::create(&path)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let mut d = Disk::open(path.to_str().unwrap()).unwrap();
        assert_eq!(d.size().unwrap(), 1 << 20);
        d.write_at(4096, b"abc").unwrap();
        d.sync().unwrap();
        // Not a block device: no table to re-read, and no error for it.
        assert_eq!(d.reread_partitions(), Ok(()));
        let data = std::fs::read(&path).unwrap();
        assert_eq!(&data[4096..4099], b"abc");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            Disk::open("/nonexistent/disk").unwrap_err(),
            Error::NotFound
        );
    }

    #[test]
    fn w5_zero_range_punches_a_hole_in_a_regular_file() {
        let path = std::env::temp_dir().join(format!("ze-hal-zero-{}", std::process::id()));
        std::fs::write(&path, std::vec![0xa5u8; 64 * 1024]).unwrap();
        let mut d = Disk::open(path.to_str().unwrap()).unwrap();
        d.zero_range(8192, 16384).unwrap();
        d.sync().unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len(), 64 * 1024, "the size stays");
        assert!(data[..8192].iter().all(|&b| b == 0xa5));
        assert!(data[8192..24576].iter().all(|&b| b == 0));
        assert!(data[24576..].iter().all(|&b| b == 0xa5));
        std::fs::remove_file(&path).unwrap();
    }

    /// A loop device with partition scanning over a file of random-looking
    /// bytes: BLKZEROOUT zeroes a range, BLKPG makes partition 1 appear at
    /// an offset with no partition table, and removes it again.
    #[test]
    fn w5_w8_blkzeroout_and_blkpg_on_a_loop_device() {
        let root = rustix::process::geteuid().is_root();
        let ci = std::env::var_os("CI").is_some_and(|v| v == "true");
        if !root && !ci {
            std::eprintln!("skipped: needs root for losetup");
            return;
        }
        let path = std::env::temp_dir().join(format!("ze-hal-loop-{}", std::process::id()));
        let data: std::vec::Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + 3) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show", "--partscan"])
            .arg(&path)
            .output()
            .expect("losetup (util-linux)");
        assert!(out.status.success(), "losetup: {out:?}");
        let dev = std::string::String::from_utf8(out.stdout).unwrap();
        let dev = dev.trim();
        let result = std::panic::catch_unwind(|| {
            let mut d = Disk::open(dev).unwrap();
            d.zero_range(1 << 20, 2 << 20).unwrap();
            d.sync().unwrap();
            let part = std::format!("{dev}p1");
            d.add_partition(1, 4 << 20, 2 << 20).unwrap();
            let mut seen = false;
            for _ in 0..50 {
                if std::path::Path::new(&part).exists() {
                    seen = true;
                    break;
                }
                std::thread::sleep(core::time::Duration::from_millis(100));
            }
            assert!(seen, "{part} did not appear");
            let mut p = Media::open(&part).unwrap();
            assert_eq!(p.size().unwrap(), 2 << 20);
            let mut buf = [0u8; 16];
            p.read_at(0, &mut buf).unwrap();
            assert_eq!(&buf[..], &data[4 << 20..(4 << 20) + 16]);
            drop(p);
            d.remove_partition(1).unwrap();
        });
        let _ = std::process::Command::new("losetup")
            .args(["-d", dev])
            .status();
        let back = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        result.unwrap();
        assert!(back[1 << 20..3 << 20].iter().all(|&b| b == 0));
        assert_eq!(&back[..1 << 20], &data[..1 << 20]);
        assert_eq!(&back[3 << 20..], &data[3 << 20..]);
    }

    #[test]
    fn h3_efivar_write_and_remove_clear_the_immutable_flag() {
        // efivarfs marks variables immutable; a regular file on the temp
        // directory's filesystem takes the same flag (needs root:
        // CAP_LINUX_IMMUTABLE).
        use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
        let path = std::env::temp_dir().join(format!("ze-hal-efivar-{}", std::process::id()));
        let p = path.to_str().unwrap();
        std::fs::write(&path, [7, 0, 0, 0, 1]).unwrap();
        let fd = rustix::fs::open(p, OFlags::RDONLY, Mode::empty()).unwrap();
        let flags = ioctl_getflags(&fd).unwrap();
        ioctl_setflags(&fd, flags | IFlags::IMMUTABLE).expect("chattr +i (run as root)");
        drop(fd);
        assert!(std::fs::write(&path, [0]).is_err(), "immutable");
        let mut os = LinuxOs::new();
        os.efivar_write(p, &[7, 0, 0, 0, 5, 0, 1, 0]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), [7, 0, 0, 0, 5, 0, 1, 0]);
        let fd = rustix::fs::open(p, OFlags::RDONLY, Mode::empty()).unwrap();
        let flags = ioctl_getflags(&fd).unwrap();
        ioctl_setflags(&fd, flags | IFlags::IMMUTABLE).unwrap();
        drop(fd);
        os.efivar_remove(p).unwrap();
        assert!(!path.exists());
        // A missing variable is fine to remove, and is created by a write.
        os.efivar_remove(p).unwrap();
        os.efivar_write(p, &[7, 0, 0, 0]).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn media_reads_a_regular_file_read_only() {
        let path = std::env::temp_dir().join(format!("ze-hal-media-{}", std::process::id()));
        let data: std::vec::Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        // Read-only: a file without write permission still opens.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let mut m = Media::open(path.to_str().unwrap()).unwrap();
        assert_eq!(m.size().unwrap(), 10_000);
        let mut buf = [0u8; 4096];
        assert_eq!(m.read_at(2048, &mut buf).unwrap(), 4096);
        assert_eq!(&buf[..], &data[2048..2048 + 4096]);
        // Short only at the end of the device.
        assert_eq!(m.read_at(8192, &mut buf).unwrap(), 10_000 - 8192);
        assert_eq!(m.read_at(20_000, &mut buf).unwrap(), 0);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            Media::open("/nonexistent/media").unwrap_err(),
            Error::NotFound
        );
    }

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = Linux.now();
        std::thread::sleep(core::time::Duration::from_millis(5));
        assert!(Linux.now() > a);
    }
}
