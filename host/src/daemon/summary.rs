//! Keeping the log bounded under a flood: repeated events from one source
//! are summarised, and each plugin logs at a bounded rate.
//!
//! - A source (the event's `client`, `from` or `mac` field; a client's
//!   port is left out) may log [`PER_SOURCE`] lines per plugin in each
//!   [`WINDOW`]; what it logs beyond that is counted, not written.
//! - A plugin may log [`BURST`] lines at once and [`RATE`] lines a second
//!   after that (a token bucket), whatever the sources: a flood from many
//!   (spoofed) sources is bounded too.
//! - When a plugin's window ends, one line names what was left out:
//!   `dhcpserver: warning: … and 9,871 more lines from 0.0.0.0 in the last 10 s`
//!   for each of the [`SHOWN_SOURCES`] sources that lost most, and one for
//!   the rest (`… from 312 other sources`).
//! - Events without a source (a plugin's own start, stop and errors) are
//!   held back only by the plugin's rate, which they rarely come near.
//!
//! The lines that are written are written whole and unchanged (checklist
//! R15). At most [`MAX_SOURCES`] sources are tracked per plugin and
//! window; events of further sources count only against the plugin's
//! rate. Sans-IO: the time comes in as an argument.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// The summary period.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Lines one source may log per plugin and window.
pub const PER_SOURCE: u32 = 100;
/// Lines a plugin may log at once.
pub const BURST: u32 = 2000;
/// Lines a second a plugin may log beyond its burst.
pub const RATE: u32 = 100;
/// Sources tracked per plugin and window.
pub const MAX_SOURCES: usize = 1024;
/// Sources named one by one in a summary.
pub const SHOWN_SOURCES: usize = 3;

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    written: u32,
    held: u64,
}

#[derive(Debug)]
struct Plugin {
    window_start: Instant,
    tokens: f64,
    refilled: Instant,
    sources: HashMap<String, Counts>,
    /// Lines held back from sources beyond [`MAX_SOURCES`].
    untracked: u64,
    /// Lines without a source held back.
    unsourced: u64,
}

impl Plugin {
    fn new(now: Instant) -> Plugin {
        Plugin {
            window_start: now,
            tokens: f64::from(BURST),
            refilled: now,
            sources: HashMap::new(),
            untracked: 0,
            unsourced: 0,
        }
    }

