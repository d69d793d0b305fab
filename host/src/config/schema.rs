//! Typed reading of brace config blocks.
//!
//! A plugin reads its block through a [`Block`]: each getter checks the
//! shape (one statement, the number of values, a block or a leaf) and the
//! value, and [`Block::finish`] rejects every statement nobody asked for.
//! Every error names the position (`line:column`) and the dotted key, e.g.
//! `4:9: dhcpserver.lease-time: expected seconds (1 to 4294967295), got "soon"`.

use super::brace::{Node, ParseError, Pos};
use std::{cell::RefCell, fmt, net::Ipv4Addr, ops::RangeInclusive, path::PathBuf, str::FromStr};

/// A config error: where, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the offending statement (or value) starts.
    pub pos: Pos,
    /// The dotted key, e.g. `dhcpserver.pxe.bootfile`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ConfigError {
    /// An error about `key` at `pos`.
    pub fn new(pos: Pos, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            pos,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.pos, self.message)
        } else {
            write!(f, "{}: {}: {}", self.pos, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ParseError> for ConfigError {
    fn from(e: ParseError) -> Self {
        let message = e.to_string();
        // The parser's text starts with the position; keep only the rest.
        let message = message
            .split_once(": ")
            .map(|(_, m)| m.to_string())
            .unwrap_or(message);
        ConfigError::new(e.pos, "", message)
    }
}

/// A block statement being read by a plugin.
#[derive(Debug)]
pub struct Block<'a> {
    node: &'a Node,
    key: String,
    used: RefCell<Vec<bool>>,
}

impl<'a> Block<'a> {
    /// Read `node`, whose dotted key is `key`. A leaf statement (`name;`)
    /// is an error: a block is expected.
    pub fn new(node: &'a Node, key: impl Into<String>) -> Result<Block<'a>, ConfigError> {
        let key = key.into();
        if node.children.is_none() {
            return Err(ConfigError::new(node.pos, key, "expected a block: `{ … }`"));
        }
        Ok(Block {
            node,
            used: RefCell::new(vec![false; node.children().len()]),
            key,
        })
    }

    /// The statement itself.
    pub fn node(&self) -> &'a Node {
        self.node
    }

    /// The block's dotted key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where the block starts.
    pub fn pos(&self) -> Pos {
        self.node.pos
    }

    /// The dotted key of child `name`.
    pub fn child_key(&self, name: &str) -> String {
        format!("{}.{name}", self.key)
    }

    /// An error about child `name` at `pos`.
    pub fn error(&self, pos: Pos, name: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::new(pos, self.child_key(name), message)
    }

    /// The words after the block's own name (`shared-network lab { … }`
    /// → `["lab"]`), checked to be exactly `n`.
    pub fn own_args(&self, n: usize, what: &str) -> Result<&'a [String], ConfigError> {
        if self.node.args.len() != n {
            return Err(ConfigError::new(
                self.node.pos,
                self.key.clone(),
                format!("expected {what}"),
            ));
        }
        Ok(&self.node.args)
    }

    /// Every child called `name`, marked as read.
    pub fn all(&self, name: &str) -> Vec<&'a Node> {
        let mut used = self.used.borrow_mut();
        let mut out = Vec::new();
        for (i, child) in self.node.children().iter().enumerate() {
            if child.name == name {
                used[i] = true;
                out.push(child);
            }
        }
        out
    }

    /// The single child called `name`, if any; a second one is an error.
    pub fn one(&self, name: &str) -> Result<Option<&'a Node>, ConfigError> {
        let found = self.all(name);
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            [first, second, ..] => Err(self.error(
                second.pos,
                name,
                format!("set more than once (first at {})", first.pos),
            )),
        }
    }

    /// The values of the leaf `name values…;`, checked to number `n`.
    pub fn args(
        &self,
        name: &str,
        n: usize,
        what: &str,
    ) -> Result<Option<&'a [String]>, ConfigError> {
        let Some(node) = self.one(name)? else {
            return Ok(None);
        };
        Ok(Some(leaf_args(node, &self.child_key(name), n, what)?))
    }

    /// The single value of the leaf `name value;`.
    pub fn str(&self, name: &str) -> Result<Option<&'a str>, ConfigError> {
        Ok(self.args(name, 1, "one value")?.map(|a| a[0].as_str()))
    }

    /// Like [`Block::str`], and an error when absent.
    pub fn required_str(&self, name: &str) -> Result<&'a str, ConfigError> {
        self.str(name)?
            .ok_or_else(|| self.error(self.node.pos, name, "missing: this setting is required"))
    }

    /// The value of `name` parsed as `T`; `what` describes the expected form.
    pub fn parse<T: FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, ConfigError> {
        let Some(node) = self.one(name)? else {
            return Ok(None);
        };
        let args = leaf_args(node, &self.child_key(name), 1, what)?;
        parse_value(&args[0], node.pos, &self.child_key(name), what).map(Some)
    }

    /// An IPv4 address.
    pub fn ipv4(&self, name: &str) -> Result<Option<Ipv4Addr>, ConfigError> {
        self.parse(name, "an IPv4 address such as 192.0.2.1")
    }

    /// A number within `range`.
    pub fn number(
        &self,
        name: &str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let what = format!("a number from {} to {}", range.start(), range.end());
        let Some(node) = self.one(name)? else {
            return Ok(None);
        };
        let args = leaf_args(node, &self.child_key(name), 1, &what)?;
        let n: u64 = parse_value(&args[0], node.pos, &self.child_key(name), &what)?;
        if !range.contains(&n) {
            return Err(self.error(node.pos, name, format!("expected {what}, got {n}")));
        }
        Ok(Some(n))
    }

    /// An absolute path.
    pub fn abs_path(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(node) = self.one(name)? else {
            return Ok(None);
        };
        let args = leaf_args(node, &self.child_key(name), 1, "one absolute path")?;
        let path = PathBuf::from(&args[0]);
        if !path.is_absolute() {
            return Err(self.error(
                node.pos,
                name,
                format!("expected an absolute path, got {:?}", args[0]),
            ));
        }
        Ok(Some(path))
    }

    /// The child block `name { … }`, if any.
    pub fn block(&self, name: &str) -> Result<Option<Block<'a>>, ConfigError> {
        match self.one(name)? {
            None => Ok(None),
            Some(node) => Block::new(node, self.child_key(name)).map(Some),
        }
    }

    /// Check that every statement was read: the first one that was not
    /// is an unknown setting.
    pub fn finish(self) -> Result<(), ConfigError> {
        let used = self.used.borrow();
        for (i, child) in self.node.children().iter().enumerate() {
            if !used[i] {
                return Err(ConfigError::new(
                    child.pos,
                    self.child_key(&child.name),
                    "unknown setting",
                ));
            }
        }
        Ok(())
    }
}

