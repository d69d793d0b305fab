//! Appliances: the named build definitions under
//! `~/.config/ze/appliances/<name>/`, and the builders that turn them into
//! an installer kernel, an initrd, a disk image and an ISO.

pub mod config;
pub mod kernel;

pub use config::{Appliance, Arch, KernelProfile};
