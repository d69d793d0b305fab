//! The ze installer's sans-IO core.
//!
//! Every decision the installer makes lives here, as plain functions and
//! state machines that are told the time and the events and answer with
//! actions. Nothing here performs a syscall; the runner in `main.rs` does,
//! through `ze-hal`. That is what lets `cargo test` exercise the whole
//! installer on the host (docs/ARCHITECTURE.md, "ze-installer").
#![cfg_attr(not(test), no_std)]
// `install::Fatal` carries the names it reports (a device, a file on the
// installer media, the disks of an ambiguous choice) in fixed buffers, a
// few hundred bytes; it is returned once per install attempt, never in a
// loop, and there is no heap to box it on.
#![allow(clippy::result_large_err)]

pub mod bmap;
pub mod byid;
pub mod cmdline;
pub mod console;
pub mod dhcp;
pub mod dhcp_port;
pub mod disk;
pub mod efiboot;
pub mod frame;
pub mod fuzzing;
pub mod gpt;
pub mod gunzip;
pub mod http;
pub mod install;
pub mod iso9660;
pub mod net;
pub mod recovery;
pub mod run;

/// The installer's version, printed in its first console line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
