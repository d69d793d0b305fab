//! Console lines: every line the installer prints starts with
//! `[ze-install] `, is built in a fixed buffer, and ends with `\n`.
//!
//! A failure is one line, `[ze-install] FATAL: <why>`, so an engineer at a
//! serial console can find it at a glance.

use core::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

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

    #[test]
    fn control_characters_are_removed() {
        let mut line = Line::new();
        write!(line, "bad\x1b[2Jname\r\n").unwrap();
        assert_eq!(line.finish(), b"[ze-install] bad[2Jname\n");
    }
}
