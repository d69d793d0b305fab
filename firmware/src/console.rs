//! Console lines: every line the installer prints starts with
//! `[ze-install] `, is built in a fixed buffer, and ends with `\n`.
//!
//! A failure is one line, `[ze-install] FATAL: <why>`, so an engineer at a
//! serial console can find it at a glance.

use core::{
    fmt::{self, Write},
    time::Duration,
};
use ze_hal::time::Instant;

/// What every installer line starts with.
pub const PREFIX: &str = "[ze-install] ";

/// The longest console line, prefix and newline included. Longer text is
/// cut and ends with `...`.
pub const MAX_LINE: usize = 256;

/// One console line being built in a fixed buffer.
#[derive(Debug)]
pub struct Line {
    buf: [u8; MAX_LINE],
    len: usize,
    truncated: bool,
}

impl Line {
    /// A line holding only the prefix.
    pub fn new() -> Self {
        let mut line = Line {
            buf: [0; MAX_LINE],
            len: 0,
            truncated: false,
        };
        line.push(PREFIX.as_bytes());
        line
    }

    /// A line starting with `[ze-install] FATAL: `.
    pub fn fatal() -> Self {
        let mut line = Line::new();
        line.push(b"FATAL: ");
        line
    }

    fn push(&mut self, bytes: &[u8]) {
        // Keep room for "...\n".
        let room = MAX_LINE - 4 - self.len;
        let take = bytes.len().min(room);
        if take < bytes.len() {
            self.truncated = true;
        }
        if let (Some(dst), Some(src)) = (
            self.buf.get_mut(self.len..self.len + take),
            bytes.get(..take),
        ) {
            dst.copy_from_slice(src);
            self.len += take;
        }
    }

    /// The finished line, with `...` when cut, and the trailing newline.
    pub fn finish(&mut self) -> &[u8] {
        let tail: &[u8] = if self.truncated { b"...\n" } else { b"\n" };
        let end = self.len + tail.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(tail);
        }
        self.buf.get(..end).unwrap_or_default()
    }
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Control characters from untrusted input (a server's reason
        // phrase, a device name) must not move the cursor or clear the
        // screen of the engineer's terminal.
        for chunk in s.split(|c: char| c.is_control()) {
            self.push(chunk.as_bytes());
        }
        Ok(())
    }
}

/// Print one `[ze-install] ` line on every console of an
/// [`ze_hal::Os`]: `say!(os, "target disk {path}")`.
macro_rules! say {
    ($os:expr, $($arg:tt)*) => {{
        let mut line = $crate::console::Line::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!($($arg)*));
        $os.consoles_write(line.finish());
    }};
}
pub(crate) use say;

/// How often a progress line may be printed.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Progress of a transfer, printed at most once per [`PROGRESS_INTERVAL`]:
/// bytes done, percent, MB/s, ETA.
#[derive(Debug, Clone)]
pub struct Progress {
    what: &'static str,
    start: Instant,
    base: u64,
    total: Option<u64>,
    last: Option<Instant>,
    /// A block-map transfer of an image of this many bytes: `done` and
    /// `total` count mapped bytes, shown in MiB.
    image: Option<u64>,
}

