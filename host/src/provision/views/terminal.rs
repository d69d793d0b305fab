//! `statustable`: the plugin that keeps the fleet's table ([`super::tty`])
//! under the log on a terminal, redrawn at most four times a second.
//! Without a terminal on standard error it does nothing: the log lines
//! are the whole output, as before.
//!
//! ```text
//! statustable {
//!     state-dir /srv/pxe/state;   # the table of the servers with this state-dir
//! }
//! ```
//!
//! `ze install remote` adds the block to its servers' config.

use crate::{
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginKind, Service, Shutdown, log},
    provision::status::Fleet,
};
use std::{io::IsTerminal as _, path::PathBuf, sync::Arc, time::Duration};

/// The plugin's name: its config block and log target.
pub const NAME: &str = "statustable";
/// The registry entry.
pub const KIND: PluginKind = PluginKind {
    name: NAME,
    configure,
};
/// The shortest time between two redraws.
pub const REDRAW_EVERY: Duration = Duration::from_millis(250);
/// Lines of the terminal kept for the log above the table.
const LOG_LINES: usize = 6;

fn configure(
    block: &Block<'_>,
    _env: &crate::daemon::PluginEnv,
) -> Result<Box<dyn Plugin>, ConfigError> {
    let state_dir = block.abs_path("state-dir")?.ok_or_else(|| {
        block.error(
            block.pos(),
            "state-dir",
            "missing: this setting is required",
        )
    })?;
    Ok(Box::new(TablePlugin { state_dir }))
}

#[derive(Debug)]
struct TablePlugin {
    state_dir: PathBuf,
}

struct TableService {
    fleet: Option<Arc<Fleet>>,
}

impl Plugin for TablePlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let on_terminal = std::io::stderr().is_terminal();
        if !on_terminal {
            tracing::debug!(target: NAME, "standard error is no terminal: no table, log lines only");
        }
        Ok(Box::new(TableService {
            fleet: on_terminal.then(|| Fleet::open(&self.state_dir)),
        }))
    }
}

/// The terminal's size (columns, rows), or 80×24 when it cannot be read.
fn terminal_size() -> (usize, usize) {
    match rustix::termios::tcgetwinsize(std::io::stderr()) {
        Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (usize::from(w.ws_col), usize::from(w.ws_row)),
        _ => (80, 24),
    }
}

/// The table for a terminal of `width` × `height`: as many machine rows as
/// fit under [`LOG_LINES`] lines of log, then how many more there are.
pub fn footer(fleet: &Fleet, width: usize, height: usize, now: u64) -> String {
    let text = super::tty::render(fleet, width, now);
    let lines: Vec<&str> = text.lines().collect();
    let room = height.saturating_sub(LOG_LINES).max(3);
    let mut out = String::new();
    if lines.len() <= room {
        for l in &lines {
            out.push_str(l);
            out.push('\n');
        }
        return out;
    }
    for l in &lines[..room - 1] {
        out.push_str(l);
        out.push('\n');
    }
    let more = format!(
        "… {} more machines: see GET /install/status",
        lines.len() - (room - 1)
    );
    out.push_str(&more.chars().take(width).collect::<String>());
    out.push('\n');
    out
}

impl Service for TableService {
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let Some(fleet) = self.fleet else {
            shutdown.wait_any(&[], None)?;
            return Ok(());
        };
        let drawn = fleet.clone();
        log::set_footer(Some(Box::new(move || {
            let (w, h) = terminal_size();
            footer(&drawn, w, h, crate::timefmt::now_ms())
        })));
        loop {
            log::redraw_footer();
            if shutdown.wait_any(&[], Some(REDRAW_EVERY))? == crate::daemon::Wake::Shutdown {
                break;
            }
        }
        // The last table stays on the screen, under the last lines.
        log::redraw_footer();
        log::set_footer(None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::views::tests::{T0, sample};

    #[test]
    fn f6_footer_fits_the_terminal_height() {
        let d = tempfile::tempdir().unwrap();
        let fleet = sample(d.path());
        let all = footer(&fleet, 120, 100, T0 + 60_000);
        let n = all.lines().count();
        assert!(n >= 3, "{all}");
        assert!(!all.contains("more machines"));
        let cut = footer(&fleet, 120, LOG_LINES + 3, T0 + 60_000);
        assert_eq!(cut.lines().count(), 3, "{cut}");
        assert!(
            cut.lines()
                .last()
                .unwrap()
                .starts_with(&format!("… {} more machines", n - 2)),
            "{cut}"
        );
        assert!(cut.lines().all(|l| l.chars().count() <= 120));
    }
}