    /// Take one line from the bucket, if there is one.
    fn take_token(&mut self, now: Instant) -> bool {
        let secs = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + secs * f64::from(RATE)).min(f64::from(BURST));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The summary lines of the window that ended, and a fresh window.
    fn close_window(&mut self, name: &str, now: Instant, out: &mut Vec<String>) {
        let mut held: Vec<(&String, u64)> = self
            .sources
            .iter()
            .filter(|(_, c)| c.held > 0)
            .map(|(s, c)| (s, c.held))
            .collect();
        held.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let secs = WINDOW.as_secs();
        for (source, n) in held.iter().take(SHOWN_SOURCES) {
            let mut from = String::new();
            super::log::write_value(&mut from, source);
            out.push(format!(
                "{name}: warning: … and {} more lines from {from} in the last {secs} s\n",
                thousands(*n)
            ));
        }
        let rest = &held[held.len().min(SHOWN_SOURCES)..];
        let rest_lines = rest.iter().map(|(_, n)| n).sum::<u64>() + self.untracked;
        if rest_lines > 0 {
            let sources = match (rest.len(), self.untracked > 0) {
                (0, _) => "other sources".to_string(),
                (k, false) => format!("{} other source{}", thousands(k as u64), plural(k)),
                (k, true) => format!("more than {} other sources", thousands(k as u64)),
            };
            out.push(format!(
                "{name}: warning: … and {} more lines from {sources} in the last {secs} s\n",
                thousands(rest_lines)
            ));
        }
        if self.unsourced > 0 {
            out.push(format!(
                "{name}: warning: … and {} more lines in the last {secs} s\n",
                thousands(self.unsourced)
            ));
        }
        self.sources.clear();
        self.untracked = 0;
        self.unsourced = 0;
        self.window_start = now;
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `9871` → `9,871`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What each plugin has logged lately.
#[derive(Debug, Default)]
pub struct Summariser {
    plugins: HashMap<String, Plugin>,
}

impl Summariser {
    /// Nothing logged yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether an event of `plugin` from `source` at `now` is written.
    /// Summaries of windows that ended are appended to `out` first.
    pub fn admit(
        &mut self,
        now: Instant,
        plugin: &str,
        source: Option<&str>,
        out: &mut Vec<String>,
    ) -> bool {
        let p = self
            .plugins
            .entry(plugin.to_string())
            .or_insert_with(|| Plugin::new(now));
        if now.saturating_duration_since(p.window_start) >= WINDOW {
            p.close_window(plugin, now, out);
        }
        let Some(source) = source else {
            let write = p.take_token(now);
            p.unsourced += u64::from(!write);
            return write;
        };
        let tracked = p.sources.len() < MAX_SOURCES || p.sources.contains_key(source);
        if tracked {
            let written = p.sources.get(source).map_or(0, |c| c.written);
            let write = written < PER_SOURCE && p.take_token(now);
            let c = p.sources.entry(source.to_string()).or_default();
            if write {
                c.written += 1;
            } else {
                c.held += 1;
            }
            write
        } else if p.take_token(now) {
            true
        } else {
            p.untracked += 1;
            false
        }
    }

    /// Append the summaries of every window that has ended by `now`.
    pub fn flush(&mut self, now: Instant, out: &mut Vec<String>) {
        for (name, p) in &mut self.plugins {
            if now.saturating_duration_since(p.window_start) >= WINDOW {
                p.close_window(name, now, out);
            }
        }
        // A plugin quiet for a whole window is forgotten.
        self.plugins
            .retain(|_, p| now.saturating_duration_since(p.refilled) < WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DISCOVER-like lease line, as long as the real one.
    fn line(mac: &str) -> String {
        format!(
            "dhcpserver: lease request=DISCOVER reply=OFFER mac={mac} ip=192.0.2.77 bootfile=ipxe.efi\n"
        )
    }

    /// Feed `n` events over `span` from `source(i)`; the bytes written
    /// (lines and summaries) and the summaries.
    fn flood(
        n: u64,
        span: Duration,
        source: impl Fn(u64) -> String,
    ) -> (usize, Vec<String>, Summariser) {
        let mut s = Summariser::new();
        let t0 = Instant::now();
        let mut bytes = 0;
        let mut summaries = Vec::new();
        for i in 0..n {
            let now = t0 + span.mul_f64(i as f64 / n as f64);
            let src = source(i);
            if s.admit(now, "dhcpserver", Some(&src), &mut summaries) {
                bytes += line(&src).len();
            }
        }
        s.flush(t0 + span + WINDOW, &mut summaries);
        bytes += summaries.iter().map(String::len).sum::<usize>();
        (bytes, summaries, s)
    }

    #[test]
    fn r15_a_flood_from_one_source_is_summarised_every_window() {
        // 100k DISCOVERs in 10 s from one MAC wrote 11.9 MB before.
        let (bytes, summaries, _) = flood(100_000, Duration::from_secs(10), |_| {
            "02:00:00:00:00:01".into()
        });
        assert_eq!(
            summaries,
            [
                "dhcpserver: warning: … and 99,900 more lines from 02:00:00:00:00:01 in the last 10 s\n"
            ]
        );
        assert!(bytes < 12_000, "{bytes} bytes (11.9 MB before)");
    }

    #[test]
    fn r15_a_flood_from_random_sources_is_held_to_the_plugin_rate() {
        let (bytes, summaries, _) = flood(100_000, Duration::from_secs(10), |i| {
            format!("02:00:{i:08x}")
        });
        // At most the burst and 10 s of the rate, plus the summary.
        let lines = BURST + 10 * RATE;
        assert!(
            bytes <= lines as usize * line("02:00:00000000").len() + 200,
            "{bytes} bytes"
        );
        assert_eq!(summaries.len(), 1, "{summaries:?}");
        assert!(
            summaries[0].starts_with("dhcpserver: warning: … and 9")
                && summaries[0].ends_with(" more lines from other sources in the last 10 s\n"),
            "{summaries:?}"
        );
    }

    #[test]
    fn the_top_sources_are_named_and_quiet_sources_and_plugins_pass() {
        let mut s = Summariser::new();
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (src, n) in [
            ("192.0.2.9", 580u32),
            ("192.0.2.8", 380),
            ("192.0.2.7", 180),
            ("192.0.2.6", 110),
            ("192.0.2.5", 105),
            ("192.0.2.4", 5),
        ] {
            let written = (0..n)
                .filter(|_| s.admit(t0, "tftpserver", Some(src), &mut out))
                .count() as u32;
            assert_eq!(written, n.min(PER_SOURCE), "{src}");
        }
        // Another plugin is not held back; events without a source only by
        // the plugin's rate.
        assert!(s.admit(t0, "imageserver", Some("192.0.2.9"), &mut out));
        let unsourced = (0..5000)
            .filter(|_| s.admit(t0, "tftpserver", None, &mut out))
            .count();
        assert_eq!(unsourced, BURST as usize - (5 * PER_SOURCE as usize + 5));
        assert!(out.is_empty());
        s.flush(t0 + WINDOW, &mut out);
        assert_eq!(
            out,
            [
                "tftpserver: warning: … and 480 more lines from 192.0.2.9 in the last 10 s\n",
                "tftpserver: warning: … and 280 more lines from 192.0.2.8 in the last 10 s\n",
                "tftpserver: warning: … and 80 more lines from 192.0.2.7 in the last 10 s\n",
                "tftpserver: warning: … and 15 more lines from 2 other sources in the last 10 s\n",
                "tftpserver: warning: … and 3,505 more lines in the last 10 s\n",
            ]
        );
        // A new window: every source may log again.
        assert!(s.admit(t0 + WINDOW, "tftpserver", Some("192.0.2.9"), &mut out));
    }

    #[test]
    fn thousands_separators() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (9871, "9,871"),
            (1_234_567, "1,234,567"),
        ] {
            assert_eq!(thousands(n), want);
        }
    }
}
