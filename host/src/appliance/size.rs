//! Byte sizes as people type them: `2147483648`, `512M`, `2G`, `384MiB`.
//! Suffixes are binary (K = 1024); `B` and `iB` are optional.

use std::{fmt, str::FromStr};

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(digits);
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => {
                return Err(format!(
                    "invalid size {s:?}: use bytes or a number with K, M, G or T (binary: 1M = 1048576)"
                ));
            }
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("invalid size {s:?}: no number"))?;
        n.checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly (`2 GiB`, `1536 KiB`),
    /// else bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if v != 0 && v.is_multiple_of(1 << shift) {
                return write!(f, "{} {unit}", v >> shift);
            }
        }
        write!(f, "{v} bytes")
    }
}

/// A size for progress lines and reports: `1.5 GiB`, `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    let b = bytes as f64;
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        let scale = (1u64 << shift) as f64;
        if b >= scale {
            return format!("{:.1} {unit}", b / scale);
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        for (text, want) in [
            ("2147483648", 2u64 << 30),
            ("384M", 384 << 20),
            ("384MiB", 384 << 20),
            ("2G", 2 << 30),
            ("2 GiB", 2 << 30),
            ("512k", 512 << 10),
            ("1T", 1 << 40),
            ("7B", 7),
        ] {
            assert_eq!(text.parse::<ByteSize>().unwrap(), ByteSize(want), "{text}");
        }
        for bad in [
            "",
            "M",
            "2X",
            "-1",
            "1.5G",
            "99999999999999999999",
            "20000000T",
        ] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn displays_exact_units() {
        assert_eq!(ByteSize(2 << 30).to_string(), "2 GiB");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536 KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 bytes");
        assert_eq!(human(3 << 29), "1.5 GiB");
        assert_eq!(human(10), "10 bytes");
    }
}
