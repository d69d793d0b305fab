//! zefs: ze's credential and config database, one file (`database.zefs`).
//!
//! A versioned header, then a sorted table of key → blob entries, each with
//! its own CRC32. The byte layout is documented in `docs/zefs.md`:
//!
//! ```text
//! header (20 bytes, integers little-endian)
//!   0  8  magic  "ZEFS" 00 0D 0A 1A
//!   8  2  format version (1)
//!  10  2  flags (0; readers reject others)
//!  12  4  entry count N
//!  16  4  CRC32 of bytes 0..16
//! entry (12-byte head, then data), N times, keys strictly ascending
//!   +0  2  key length K (1..=1024)
//!   +2  2  reserved (0)
//!   +4  4  value length V (at most 64 MiB)
//!   +8  4  CRC32 of key ‖ value
//!  +12  K  key, UTF-8
//!  +12+K V value
//! the file ends right after entry N
//! ```
//!
//! The file is replaced atomically with mode 0600 ([`Zefs::store`]). A
//! reader rejects a truncated or corrupt file with an error naming the
//! offset.

use crate::fsutil;
use std::{collections::BTreeMap, fmt, path::Path};

/// The first eight bytes of every zefs file. The CR LF and ^Z catch files
/// mangled by text-mode transfers, as PNG's signature does.
pub const MAGIC: [u8; 8] = *b"ZEFS\x00\r\n\x1a";
/// The format version this code reads and writes.
pub const VERSION: u16 = 1;
/// Bytes in the file header.
pub const HEADER_LEN: usize = 20;
/// Bytes in each entry's head.
pub const ENTRY_HEAD_LEN: usize = 12;
/// The longest key.
pub const MAX_KEY_LEN: usize = 1024;
/// The largest value.
pub const MAX_VALUE_LEN: usize = 64 << 20;
/// The most entries a file may declare.
pub const MAX_ENTRIES: u32 = 65_536;
/// The file mode of `database.zefs`: it holds password hashes and keys.
pub const FILE_MODE: u32 = 0o600;
/// The database's file name inside the config directory.
pub const FILE_NAME: &str = "database.zefs";

/// Well-known keys.
pub mod keys {
    /// The committed configuration.
    pub const ACTIVE_CONFIG: &str = "file/active/ze.conf";
    /// The seed configuration used when there is no active one.
    pub const TEMPLATE_CONFIG: &str = "file/template/ze.conf";
    /// When the database was created (RFC 3339, UTC).
    pub const META_CREATED: &str = "meta/created";
    /// The ze version that created the database.
    pub const META_VERSION: &str = "meta/version";
    /// Prefix of user records: `auth/user/<name>`.
    pub const USER_PREFIX: &str = "auth/user/";
}

/// Why a file is not a valid zefs database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZefsError {
    /// Byte offset where the problem is.
    pub offset: usize,
    /// What is wrong there.
    pub what: String,
}

impl fmt::Display for ZefsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.what, self.offset)
    }
}

impl std::error::Error for ZefsError {}

fn corrupt(offset: usize, what: impl Into<String>) -> ZefsError {
    ZefsError {
        offset,
        what: what.into(),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn entry_crc(key: &[u8], value: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(value);
    h.finalize()
}

/// A user record stored at `auth/user/<name>`, in brace format:
/// `role admin; password-hash "$2b$10$…";`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// What the user may do (`admin`).
    pub role: String,
    /// The bcrypt hash of the password; the plaintext is never stored.
    pub password_hash: String,
}

/// An in-memory zefs database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zefs {
    entries: BTreeMap<String, Vec<u8>>,
}

