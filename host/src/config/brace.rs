//! The brace config format: ze's configuration language.
//!
//! ```text
//! # a comment runs to the end of the line
//! name value… ;                  a leaf statement
//! name value… { statement… }     a block statement
//! "a quoted value\twith escapes"
//! ```
//!
//! A bare word is any run of characters other than whitespace, `;`, `{`,
//! `}` and `"`; a `#` starts a comment only where a word could start.
//! Quoted strings accept the escapes `\"`, `\\`, `\n`, `\t`, `\r` and
//! `\u{…}`. Every error carries the line and column (1-based, columns in
//! characters) where it was found. [`write`] produces text that [`parse`]
//! reads back into the same tree.

use std::fmt;

/// How deep blocks may nest. Deeper input is rejected, so hostile input
/// cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// A position in the source text, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line number, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One statement: `name args… ;` or `name args… { children }`.
#[derive(Debug, Clone)]
pub struct Node {
    /// The statement's first word.
    pub name: String,
    /// The words after the name.
    pub args: Vec<String>,
    /// `None` for a `;` statement, `Some` (possibly empty) for a block.
    pub children: Option<Vec<Node>>,
    /// Where the name starts.
    pub pos: Pos,
}

// Equality ignores positions: two trees are equal when they say the same.
impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.args == other.args && self.children == other.children
    }
}
impl Eq for Node {}

impl Node {
    /// A `name args… ;` statement.
    pub fn leaf(name: &str, args: &[&str]) -> Node {
        Node {
            name: name.into(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
            children: None,
            pos: Pos::default(),
        }
    }

    /// A `name args… { children }` block.
    pub fn block(name: &str, args: &[&str], children: Vec<Node>) -> Node {
        Node {
            children: Some(children),
            ..Node::leaf(name, args)
        }
    }

    /// The children of a block (empty for a leaf).
    pub fn children(&self) -> &[Node] {
        self.children.as_deref().unwrap_or_default()
    }

    /// Every child statement called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children().iter().filter(move |n| n.name == name)
    }

    /// The first child statement called `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children().iter().find(|n| n.name == name)
    }

    /// The single argument of the first `name value;` child.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.child(name)
            .and_then(|n| n.args.first())
            .map(String::as_str)
    }
}

/// A whole config file: its top-level statements.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    /// Top-level statements in source order.
    pub nodes: Vec<Node>,
}

impl Document {
    /// Every top-level statement called `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.name == name)
    }

    /// The first top-level statement called `name`.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// What was wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Where the problem was found.
    pub pos: Pos,
    /// What the problem is.
    pub kind: ErrorKind,
}

/// The kinds of syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A quoted string has no closing `"`.
    UnterminatedString,
    /// A `\` escape that the format does not define.
    BadEscape(String),
    /// A raw control character inside a quoted string.
    ControlInString,
    /// A `}` with no open block.
    UnexpectedClose,
    /// A `;` or `{` with no statement name before it.
    MissingName(char),
    /// The input ended inside a statement.
    MissingTerminator(String),
    /// The input ended inside a block opened at the given position.
    UnclosedBlock(String, Pos),
    /// Blocks nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.pos)?;
        match &self.kind {
            ErrorKind::UnterminatedString => {
                f.write_str("unterminated string: missing closing '\"'")
            }
            ErrorKind::BadEscape(e) => write!(f, "unknown escape '\\{e}' in string"),
            ErrorKind::ControlInString => {
                f.write_str("control character in string (write it as an escape, e.g. \\n)")
            }
            ErrorKind::UnexpectedClose => f.write_str("'}' without a matching '{'"),
            ErrorKind::MissingName(c) => write!(f, "'{c}' without a statement name before it"),
            ErrorKind::MissingTerminator(name) => {
                write!(
                    f,
                    "statement '{name}' is not ended: add ';' or a '{{ … }}' block"
                )
            }
            ErrorKind::UnclosedBlock(name, open) => {
                write!(f, "block '{name}' opened at {open} is not closed: add '}}'")
            }
            ErrorKind::TooDeep => write!(f, "blocks nest deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
    Eof,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            pos: Pos { line: 1, col: 1 },
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.col = 1;
        } else {
            self.pos.col += 1;
        }
        Some(c)
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<(Tok, Pos), ParseError> {
        loop {
            match self.chars.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
        let start = self.pos;
        let tok = match self.chars.peek().copied() {
            None => Tok::Eof,
            Some(';') => {
                self.bump();
                Tok::Semi
            }
            Some('{') => {
                self.bump();
                Tok::Open
            }
            Some('}') => {
                self.bump();
                Tok::Close
            }
            Some('"') => {
                self.bump();
                Tok::Word(self.quoted(start)?)
            }
            Some(_) => {
                let mut word = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}' | '"') {
                        break;
                    }
                    word.push(c);
                    self.bump();
                }
                Tok::Word(word)
            }
        };
        Ok((tok, start))
    }

    fn quoted(&mut self, start: Pos) -> Result<String, ParseError> {
        let mut out = String::new();
        loop {
            let here = self.pos;
            let err = |kind| ParseError { pos: here, kind };
            match self.bump() {
                None => {
                    return Err(ParseError {
                        pos: start,
                        kind: ErrorKind::UnterminatedString,
                    });
                }
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('u') => out.push(self.unicode_escape(here)?),
                    Some(c) => return Err(err(ErrorKind::BadEscape(c.to_string()))),
                    None => {
                        return Err(ParseError {
                            pos: start,
                            kind: ErrorKind::UnterminatedString,
                        });
                    }
                },
                Some('\t') => out.push('\t'),
                Some(c) if c.is_control() => return Err(err(ErrorKind::ControlInString)),
                Some(c) => out.push(c),
            }
        }
    }

    /// `\u{1F600}`: one to six hex digits naming a Unicode scalar value.
    fn unicode_escape(&mut self, at: Pos) -> Result<char, ParseError> {
        let bad = |text: String| ParseError {
            pos: at,
            kind: ErrorKind::BadEscape(text),
        };
        if self.bump() != Some('{') {
            return Err(bad("u".into()));
        }
        let mut hex = String::new();
        loop {
            match self.bump() {
                Some('}') => break,
                Some(c) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
                _ => return Err(bad(format!("u{{{hex}"))),
            }
        }
        u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| bad(format!("u{{{hex}}}")))
    }
}

