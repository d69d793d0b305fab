//! Questions asked on the operator's terminal: menus, confirmations and
//! passwords typed without echo. Prompts go to standard error so that
//! standard output stays clean for scripts.

use std::io::{self, BufRead, IsTerminal, Write};

/// How many times a question is asked again after an invalid answer.
pub const MAX_ATTEMPTS: usize = 10;

/// Whether standard input is a terminal (a person can answer).
pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// Print `prompt` and read one line; `None` at end of input.
pub fn ask(prompt: &str) -> io::Result<Option<String>> {
    let mut err = io::stderr().lock();
    err.write_all(prompt.as_bytes())?;
    err.flush()?;
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        writeln!(err)?;
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
}

/// Ask a yes/no question whose default is no. End of input means no.
pub fn confirm(question: &str) -> io::Result<bool> {
    for _ in 0..MAX_ATTEMPTS {
        match ask(&format!("{question} [y/N]: "))? {
            None => return Ok(false),
            Some(a) => match a.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "" | "n" | "no" => return Ok(false),
                other => eprintln!("please answer y or n (got {other:?})"),
            },
        }
    }
    Ok(false)
}

/// What [`ask_secret`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Secret {
    /// The text typed before Enter.
    Text(String),
    /// Ctrl-D on an empty line, or the end of input.
    Eof,
    /// Ctrl-C.
    Interrupted,
}

/// Read a line from the terminal on standard input without echoing it.
///
/// The terminal is put in non-canonical mode without echo or signals and
/// read byte by byte, so Ctrl-C can restore the terminal before returning
/// instead of leaving echo off. Backspace and Ctrl-U edit the line.
pub fn ask_secret(prompt: &str) -> io::Result<Secret> {
    use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex};
    let stdin = io::stdin();
    let saved = termios::tcgetattr(&stdin)?;
    let mut raw = saved.clone();
    raw.local_modes
        .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG | LocalModes::IEXTEN);
    raw.special_codes[SpecialCodeIndex::VMIN] = 1;
    raw.special_codes[SpecialCodeIndex::VTIME] = 0;

    // Echo goes off before the prompt shows, so nothing typed after the
    // prompt can be echoed.
    termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
    let mut err = io::stderr().lock();
    let result = err
        .write_all(prompt.as_bytes())
        .and_then(|()| err.flush())
        .and_then(|()| read_secret_bytes(&stdin));
    // Restore the terminal whatever happened above.
    termios::tcsetattr(&stdin, OptionalActions::Now, &saved)?;
    writeln!(err)?;
    result
}

fn read_secret_bytes(stdin: &io::Stdin) -> io::Result<Secret> {
    let mut line: Vec<u8> = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let n = match rustix::io::read(stdin, &mut byte) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(if line.is_empty() {
                Secret::Eof
            } else {
                Secret::Text(utf8(line))
            });
        }
        match byte[0] {
            b'\r' | b'\n' => return Ok(Secret::Text(utf8(line))),
            0x03 => return Ok(Secret::Interrupted),
            0x04 if line.is_empty() => return Ok(Secret::Eof),
            0x7f | 0x08 => {
                // Drop one whole UTF-8 character.
                while let Some(b) = line.pop() {
                    if b & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            0x15 => line.clear(),
            b => line.push(b),
        }
    }
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}
