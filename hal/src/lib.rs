//! ze-hal: the one place ze's installer meets Linux.
//!
//! Everything the firmware needs from the kernel goes through this crate:
//! reading sysfs, the monotonic clock, consoles, and (in later modules) block
//! devices, netlink, sockets, mounts and reboot. Decisions live in the
//! firmware's sans-IO core; this crate only performs the calls and hands the
//! facts back.
//!
//! - [`sysfs`]: the [`sysfs::SysFs`] trait: read a small file, list a directory.
//! - [`block`]: facts about block devices read from `/sys/block`.
//! - [`console`]: the list of active consoles from `/sys/class/tty/console/active`.
//! - [`time`]: a monotonic [`time::Instant`] and the [`time::Clock`] trait.
//! - [`linux`]: the real implementations (rustix, `linux_raw` backend, no libc).
//! - `fake` (feature `fake`): in-memory stand-ins for tests.
#![cfg_attr(not(any(test, feature = "std")), no_std)]

pub mod block;
pub mod console;
pub mod error;
pub mod netlink;
pub mod os;
pub mod sysfs;
pub mod time;

#[cfg(target_os = "linux")]
pub mod linux;

#[cfg(target_os = "linux")]
mod syscalls;

#[cfg(feature = "mem")]
pub mod mem;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use error::Error;
pub use os::{Os, PowerAction};
