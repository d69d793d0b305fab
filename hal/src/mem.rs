//! `memcpy`, `memmove`, `memset`, `memcmp`, `bcmp` and `strlen` for the libc-free
//! firmware (feature `mem`). The compiler emits calls to these symbols;
//! without libc, somebody has to define them.
//!
//! The copies and fills are single `rep movsb` / `rep stosb` instructions on
//! x86_64 (fast on every CPU with ERMSB) and explicit loops in assembly on
//! aarch64, so the optimiser can never turn them back into calls to
//! themselves.
#![allow(unsafe_code)]

/// # Safety
/// `dest` and `src` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is memcpy's.
    unsafe { copy_forward(dest, src, n) };
    dest
}

/// # Safety
/// `dest` and `src` are valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // No harmful overlap: dest is before src, or past its end.
        // SAFETY: the caller's contract; forward copy is correct here.
        unsafe { copy_forward(dest, src, n) };
    } else {
        // SAFETY: the caller's contract; copy from the end.
        unsafe { copy_backward(dest, src, n) };
    }
    dest
}

/// # Safety
/// `dest` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract is memset's.
    unsafe { fill(dest, c as u8, n) };
    dest
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and both are valid for n bytes.
        let (x, y) = unsafe { (a.add(i).read(), b.add(i).read()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// `s` points to a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: the caller guarantees a NUL within the allocation, so every
    // byte up to it is readable.
    while unsafe { s.add(n).read() } != 0 {
        n += 1;
    }
    n
}

#[cfg(target_arch = "x86_64")]
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: rep movsb copies rcx bytes from rsi to rdi, forwards (the
    // direction flag is clear per the ABI); the caller guarantees validity.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn copy_backward(dest: *mut u8, src: *const u8, n: usize) {
    if n == 0 {
        return;
    }
    // SAFETY: with the direction flag set, rep movsb copies downwards from
    // the last byte; the flag is cleared again as the ABI requires.
    unsafe {
        core::arch::asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rcx") n => _,
            inout("rdi") dest.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack)
        );
    }
}

#[cfg(target_arch = "x86_64")]
unsafe fn fill(dest: *mut u8, c: u8, n: usize) {
    // SAFETY: rep stosb stores al to rcx bytes at rdi; the caller
    // guarantees validity.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") n => _,
            inout("rdi") dest => _,
            in("al") c,
            options(nostack, preserves_flags)
        );
    }
}

#[cfg(target_arch = "aarch64")]
unsafe fn copy_forward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: a byte loop over n bytes; the caller guarantees validity.
    unsafe {
        core::arch::asm!(
            "cbz {n}, 2f",
            "1: ldrb {t:w}, [{s}], #1",
            "strb {t:w}, [{d}], #1",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            "2:",
            n = inout(reg) n => _,
            s = inout(reg) src => _,
            d = inout(reg) dest => _,
            t = out(reg) _,
            options(nostack)
        );
    }
}

#[cfg(target_arch = "aarch64")]
unsafe fn copy_backward(dest: *mut u8, src: *const u8, n: usize) {
    // SAFETY: a byte loop from the end; the caller guarantees validity.
    unsafe {
        core::arch::asm!(
            "cbz {n}, 2f",
            "1: ldrb {t:w}, [{s}, #-1]!",
            "strb {t:w}, [{d}, #-1]!",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            "2:",
            n = inout(reg) n => _,
            s = inout(reg) src.wrapping_add(n) => _,
            d = inout(reg) dest.wrapping_add(n) => _,
            t = out(reg) _,
            options(nostack)
        );
    }
}

#[cfg(target_arch = "aarch64")]
unsafe fn fill(dest: *mut u8, c: u8, n: usize) {
    // SAFETY: a byte loop over n bytes; the caller guarantees validity.
    unsafe {
        core::arch::asm!(
            "cbz {n}, 2f",
            "1: strb {c:w}, [{d}], #1",
            "subs {n}, {n}, #1",
            "b.ne 1b",
            "2:",
            n = inout(reg) n => _,
            d = inout(reg) dest => _,
            c = in(reg) u32::from(c),
            options(nostack)
        );
    }
}
