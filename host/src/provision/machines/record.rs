//! One machine record: the brace text of `<mac>.conf`, read strictly and
//! written back by the one writer ([`render`]).
//!
//! ```text
//! image ze-20260617-160000.img;    # required: a plain file name in the image directory
//! target /dev/vda;                 # optional: ze.target, checked by the installer's own rule
//! hostname rack1-node3;            # optional: RFC 1123 label(s)
//! install once;                    # once | always (default) | never
//! ssh-username admin;              # optional, with ssh-password-hash: this
//! ssh-password-hash "$2b$10$…";    #   machine's credentials instead of the command line's
//! installed {                      # written by the server when an `install once` completes
//!     at 2026-06-17T16:00:00Z;
//!     image ze-20260617-160000.img;
//! }
//! ```

use crate::{
    config::{
        brace::{self, Document, Node},
        schema::{Block, ConfigError, leaf_args},
    },
    credentials,
    provision::{image::bootscript::is_plain_name, mac::Mac},
    timefmt,
};
use std::{fmt, str::FromStr};

/// The dotted key of a record's settings in error messages (`machine.image`).
pub const KEY: &str = "machine";
/// The longest host name (RFC 1123 §2.1).
pub const MAX_HOSTNAME: usize = 253;

/// What a machine's next network boot may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Install {
    /// Install once; when it completed, boot the local disk.
    Once,
    /// Install on every network boot (what a machine without a record gets).
    #[default]
    Always,
    /// Never install: the servers do not answer its network boot.
    Never,
}

impl Install {
    /// The word in records and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Install::Once => "once",
            Install::Always => "always",
            Install::Never => "never",
        }
    }
}

impl fmt::Display for Install {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Install {
    type Err = String;
    fn from_str(s: &str) -> Result<Install, String> {
        match s {
            "once" => Ok(Install::Once),
            "always" => Ok(Install::Always),
            "never" => Ok(Install::Never),
            _ => Err(format!("{s:?}: expected once, always or never")),
        }
    }
}

/// A machine's own SSH credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub username: String,
    /// bcrypt, never a plaintext.
    pub password_hash: String,
}

/// The mark of a completed `install once`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// UNIX seconds.
    pub at: i64,
    /// The image that was installed.
    pub image: String,
}

/// A machine record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub image: String,
    pub target: Option<String>,
    pub hostname: Option<String>,
    pub ssh: Option<Ssh>,
    pub install: Install,
    pub installed: Option<Installed>,
}

impl Record {
    /// A record installing `image` on every boot, nothing else set.
    pub fn new(image: &str) -> Record {
        Record {
            image: image.into(),
            target: None,
            hostname: None,
            ssh: None,
            install: Install::Always,
            installed: None,
        }
    }
}

/// Whether `name` is a host name of RFC 1123 labels: 1 to 63 letters,
/// digits and `-` each, not starting or ending with `-`, joined by `.`,
/// at most 253 characters.
pub fn valid_hostname(name: &str) -> bool {
    name.len() <= MAX_HOSTNAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Check the settings a record and `ze machines add` share; the message
/// says what is expected.
pub fn check_image(name: &str) -> Result<(), String> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be a plain file name of the image directory (letters, digits, '.', '-', '_', '+')"
        ))
    }
}

/// See [`check_image`]: checked by the installer's own `ze.target`
/// validator, so a record can never name a target the installer rejects.
pub fn check_target(target: &str) -> Result<(), String> {
    ze_installer::byid::parse(target)
        .map(|_| ())
        .map_err(|e| format!("{target:?} is not a ze.target the installer accepts: {e}"))
}

/// See [`check_image`].
pub fn check_hostname(name: &str) -> Result<(), String> {
    if valid_hostname(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name: RFC 1123 labels of 1 to 63 letters, digits and '-' (not first or last), joined by '.', at most {MAX_HOSTNAME} characters"
        ))
    }
}

/// See [`check_image`].
pub fn check_ssh(username: &str, password_hash: &str) -> Result<(), String> {
    credentials::validate_username(username).map_err(|e| e.to_string())?;
    if !credentials::is_bcrypt_hash(password_hash) {
        return Err(
            "expected a bcrypt hash ($2b$10$…, 60 characters); `ze machines add --ssh-password` writes one"
                .into(),
        );
    }
    Ok(())
}

