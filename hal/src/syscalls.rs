//! The few raw calls rustix does not expose safely. This module and its
//! siblings under `syscalls` are the only code in ze allowed `unsafe`.
#![allow(unsafe_code)]

use rustix::fd::BorrowedFd;

/// Standard error (fd 2). The kernel opens `/dev/console` as fds 0–2 for
/// init, and a normal process inherits them; nothing in ze closes fd 2.
pub fn stderr() -> BorrowedFd<'static> {
    // SAFETY: fd 2 is open for the life of the process (see above), so the
    // borrow never outlives the descriptor.
    unsafe { BorrowedFd::borrow_raw(2) }
}

/// `exit_group(2)`: end every thread of this process.
#[cfg(target_arch = "x86_64")]
pub fn exit_group(status: i32) -> ! {
    const SYS_EXIT_GROUP: usize = 231;
    // SAFETY: exit_group takes one integer and never returns; no memory is
    // read or written.
    unsafe {
        core::arch::asm!(
            "syscall",
            in("rax") SYS_EXIT_GROUP,
            in("rdi") status as isize,
            options(noreturn, nostack)
        )
    }
}

/// `exit_group(2)`: end every thread of this process.
#[cfg(target_arch = "aarch64")]
pub fn exit_group(status: i32) -> ! {
    const SYS_EXIT_GROUP: usize = 94;
    // SAFETY: exit_group takes one integer and never returns; no memory is
    // read or written.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") SYS_EXIT_GROUP,
            in("x0") status as isize,
            options(noreturn, nostack)
        )
    }
}

/// A `sockaddr_ll` (`linux/if_packet.h`) for AF_PACKET sockets:
///
/// ```text
///  0 family   u16 (AF_PACKET = 17)
///  2 protocol u16, network byte order (ETH_P_IP = 0x0800)
///  4 ifindex  i32
///  8 hatype   u16
/// 10 pkttype  u8
/// 11 halen    u8
/// 12 addr     [u8; 8]
/// ```
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct LinkAddr {
    family: u16,
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

/// `AF_PACKET`.
const AF_PACKET: u16 = 17;
/// `ETH_P_IP`.
pub const ETH_P_IP: u16 = 0x0800;

impl LinkAddr {
    /// The address of interface `ifindex` for IPv4, with link-layer
    /// destination `mac` (broadcast for DHCP).
    pub fn ipv4(ifindex: u32, mac: [u8; 6]) -> Self {
        let mut addr = [0u8; 8];
        addr[..6].copy_from_slice(&mac);
        LinkAddr {
            family: AF_PACKET,
            protocol: ETH_P_IP.to_be(),
            ifindex: i32::try_from(ifindex).unwrap_or(0),
            hatype: 0,
            pkttype: 0,
            halen: 6,
            addr,
        }
    }
}

// SAFETY: `LinkAddr` is `repr(C)` with the exact layout of the kernel's
// `sockaddr_ll`; the pointer handed to `f` points at `self` and the length is
// its size, valid for the whole call.
unsafe impl rustix::net::addr::SocketAddrArg for LinkAddr {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(
            *const rustix::net::addr::SocketAddrOpaque,
            rustix::net::addr::SocketAddrLen,
        ) -> R,
    ) -> R {
        let len = core::mem::size_of::<LinkAddr>() as rustix::net::addr::SocketAddrLen;
        f((self as *const LinkAddr).cast(), len)
    }
}

/// `BLKGETSIZE64`: the size of a block device in bytes.
pub fn block_size(fd: BorrowedFd<'_>) -> rustix::io::Result<u64> {
    use rustix::ioctl::{Getter, opcode};
    const BLKGETSIZE64: rustix::ioctl::Opcode = opcode::read::<usize>(0x12, 114);
    // SAFETY: BLKGETSIZE64 writes one u64 to the pointer it is given, which
    // `Getter` provides with the right size.
    unsafe { rustix::ioctl::ioctl(fd, Getter::<BLKGETSIZE64, u64>::new()) }
}

/// `BLKRRPART`: ask the kernel to re-read the partition table.
pub fn block_reread_partitions(fd: BorrowedFd<'_>) -> rustix::io::Result<()> {
    use rustix::ioctl::{NoArg, opcode};
    const BLKRRPART: rustix::ioctl::Opcode = opcode::none(0x12, 95);
    // SAFETY: BLKRRPART takes no argument and touches no user memory.
    unsafe { rustix::ioctl::ioctl(fd, NoArg::<BLKRRPART>::new()) }
}

/// `BLKZEROOUT`: make `len` bytes from `start` read back as zeros; the
/// kernel uses the device's write-zeroes command where there is one and
/// writes zero pages itself otherwise. Both must be multiples of 512.
pub fn block_zero_out(fd: BorrowedFd<'_>, start: u64, len: u64) -> rustix::io::Result<()> {
    use rustix::ioctl::{Setter, opcode};
    // `_IO(0x12, 127)`: no size in the number, but it takes a pointer to
    // `uint64_t range[2]` = {start, length}.
    const BLKZEROOUT: rustix::ioctl::Opcode = opcode::none(0x12, 127);
    // SAFETY: BLKZEROOUT reads two u64 from the pointer it is given, which
    // `Setter` points at the array it holds for the whole call.
    unsafe { rustix::ioctl::ioctl(fd, Setter::<BLKZEROOUT, [u64; 2]>::new([start, len])) }
}

/// `struct blkpg_partition` (`linux/blkpg.h`).
#[repr(C)]
struct BlkpgPartition {
    /// Start, in bytes.
    start: i64,
    /// Length, in bytes.
    length: i64,
    /// Partition number.
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` (`linux/blkpg.h`).
#[repr(C)]
struct BlkpgArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut BlkpgPartition,
}

/// `BLKPG_ADD_PARTITION` (`add`) or `BLKPG_DEL_PARTITION`: tell the kernel
/// about partition `pno` of the disk at `start..start+length` bytes (or
/// forget it), whatever the partition table on the disk says.
pub fn block_partition(
    fd: BorrowedFd<'_>,
    add: bool,
    pno: u8,
    start: u64,
    length: u64,
) -> rustix::io::Result<()> {
    use rustix::ioctl::{Setter, opcode};
    const BLKPG: rustix::ioctl::Opcode = opcode::none(0x12, 105);
    const ADD: i32 = 1;
    const DEL: i32 = 2;
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| rustix::io::Errno::INVAL)?,
        length: i64::try_from(length).map_err(|_| rustix::io::Errno::INVAL)?,
        pno: i32::from(pno),
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgArg {
        op: if add { ADD } else { DEL },
        flags: 0,
        datalen: core::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut part,
    };
    // SAFETY: BLKPG reads the `blkpg_ioctl_arg` that `Setter` points at,
    // and through its `data` pointer the `blkpg_partition` `part`, which
    // lives on this frame for the whole call; the layouts are the
    // kernel's (`repr(C)`, same field types).
    unsafe { rustix::ioctl::ioctl(fd, Setter::<BLKPG, BlkpgArg>::new(arg)) }
}

/// Move the calling thread into a new, empty network namespace (tests run
/// their netlink and socket checks there, never on the host's interfaces).
#[cfg(any(test, feature = "fake"))]
pub fn unshare_network_namespace() -> rustix::io::Result<()> {
    // SAFETY: CLONE_NEWNET only changes the network namespace of sockets
    // the calling thread creates from now on; it shares no memory or file
    // descriptor state that Rust code relies on.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}
