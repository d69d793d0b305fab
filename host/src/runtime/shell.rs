//! The operator CLI that an SSH login (or the control socket) lands in.
//!
//! ```text
//! ze> show version
//! ze> show interfaces
//! ze> show configuration [candidate]
//! ze> config edit        (type the new config; end with a line "." or ^D)
//! ze> commit
//! ze> exit
//! ```
//!
//! The shell is a state machine over lines: it is given a line and answers
//! with text, so it runs the same over SSH, a socket, or a test. What it
//! needs from the running system comes through [`Backend`].

use crate::config::brace;
use std::fmt::Write;

/// The prompt in normal mode.
pub const PROMPT: &str = "ze> ";
/// The prompt while a config is being typed.
pub const EDIT_PROMPT: &str = "config> ";
/// The line that ends `config edit` input.
pub const END_OF_EDIT: &str = ".";
/// The most lines `config edit` accepts.
pub const MAX_EDIT_LINES: usize = 10_000;

/// One network interface as `show interfaces` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Kernel name.
    pub name: String,
    /// `ethernet`, `loopback`, `bridge`, `veth`, …
    pub kind: String,
    /// Administratively up.
    pub up: bool,
    /// Link detected.
    pub carrier: bool,
    /// Hardware address, `aa:bb:…`, empty if none.
    pub mac: String,
    /// Addresses with prefix length, `192.0.2.10/24`.
    pub addresses: Vec<String>,
}

/// What the shell needs from the running system.
pub trait Backend {
    /// The `ze version` text (with the `image:`/`appliance:` lines).
    fn version(&self) -> String;
    /// The interfaces.
    fn interfaces(&self) -> anyhow::Result<Vec<InterfaceInfo>>;
    /// The configuration currently in force (brace text) and where it came
    /// from (`active`, `template`, `bootstrap`).
    fn running_config(&self) -> anyhow::Result<(String, String)>;
    /// Check a config as the daemon would; errors name line:column and key.
    fn validate(&self, text: &str) -> anyhow::Result<()>;
    /// Store `text` as the active config (`file/active/ze.conf`) atomically.
    fn commit(&self, text: &str) -> anyhow::Result<()>;
}

/// The answer to one line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// Text to show, lines ending in `\n`.
    pub output: String,
    /// The session should end.
    pub exit: bool,
}

enum Mode {
    Normal,
    Editing(Vec<String>),
}

/// One operator session.
pub struct Shell<B: Backend> {
    backend: B,
    user: String,
    candidate: Option<String>,
    mode: Mode,
}

impl<B: Backend> std::fmt::Debug for Shell<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

const HELP: &str = "\
commands:
  show version               ze and image version
  show interfaces            network interfaces, state and addresses
  show configuration         the configuration in force
  show configuration candidate   the edited, uncommitted configuration
  config edit                type a new configuration; end with a line '.' (or Ctrl-D)
  commit                     validate the candidate and make it the active configuration
  exit                       leave
";

