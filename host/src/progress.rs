//! Progress of a long pass over bytes (hashing, compressing, mapping an
//! image): a line at most once per [`PROGRESS_EVERY`], so a multi-GiB
//! file never looks hung and a fast one prints nothing.

use crate::appliance::size::human;
use std::{
    io::Write,
    time::{Duration, Instant},
};

/// How often a long pass reports.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Reports `<label> <pct>% (<done> of <total>, <rate>/s)` to a writer.
#[allow(missing_debug_implementations)]
pub struct Progress<'a> {
    log: &'a mut dyn Write,
    label: String,
    total: u64,
    last: Instant,
    started: Instant,
}

impl<'a> Progress<'a> {
    /// Start reporting `label` (printed as given, indentation included)
    /// over `total` bytes.
    pub fn new(log: &'a mut dyn Write, label: &str, total: u64) -> Progress<'a> {
        let now = Instant::now();
        Progress {
            log,
            label: label.to_string(),
            total,
            last: now,
            started: now,
        }
    }

    /// `done` bytes are done.
    pub fn update(&mut self, done: u64) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            let pct = done * 100 / self.total.max(1);
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
            let _ = writeln!(
                self.log,
                "{} {pct:3}% ({} of {}, {}/s)",
                self.label,
                human(done),
                human(self.total),
                human(rate as u64)
            );
        }
    }
}
