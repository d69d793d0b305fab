//! The appliance runtime: what `ze start` runs on an installed appliance
//! (bootstrap mode, the SSH server, the operator CLI).

pub mod bootstrap;
pub mod control;
pub mod dhcpclient;
pub mod discover;
pub mod lineedit;
pub mod mode;
pub mod plugins;
pub mod ratelimit;
pub mod shell;
pub mod ssh;
pub mod sshgate;