impl Zefs {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a whole file. Every length is checked against the bytes that
    /// remain before it is used.
    pub fn parse(bytes: &[u8]) -> Result<Zefs, ZefsError> {
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(
                bytes.len(),
                format!("truncated header: {} of {HEADER_LEN} bytes", bytes.len()),
            ));
        }
        if bytes[..8] != MAGIC {
            return Err(corrupt(0, "bad magic: not a zefs database"));
        }
        let version = le16(bytes, 8);
        if version != VERSION {
            return Err(corrupt(
                8,
                format!("unsupported format version {version} (this ze reads {VERSION})"),
            ));
        }
        let flags = le16(bytes, 10);
        if flags != 0 {
            return Err(corrupt(10, format!("unknown flags {flags:#06x}")));
        }
        let count = le32(bytes, 12);
        if crc32fast::hash(&bytes[..16]) != le32(bytes, 16) {
            return Err(corrupt(16, "header checksum mismatch"));
        }
        if count > MAX_ENTRIES {
            return Err(corrupt(
                12,
                format!("entry count {count} exceeds {MAX_ENTRIES}"),
            ));
        }
        let mut entries = BTreeMap::new();
        let mut at = HEADER_LEN;
        let mut previous: Option<&[u8]> = None;
        for index in 0..count {
            let left = bytes.len() - at;
            if left < ENTRY_HEAD_LEN {
                return Err(corrupt(
                    bytes.len(),
                    format!(
                        "truncated: entry {index} head starts at offset {at} but only {left} bytes remain"
                    ),
                ));
            }
            let key_len = usize::from(le16(bytes, at));
            let reserved = le16(bytes, at + 2);
            let value_len = le32(bytes, at + 4) as usize;
            let crc = le32(bytes, at + 8);
            if key_len == 0 || key_len > MAX_KEY_LEN {
                return Err(corrupt(
                    at,
                    format!("entry {index}: key length {key_len} is not 1..={MAX_KEY_LEN}"),
                ));
            }
            if reserved != 0 {
                return Err(corrupt(
                    at + 2,
                    format!("entry {index}: reserved field is {reserved}, not 0"),
                ));
            }
            if value_len > MAX_VALUE_LEN {
                return Err(corrupt(
                    at + 4,
                    format!("entry {index}: value length {value_len} exceeds {MAX_VALUE_LEN}"),
                ));
            }
            let data = at + ENTRY_HEAD_LEN;
            let need = key_len + value_len;
            if bytes.len() - data < need {
                return Err(corrupt(
                    bytes.len(),
                    format!(
                        "truncated: entry {index} needs {need} bytes from offset {data} but only {} remain",
                        bytes.len() - data
                    ),
                ));
            }
            let key = &bytes[data..data + key_len];
            let value = &bytes[data + key_len..data + need];
            if entry_crc(key, value) != crc {
                return Err(corrupt(at + 8, format!("entry {index}: checksum mismatch")));
            }
            let key_text = std::str::from_utf8(key)
                .map_err(|_| corrupt(data, format!("entry {index}: key is not UTF-8")))?;
            if previous.is_some_and(|p| p >= key) {
                return Err(corrupt(
                    data,
                    format!("entry {index}: key {key_text:?} is out of order or repeated"),
                ));
            }
            previous = Some(key);
            entries.insert(key_text.to_string(), value.to_vec());
            at = data + need;
        }
        if at != bytes.len() {
            return Err(corrupt(
                at,
                format!("{} unexpected bytes after the last entry", bytes.len() - at),
            ));
        }
        Ok(Zefs { entries })
    }

    /// The file bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + self
                    .entries
                    .iter()
                    .map(|(k, v)| ENTRY_HEAD_LEN + k.len() + v.len())
                    .sum::<usize>(),
        );
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        for (key, value) in &self.entries {
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(&entry_crc(key.as_bytes(), value).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(value);
        }
        out
    }

    /// Read and parse `path`.
    pub fn load(path: &Path) -> anyhow::Result<Zefs> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Zefs::parse(&bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a valid zefs database: {e}", path.display()))
    }

    /// Write to `path` atomically with mode 0600.
    pub fn store(&self, path: &Path) -> anyhow::Result<()> {
        fsutil::write_atomic(path, &self.to_bytes(), FILE_MODE)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }

    /// Set `key` to `value`. Keys are 1..=1024 bytes and values at most 64
    /// MiB; anything else is refused.
    pub fn insert(&mut self, key: &str, value: impl Into<Vec<u8>>) -> anyhow::Result<()> {
        let value = value.into();
        anyhow::ensure!(
            !key.is_empty() && key.len() <= MAX_KEY_LEN,
            "zefs key {key:?} must be 1 to {MAX_KEY_LEN} bytes"
        );
        anyhow::ensure!(
            value.len() <= MAX_VALUE_LEN,
            "zefs value for {key:?} exceeds {MAX_VALUE_LEN} bytes"
        );
        self.entries.insert(key.to_string(), value);
        Ok(())
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Remove `key`; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    /// Every key, ascending.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Store a user record at `auth/user/<name>`.
    pub fn set_user(&mut self, name: &str, record: &UserRecord) -> anyhow::Result<()> {
        use crate::config::brace::{Document, Node, write};
        let doc = Document {
            nodes: vec![
                Node::leaf("role", &[&record.role]),
                Node::leaf("password-hash", &[&record.password_hash]),
            ],
        };
        self.insert(&format!("{}{name}", keys::USER_PREFIX), write(&doc))
    }

    /// The user record at `auth/user/<name>`, if any and well-formed.
    pub fn user(&self, name: &str) -> Option<UserRecord> {
        let text = std::str::from_utf8(self.get(&format!("{}{name}", keys::USER_PREFIX))?).ok()?;
        let doc = crate::config::brace::parse(text).ok()?;
        Some(UserRecord {
            role: doc.get("role")?.args.first()?.clone(),
            password_hash: doc.get("password-hash")?.args.first()?.clone(),
        })
    }

    /// The names of every user, ascending.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.keys()
            .filter_map(|k| k.strip_prefix(keys::USER_PREFIX))
    }
}

/// The role of the user `ze init` and the provisioning server create.
pub const ADMIN_ROLE: &str = "admin";