/// A checked value of `name`: `check` says what is wrong with a bad one.
fn checked<'a>(
    block: &Block<'a>,
    name: &str,
    check: fn(&str) -> Result<(), String>,
) -> Result<Option<&'a str>, ConfigError> {
    let Some(node) = block.one(name)? else {
        return Ok(None);
    };
    let value = leaf_args(node, &block.child_key(name), 1, "one value")?[0].as_str();
    check(value).map_err(|why| block.error(node.pos, name, why))?;
    Ok(Some(value))
}

/// Read a record's text. Errors carry `line:column` and the key.
pub fn parse(text: &str) -> Result<Record, ConfigError> {
    let doc = brace::parse(text)?;
    let root = Node::block(KEY, &[], doc.nodes);
    let root = Node {
        pos: brace::Pos { line: 1, col: 1 },
        ..root
    };
    let block = Block::new(&root, KEY)?;
    let image = checked(&block, "image", check_image)?
        .ok_or_else(|| {
            block.error(
                block.pos(),
                "image",
                "missing: every record names its image",
            )
        })?
        .to_string();
    let target = checked(&block, "target", check_target)?.map(str::to_string);
    let hostname = checked(&block, "hostname", check_hostname)?.map(str::to_string);
    let install = match block.one("install")? {
        None => Install::default(),
        Some(node) => {
            let key = block.child_key("install");
            let word = &leaf_args(node, &key, 1, "once, always or never")?[0];
            word.parse()
                .map_err(|why: String| ConfigError::new(node.pos, key, why))?
        }
    };
    let username = block.str("ssh-username")?;
    let hash = block.one("ssh-password-hash")?;
    let ssh = match (username, hash) {
        (None, None) => None,
        (Some(u), Some(node)) => {
            let key = block.child_key("ssh-password-hash");
            let h = &leaf_args(node, &key, 1, "one bcrypt hash")?[0];
            check_ssh(u, h).map_err(|why| ConfigError::new(node.pos, key, why))?;
            Some(Ssh {
                username: u.into(),
                password_hash: h.clone(),
            })
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(block.error(
                block.pos(),
                if username.is_some() {
                    "ssh-password-hash"
                } else {
                    "ssh-username"
                },
                "ssh-username and ssh-password-hash go together",
            ));
        }
    };
    let installed = match block.block("installed")? {
        None => None,
        Some(b) => {
            let at_node = b.one("at")?;
            let at = match at_node {
                None => return Err(b.error(b.pos(), "at", "missing: when it was installed")),
                Some(node) => {
                    let key = b.child_key("at");
                    let text = &leaf_args(node, &key, 1, "one time")?[0];
                    timefmt::parse_rfc3339(text).ok_or_else(|| {
                        ConfigError::new(
                            node.pos,
                            key,
                            format!(
                                "expected a UTC time such as 2026-06-17T16:00:00Z, got {text:?}"
                            ),
                        )
                    })?
                }
            };
            let image = checked(&b, "image", check_image)?
                .ok_or_else(|| b.error(b.pos(), "image", "missing: the image installed"))?
                .to_string();
            b.finish()?;
            Some(Installed { at, image })
        }
    };
    block.finish()?;
    Ok(Record {
        image,
        target,
        hostname,
        ssh,
        install,
        installed,
    })
}

