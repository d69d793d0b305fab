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

/// Move the calling thread into a new, empty network namespace (tests run
/// their netlink and socket checks there, never on the host's interfaces).
#[cfg(any(test, feature = "fake"))]
pub fn unshare_network_namespace() -> rustix::io::Result<()> {
    // SAFETY: CLONE_NEWNET only changes the network namespace of sockets
    // the calling thread creates from now on; it shares no memory or file
    // descriptor state that Rust code relies on.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}