/// Parse a whole config text.
pub fn parse(text: &str) -> Result<Document, ParseError> {
    let mut lexer = Lexer::new(text);
    let nodes = parse_block(&mut lexer, None, 0)?;
    Ok(Document { nodes })
}

/// Parse statements until `}` (inside a block) or the end of input (top level).
fn parse_block(
    lexer: &mut Lexer<'_>,
    opened: Option<(&str, Pos)>,
    depth: usize,
) -> Result<Vec<Node>, ParseError> {
    let mut nodes = Vec::new();
    loop {
        let (tok, pos) = lexer.next()?;
        let name = match tok {
            Tok::Eof => {
                return match opened {
                    None => Ok(nodes),
                    Some((name, open)) => Err(ParseError {
                        pos,
                        kind: ErrorKind::UnclosedBlock(name.into(), open),
                    }),
                };
            }
            Tok::Close => {
                return match opened {
                    Some(_) => Ok(nodes),
                    None => Err(ParseError {
                        pos,
                        kind: ErrorKind::UnexpectedClose,
                    }),
                };
            }
            Tok::Semi => {
                return Err(ParseError {
                    pos,
                    kind: ErrorKind::MissingName(';'),
                });
            }
            Tok::Open => {
                return Err(ParseError {
                    pos,
                    kind: ErrorKind::MissingName('{'),
                });
            }
            Tok::Word(w) => w,
        };
        let mut node = Node {
            name,
            args: Vec::new(),
            children: None,
            pos,
        };
        loop {
            let (tok, at) = lexer.next()?;
            match tok {
                Tok::Word(w) => node.args.push(w),
                Tok::Semi => break,
                Tok::Open => {
                    if depth + 1 >= MAX_DEPTH {
                        return Err(ParseError {
                            pos: at,
                            kind: ErrorKind::TooDeep,
                        });
                    }
                    node.children = Some(parse_block(lexer, Some((&node.name, pos)), depth + 1)?);
                    break;
                }
                Tok::Close | Tok::Eof => {
                    return Err(ParseError {
                        pos: at,
                        kind: ErrorKind::MissingTerminator(node.name.clone()),
                    });
                }
            }
        }
        nodes.push(node);
    }
}

/// Whether a word can be written bare and read back unchanged.
fn is_bare(word: &str) -> bool {
    !word.is_empty()
        && !word.starts_with('#')
        && word.chars().all(|c| {
            !c.is_whitespace()
                && !c.is_control()
                && !matches!(c, ';' | '{' | '}' | '"' | '\\' | '#')
        })
}

