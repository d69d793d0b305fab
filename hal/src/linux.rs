//! The real hal: Linux through rustix's `linux_raw` backend (no libc).

use crate::{
    Error,
    sysfs::SysFs,
    time::{Clock, Instant},
};
use core::mem::MaybeUninit;
use rustix::{
    fd::{AsFd, BorrowedFd},
    fs::{Mode, OFlags, RawDir},
    io::Errno,
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

/// What to do with the machine at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Restart the machine (HTTP installs).
    Reboot,
    /// Switch the machine off (ISO installs, so the media can be removed).
    PowerOff,
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

/// End this process with `status` (never returns).
pub fn exit(status: i32) -> ! {
    crate::syscalls::exit_group(status)
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

    #[test]
    fn monotonic_clock_moves_forward() {
        let a = Linux.now();
        std::thread::sleep(core::time::Duration::from_millis(5));
        assert!(Linux.now() > a);
    }
}
