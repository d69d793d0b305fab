//! `ze cli`: the operator CLI of a running `ze start`.

use crate::{cli::Cli, runtime::control};

/// Run `ze cli`.
pub fn run(args: &Cli) -> anyhow::Result<()> {
    let path = control::socket_path(args.socket.as_deref());
    let command = (!args.command.is_empty()).then(|| args.command.join(" "));
    control::client(&path, command.as_deref())
}
