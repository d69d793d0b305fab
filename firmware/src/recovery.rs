//! The recovery console (spec: "Error Handling"): a fixed menu — retry
//! network, diagnostics, reboot, power off — never a shell.
//!
//! Policy, three branches:
//! - `ze.shell-auth=<sha256 hex>`: the menu is behind a password, checked
//!   by comparing the sha256 of what was typed in constant time;
//! - no credential, ISO media: the menu opens (the operator is there);
//! - no credential, network install: print the error, wait
//!   [`UNATTENDED_REBOOT`], reboot — an unattended box never hangs.
//!
//! [`Menu`] is fed the bytes typed on any console and answers with the
//! text to show and the action to take.

use crate::cmdline::{Digest, Source};
use core::time::Duration;
use sha2::{Digest as _, Sha256};

/// How long an unattended network install shows its error before rebooting.
pub const UNATTENDED_REBOOT: Duration = Duration::from_secs(30);
/// How often the countdown is printed while waiting to reboot.
pub const COUNTDOWN_EVERY: Duration = Duration::from_secs(10);
/// Pause after a wrong password.
pub const WRONG_PASSWORD_DELAY: Duration = Duration::from_secs(2);
/// The longest line typed at the console.
pub const MAX_INPUT: usize = 128;

/// What happens after a FATAL error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Ask for the password whose sha256 is this, then open the menu.
    Password(Digest),
    /// Open the menu directly.
    Open,
    /// Wait this long, then reboot.
    RebootAfter(Duration),
}

/// The policy for an install from `source` with credential `shell_auth`.
pub fn policy(source: Source, shell_auth: Option<Digest>) -> Policy {
    match (shell_auth, source) {
        (Some(hash), _) => Policy::Password(hash),
        (None, Source::Iso) => Policy::Open,
        (None, Source::Http) => Policy::RebootAfter(UNATTENDED_REBOOT),
    }
}

/// Compare two digests in time independent of where they differ.
pub fn digests_match(a: &Digest, b: &Digest) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    core::hint::black_box(diff) == 0
}

/// The sha256 of a password as typed.
pub fn password_digest(password: &[u8]) -> Digest {
    Sha256::digest(password).into()
}

/// A menu entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Run the install again from the network stage.
    RetryNetwork,
    /// Print interfaces, routes, disks and the command line.
    Diagnostics,
    /// Restart the machine.
    Reboot,
    /// Switch the machine off.
    PowerOff,
}

/// What the runner must do after feeding input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Carry out a menu choice.
    Run(Choice),
    /// Wrong password: wait this long before reading more input.
    Delay(Duration),
}

/// The menu text.
pub const MENU: &str = "\r\n[ze-install] recovery menu:\r\n  1) retry network\r\n  2) diagnostics\r\n  3) reboot\r\n  4) power off\r\nchoice> ";
/// The password prompt.
pub const PASSWORD_PROMPT: &str = "\r\n[ze-install] recovery password: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Password(Digest),
    Menu,
}

/// The recovery console's input state.
#[derive(Debug)]
pub struct Menu {
    state: State,
    line: heapless::Vec<u8, MAX_INPUT>,
    wrong: u32,
}

fn parse_choice(line: &[u8]) -> Option<Choice> {
    let text = core::str::from_utf8(line).ok()?.trim();
    Some(match text {
        "1" | "retry" | "retry network" => Choice::RetryNetwork,
        "2" | "diagnostics" => Choice::Diagnostics,
        "3" | "reboot" => Choice::Reboot,
        "4" | "poweroff" | "power off" => Choice::PowerOff,
        _ => return None,
    })
}

impl Menu {
    /// A menu under `policy` (`None` for [`Policy::RebootAfter`], which has
    /// no menu).
    pub fn new(policy: Policy) -> Option<Menu> {
        let state = match policy {
            Policy::Password(hash) => State::Password(hash),
            Policy::Open => State::Menu,
            Policy::RebootAfter(_) => return None,
        };
        Some(Menu {
            state,
            line: heapless::Vec::new(),
            wrong: 0,
        })
    }

    /// Whether the password has been accepted (or was never needed).
    pub fn is_open(&self) -> bool {
        self.state == State::Menu
    }

    /// Wrong passwords typed so far.
    pub fn wrong_passwords(&self) -> u32 {
        self.wrong
    }