/// A fresh database: one admin user, `meta/created`, `meta/version`.
pub fn new_database(username: &str, password: &str, now: i64) -> anyhow::Result<Zefs> {
    new_database_with_hash(username, &crate::credentials::hash_password(password)?, now)
}

/// [`new_database`] for a password that is already a bcrypt hash (the
/// provisioning server's `database.zefs`).
pub fn new_database_with_hash(
    username: &str,
    password_hash: &str,
    now: i64,
) -> anyhow::Result<Zefs> {
    let mut db = Zefs::new();
    db.set_user(
        username,
        &UserRecord {
            role: ADMIN_ROLE.into(),
            password_hash: password_hash.into(),
        },
    )?;
    db.insert(keys::META_CREATED, crate::timefmt::rfc3339(now))?;
    db.insert(keys::META_VERSION, crate::build::VERSION)?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Zefs {
        let mut db = Zefs::new();
        db.insert(keys::META_VERSION, "0.1.0").unwrap();
        db.insert(keys::META_CREATED, "2026-11-25T19:00:00Z")
            .unwrap();
        db.set_user(
            "admin",
            &UserRecord {
                role: "admin".into(),
                password_hash: "$2b$10$0123456789012345678901abcdefghijklmnopqrstuvwxyzABCDE"
                    .into(),
            },
        )
        .unwrap();
        db
    }

    #[test]
    fn round_trips() {
        let db = sample();
        let bytes = db.to_bytes();
        assert_eq!(&bytes[..8], &MAGIC);
        let back = Zefs::parse(&bytes).unwrap();
        assert_eq!(back, db);
        assert_eq!(back.user("admin").unwrap().role, "admin");
        assert_eq!(back.users().collect::<Vec<_>>(), ["admin"]);
    }

    #[test]
    fn empty_database_is_just_a_header() {
        let bytes = Zefs::new().to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(Zefs::parse(&bytes).unwrap(), Zefs::new());
    }

    #[test]
    fn every_truncation_is_rejected_with_an_offset() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            let err = Zefs::parse(&bytes[..len]).unwrap_err();
            assert!(err.offset <= len, "len {len}: {err}");
            assert!(err.to_string().contains("offset"), "{err}");
        }
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = sample().to_bytes();
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(Zefs::parse(&bad).is_err(), "flip at {at} went unnoticed");
        }
    }

    #[test]
    fn specific_corruptions_name_their_offset() {
        let mut bytes = sample().to_bytes();
        bytes.push(0);
        let err = Zefs::parse(&bytes).unwrap_err();
        assert_eq!(err.offset, bytes.len() - 1);
        assert!(err.what.contains("unexpected bytes"));

        let mut bytes = sample().to_bytes();
        bytes[0] = b'X';
        assert_eq!(
            Zefs::parse(&bytes).unwrap_err().to_string(),
            "bad magic: not a zefs database at offset 0"
        );

        // A value length pointing past the end of the file.
        let mut bytes = sample().to_bytes();
        bytes[HEADER_LEN + 4..HEADER_LEN + 8].copy_from_slice(&1_000_000u32.to_le_bytes());
        let err = Zefs::parse(&bytes).unwrap_err();
        assert!(err.what.starts_with("truncated: entry 0"), "{err}");
    }

    #[test]
    fn out_of_order_keys_are_rejected() {
        // Build a file by hand with keys b, a.
        let mut db = Zefs::new();
        db.insert("a", "1").unwrap();
        db.insert("b", "2").unwrap();
        let bytes = db.to_bytes();
        let entry_a = &bytes[HEADER_LEN..HEADER_LEN + ENTRY_HEAD_LEN + 2];
        let entry_b = &bytes[HEADER_LEN + ENTRY_HEAD_LEN + 2..];
        let mut swapped = bytes[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(entry_b);
        swapped.extend_from_slice(entry_a);
        let err = Zefs::parse(&swapped).unwrap_err();
        assert!(err.what.contains("out of order"), "{err}");
    }

    #[test]
    fn limits_are_enforced_on_insert() {
        let mut db = Zefs::new();
        assert!(db.insert("", "x").is_err());
        assert!(db.insert(&"k".repeat(MAX_KEY_LEN + 1), "x").is_err());
        assert!(db.insert(&"k".repeat(MAX_KEY_LEN), "x").is_ok());
    }

    #[test]
    fn l6_new_database_holds_user_and_meta_only() {
        let db = new_database("admin", "secret", 1_781_712_000).unwrap();
        assert_eq!(
            db.keys().collect::<Vec<_>>(),
            ["auth/user/admin", "meta/created", "meta/version"]
        );
        assert_eq!(db.get(keys::META_CREATED).unwrap(), b"2026-06-17T16:00:00Z");
        let user = db.user("admin").unwrap();
        assert_eq!(user.role, "admin");
        assert!(crate::credentials::verify_password(
            "secret",
            &user.password_hash
        ));
        let bytes = db.to_bytes();
        assert!(
            !bytes.windows(6).any(|w| w == b"secret"),
            "plaintext stored"
        );
    }
}
