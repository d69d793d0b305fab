//! The operating-system interface the installer's runner drives.
//!
//! One trait, [`Os`], names every effect the installer has on the machine:
//! time, consoles, links/addresses/routes, raw packets, TCP, block devices,
//! mounts, files and power. [`crate::linux::Linux`] performs them with
//! syscalls; `crate::fake::FakeOs` plays them back in memory so the whole
//! install runs under `cargo test`.
//!
//! The firmware's decisions stay in its sans-IO core; this trait only
//! carries the calls out and reports what happened.

use crate::{Error, sysfs::SysFs, time::Instant};
use core::{net::Ipv4Addr, time::Duration};

/// A link-layer (MAC) address.
pub type MacAddr = [u8; 6];

/// The longest interface name (Linux `IFNAMSIZ` less the NUL).
pub const MAX_IFNAME: usize = 15;

/// What the kernel says about one network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Kernel name (`eth0`, `enp1s0`, `lo`).
    pub name: heapless::String<MAX_IFNAME>,
    /// Hardware address (zero when the link has none).
    pub mac: MacAddr,
    /// `IFF_UP` is set.
    pub up: bool,
    /// The link has carrier (`IFF_LOWER_UP`).
    pub carrier: bool,
    /// The loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// ARPHRD type (1 = ethernet).
    pub kind: u16,
    /// The virtual link kind (`IFLA_INFO_KIND`: `bridge`, `veth`, `dummy`,
    /// `wireguard`, …); empty for physical devices.
    pub link_kind: heapless::String<MAX_LINK_KIND>,
}

/// The longest `IFLA_INFO_KIND` kept; longer kinds are cut.
pub const MAX_LINK_KIND: usize = 16;

/// One IPv4 route from the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination network.
    pub dst: Ipv4Addr,
    /// Destination prefix length (0 for the default route).
    pub prefix: u8,
    /// Next hop, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: u32,
}

/// One IPv4 address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrInfo {
    /// Interface index.
    pub index: u32,
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

/// Why a network call failed, in the installer's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The peer answered with a reset: nothing listens there.
    Refused,
    /// No route, host or network unreachable.
    Unreachable,
    /// Nothing happened within the timeout.
    TimedOut,
    /// The connection was reset or broken after it was up.
    Reset,
    /// Any other kernel error.
    Os(Error),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::Refused => f.write_str("connection refused"),
            NetError::Unreachable => f.write_str("network unreachable"),
            NetError::TimedOut => f.write_str("timed out"),
            NetError::Reset => f.write_str("connection reset"),
            NetError::Os(e) => write!(f, "{e}"),
        }
    }
}

/// A connected TCP stream.
pub trait TcpConn {
    /// Send all of `bytes` or fail; gives up after `timeout` without progress.
    fn send_all(&mut self, bytes: &[u8], timeout: Duration) -> Result<(), NetError>;
    /// Receive into `buf`: `Ok(0)` is the peer's end of stream,
    /// `Err(TimedOut)` means nothing arrived within `timeout`.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, NetError>;
}

/// A raw IPv4 packet socket on one interface (AF_PACKET, `SOCK_DGRAM`,
/// `ETH_P_IP`): frames go out with the link-layer broadcast address and come
/// in without their ethernet header.
pub trait PacketConn {
    /// Send one IPv4 packet to the link-layer broadcast address.
    fn send(&mut self, packet: &[u8]) -> Result<(), NetError>;
    /// Receive one IPv4 packet; `Err(TimedOut)` after `timeout`.
    fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, NetError>;
}

/// A whole-disk block device opened for writing.
pub trait BlockDev {
    /// The device's size in bytes (`BLKGETSIZE64`).
    fn size(&mut self) -> Result<u64, Error>;
    /// Write all of `bytes` at `offset`.
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error>;
    /// Flush the device's written data to stable storage (`fsync`).
    fn sync(&mut self) -> Result<(), Error>;
    /// Ask the kernel to re-read the partition table (`BLKRRPART`).
    fn reread_partitions(&mut self) -> Result<(), Error>;
    /// Make `len` bytes at `offset` read back as zeros without sending
    /// them: `BLKZEROOUT` on a block device, a punched hole in a regular
    /// file. An error means the caller must write the zeros itself.
    fn zero_range(&mut self, offset: u64, len: u64) -> Result<(), Error>;
    /// Make partition `number` of the disk exist at `start..start+len`
    /// bytes (`BLKPG_ADD_PARTITION`), with no partition table on the disk:
    /// the installer reaches `/perm` before it writes the table.
    fn add_partition(&mut self, number: u8, start: u64, len: u64) -> Result<(), Error>;
    /// Forget partition `number` again (`BLKPG_DEL_PARTITION`).
    fn remove_partition(&mut self, number: u8) -> Result<(), Error>;
}

/// A block device opened read-only: the installer media (a CD, or a USB
/// stick holding the ISO image).
pub trait BlockRead {
    /// The device's size in bytes (`BLKGETSIZE64`).
    fn size(&mut self) -> Result<u64, Error>;
    /// Fill `buf` from `offset`; returns fewer bytes only at the end of the
    /// device.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error>;
}

/// A regular file opened for writing.
pub trait FileOut {
    /// Append all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error>;
    /// Flush the file's data and metadata (`fsync`).
    fn sync(&mut self) -> Result<(), Error>;
}

