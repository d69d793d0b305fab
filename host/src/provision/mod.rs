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

pub mod admission;
pub mod dhcp;
pub mod image;
pub mod servefs;
pub mod tftp;
