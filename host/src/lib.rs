//! ze, the host tool: installs itself and its systemd service, runs the
//! PXE provisioning servers, and builds the appliance image, installer
//! kernel, initrd and ISO. The `ze` binary is a thin shell over this crate.

pub mod appliance;
pub mod bmap;
pub mod build;
pub mod cli;
pub mod cmd;
pub mod command;
pub mod config;
pub mod context;
pub mod cpio;
pub mod credentials;
pub mod daemon;
pub mod digest;
pub mod fsutil;
pub mod fuzzing;
pub mod layout;
pub mod manifest;
pub mod netaddr;
pub mod netlink;
pub mod pid1;
pub mod plan;
pub mod plugins;
pub mod progress;
pub mod prompt;
pub mod provision;
pub mod random;
pub mod runtime;
pub mod sysroot;
pub mod timefmt;
pub mod users;
pub mod version;
pub mod wire;
pub mod zefs;