/// `n` bytes as MiB with one decimal, rounded to the nearest (`9.8`).
#[derive(Debug, Clone, Copy)]
pub struct Mib(pub u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (u128::from(self.0) * 10 + (1 << 19)) >> 20;
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

impl Progress {
    /// A transfer of `what` starting at `now` with `done` bytes already
    /// there (a resumed download) and `total` bytes expected.
    pub fn new(what: &'static str, now: Instant, done: u64, total: Option<u64>) -> Self {
        Progress {
            what,
            start: now,
            base: done,
            total,
            last: None,
            image: None,
        }
    }

    /// A block-map transfer of `mapped` bytes out of an `image`-byte image,
    /// from `now`: lines read `image: 9.8/11.2 MiB of the map (2048 MiB
    /// image), 30.0 MB/s, ETA 0:00`.
    pub fn map(what: &'static str, now: Instant, mapped: u64, image: u64) -> Self {
        Progress {
            image: Some(image),
            ..Progress::new(what, now, 0, Some(mapped))
        }
    }

    /// A progress line when one is due at `now` with `done` bytes.
    pub fn update(&mut self, now: Instant, done: u64) -> Option<Line> {
        let due = match self.last {
            None => now.saturating_since(self.start) >= PROGRESS_INTERVAL,
            Some(last) => now.saturating_since(last) >= PROGRESS_INTERVAL,
        };
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(self.line(now, done))
    }

    /// The progress line for `done` bytes at `now`, due or not.
    pub fn line(&self, now: Instant, done: u64) -> Line {
        let mut line = Line::new();
        let ms = now.saturating_since(self.start).as_millis().max(1) as u64;
        let moved = done.saturating_sub(self.base);
        // Bytes per second, then MB/s with one decimal.
        let rate = moved.saturating_mul(1000) / ms;
        if let (Some(image), Some(total)) = (self.image, self.total) {
            let _ = write!(
                line,
                "{}: {}/{} MiB of the map ({} MiB image)",
                self.what,
                Mib(done),
                Mib(total),
                image.div_ceil(1 << 20)
            );
        } else if let Some(total) = self.total {
            let _ = write!(line, "{}: {done}", self.what);
            let pct = done.saturating_mul(100).checked_div(total).unwrap_or(100);
            let _ = write!(line, "/{total} bytes ({pct}%)");
        } else {
            let _ = write!(line, "{}: {done} bytes", self.what);
        }
        let _ = write!(
            line,
            ", {}.{} MB/s",
            rate / 1_000_000,
            (rate % 1_000_000) / 100_000
        );
        if let Some(total) = self.total
            && rate > 0
        {
            let secs = total.saturating_sub(done).div_ceil(rate);
            let _ = write!(line, ", ETA {}:{:02}", secs / 60, secs % 60);
        }
        line
    }

    /// Average bytes per second from the start to `now`.
    pub fn rate(&self, now: Instant, done: u64) -> u64 {
        let ms = now.saturating_since(self.start).as_millis().max(1) as u64;
        done.saturating_sub(self.base).saturating_mul(1000) / ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_prefix_and_newline() {
        let mut line = Line::new();
        let (image, server) = ("ze.img", "192.0.2.1");
        write!(line, "downloading {image} from {server}").unwrap();
        assert_eq!(
            line.finish(),
            b"[ze-install] downloading ze.img from 192.0.2.1\n"
        );
    }

    #[test]
    fn fatal_lines_are_marked() {
        let mut line = Line::fatal();
        write!(line, "no disk found").unwrap();
        assert_eq!(line.finish(), b"[ze-install] FATAL: no disk found\n");
    }

    #[test]
    fn long_lines_are_cut_visibly() {
        let mut line = Line::new();
        for _ in 0..100 {
            write!(line, "0123456789").unwrap();
        }
        let out = line.finish();
        assert_eq!(out.len(), MAX_LINE);
        assert!(out.ends_with(b"...\n"));
        assert!(out.starts_with(PREFIX.as_bytes()));
    }

    fn text(line: &mut Line) -> std::string::String {
        std::string::String::from_utf8(line.finish().to_vec()).unwrap()
    }

    #[test]
    fn i11_progress_at_most_once_a_second() {
        let t0 = Instant::from_millis(10_000);
        let mut p = Progress::new("image", t0, 0, Some(64_000_000));
        assert!(p.update(t0, 0).is_none());
        assert!(p.update(Instant::from_millis(10_999), 5_000_000).is_none());
        let mut line = p.update(Instant::from_millis(11_000), 8_000_000).unwrap();
        assert_eq!(
            text(&mut line),
            "[ze-install] image: 8000000/64000000 bytes (12%), 8.0 MB/s, ETA 0:07\n"
        );
        assert!(p.update(Instant::from_millis(11_500), 12_000_000).is_none());
        let mut line = p.update(Instant::from_millis(12_000), 16_000_000).unwrap();
        assert_eq!(
            text(&mut line),
            "[ze-install] image: 16000000/64000000 bytes (25%), 8.0 MB/s, ETA 0:06\n"
        );
    }

    #[test]
    fn progress_of_a_resumed_transfer_counts_only_new_bytes_for_the_rate() {
        let t0 = Instant::from_millis(0);
        let p = Progress::new("image", t0, 50_000_000, Some(100_000_000));
        let mut line = p.line(Instant::from_millis(2_000), 60_000_000);
        assert_eq!(
            text(&mut line),
            "[ze-install] image: 60000000/100000000 bytes (60%), 5.0 MB/s, ETA 0:08\n"
        );
        // Unknown total, nothing moved yet: no ETA, no division by zero.
        let p = Progress::new("zefs", t0, 0, None);
        let mut line = p.line(t0, 0);
        assert_eq!(text(&mut line), "[ze-install] zefs: 0 bytes, 0.0 MB/s\n");
    }

    #[test]
    fn w4_map_progress_counts_mapped_bytes() {
        let t0 = Instant::from_millis(0);
        let mapped = 11_744_051; // 11.2 MiB
        let p = Progress::map("image", t0, mapped, 2 << 30);
        let mut line = p.line(Instant::from_millis(1_000), 10_276_044);
        assert_eq!(
            text(&mut line),
            "[ze-install] image: 9.8/11.2 MiB of the map (2048 MiB image), 10.2 MB/s, ETA 0:01\n"
        );
        let mut line = p.line(Instant::from_millis(1_200), mapped);
        assert!(
            text(&mut line)
                .ends_with("11.2/11.2 MiB of the map (2048 MiB image), 9.7 MB/s, ETA 0:00\n")
        );
    }

    #[test]
    fn control_characters_are_removed() {
        let mut line = Line::new();
        write!(line, "bad\x1b[2Jname\r\n").unwrap();
        assert_eq!(line.finish(), b"[ze-install] bad[2Jname\n");
    }
}
