//! A minimal line editor for interactive sessions (SSH with a pty, the
//! serial console): turns raw keystrokes into lines, and says what to echo.
//!
//! It understands printable text (UTF-8), Enter (CR, LF or CR LF), Backspace
//! (DEL or ^H), ^U (erase line), ^C (cancel line), ^D (end of session on an
//! empty line) and ignores escape sequences (arrow keys, function keys).

/// The longest line kept; further input is refused with a bell.
pub const MAX_LINE: usize = 4096;

/// What a keystroke produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A finished line (without its terminator).
    Line(String),
    /// ^C: the line was discarded.
    Cancel,
    /// ^D on an empty line: the user is leaving.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// Inside `ESC [ …` until a final byte 0x40..=0x7e.
    Csi,
    /// `ESC O x` (SS3): one more byte.
    Ss3,
}

/// The editor's state.
#[derive(Debug)]
pub struct LineEditor {
    line: Vec<u8>,
    escape: Escape,
    last_was_cr: bool,
    echo: bool,
}

impl LineEditor {
    /// A new editor. With `echo`, typed characters are echoed (a remote pty
    /// does not echo by itself); without, nothing is (password entry).
    pub fn new(echo: bool) -> Self {
        LineEditor {
            line: Vec::new(),
            escape: Escape::None,
            last_was_cr: false,
            echo,
        }
    }

    /// Turn echo on or off.
    pub fn set_echo(&mut self, echo: bool) {
        self.echo = echo;
    }

    /// Feed input bytes; push what should be echoed to `echo_out` and
    /// return the events, in order.
    pub fn feed(&mut self, input: &[u8], echo_out: &mut Vec<u8>) -> Vec<Event> {
        let mut events = Vec::new();
        for &b in input {
            let was_cr = std::mem::replace(&mut self.last_was_cr, false);
            match self.escape {
                Escape::Start => {
                    self.escape = match b {
                        b'[' => Escape::Csi,
                        b'O' => Escape::Ss3,
                        _ => Escape::None,
                    };
                    continue;
                }
                Escape::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.escape = Escape::None;
                    }
                    continue;
                }
                Escape::Ss3 => {
                    self.escape = Escape::None;
                    continue;
                }
                Escape::None => {}
            }
            match b {
                0x1b => self.escape = Escape::Start,
                b'\r' | b'\n' => {
                    if b == b'\n' && was_cr {
                        continue; // CR LF is one Enter
                    }
                    self.last_was_cr = b == b'\r';
                    echo_out.extend_from_slice(b"\r\n");
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    events.push(Event::Line(line));
                }
                0x7f | 0x08 => {
                    // Remove one whole UTF-8 character.
                    let mut removed = false;
                    while let Some(c) = self.line.pop() {
                        removed = true;
                        if c & 0xc0 != 0x80 {
                            break;
                        }
                    }
                    if removed && self.echo {
                        echo_out.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x15 => {
                    let chars = String::from_utf8_lossy(&self.line).chars().count();
                    self.line.clear();
                    if self.echo {
                        for _ in 0..chars {
                            echo_out.extend_from_slice(b"\x08 \x08");
                        }
                    }
                }
                0x03 => {
                    self.line.clear();
                    echo_out.extend_from_slice(b"^C\r\n");
                    events.push(Event::Cancel);
                }
                0x04 => {
                    if self.line.is_empty() {
                        events.push(Event::Eof);
                    }
                }
                b if b < 0x20 => {} // other control characters: ignored
                b => {
                    if self.line.len() >= MAX_LINE {
                        echo_out.push(0x07);
                        continue;
                    }
                    self.line.push(b);
                    if self.echo {
                        echo_out.push(b);
                    }
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ed: &mut LineEditor, input: &[u8]) -> (Vec<Event>, Vec<u8>) {
        let mut echo = Vec::new();
        let events = ed.feed(input, &mut echo);
        (events, echo)
    }

    #[test]
    fn lines_with_any_terminator() {
        let mut ed = LineEditor::new(true);
        let (ev, echo) = run(&mut ed, b"show version\r\nexit\rcommit\n");
        assert_eq!(
            ev,
            [
                Event::Line("show version".into()),
                Event::Line("exit".into()),
                Event::Line("commit".into())
            ]
        );
        assert_eq!(echo, b"show version\r\nexit\r\ncommit\r\n");
    }

    #[test]
    fn editing_keys() {
        let mut ed = LineEditor::new(true);
        let (ev, _) = run(&mut ed, "shox\x7fw vé\x7fersion\r".as_bytes());
        assert_eq!(ev, [Event::Line("show version".into())]);
        let (ev, _) = run(&mut ed, b"garbage\x15exit\r");
        assert_eq!(ev, [Event::Line("exit".into())]);
        let (ev, echo) = run(&mut ed, b"half\x03");
        assert_eq!(ev, [Event::Cancel]);
        assert!(echo.ends_with(b"^C\r\n"));
        let (ev, _) = run(&mut ed, b"x\x04\x7f\x04");
        assert_eq!(ev, [Event::Eof], "^D only ends an empty line");
    }

    #[test]
    fn escape_sequences_are_ignored() {
        let mut ed = LineEditor::new(true);
        let (ev, echo) = run(&mut ed, b"sh\x1b[A\x1b[1;5Cow\x1bOP\r");
        assert_eq!(ev, [Event::Line("show".into())]);
        assert_eq!(echo, b"show\r\n");
    }

    #[test]
    fn no_echo_mode_hides_text() {
        let mut ed = LineEditor::new(false);
        let (ev, echo) = run(&mut ed, b"secret\r");
        assert_eq!(ev, [Event::Line("secret".into())]);
        assert_eq!(echo, b"\r\n");
    }

    #[test]
    fn overlong_lines_are_bounded() {
        let mut ed = LineEditor::new(false);
        let big = vec![b'a'; MAX_LINE + 10];
        let (_, echo) = run(&mut ed, &big);
        assert_eq!(echo, vec![0x07; 10]);
        let (ev, _) = run(&mut ed, b"\r");
        assert_eq!(ev, [Event::Line("a".repeat(MAX_LINE))]);
    }
}