/// What to do with the machine at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Restart the machine (HTTP installs).
    Reboot,
    /// Switch the machine off (ISO installs, so the media can be removed).
    PowerOff,
}

/// Bytes typed on one console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleInput {
    /// Which console (index into the opened list).
    pub console: usize,
    /// How many bytes were read into the caller's buffer.
    pub len: usize,
}

/// Everything the installer does to the machine.
pub trait Os {
    /// A TCP stream.
    type Tcp: TcpConn;
    /// A raw packet socket.
    type Packet: PacketConn;
    /// A block device.
    type Disk: BlockDev;
    /// A block device opened read-only.
    type Media: BlockRead;
    /// A file being written.
    type File: FileOut;
    /// The pseudo-filesystem reader (`/sys`, `/proc`).
    type Sys: SysFs;

    /// Read access to `/sys` and `/proc`.
    fn sys(&self) -> &Self::Sys;

    /// The monotonic clock.
    fn now(&self) -> Instant;
    /// Sleep for `duration`.
    fn sleep(&mut self, duration: Duration);

    /// Mount the kernel filesystems PID 1 needs: `/proc`, `/sys`, `/dev`
    /// (devtmpfs). Already-mounted ones are left alone.
    fn mount_kernel_filesystems(&mut self) -> Result<(), Error>;

    /// Open `/dev/<name>` for each console name; the order gives each an
    /// index. Consoles that cannot be opened are skipped; returns how many
    /// are open. With none, output goes to standard error.
    fn consoles_open(&mut self, names: &[&str]) -> usize;
    /// Write `bytes` to every open console.
    fn consoles_write(&mut self, bytes: &[u8]);
    /// Put every open console in raw mode (no echo, no line editing) or
    /// back to how it was.
    fn consoles_raw(&mut self, raw: bool);
    /// Wait up to `timeout` for input on any open console.
    fn consoles_read(&mut self, buf: &mut [u8], timeout: Duration) -> Option<ConsoleInput>;

    /// Every network interface.
    fn links(&mut self, each: &mut dyn FnMut(&LinkInfo)) -> Result<(), Error>;
    /// Every IPv4 route of the main table.
    fn routes(&mut self, each: &mut dyn FnMut(&RouteInfo)) -> Result<(), Error>;
    /// Every IPv4 address.
    fn addrs(&mut self, each: &mut dyn FnMut(&AddrInfo)) -> Result<(), Error>;
    /// Set the interface up.
    fn link_up(&mut self, index: u32) -> Result<(), Error>;
    /// Add an IPv4 address with its prefix length to the interface.
    fn addr_add(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error>;
    /// Add a default route through `gateway` on the interface.
    fn route_add_default(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), Error>;
    /// Remove every IPv4 address and route of the interface.
    fn flush(&mut self, index: u32) -> Result<(), Error>;
    /// Open a raw IPv4 packet socket on the interface.
    fn packet_open(&mut self, index: u32) -> Result<Self::Packet, NetError>;
    /// Connect to `addr:port`, giving up after `timeout`.
    fn tcp_connect(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        timeout: Duration,
    ) -> Result<Self::Tcp, NetError>;

    /// Whether `path` exists (a device node, a directory).
    fn exists(&mut self, path: &str) -> bool;
    /// Open a block device for writing.
    fn disk_open(&mut self, path: &str) -> Result<Self::Disk, Error>;
    /// Open a block device read-only (the installer media). Opening it
    /// must not disturb it: no write access is asked for, so a CD or a
    /// write-protected stick opens too.
    fn media_open(&mut self, path: &str) -> Result<Self::Media, Error>;
    /// Create a directory (an existing one is fine).
    fn mkdir(&mut self, path: &str) -> Result<(), Error>;
    /// Mount an ext4 filesystem read-write.
    fn mount_ext4(&mut self, device: &str, target: &str) -> Result<(), Error>;
    /// Mount `source` (a device, or a pseudo-filesystem's name such as
    /// `efivarfs`) of type `fstype` on `target`, read-only when asked.
    fn mount_fs(
        &mut self,
        source: &str,
        target: &str,
        fstype: &str,
        read_only: bool,
    ) -> Result<(), Error>;
    /// Unmount.
    fn unmount(&mut self, target: &str) -> Result<(), Error>;
    /// Write the efivarfs file `path` whole, in one `write`: the 4-byte
    /// attributes, then the variable's data. An existing variable's
    /// immutable flag (efivarfs sets it on most) is cleared first.
    fn efivar_write(&mut self, path: &str, bytes: &[u8]) -> Result<(), Error>;
    /// Delete the efivarfs file `path` (the variable), clearing its
    /// immutable flag first. A missing one is fine.
    fn efivar_remove(&mut self, path: &str) -> Result<(), Error>;
    /// Create (or truncate) a file with mode 0600.
    fn file_create(&mut self, path: &str) -> Result<Self::File, Error>;
    /// Rename a file, replacing the target atomically.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Error>;
    /// Remove a file (a missing one is fine).
    fn remove(&mut self, path: &str) -> Result<(), Error>;
    /// `fsync` a directory, making a rename in it durable.
    fn sync_dir(&mut self, path: &str) -> Result<(), Error>;
    /// Flush every filesystem (`sync`).
    fn sync_all(&mut self);
    /// Reboot or power off. Returns only when the kernel refused.
    fn power(&mut self, action: PowerAction) -> Error;
}
