//! Appliances: the named build definitions under
//! `~/.config/ze/appliances/<name>/`, and the builders that turn them into
//! an installer kernel, an initrd, a disk image and an ISO.

pub mod artifacts;
pub mod binary;
pub mod bios;
pub mod config;
pub mod disk;
pub mod esp;
pub mod gpt;
pub mod grub;
pub mod image;
pub mod iso;
pub mod kernel;
pub mod perm;
pub mod region;
pub mod rootfs;
pub mod size;
pub mod tls;
pub mod tools;

pub use config::{Appliance, Arch, KernelProfile};
