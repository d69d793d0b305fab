//! The plugin registry: every plugin kind this build of the daemon knows.
//!
//! It sits above the daemon and the plugins, so neither imports the other
//! in a loop: the daemon ([`crate::daemon`]) runs whatever kinds it is
//! handed, and a plugin that must check a config against the registry (the
//! operator CLI's `commit`) is handed it through
//! [`crate::daemon::PluginEnv::kinds`].

use crate::{daemon::PluginKind, provision, runtime};

/// Every plugin kind this build knows.
pub const PLUGINS: &[PluginKind] = &[
    provision::dhcp::KIND,
    provision::tftp::KIND,
    provision::image::KIND,
    provision::views::terminal::KIND,
    runtime::plugins::SSH_KIND,
    runtime::plugins::DHCP_KIND,
];
