//! The kernel command line (`/proc/cmdline`): the `ze.*` keys the installer
//! obeys, plus `ip=`.
//!
//! Every value is checked; an invalid one is an error that names the key and
//! the value, never a silent default. Unknown `ze.*` keys are reported so a
//! typo (`ze.sever=`) does not go unnoticed.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `ze.source` | `http` | `http` (PXE) or `iso` (local media) |
//! | `ze.server` | — | IPv4 address of the install server (HTTP mode) |
//! | `ze.port` | 80 | its TCP port, 1–65535 |
//! | `ze.image` | `ze.img` | image name under `/install/image/` |
//! | `ze.target` | — | whole disk to write: `/dev/vda`, `/dev/disk/by-id/<name>` or `serial:<serial>` ([`crate::byid`]) |
//! | `ze.wait` | 30 | server probe attempts (0 skips the probe) |
//! | `ze.media-id` | — | 32 hex digits naming the installer ISO |
//! | `ze.shell-auth` | — | sha256 (64 hex) of the recovery password |
//! | `ze.sha256` | — | sha256 (64 hex) of the image (the full-stream install) |
//! | `ze.bmap-sha256` | — | sha256 (64 hex) of the image's block map file |
//! | `ze.size` | — | the image's size in bytes |
//! | `ip=` | — | the kernel's own network configuration |

use core::{fmt, net::Ipv4Addr};
use heapless::{String, Vec};

/// The longest `ze.image` name.
pub const MAX_IMAGE_NAME: usize = 128;
pub use crate::byid::MAX_TARGET;
/// The longest value quoted back in an error.
pub const MAX_QUOTED: usize = 64;
/// The most unknown `ze.*` keys remembered for the warning.
pub const MAX_UNKNOWN: usize = 4;
/// Default `ze.port`.
pub const DEFAULT_PORT: u16 = 80;
/// Default `ze.image`.
pub const DEFAULT_IMAGE: &str = "ze.img";
/// Default `ze.wait`.
pub const DEFAULT_WAIT: u32 = 30;
/// The largest `ze.wait` accepted (a day of 2-second probes).
pub const MAX_WAIT: u32 = 43_200;

/// Where the image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Download over HTTP from `ze.server` (PXE installs).
    #[default]
    Http,
    /// Read from the booted ISO media.
    Iso,
}

/// What `ip=` asked the kernel to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelIp {
    /// No `ip=` parameter.
    #[default]
    Absent,
    /// `ip=off` / `ip=none`: the kernel configured nothing.
    Off,
    /// `ip=dhcp` (or `on`, `any`, `bootp`, `rarp`, `both`).
    Auto,
    /// `ip=<client>:<server>:<gw>:<mask>:...`: a static configuration.
    Static,
}

/// A 32-byte digest given as 64 hex digits.
pub type Digest = [u8; 32];

/// The installer's settings, parsed from the kernel command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `ze.source`.
    pub source: Source,
    /// `ze.server`.
    pub server: Option<Ipv4Addr>,
    /// `ze.port`.
    pub port: u16,
    /// `ze.image`.
    pub image: String<MAX_IMAGE_NAME>,
    /// `ze.target`.
    pub target: Option<String<MAX_TARGET>>,
    /// `ze.wait`.
    pub wait: u32,
    /// `ze.media-id` (16 bytes from 32 hex digits).
    pub media_id: Option<[u8; 16]>,
    /// `ze.shell-auth`: sha256 of the recovery password.
    pub shell_auth: Option<Digest>,
    /// `ze.sha256`: the image's digest.
    pub sha256: Option<Digest>,
    /// `ze.bmap-sha256`: the digest of the image's block map; the map is
    /// used only when it matches.
    pub bmap_sha256: Option<Digest>,
    /// `ze.size`: the image's size in bytes.
    pub size: Option<u64>,
    /// `ip=`.
    pub ip: KernelIp,
    /// Unknown `ze.*` keys (for a warning), at most [`MAX_UNKNOWN`].
    pub unknown: Vec<String<MAX_QUOTED>, MAX_UNKNOWN>,
}

