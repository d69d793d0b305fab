//! `ze <config-file>` and `ze -`: run the plugins of a brace config until
//! SIGINT/SIGTERM (checklist R14, R17), or — for `ze -` — until standard
//! input ends.
//!
//! With `ze -` the config is read from standard input up to a NUL byte;
//! the daemon then keeps reading and shuts down at end of input, so a
//! parent that dies takes its servers with it. A config that ends at end
//! of input (no NUL) is run and shut down straight away.

use crate::{
    daemon::{self, Daemon, Shutdown, log},
    plugins::PLUGINS,
};
use anyhow::{Context as _, bail};
use std::{
    io::{BufRead, Read},
    path::PathBuf,
};

/// The largest config accepted.
pub const MAX_CONFIG_LEN: u64 = 4 << 20;
/// The byte that ends a config on standard input.
pub const END_OF_CONFIG: u8 = 0;

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `ze <config-file>`.
    File(PathBuf),
    /// `ze -`.
    Stdin,
}

impl ConfigSource {
    fn label(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Stdin => "<stdin>".into(),
        }
    }
}

/// Read the config; for stdin, also whether input already ended.
fn read_config(source: &ConfigSource) -> anyhow::Result<(String, bool)> {
    match source {
        ConfigSource::File(path) => {
            let meta = std::fs::metadata(path).with_context(|| {
                format!(
                    "cannot read config file {} (to run a command instead, see `ze --help`)",
                    path.display()
                )
            })?;
            if meta.len() > MAX_CONFIG_LEN {
                bail!(
                    "config file {} is larger than {MAX_CONFIG_LEN} bytes",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            Ok((text, false))
        }
        ConfigSource::Stdin => {
            let mut bytes = Vec::new();
            let stdin = std::io::stdin();
            let mut lock = stdin.lock().take(MAX_CONFIG_LEN + 1);
            lock.read_until(END_OF_CONFIG, &mut bytes)
                .context("cannot read the config from standard input")?;
            let ended = bytes.last() != Some(&END_OF_CONFIG);
            if ended && bytes.len() as u64 > MAX_CONFIG_LEN {
                bail!("the config on standard input is larger than {MAX_CONFIG_LEN} bytes");
            }
            if !ended {
                bytes.pop();
            }
            let text =
                String::from_utf8(bytes).context("the config on standard input is not UTF-8")?;
            Ok((text, ended))
        }
    }
}

/// Run the daemon.
pub fn run(source: ConfigSource) -> anyhow::Result<()> {
    let (text, input_ended) = read_config(&source)?;
    let daemon =
        Daemon::from_text(&text, PLUGINS).map_err(|e| anyhow::anyhow!("{}:{e}", source.label()))?;
    let levels = daemon.log_levels(PLUGINS)?;
    log::install(levels);
    let drain = daemon.settings.drain;
    let shutdown = Shutdown::new().context("cannot create the shutdown event")?;
    daemon::shutdown_on_signals(&shutdown, drain)?;
    if source == ConfigSource::Stdin {
        if input_ended {
            tracing::info!(target: daemon::TARGET, "standard input ended with the config: shutting down after start");
            shutdown.trigger(drain);
        } else {
            daemon::shutdown_on_eof(&shutdown, drain, std::io::stdin())?;
        }
    }
    daemon.run(&shutdown)
}
