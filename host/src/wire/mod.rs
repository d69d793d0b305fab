//! Wire formats the provisioning servers speak: checked views over bytes
//! and parsed representations (docs/ARCHITECTURE.md).

pub mod dhcp;
pub mod http;
pub mod tftp;
