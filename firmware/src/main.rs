//! The installer's static entry point: `_start`, the panic handler, and the
//! runner that performs what the sans-IO core in `lib.rs` decides.
//!
//! Built only with the `pid1` feature and the flags in `linker/`.
#![no_std]
#![no_main]

use core::fmt::Write;
use ze_hal::{
    Os,
    linux::{self, LinuxOs},
};
use ze_installer::{
    console::Line,
    install,
    run::{self, Buffers},
};

/// The process entry. The kernel enters `_start` with the stack pointer at
/// argc; align it and call into Rust. There is no libc to do this for us.
mod start {
    #![allow(unsafe_code)]

    // SAFETY: `_start` only clears the frame pointer, aligns the stack the
    // kernel gave us and calls `entry`, which never returns.
    #[cfg(target_arch = "x86_64")]
    core::arch::global_asm!(
        ".globl _start",
        ".section .text._start,\"ax\",@progbits",
        "_start:",
        "xor rbp, rbp",
        "mov rdi, rsp",
        "and rsp, -16",
        "call {entry}",
        "ud2",
        entry = sym super::entry,
    );

    // SAFETY: as above, for aarch64.
    #[cfg(target_arch = "aarch64")]
    core::arch::global_asm!(
        ".globl _start",
        ".section .text._start,\"ax\",@progbits",
        "_start:",
        "mov x29, xzr",
        "mov x30, xzr",
        "mov x0, sp",
        "and sp, x0, #-16",
        "bl {entry}",
        "brk #1",
        entry = sym super::entry,
    );
}

extern "C" fn entry(_stack: *const usize) -> ! {
    let mut os = LinuxOs::new();
    if linux::pid() != 1 {
        // Run by hand on a workstation: say what this is and do nothing.
        let mut line = Line::new();
        let _ = write!(
            line,
            "ze-installer {} starting (pid {}): not PID 1, nothing to do",
            ze_installer::VERSION,
            linux::pid()
        );
        let _ = linux::write_all(linux::stderr(), line.finish());
        linux::exit(0)
    }
    // The fixed buffers of the install, on the stack (the kernel grows it
    // on demand; init's limit is 8 MiB, these take 3.25 MiB).
    let mut head = [0u8; install::HEAD_LEN];
    let mut io = [0u8; install::IO_CHUNK];
    let mut bmap = [0u8; ze_installer::bmap::MAX_BMAP];
    let mut bufs = Buffers {
        head: &mut head,
        io: &mut io,
        bmap: &mut bmap,
    };
    let action = run::boot(&mut os, &mut bufs);
    loop {
        let err = os.power(action);
        // PID 1 must never exit (the kernel would panic): report and wait.
        let mut line = Line::fatal();
        let _ = write!(line, "the kernel refused to {action:?}: {err}");
        os.consoles_write(line.finish());
        os.sleep(core::time::Duration::from_secs(10));
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut line = Line::fatal();
    let _ = write!(line, "internal error: {}", info.message());
    let _ = linux::write_all(linux::stderr(), line.finish());
    linux::exit(101)
}