    /// The prompt to show now.
    pub fn prompt(&self) -> &'static str {
        match self.state {
            State::Password(_) => PASSWORD_PROMPT,
            State::Menu => MENU,
        }
    }

    /// Feed typed bytes; `out` receives what to echo or print.
    pub fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) -> Option<Action> {
        for &b in input {
            if let Some(action) = self.feed_byte(b, out) {
                // Input typed ahead of a prompt change is dropped.
                return Some(action);
            }
        }
        None
    }

    fn feed_byte(&mut self, b: u8, out: &mut dyn FnMut(&[u8])) -> Option<Action> {
        let echo = self.state == State::Menu;
        match b {
            b'\r' | b'\n' => {
                out(b"\r\n");
                let action = self.enter(out);
                self.line.clear();
                action
            }
            0x7f | 0x08 => {
                if self.line.pop().is_some() && echo {
                    out(b"\x08 \x08");
                }
                None
            }
            0x15 => {
                // Ctrl-U: clear the line.
                if echo {
                    for _ in 0..self.line.len() {
                        out(b"\x08 \x08");
                    }
                }
                self.line.clear();
                None
            }
            0x20..=0x7e => {
                if self.line.push(b).is_ok() && echo {
                    out(&[b]);
                }
                None
            }
            _ => None,
        }
    }

    fn enter(&mut self, out: &mut dyn FnMut(&[u8])) -> Option<Action> {
        match self.state {
            State::Password(hash) => {
                if digests_match(&password_digest(&self.line), &hash) {
                    self.state = State::Menu;
                    out(b"[ze-install] password accepted\r\n");
                    out(MENU.as_bytes());
                    None
                } else {
                    self.wrong = self.wrong.saturating_add(1);
                    out(b"[ze-install] wrong password\r\n");
                    Some(Action::Delay(WRONG_PASSWORD_DELAY))
                }
            }
            State::Menu => {
                if self.line.is_empty() {
                    out(b"choice> ");
                    return None;
                }
                match parse_choice(&self.line) {
                    Some(choice) => Some(Action::Run(choice)),
                    None => {
                        out(b"[ze-install] unknown choice; type 1-4\r\n");
                        out(MENU.as_bytes());
                        None
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn feed(m: &mut Menu, input: &[u8]) -> (Option<Action>, std::string::String) {
        let mut shown = Vec::new();
        let a = m.feed(input, &mut |b| shown.extend_from_slice(b));
        (a, std::string::String::from_utf8(shown).unwrap())
    }

    #[test]
    fn i14_policy_has_three_branches() {
        let h = password_digest(b"secret");
        assert_eq!(policy(Source::Http, Some(h)), Policy::Password(h));
        assert_eq!(policy(Source::Iso, Some(h)), Policy::Password(h));
        assert_eq!(policy(Source::Iso, None), Policy::Open);
        assert_eq!(
            policy(Source::Http, None),
            Policy::RebootAfter(Duration::from_secs(30))
        );
        assert!(Menu::new(Policy::RebootAfter(UNATTENDED_REBOOT)).is_none());
    }

    #[test]
    fn i14_password_gate_refuses_wrong_and_accepts_right() {
        let hash = password_digest(b"letmein");
        let mut m = Menu::new(Policy::Password(hash)).unwrap();
        assert_eq!(m.prompt(), PASSWORD_PROMPT);
        // Nothing typed is echoed while entering the password.
        let (a, shown) = feed(&mut m, b"wrong\r");
        assert_eq!(a, Some(Action::Delay(WRONG_PASSWORD_DELAY)));
        assert_eq!(shown, "\r\n[ze-install] wrong password\r\n");
        assert!(!m.is_open());
        // A menu choice typed before the password does not get through.
        let (a, _) = feed(&mut m, b"3\r");
        assert_eq!(a, Some(Action::Delay(WRONG_PASSWORD_DELAY)));
        // Backspace edits the password.
        let (a, shown) = feed(&mut m, b"letmeinx\x7f\r");
        assert_eq!(a, None);
        assert!(shown.contains("password accepted"));
        assert!(shown.contains("1) retry network"));
        assert!(m.is_open());
        assert_eq!(m.wrong_passwords(), 2);
        let (a, shown) = feed(&mut m, b"reboot\r");
        assert_eq!(a, Some(Action::Run(Choice::Reboot)));
        assert!(
            shown.starts_with("reboot"),
            "typed choices are echoed: {shown:?}"
        );
    }

    #[test]
    fn i13_menu_choices_by_number_or_name() {
        for (typed, want) in [
            (&b"1\r"[..], Choice::RetryNetwork),
            (b"2\n", Choice::Diagnostics),
            (b"3\r", Choice::Reboot),
            (b"4\r", Choice::PowerOff),
            (b"  power off \r", Choice::PowerOff),
            (b"retry\r", Choice::RetryNetwork),
        ] {
            let mut m = Menu::new(Policy::Open).unwrap();
            assert_eq!(feed(&mut m, typed).0, Some(Action::Run(want)));
        }
        let mut m = Menu::new(Policy::Open).unwrap();
        let (a, shown) = feed(&mut m, b"sh\r");
        assert_eq!(a, None);
        assert!(shown.contains("unknown choice"));
        // Control and escape bytes are ignored, over-long lines are cut.
        let (a, _) = feed(&mut m, b"\x1b[A\x03");
        assert_eq!(a, None);
        let long = [b'9'; 500];
        assert_eq!(feed(&mut m, &long).0, None);
        assert_eq!(
            feed(&mut m, b"\x15 3\r").0,
            Some(Action::Run(Choice::Reboot))
        );
    }

    #[test]
    fn constant_time_compare_is_correct() {
        let a = password_digest(b"a");
        let mut b = a;
        assert!(digests_match(&a, &b));
        b[31] ^= 1;
        assert!(!digests_match(&a, &b));
        // The known sha256 of "test".
        assert_eq!(password_digest(b"test")[..4], [0x9f, 0x86, 0xd0, 0x81]);
    }
}