/// The values of a leaf statement, checked to be a leaf with `n` values.
pub fn leaf_args<'a>(
    node: &'a Node,
    key: &str,
    n: usize,
    what: &str,
) -> Result<&'a [String], ConfigError> {
    if node.children.is_some() {
        return Err(ConfigError::new(
            node.pos,
            key,
            format!("expected `{} <{what}>;`, not a block", node.name),
        ));
    }
    if node.args.len() != n {
        return Err(ConfigError::new(
            node.pos,
            key,
            format!("expected {what}, got {} values", node.args.len()),
        ));
    }
    Ok(&node.args)
}

/// Parse one value as `T`.
pub fn parse_value<T: FromStr>(
    text: &str,
    pos: Pos,
    key: &str,
    what: &str,
) -> Result<T, ConfigError> {
    text.parse()
        .map_err(|_| ConfigError::new(pos, key, format!("expected {what}, got {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::brace::parse;

    #[test]
    fn getters_and_unknown_keys() {
        let doc =
            parse("s {\n  a 1;\n  b 192.0.2.1;\n  c x y;\n  d /abs;\n  e { f; }\n}\n").unwrap();
        let b = Block::new(&doc.nodes[0], "s").unwrap();
        assert_eq!(b.number("a", 0..=5).unwrap(), Some(1));
        assert_eq!(b.ipv4("b").unwrap(), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(b.args("c", 2, "two words").unwrap().unwrap(), ["x", "y"]);
        assert_eq!(b.abs_path("d").unwrap(), Some(PathBuf::from("/abs")));
        assert_eq!(b.str("missing").unwrap(), None);
        let e = b.block("e").unwrap().unwrap();
        let err = e.finish().unwrap_err();
        assert_eq!(err.to_string(), "6:7: s.e.f: unknown setting");
        b.finish().unwrap();
    }

    #[test]
    fn errors_name_position_and_key() {
        let doc = parse("s {\n  a 99;\n  a 1;\n  b nope;\n  c;\n  d rel;\n  z 1;\n}\n").unwrap();
        let b = Block::new(&doc.nodes[0], "s").unwrap();
        assert_eq!(
            b.number("a", 0..=5).unwrap_err().to_string(),
            "3:3: s.a: set more than once (first at 2:3)"
        );
        assert_eq!(
            b.ipv4("b").unwrap_err().to_string(),
            "4:3: s.b: expected an IPv4 address such as 192.0.2.1, got \"nope\""
        );
        assert_eq!(
            b.str("c").unwrap_err().to_string(),
            "5:3: s.c: expected one value, got 0 values"
        );
        assert_eq!(
            b.abs_path("d").unwrap_err().to_string(),
            "6:3: s.d: expected an absolute path, got \"rel\""
        );
        assert_eq!(
            b.required_str("q").unwrap_err().to_string(),
            "1:1: s.q: missing: this setting is required"
        );
        assert_eq!(
            b.finish().unwrap_err().to_string(),
            "7:3: s.z: unknown setting"
        );

        let doc = parse("s { a 9; }").unwrap();
        let b = Block::new(&doc.nodes[0], "s").unwrap();
        assert_eq!(
            b.number("a", 0..=5).unwrap_err().to_string(),
            "1:5: s.a: expected a number from 0 to 5, got 9"
        );
        let doc = parse("s;").unwrap();
        assert_eq!(
            Block::new(&doc.nodes[0], "s").unwrap_err().to_string(),
            "1:1: s: expected a block: `{ … }`"
        );
    }
}