/// The record's text: what [`parse`] reads back into the same record.
pub fn render(mac: Mac, r: &Record) -> String {
    let mut nodes = vec![Node::leaf("image", &[&r.image])];
    if let Some(t) = &r.target {
        nodes.push(Node::leaf("target", &[t]));
    }
    if let Some(h) = &r.hostname {
        nodes.push(Node::leaf("hostname", &[h]));
    }
    nodes.push(Node::leaf("install", &[r.install.as_str()]));
    if let Some(s) = &r.ssh {
        nodes.push(Node::leaf("ssh-username", &[&s.username]));
        nodes.push(Node::leaf("ssh-password-hash", &[&s.password_hash]));
    }
    if let Some(i) = &r.installed {
        nodes.push(Node::block(
            "installed",
            &[],
            vec![
                Node::leaf("at", &[&timefmt::rfc3339(i.at)]),
                Node::leaf("image", &[&i.image]),
            ],
        ));
    }
    format!(
        "# ze machine record for {mac} (docs/fleet.md); `ze machines` and the install server rewrite this file\n{}",
        brace::write(&Document { nodes })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2b$10$abcdefghijklmnopqrstuuZ8X0dBxbQh7UMMkqGQ1K1oCdrFpvq2x";

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn f1_every_key_round_trips() {
        assert_eq!(HASH.len(), 60);
        let mac: Mac = "52:54:00:12:34:56".parse().unwrap();
        let full = Record {
            image: "ze-20260617-160000.img".into(),
            target: Some("/dev/nvme0n1".into()),
            hostname: Some("rack1-node3.lab".into()),
            ssh: Some(Ssh {
                username: "ops".into(),
                password_hash: HASH.into(),
            }),
            install: Install::Once,
            installed: Some(Installed {
                at: 1_781_712_000,
                image: "ze-20260617-160000.img".into(),
            }),
        };
        let text = render(mac, &full);
        assert!(text.contains("at 2026-06-17T16:00:00Z;"), "{text}");
        assert_eq!(parse(&text).unwrap(), full);
        let bare = Record::new("a.img");
        assert_eq!(parse(&render(mac, &bare)).unwrap(), bare);
        assert_eq!(parse("image a.img;").unwrap().install, Install::Always);
        for word in ["once", "always", "never"] {
            let r = parse(&format!("image a.img; install {word};")).unwrap();
            assert_eq!(r.install.as_str(), word);
        }
    }

    #[test]
    fn f1_bad_records_name_line_column_and_key() {
        assert_eq!(
            err("target /dev/vda;\n"),
            "1:1: machine.image: missing: every record names its image"
        );
        assert_eq!(
            err("image a.img;\n  install twice;\n"),
            "2:3: machine.install: \"twice\": expected once, always or never"
        );
        assert_eq!(
            err("image ../etc/passwd;"),
            "1:1: machine.image: \"../etc/passwd\" must be a plain file name of the image directory (letters, digits, '.', '-', '_', '+')"
        );
        assert_eq!(
            err("image a.img;\ntarget /dev/vda1/../x;"),
            "2:1: machine.target: \"/dev/vda1/../x\" is not a ze.target the installer accepts: not a disk path: give a whole disk such as /dev/sda, /dev/nvme0n1, /dev/disk/by-id/<name> or serial:<serial>"
        );
        assert!(
            err("image a.img;\nhostname -bad;")
                .starts_with("2:1: machine.hostname: \"-bad\" is not a host name")
        );
        assert_eq!(
            err("image a.img;\nssh-username ops;"),
            "1:1: machine.ssh-password-hash: ssh-username and ssh-password-hash go together"
        );
        assert_eq!(
            err("image a.img;\nssh-username ops;\nssh-password-hash plain;"),
            "3:1: machine.ssh-password-hash: expected a bcrypt hash ($2b$10$…, 60 characters); `ze machines add --ssh-password` writes one"
        );
        assert!(
            err(&format!(
                "image a.img; ssh-username Root; ssh-password-hash \"{HASH}\";"
            ))
            .contains("invalid username \"Root\"")
        );
        assert_eq!(
            err("image a.img;\ncolour blue;"),
            "2:1: machine.colour: unknown setting"
        );
        assert_eq!(
            err("image a.img;\nimage b.img;"),
            "2:1: machine.image: set more than once (first at 1:1)"
        );
        assert_eq!(
            err("image a.img;\ninstalled {\n  at yesterday;\n  image a.img;\n}"),
            "3:3: machine.installed.at: expected a UTC time such as 2026-06-17T16:00:00Z, got \"yesterday\""
        );
        assert_eq!(
            err("image a.img;\ninstalled { at 2026-06-17T16:00:00Z; }"),
            "2:1: machine.installed.image: missing: the image installed"
        );
        assert_eq!(
            err("image a.img;\ninstalled;"),
            "2:1: machine.installed: expected a block: `{ … }`"
        );
        assert_eq!(
            err("image a.img;\nhostname {"),
            "2:11: block 'hostname' opened at 2:1 is not closed: add '}'"
        );
    }

    #[test]
    fn f1_host_names_are_rfc_1123_labels() {
        for ok in ["a", "node-3", "Rack1.Lab.example", "0node", &"a".repeat(63)] {
            assert!(valid_hostname(ok), "{ok}");
        }
        let long = ["a".repeat(63).as_str(); 4].join(".") + ".ab";
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a.",
            "a_b",
            "a b",
            "<script>",
            "ü",
            &"a".repeat(64),
            &long,
        ] {
            assert!(!valid_hostname(bad), "{bad:?}");
        }
    }
}
