//! Wire formats the provisioning servers speak: checked views over bytes
//! and parsed representations (see PRACTICES "Wire modules").

pub mod dhcp;
pub mod http;
pub mod tftp;
