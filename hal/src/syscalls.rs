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