/// Write a word, quoted and escaped when it could not be read back bare.
pub fn write_word(out: &mut String, word: &str) {
    if is_bare(word) {
        out.push_str(word);
        return;
    }
    out.push('"');
    for c in word.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Write a document as text, four spaces per level.
pub fn write(doc: &Document) -> String {
    let mut out = String::new();
    for node in &doc.nodes {
        write_node(&mut out, node, 0);
    }
    out
}

fn write_node(out: &mut String, node: &Node, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
    write_word(out, &node.name);
    for arg in &node.args {
        out.push(' ');
        write_word(out, arg);
    }
    let Some(children) = &node.children else {
        out.push_str(";\n");
        return;
    };
    out.push_str(" {\n");
    for child in children {
        write_node(out, child, depth + 1);
    }
    for _ in 0..depth {
        out.push_str("    ");
    }
    out.push_str("}\n");
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&write(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# provisioning
dhcpserver {
    interface eth0;
    shared-network lab {
        subnet 192.0.2.0/24 { pool 192.0.2.2 192.0.2.254; }
    }
}
imageserver { ssh-password-hash "$2b$10$abc/def"; note "two\nlines \"quoted\""; }
empty { }
"#;

    #[test]
    fn parses_nested_blocks() {
        let doc = parse(SAMPLE).unwrap();
        assert_eq!(doc.nodes.len(), 3);
        let dhcp = doc.get("dhcpserver").unwrap();
        assert_eq!(dhcp.value("interface"), Some("eth0"));
        assert_eq!(dhcp.pos, Pos { line: 3, col: 1 });
        let net = dhcp.child("shared-network").unwrap();
        assert_eq!(net.args, ["lab"]);
        let pool = net.child("subnet").unwrap().child("pool").unwrap();
        assert_eq!(pool.args, ["192.0.2.2", "192.0.2.254"]);
        let img = doc.get("imageserver").unwrap();
        assert_eq!(img.value("ssh-password-hash"), Some("$2b$10$abc/def"));
        assert_eq!(img.value("note"), Some("two\nlines \"quoted\""));
        assert_eq!(doc.get("empty").unwrap().children, Some(vec![]));
    }

    #[test]
    fn write_then_parse_round_trips() {
        let doc = parse(SAMPLE).unwrap();
        let text = write(&doc);
        assert_eq!(parse(&text).unwrap(), doc);
        // And writing is stable.
        assert_eq!(write(&parse(&text).unwrap()), text);
    }

    #[test]
    fn awkward_words_round_trip() {
        let words = [
            "",
            " ",
            "a;b",
            "{",
            "}",
            "#x",
            "a#b",
            "q\"q",
            "back\\slash",
            "tab\there",
            "\u{1}",
            "ünï",
            "\r\n",
        ];
        let doc = Document {
            nodes: vec![Node::leaf("w", &words)],
        };
        let back = parse(&write(&doc)).unwrap();
        assert_eq!(back, doc);
    }

    fn err(text: &str) -> ParseError {
        parse(text).unwrap_err()
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = err("a 1;\nb \"open");
        assert_eq!(e.pos, Pos { line: 2, col: 3 });
        assert_eq!(e.kind, ErrorKind::UnterminatedString);
        assert_eq!(
            e.to_string(),
            "2:3: unterminated string: missing closing '\"'"
        );

        let e = err("a {\n  b 1;\n");
        assert_eq!(
            e.kind,
            ErrorKind::UnclosedBlock("a".into(), Pos { line: 1, col: 1 })
        );

        let e = err("a 1;\n}");
        assert_eq!(
            (e.pos, e.kind),
            (Pos { line: 2, col: 1 }, ErrorKind::UnexpectedClose)
        );

        let e = err("a 1");
        assert_eq!(e.kind, ErrorKind::MissingTerminator("a".into()));
        assert_eq!(
            e.to_string(),
            "1:4: statement 'a' is not ended: add ';' or a '{ … }' block"
        );

        assert_eq!(err(";").kind, ErrorKind::MissingName(';'));
        assert_eq!(err("  {").kind, ErrorKind::MissingName('{'));
        assert_eq!(err("a \"\\q\";").kind, ErrorKind::BadEscape("q".into()));
        assert_eq!(err("a \"x\u{7}\";").kind, ErrorKind::ControlInString);
        assert_eq!(
            err("a \"\\u{110000}\";").kind,
            ErrorKind::BadEscape("u{110000}".into())
        );
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = err("ü é \"x");
        assert_eq!(e.pos, Pos { line: 1, col: 5 });
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "a {".repeat(MAX_DEPTH + 1);
        assert_eq!(err(&deep).kind, ErrorKind::TooDeep);
        let ok = format!(
            "{}{}",
            "a {".repeat(MAX_DEPTH - 1),
            "}".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn comments_and_hash_inside_words() {
        let doc = parse("url http://x/#frag; # trailing\n# whole line\nb;").unwrap();
        assert_eq!(doc.get("url").unwrap().args, ["http://x/#frag"]);
        assert!(doc.get("b").is_some());
    }
}