impl Default for Config {
    fn default() -> Self {
        let mut image = String::new();
        let _ = image.push_str(DEFAULT_IMAGE);
        Config {
            source: Source::Http,
            server: None,
            port: DEFAULT_PORT,
            image,
            target: None,
            wait: DEFAULT_WAIT,
            media_id: None,
            shell_auth: None,
            sha256: None,
            bmap_sha256: None,
            size: None,
            ip: KernelIp::Absent,
            unknown: Vec::new(),
        }
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `ze.source` is neither `http` nor `iso`.
    NotASource,
    /// Not a dotted-quad IPv4 address.
    NotAnIpv4Address,
    /// Not a port number 1–65535.
    NotAPort,
    /// Not a safe image file name.
    NotAnImageName,
    /// Not a whole disk ([`crate::byid::parse`] says why).
    Target(crate::byid::SpecError),
    /// Not a whole number in range.
    NotANumber,
    /// Not exactly the expected number of hex digits.
    NotHex(usize),
    /// An `ip=` form the kernel does not know.
    NotAnIpMode,
    /// Required in this mode but missing.
    Missing,
    /// The value is empty.
    Empty,
}

/// An invalid command line: which key, what value, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineError {
    /// The key, e.g. `ze.port`.
    pub key: &'static str,
    /// The value given (cut to [`MAX_QUOTED`] bytes).
    pub value: String<MAX_QUOTED>,
    /// What is wrong with it.
    pub problem: Problem,
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problem == Problem::Missing {
            let mode = if self.key == "ze.media-id" {
                "iso"
            } else {
                "http"
            };
            return write!(
                f,
                "kernel command line: {} is missing (required for ze.source={mode})",
                self.key
            );
        }
        write!(
            f,
            "kernel command line: {}={:?}: ",
            self.key,
            self.value.as_str()
        )?;
        match self.problem {
            Problem::NotASource => f.write_str("must be http or iso"),
            Problem::NotAnIpv4Address => f.write_str("not an IPv4 address like 192.0.2.1"),
            Problem::NotAPort => f.write_str("not a TCP port (1-65535)"),
            Problem::NotAnImageName => f.write_str(
                "not an image file name (letters, digits, . _ - +; no / or ..; at most 128)",
            ),
            Problem::Target(e) => write!(f, "{e}"),
            Problem::NotANumber => f.write_str("not a whole number in range"),
            Problem::NotHex(n) => write!(f, "must be exactly {n} hex digits"),
            Problem::NotAnIpMode => f.write_str(
                "not an ip= form (dhcp, on, any, off, none, or client:server:gw:mask:...)",
            ),
            Problem::Empty => f.write_str("empty value"),
            Problem::Missing => Ok(()),
        }
    }
}

fn quote(value: &str) -> String<MAX_QUOTED> {
    let mut out = String::new();
    for c in value.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

fn err(key: &'static str, value: &str, problem: Problem) -> CmdlineError {
    CmdlineError {
        key,
        value: quote(value),
        problem,
    }
}

/// Split a command line into words, honouring double quotes the way the
/// kernel does (`key="a b"` is one word, the quotes removed).
pub fn words(cmdline: &str) -> impl Iterator<Item = &str> {
    let mut rest = cmdline;
    core::iter::from_fn(move || {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\0');
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if c == '"' {
                in_quotes = !in_quotes;
            } else if !in_quotes && (c.is_ascii_whitespace() || c == '\0') {
                end = i;
                break;
            }
        }
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(word)
    })
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .map(|v| v.strip_suffix('"').unwrap_or(v))
        .unwrap_or(value)
}