impl<B: Backend> Shell<B> {
    /// A session for `user`.
    pub fn new(backend: B, user: &str) -> Self {
        Shell {
            backend,
            user: user.into(),
            candidate: None,
            mode: Mode::Normal,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The greeting shown at login.
    pub fn banner(&self) -> String {
        format!(
            "ze operator CLI; logged in as {}. Type 'help' for commands.\n",
            self.user
        )
    }

    /// The prompt for the next line.
    pub fn prompt(&self) -> &'static str {
        match self.mode {
            Mode::Normal => PROMPT,
            Mode::Editing(_) => EDIT_PROMPT,
        }
    }

    /// Whether `config edit` input is being collected.
    pub fn editing(&self) -> bool {
        matches!(self.mode, Mode::Editing(_))
    }

    /// End of input (^D): finishes an edit, or ends the session.
    pub fn eof(&mut self) -> Reply {
        if self.editing() {
            self.line(END_OF_EDIT)
        } else {
            Reply {
                output: String::new(),
                exit: true,
            }
        }
    }

    /// ^C: abandons an edit in progress.
    pub fn cancel(&mut self) -> Reply {
        if self.editing() {
            self.mode = Mode::Normal;
            return Reply {
                output: "edit abandoned; the candidate is unchanged\n".into(),
                exit: false,
            };
        }
        Reply::default()
    }

    /// Handle one line of input.
    pub fn line(&mut self, line: &str) -> Reply {
        if let Mode::Editing(lines) = &mut self.mode {
            if line.trim_end() != END_OF_EDIT {
                if lines.len() >= MAX_EDIT_LINES {
                    self.mode = Mode::Normal;
                    return say(format!(
                        "error: more than {MAX_EDIT_LINES} lines; edit abandoned\n"
                    ));
                }
                lines.push(line.to_string());
                return Reply::default();
            }
            let text = lines.join("\n") + "\n";
            self.mode = Mode::Normal;
            return match brace::parse(&text) {
                Ok(_) => {
                    self.candidate = Some(text);
                    say(
                        "candidate configuration updated; 'commit' to apply it, 'show configuration candidate' to review\n",
                    )
                }
                Err(e) => say(format!("error: {e}\nthe candidate is unchanged\n")),
            };
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        // `ze config edit` reads as `config edit`.
        let words: &[&str] = match words.as_slice() {
            ["ze", rest @ ..] => rest,
            all => all,
        };
        match words {
            [] => Reply::default(),
            ["help"] | ["?"] => say(HELP),
            ["exit"] | ["quit"] | ["logout"] => Reply {
                output: "bye\n".into(),
                exit: true,
            },
            ["show", "version"] => say(self.backend.version()),
            ["show", "interfaces"] => match self.backend.interfaces() {
                Ok(list) => say(format_interfaces(&list)),
                Err(e) => say(format!("error: cannot list interfaces: {e:#}\n")),
            },
            ["show", "configuration"] => {
                match self.backend.running_config() {
                    Ok((text, source)) => {
                        let mut out = format!("# configuration in force (from {source})\n{text}");
                        if self.candidate.is_some() {
                            out.push_str("# an uncommitted candidate exists: 'show configuration candidate'\n");
                        }
                        say(out)
                    }
                    Err(e) => say(format!("error: {e:#}\n")),
                }
            }
            ["show", "configuration", "candidate"] => match &self.candidate {
                Some(text) => say(format!("# candidate (uncommitted)\n{text}")),
                None => say("no candidate: 'config edit' creates one\n"),
            },
            ["config", "edit"] | ["configure"] | ["edit"] => {
                let current = match &self.candidate {
                    Some(text) => Ok(("candidate".to_string(), text.clone())),
                    None => self.backend.running_config().map(|(t, s)| (s, t)),
                };
                let mut out = String::new();
                match current {
                    Ok((source, text)) => {
                        let _ = writeln!(out, "# current configuration (from {source}):");
                        for l in text.lines() {
                            let _ = writeln!(out, "#   {l}");
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(out, "# (cannot show the current configuration: {e:#})");
                    }
                }
                out.push_str("Type the new configuration. End with a line holding only '.' (or Ctrl-D); Ctrl-C abandons.\n");
                self.mode = Mode::Editing(Vec::new());
                say(out)
            }
            ["commit"] => {
                let Some(text) = self.candidate.clone() else {
                    return say("nothing to commit: 'config edit' first\n");
                };
                if let Err(e) = self.backend.validate(&text) {
                    return say(format!(
                        "commit refused: {e:#}\nthe active configuration is unchanged\n"
                    ));
                }
                match self.backend.commit(&text) {
                    Ok(()) => {
                        self.candidate = None;
                        say("committed: the new configuration becomes active at the next restart\n")
                    }
                    Err(e) => say(format!(
                        "commit failed: {e:#}\nthe active configuration is unchanged\n"
                    )),
                }
            }
            other => say(format!(
                "unknown command '{}'; type 'help'\n",
                other.join(" ")
            )),
        }
    }
}

fn say(text: impl Into<String>) -> Reply {
    Reply {
        output: text.into(),
        exit: false,
    }
}

/// The `show interfaces` table.
pub fn format_interfaces(list: &[InterfaceInfo]) -> String {
    let mut out = format!(
        "{:<16} {:<9} {:<5} {:<7} {:<17} {}\n",
        "NAME", "KIND", "ADMIN", "LINK", "MAC", "ADDRESSES"
    );
    for i in list {
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<5} {:<7} {:<17} {}",
            i.name,
            i.kind,
            if i.up { "up" } else { "down" },
            if i.carrier { "carrier" } else { "none" },
            if i.mac.is_empty() { "-" } else { &i.mac },
            if i.addresses.is_empty() {
                "-".to_string()
            } else {
                i.addresses.join(" ")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{cell::RefCell, rc::Rc};

    #[derive(Clone, Default)]
    struct Fake {
        active: Rc<RefCell<Option<String>>>,
    }

    impl Backend for Fake {
        fn version(&self) -> String {
            "ze 0.1.0 (built x)\nimage: ze-20260617-160000.img (built 20260617-160000)\n".into()
        }
        fn interfaces(&self) -> anyhow::Result<Vec<InterfaceInfo>> {
            Ok(vec![InterfaceInfo {
                name: "eth0".into(),
                kind: "ethernet".into(),
                up: true,
                carrier: true,
                mac: "52:54:00:12:34:56".into(),
                addresses: vec!["192.0.2.10/24".into()],
            }])
        }
        fn running_config(&self) -> anyhow::Result<(String, String)> {
            Ok(match self.active.borrow().clone() {
                Some(t) => (t, "active".into()),
                None => ("sshserver { }\n".into(), "bootstrap".into()),
            })
        }
        fn validate(&self, text: &str) -> anyhow::Result<()> {
            let doc = brace::parse(text)?;
            for n in &doc.nodes {
                if n.name != "sshserver" && n.name != "dhcpclient" {
                    anyhow::bail!("{}: unknown plugin '{}'", n.pos, n.name);
                }
            }
            Ok(())
        }
        fn commit(&self, text: &str) -> anyhow::Result<()> {
            *self.active.borrow_mut() = Some(text.into());
            Ok(())
        }
    }

    #[test]
    fn show_commands() {
        let mut sh = Shell::new(Fake::default(), "admin");
        assert!(
            sh.line("show version")
                .output
                .contains("image: ze-20260617-160000.img")
        );
        assert!(
            sh.line("ze show version").output.contains("image:"),
            "a leading 'ze' is accepted"
        );
        let ifs = sh.line("show interfaces").output;
        assert!(
            ifs.contains("eth0") && ifs.contains("192.0.2.10/24"),
            "{ifs}"
        );
        assert!(
            sh.line("show configuration")
                .output
                .contains("from bootstrap")
        );
        assert!(
            sh.line("frobnicate")
                .output
                .contains("unknown command 'frobnicate'")
        );
        assert!(sh.line("exit").exit);
    }

    #[test]
    fn edit_and_commit() {
        let fake = Fake::default();
        let mut sh = Shell::new(fake.clone(), "admin");
        assert!(sh.line("commit").output.contains("nothing to commit"));
        assert!(sh.line("config edit").output.contains("from bootstrap"));
        assert_eq!(sh.prompt(), EDIT_PROMPT);
        sh.line("sshserver {");
        sh.line("    listen 0.0.0.0:22;");
        sh.line("}");
        assert!(
            sh.line(".")
                .output
                .contains("candidate configuration updated")
        );
        assert_eq!(sh.prompt(), PROMPT);
        assert!(
            fake.active.borrow().is_none(),
            "nothing is active before commit"
        );
        assert!(sh.line("commit").output.contains("committed"));
        assert_eq!(
            fake.active.borrow().as_deref(),
            Some("sshserver {\n    listen 0.0.0.0:22;\n}\n")
        );
        assert!(sh.line("show configuration").output.contains("from active"));
    }

    #[test]
    fn invalid_config_is_rejected_and_active_unchanged() {
        let fake = Fake::default();
        *fake.active.borrow_mut() = Some("sshserver { }\n".into());
        let mut sh = Shell::new(fake.clone(), "admin");
        sh.line("config edit");
        sh.line("sshserver { listen");
        let r = sh.line(".");
        assert!(
            r.output
                .contains("error: 2:1: statement 'listen' is not ended"),
            "{}",
            r.output
        );
        assert!(sh.line("commit").output.contains("nothing to commit"));
        // Syntactically fine but semantically wrong: refused at commit.
        sh.line("config edit");
        sh.line("webserver { }");
        sh.eof();
        let r = sh.line("commit");
        assert!(
            r.output
                .contains("commit refused: 1:1: unknown plugin 'webserver'"),
            "{}",
            r.output
        );
        assert_eq!(fake.active.borrow().as_deref(), Some("sshserver { }\n"));
    }

    #[test]
    fn cancel_abandons_an_edit() {
        let mut sh = Shell::new(Fake::default(), "admin");
        sh.line("config edit");
        sh.line("sshserver { }");
        assert!(sh.cancel().output.contains("abandoned"));
        assert!(!sh.editing());
        assert!(
            sh.line("show configuration candidate")
                .output
                .contains("no candidate")
        );
    }
}
