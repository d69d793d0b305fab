//! A machine's MAC address: how the fleet names a machine. Read as
//! `52:54:00:12:34:56` or `52-54-00-12-34-56`, either case; shown with
//! colons; its record file and its installer reports use dashes.

use std::{fmt, str::FromStr};

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

/// A text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a MAC address: expected six two-digit hex pairs such as 52:54:00:12:34:56 or 52-54-00-12-34-56"
)]
pub struct BadMac(pub String);

impl Mac {
    /// `52-54-00-12-34-56`: the record's file stem and the report path's form.
    pub fn dashed(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::wire::dhcp::format_mac(&self.0))
    }
}

impl FromStr for Mac {
    type Err = BadMac;

    /// Six pairs of hex digits, all separated by `:` or all by `-`.
    fn from_str(text: &str) -> Result<Mac, BadMac> {
        let bad = || BadMac(text.chars().take(64).collect());
        let sep = match text.as_bytes().get(2) {
            Some(b':') => ':',
            Some(b'-') => '-',
            _ => return Err(bad()),
        };
        let mut out = [0u8; 6];
        let mut parts = text.split(sep);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_macs_with_colons_or_dashes_either_case() {
        let m = Mac([0x52, 0x54, 0, 0x12, 0x34, 0xab]);
        for text in [
            "52:54:00:12:34:ab",
            "52-54-00-12-34-AB",
            "52:54:00:12:34:Ab",
        ] {
            assert_eq!(text.parse::<Mac>().unwrap(), m, "{text}");
        }
        assert_eq!(m.to_string(), "52:54:00:12:34:ab");
        assert_eq!(m.dashed(), "52-54-00-12-34-ab");
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52-54:00-12-34-56",
            "5254.0012.3456",
            "52:54:00:12:34:5",
            "52:54:00:12:34:5g",
            "525400123456",
            "+2:54:00:12:34:56",
            "52:54:00:12:34:56 ",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "nope".parse::<Mac>().unwrap_err().to_string(),
            "\"nope\" is not a MAC address: expected six two-digit hex pairs such as 52:54:00:12:34:56 or 52-54-00-12-34-56"
        );
    }

    #[test]
    fn f5_macs_serialize_as_text() {
        let m: Mac = "52:54:00:12:34:56".parse().unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"52:54:00:12:34:56\"");
        assert_eq!(serde_json::from_str::<Mac>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Mac>("\"zz\"").is_err());
    }
}