/// Parse hex digits into exactly `N` bytes.
pub fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *out.get_mut(i)? = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Parse a dotted-quad IPv4 address strictly (no leading zeros beyond one
/// digit, four parts, each 0–255).
pub fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for o in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || (part.len() > 1 && part.starts_with('0')) {
            return None;
        }
        *o = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn valid_image_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IMAGE_NAME
        && name != "."
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

fn parse_ip_mode(value: &str) -> Option<KernelIp> {
    match value {
        "off" | "none" => Some(KernelIp::Off),
        "dhcp" | "on" | "any" | "bootp" | "rarp" | "both" => Some(KernelIp::Auto),
        v if v.contains(':') => {
            // client-ip:server-ip:gw-ip:netmask:hostname:device:autoconf:...
            let mut fields = v.split(':');
            let client = fields.next().unwrap_or_default();
            if client.is_empty() || parse_ipv4(client).is_some() {
                // An autoconf field of dhcp/on/any makes it automatic.
                let autoconf = v.split(':').nth(6).unwrap_or_default();
                Some(match autoconf {
                    "dhcp" | "on" | "any" | "bootp" | "rarp" | "both" => KernelIp::Auto,
                    _ if client.is_empty() => KernelIp::Auto,
                    _ => KernelIp::Static,
                })
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `ze.source` read on its own from a command line that may not parse as
/// a whole, so a FATAL on installer media still gets the ISO recovery
/// policy (checklist H4). The last `ze.source=` wins, as in
/// [`Config::parse`]; anything but `iso` is [`Source::Http`].
pub fn source_alone(cmdline: &str) -> Source {
    match words(cmdline)
        .filter_map(|w| w.strip_prefix("ze.source="))
        .last()
        .map(unquote)
    {
        Some("iso") => Source::Iso,
        _ => Source::Http,
    }
}

impl Config {
    /// Parse the text of `/proc/cmdline`.
    pub fn parse(cmdline: &str) -> Result<Config, CmdlineError> {
        let mut c = Config::default();
        for word in words(cmdline) {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, unquote(v)),
                None => (word, ""),
            };
            if key == "ip" {
                c.ip =
                    parse_ip_mode(value).ok_or_else(|| err("ip", value, Problem::NotAnIpMode))?;
                continue;
            }
            let Some(name) = key.strip_prefix("ze.") else {
                continue;
            };
            let key: &'static str = match name {
                "source" => "ze.source",
                "server" => "ze.server",
                "port" => "ze.port",
                "image" => "ze.image",
                "target" => "ze.target",
                "wait" => "ze.wait",
                "media-id" => "ze.media-id",
                "shell-auth" => "ze.shell-auth",
                "sha256" => "ze.sha256",
                "bmap-sha256" => "ze.bmap-sha256",
                "size" => "ze.size",
                _ => {
                    if !c.unknown.is_full() {
                        let _ = c.unknown.push(quote(key));
                    }
                    continue;
                }
            };
            if value.is_empty() {
                return Err(err(key, value, Problem::Empty));
            }
            match key {
                "ze.source" => {
                    c.source = match value {
                        "http" => Source::Http,
                        "iso" => Source::Iso,
                        _ => return Err(err(key, value, Problem::NotASource)),
                    }
                }
                "ze.server" => {
                    c.server = Some(
                        parse_ipv4(value)
                            .ok_or_else(|| err(key, value, Problem::NotAnIpv4Address))?,
                    )
                }
                "ze.port" => {
                    c.port = parse_u64(value)
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|&p| p != 0)
                        .ok_or_else(|| err(key, value, Problem::NotAPort))?
                }
                "ze.image" => {
                    if !valid_image_name(value) {
                        return Err(err(key, value, Problem::NotAnImageName));
                    }
                    c.image.clear();
                    let _ = c.image.push_str(value);
                }
                "ze.target" => {
                    if let Err(e) = crate::byid::parse(value) {
                        return Err(err(key, value, Problem::Target(e)));
                    }
                    let mut t = String::new();
                    let _ = t.push_str(value);
                    c.target = Some(t);
                }
                "ze.wait" => {
                    c.wait = parse_u64(value)
                        .and_then(|w| u32::try_from(w).ok())
                        .filter(|&w| w <= MAX_WAIT)
                        .ok_or_else(|| err(key, value, Problem::NotANumber))?
                }
                "ze.media-id" => {
                    c.media_id =
                        Some(parse_hex(value).ok_or_else(|| err(key, value, Problem::NotHex(32)))?)
                }
                "ze.shell-auth" => {
                    c.shell_auth =
                        Some(parse_hex(value).ok_or_else(|| err(key, value, Problem::NotHex(64)))?)
                }
                "ze.sha256" => {
                    c.sha256 =
                        Some(parse_hex(value).ok_or_else(|| err(key, value, Problem::NotHex(64)))?)
                }
                "ze.bmap-sha256" => {
                    c.bmap_sha256 =
                        Some(parse_hex(value).ok_or_else(|| err(key, value, Problem::NotHex(64)))?)
                }
                "ze.size" => {
                    c.size = Some(
                        parse_u64(value)
                            .filter(|&s| s > 0)
                            .ok_or_else(|| err(key, value, Problem::NotANumber))?,
                    )
                }
                _ => {}
            }
        }
        if c.source == Source::Http && c.server.is_none() {
            return Err(err("ze.server", "", Problem::Missing));
        }
        if c.source == Source::Iso && c.media_id.is_none() {
            return Err(CmdlineError {
                key: "ze.media-id",
                value: String::new(),
                problem: Problem::Missing,
            });
        }
        Ok(c)
    }

    /// The install server, when this is an HTTP install.
    pub fn server(&self) -> Option<(Ipv4Addr, u16)> {
        Some((self.server?, self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::byid::SpecError;
    use std::string::ToString;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn i1_i2_defaults_with_only_a_server() {
        let c = Config::parse("console=ttyS0 ze.server=192.0.2.1 ip=dhcp\n").unwrap();
        assert_eq!(c.source, Source::Http);
        assert_eq!(c.server, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(c.port, 80);
        assert_eq!(c.image.as_str(), "ze.img");
        assert_eq!(c.wait, 30);
        assert_eq!(c.target, None);
        assert_eq!(c.ip, KernelIp::Auto);
        assert!(c.unknown.is_empty());
    }

    #[test]
    fn i1_every_key_parses() {
        let line = std::format!(
            "ze.source=http ze.server=10.0.2.2 ze.port=8080 ze.image=ze-20260101-000000.img \
             ze.target=/dev/nvme0n1 ze.wait=0 ze.media-id=0123456789abcdef0123456789ABCDEF \
             ze.shell-auth={SHA} ze.sha256={SHA} ze.bmap-sha256={SHA} ze.size=67108864 ip=off"
        );
        let c = Config::parse(&line).unwrap();
        assert_eq!(c.bmap_sha256, c.shell_auth);
        assert_eq!(c.server(), Some((Ipv4Addr::new(10, 0, 2, 2), 8080)));
        assert_eq!(c.image.as_str(), "ze-20260101-000000.img");
        assert_eq!(c.target.as_deref(), Some("/dev/nvme0n1"));
        assert_eq!(c.wait, 0);
        assert_eq!(c.media_id.unwrap()[0], 0x01);
        assert_eq!(c.media_id.unwrap()[15], 0xef);
        assert_eq!(c.shell_auth.unwrap()[0], 0x9f);
        assert_eq!(c.sha256, c.shell_auth);
        assert_eq!(c.size, Some(67_108_864));
        assert_eq!(c.ip, KernelIp::Off);
    }

    fn problem(line: &str) -> (String<MAX_QUOTED>, &'static str, Problem) {
        let e = Config::parse(line).unwrap_err();
        (e.value.clone(), e.key, e.problem)
    }

    #[test]
    fn i2_invalid_values_name_the_key() {
        let s = "ze.server=192.0.2.1 ";
        for (extra, key, p) in [
            ("ze.port=0", "ze.port", Problem::NotAPort),
            ("ze.port=65536", "ze.port", Problem::NotAPort),
            ("ze.port=80x", "ze.port", Problem::NotAPort),
            ("ze.port=-1", "ze.port", Problem::NotAPort),
            ("ze.source=ftp", "ze.source", Problem::NotASource),
            (
                "ze.image=../etc/passwd",
                "ze.image",
                Problem::NotAnImageName,
            ),
            ("ze.image=a/b", "ze.image", Problem::NotAnImageName),
            ("ze.image=a%2fb", "ze.image", Problem::NotAnImageName),
            (
                "ze.target=vda",
                "ze.target",
                Problem::Target(SpecError::NotADiskPath),
            ),
            (
                "ze.target=/dev/../sda",
                "ze.target",
                Problem::Target(SpecError::NotADiskPath),
            ),
            (
                "ze.target=/dev/sda1",
                "ze.target",
                Problem::Target(SpecError::Partition),
            ),
            ("ze.wait=-3", "ze.wait", Problem::NotANumber),
            ("ze.wait=99999999999", "ze.wait", Problem::NotANumber),
            ("ze.sha256=abc", "ze.sha256", Problem::NotHex(64)),
            ("ze.bmap-sha256=abc", "ze.bmap-sha256", Problem::NotHex(64)),
            ("ze.shell-auth=zz", "ze.shell-auth", Problem::NotHex(64)),
            ("ze.media-id=123", "ze.media-id", Problem::NotHex(32)),
            ("ze.size=0", "ze.size", Problem::NotANumber),
            ("ze.port=", "ze.port", Problem::Empty),
            ("ip=dhcpx", "ip", Problem::NotAnIpMode),
        ] {
            let (_, k, got) = problem(&(s.to_string() + extra));
            assert_eq!((k, got), (key, p), "{extra}");
        }
        for bad in [
            "ze.server=1.2.3",
            "ze.server=256.1.1.1",
            "ze.server=01.2.3.4",
            "ze.server=host",
        ] {
            let (_, k, p) = problem(bad);
            assert_eq!((k, p), ("ze.server", Problem::NotAnIpv4Address), "{bad}");
        }
    }

    #[test]
    fn i2_server_is_required_for_http_only() {
        let e = Config::parse("ip=dhcp").unwrap_err();
        assert_eq!((e.key, e.problem), ("ze.server", Problem::Missing));
        assert_eq!(
            e.to_string(),
            "kernel command line: ze.server is missing (required for ze.source=http)"
        );
        let c =
            Config::parse("ze.source=iso ze.media-id=0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(c.source, Source::Iso);
        let e = Config::parse("ze.source=iso").unwrap_err();
        assert_eq!(e.key, "ze.media-id");
    }

    #[test]
    fn errors_quote_the_value() {
        let e = Config::parse("ze.server=192.0.2.1 ze.port=99999").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel command line: ze.port=\"99999\": not a TCP port (1-65535)"
        );
    }

    #[test]
    fn quotes_and_unknown_keys() {
        let c = Config::parse(
            "ze.server=\"192.0.2.1\" ze.sever=1 ze.log=debug foo=\"a b\" ze.image=\"x.img\"",
        )
        .unwrap();
        assert_eq!(c.server, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(c.image.as_str(), "x.img");
        let unknown: std::vec::Vec<&str> = c.unknown.iter().map(|s| s.as_str()).collect();
        assert_eq!(unknown, ["ze.sever", "ze.log"]);
    }

    #[test]
    fn ip_forms() {
        for (v, want) in [
            ("dhcp", KernelIp::Auto),
            ("on", KernelIp::Auto),
            ("none", KernelIp::Off),
            (
                "192.0.2.5::192.0.2.1:255.255.255.0::eth0:off",
                KernelIp::Static,
            ),
            ("::::::dhcp", KernelIp::Auto),
            (":::::eth0:", KernelIp::Auto),
        ] {
            let c = Config::parse(&std::format!("ze.server=192.0.2.1 ip={v}")).unwrap();
            assert_eq!(c.ip, want, "{v}");
        }
    }

    #[test]
    fn words_split_like_the_kernel() {
        let w: std::vec::Vec<&str> = words("  a=1 b=\"x y\"\tc\0\n").collect();
        assert_eq!(w, ["a=1", "b=\"x y\"", "c"]);
        assert_eq!(words("").count(), 0);
        assert_eq!(
            words("\"unterminated x").collect::<std::vec::Vec<_>>(),
            ["\"unterminated x"]
        );
    }

    #[test]
    fn h2_long_by_id_targets_fit() {
        // A USB stick's serial is often a long hex string.
        let target =
            "/dev/disk/by-id/usb-SanDisk_Extreme_Pro_55AF_32303139443435353530303334363132-0:0";
        assert!(target.len() > 80);
        let c = Config::parse(&std::format!("ze.server=192.0.2.1 ze.target={target}")).unwrap();
        assert_eq!(c.target.as_deref(), Some(target));
        let c = Config::parse("ze.server=192.0.2.1 ze.target=serial:S7DSNJ0X123456A").unwrap();
        assert_eq!(c.target.as_deref(), Some("serial:S7DSNJ0X123456A"));
        let e = Config::parse("ze.server=192.0.2.1 ze.target=/dev/disk/by-uuid/x").unwrap_err();
        assert!(e.to_string().contains("only /dev/<disk>"), "{e}");
    }

    #[test]
    fn h4_source_is_readable_on_its_own() {
        let bad = "ze.source=iso ze.media-id=123 ze.port=0";
        assert!(Config::parse(bad).is_err());
        assert_eq!(source_alone(bad), Source::Iso);
        assert_eq!(source_alone("ze.source=\"iso\" ze.size=x"), Source::Iso);
        assert_eq!(source_alone("ze.source=iso ze.source=http"), Source::Http);
        assert_eq!(source_alone("ze.source=isox"), Source::Http);
        assert_eq!(source_alone("ze.port=0"), Source::Http);
    }

    #[test]
    fn last_value_wins_like_the_kernel() {
        let c = Config::parse("ze.server=192.0.2.1 ze.port=81 ze.port=82").unwrap();
        assert_eq!(c.port, 82);
    }
}
