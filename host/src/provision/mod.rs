//! The provisioning side of ze: the servers `ze install remote` runs on
//! one interface, each a daemon plugin.
//!
//! - [`dhcp`] (`dhcpserver`): addresses with PXE and iPXE boot options;
//! - [`tftp`] (`tftpserver`): the iPXE binaries for firmware that has no HTTP;
//! - [`image`] (`imageserver`): HTTP for iPXE's boot script, the installer
//!   kernel and initrd, the image and the credential database;
//! - [`servefs`]: opening files beneath a served root, shared by TFTP and HTTP;
//! - [`admission`]: who gets a slot (caps in all and per client, eviction of
//!   idle work, a short queue), shared by TFTP and HTTP.
//!
//! The fleet (docs/fleet.md), shared by the three servers:
//!
//! - [`machines`]: one record per machine (image, disk, host name, install
//!   once/always/never) and what its next network boot gets;
//! - [`status`]: the one status table of every machine, fed by the three
//!   servers and the installer's reports, saved under the state directory;
//! - [`views`]: that table for a terminal, as JSON, as a web page and as
//!   Prometheus metrics, and the handlers the imageserver mounts;
//! - [`fleet`]: how each server reaches the records and the table;
//! - [`mac`]: the MAC address that names a machine;
//! - [`shared`]: one instance per directory in a process.

pub mod admission;
pub mod dhcp;
pub mod fleet;
pub mod image;
pub mod mac;
pub mod machines;
pub mod servefs;
pub mod shared;
pub mod status;
pub mod tftp;
pub mod views;
