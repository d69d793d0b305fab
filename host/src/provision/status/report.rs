//! The installer's reports (`firmware/src/run/report.rs`, docs/installer.md
//! "Reports to the server"), parsed strictly:
//! `/install/report/<mac>/<stage>?<key>=<value>&…`.
//!
//! Everything that is not exactly what the installer sends is refused
//! with a reason: an unknown stage or key, a key twice or missing, a
//! value that is not percent-encoded unreserved text, a number with
//! anything but digits or past `u64`, a field longer than its bound, a
//! progress of more bytes than its total, a target longer than
//! [`MAX_TARGET`].

use super::{Counters, Machine, Stage, clean};
use crate::provision::mac::{BadMac, Mac};
use std::net::Ipv4Addr;

/// The path prefix of reports.
pub const PREFIX: &str = "/install/report/";
/// The longest request target taken (the installer's are at most 400).
pub const MAX_TARGET: usize = 1024;
/// The longest FATAL line taken, in characters.
pub const MAX_LINE: usize = 256;
/// The longest interface or disk name.
pub const MAX_NAME: usize = 32;

/// One report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The server answered a probe over `iface` with address `ip/prefix`.
    Network {
        iface: String,
        ip: Ipv4Addr,
        prefix: u8,
    },
    /// The target disk was chosen.
    Disk { name: String, size: u64 },
    /// `bytes` of `total` written (`map`: mapped bytes of a block map).
    Progress { bytes: u64, total: u64, map: bool },
    /// The whole image is written and checked.
    Verified { bytes: u64 },
    /// The credential database is durable.
    Database { bytes: u64 },
    /// The partition table is written; the machine reboots.
    Complete,
    /// The install stopped with this FATAL line.
    Fatal { line: String },
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the report is {0} bytes long: at most {MAX_TARGET}")]
    TooLong(usize),
    #[error("not a report: expected {PREFIX}<mac>/<stage>?<key>=<value>&…")]
    NotAReport,
    #[error(transparent)]
    BadMac(#[from] BadMac),
    #[error(
        "unknown stage {0:?}: expected network, disk, progress, verified, database, complete or fatal"
    )]
    UnknownStage(String),
    #[error("{stage}: unknown key {key:?}")]
    UnknownKey { stage: &'static str, key: String },
    #[error("{stage}: {key} given twice")]
    Twice {
        stage: &'static str,
        key: &'static str,
    },
    #[error("{stage}: {key} is missing")]
    Missing {
        stage: &'static str,
        key: &'static str,
    },
    #[error("{stage}: {key}: {why}")]
    BadValue {
        stage: &'static str,
        key: &'static str,
        why: String,
    },
}

/// The keys of each stage, required first, then optional.
fn keys(stage: &str) -> Option<(&'static str, &'static [&'static str], usize)> {
    Some(match stage {
        "network" => ("network", &["iface", "ip"], 2),
        "disk" => ("disk", &["name", "size"], 2),
        "progress" => ("progress", &["bytes", "total", "map"], 2),
        "verified" => ("verified", &["bytes"], 1),
        "database" => ("database", &["bytes"], 1),
        "complete" => ("complete", &[], 0),
        "fatal" => ("fatal", &["line"], 1),
        _ => return None,
    })
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).map(|d| d as u8)
}

/// A percent-encoded value: unreserved characters as they are, every
/// other byte as `%XX`; UTF-8 without control characters.
fn decode(value: &str) -> Result<String, String> {
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("a '%' not followed by two hex digits".into());
                };
                out.push(hi << 4 | lo);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                out.push(c);
                i += 1;
            }
            c => {
                return Err(format!(
                    "{:?} must be percent-encoded",
                    char::from(c).escape_default().to_string()
                ));
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "not UTF-8".to_string())?;
    if text.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(text)
}

fn number(text: &str) -> Result<u64, String> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{:?} is not a number", clean(text, 32)));
    }
    text.parse()
        .map_err(|_| format!("{text} is more than {}", u64::MAX))
}

fn name(text: &str, extra: &[u8]) -> Result<String, String> {
    if text.is_empty()
        || text.len() > MAX_NAME
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        return Err(format!(
            "{:?} is not a name (1 to {MAX_NAME} letters, digits or {:?})",
            clean(text, 40),
            String::from_utf8_lossy(extra)
        ));
    }
    Ok(text.into())
}

fn address(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let bad = || {
        format!(
            "{:?} is not an address such as 192.0.2.2/24",
            clean(text, 40)
        )
    };
    let (ip, prefix) = text.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let prefix = number(prefix).ok().filter(|p| *p <= 32).ok_or_else(bad)? as u8;
    Ok((ip, prefix))
}

/// Parse a request target as a report.
pub fn parse(target: &str) -> Result<(Mac, Report), ReportError> {
    if target.len() > MAX_TARGET {
        return Err(ReportError::TooLong(target.len()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path.strip_prefix(PREFIX).ok_or(ReportError::NotAReport)?;
    let (mac, stage) = rest.split_once('/').ok_or(ReportError::NotAReport)?;
    let mac: Mac = mac.parse()?;
    let (stage, allowed, required) =
        keys(stage).ok_or_else(|| ReportError::UnknownStage(clean(stage, 32)))?;
    let mut values: Vec<Option<String>> = vec![None; allowed.len()];
    for pair in query.split('&').filter(|_| !query.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(i) = allowed.iter().position(|k| *k == key) else {
            return Err(ReportError::UnknownKey {
                stage,
                key: clean(key, 32),
            });
        };
        if values[i].is_some() {
            return Err(ReportError::Twice {
                stage,
                key: allowed[i],
            });
        }
        let text = decode(value).map_err(|why| ReportError::BadValue {
            stage,
            key: allowed[i],
            why,
        })?;
        values[i] = Some(text);
    }
    if let Some(i) = (0..required).find(|i| values[*i].is_none()) {
        return Err(ReportError::Missing {
            stage,
            key: allowed[i],
        });
    }
    let get = |i: usize| values[i].as_deref().unwrap_or_default();
    let bad = |i: usize| {
        move |why: String| ReportError::BadValue {
            stage,
            key: allowed[i],
            why,
        }
    };
    let report = match stage {
        "network" => {
            let (ip, prefix) = address(get(1)).map_err(bad(1))?;
            Report::Network {
                iface: name(get(0), b"-_.").map_err(bad(0))?,
                ip,
                prefix,
            }
        }
        "disk" => Report::Disk {
            name: name(get(0), b"-_").map_err(bad(0))?,
            size: number(get(1)).map_err(bad(1))?,
        },
        "progress" => {
            let (bytes, total) = (
                number(get(0)).map_err(bad(0))?,
                number(get(1)).map_err(bad(1))?,
            );
            if bytes > total {
                return Err(ReportError::BadValue {
                    stage,
                    key: "bytes",
                    why: format!("{bytes} is more than the total {total}"),
                });
            }
            let map = match values[2].as_deref() {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(bad(2)(format!("{:?}: expected 0 or 1", clean(other, 8))));
                }
            };
            Report::Progress { bytes, total, map }
        }
        "verified" => Report::Verified {
            bytes: number(get(0)).map_err(bad(0))?,
        },
        "database" => Report::Database {
            bytes: number(get(0)).map_err(bad(0))?,
        },
        "complete" => Report::Complete,
        _ => {
            let line = get(0);
            if line.is_empty() || line.chars().count() > MAX_LINE {
                return Err(bad(0)(format!("1 to {MAX_LINE} characters")));
            }
            Report::Fatal { line: line.into() }
        }
    };
    Ok((mac, report))
}

/// Apply `report` to a row.
pub(super) fn apply(m: &mut Machine, counters: &Counters, report: Report, now: u64) {
    match report {
        Report::Network { iface, ip, prefix } => {
            m.enter(now, Stage::Network, format!("{iface} {ip}/{prefix}"));
        }
        Report::Disk { name, size } => {
            m.enter(
                now,
                Stage::Disk,
                format!("/dev/{name}, {}", super::human_bytes(size)),
            );
        }
        Report::Progress { bytes, total, map } => {
            let what = if map {
                "block map transfer"
            } else {
                "image transfer"
            };
            m.enter(now, Stage::Image, what.into());
            if m.stage != Stage::Image {
                return;
            }
            if let Some((t0, b0)) = m.sample
                && now > t0
                && bytes >= b0
            {
                m.rate = (bytes - b0).saturating_mul(1000) / (now - t0);
            }
            m.sample = Some((now, bytes));
            (m.bytes, m.total, m.map) = (bytes, total, map);
        }
        Report::Verified { bytes } => {
            m.enter(
                now,
                Stage::Verified,
                format!("{} written and checked", super::human_bytes(bytes)),
            );
            if m.stage == Stage::Verified {
                if m.total == 0 {
                    m.total = bytes;
                }
                (m.bytes, m.rate) = (m.total, 0);
            }
        }
        Report::Database { bytes } => {
            m.enter(
                now,
                Stage::Database,
                format!("database.zefs written ({bytes} bytes)"),
            );
        }
        Report::Complete => {
            if m.stage != Stage::Complete {
                Counters::add(&counters.installs_completed, 1);
            }
            m.enter(now, Stage::Complete, "install complete; rebooting".into());
            m.completed = true;
        }
        Report::Fatal { line } => {
            if m.stage != Stage::Failed {
                Counters::add(&counters.installs_failed, 1);
            }
            m.enter(now, Stage::Failed, line.clone());
            m.error = Some(clean(&line, super::MAX_TEXT));
            m.completed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(target: &str) -> Report {
        parse(target).unwrap_or_else(|e| panic!("{target}: {e}")).1
    }

    fn err(target: &str) -> String {
        parse(target).unwrap_err().to_string()
    }

    const M: &str = "/install/report/52-54-00-12-34-56";

    #[test]
    fn f5_what_the_installer_sends_is_read() {
        let (mac, r) = parse(&format!("{M}/network?iface=eth0&ip=192.0.2.2%2F24")).unwrap();
        assert_eq!(mac.to_string(), "52:54:00:12:34:56");
        assert_eq!(
            r,
            Report::Network {
                iface: "eth0".into(),
                ip: "192.0.2.2".parse().unwrap(),
                prefix: 24
            }
        );
        assert_eq!(
            ok(&format!("{M}/disk?name=nvme0n1&size=536870912")),
            Report::Disk {
                name: "nvme0n1".into(),
                size: 536_870_912
            }
        );
        assert_eq!(
            ok(&format!("{M}/progress?bytes=5&total=10&map=1")),
            Report::Progress {
                bytes: 5,
                total: 10,
                map: true
            }
        );
        assert_eq!(
            ok(&format!("{M}/progress?bytes=5&total=10")),
            Report::Progress {
                bytes: 5,
                total: 10,
                map: false
            }
        );
        assert_eq!(
            ok(&format!("{M}/verified?bytes=10")),
            Report::Verified { bytes: 10 }
        );
        assert_eq!(
            ok(&format!("{M}/database?bytes=4096")),
            Report::Database { bytes: 4096 }
        );
        assert_eq!(ok(&format!("{M}/complete")), Report::Complete);
        assert_eq!(
            ok(&format!(
                "{M}/fatal?line=a%20b%26c%3Dd%2F%C3%A9%3Cscript%3E"
            )),
            Report::Fatal {
                line: "a b&c=d/é<script>".into()
            }
        );
    }

    #[test]
    fn f5_the_installers_own_paths_parse() {
        use ze_installer::run::report::{Value, path};
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let long = "FATAL: x <&> y ".repeat(40);
        for (stage, fields) in [
            (
                "network",
                vec![
                    ("iface", Value::Text("eth0")),
                    ("ip", Value::Net("192.0.2.2".parse().unwrap(), 24)),
                ],
            ),
            (
                "progress",
                vec![
                    ("bytes", Value::Num(1)),
                    ("total", Value::Num(2)),
                    ("map", Value::Num(0)),
                ],
            ),
            ("fatal", vec![("line", Value::Text(&long))]),
            ("complete", vec![]),
        ] {
            let p = path(mac, stage, &fields);
            parse(p.as_str()).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn f5_forged_and_oversized_reports_are_refused() {
        let cases: &[(String, &str)] = &[
            (
                format!("{M}/complete?{}", "a".repeat(MAX_TARGET)),
                "the report is 1067 bytes long: at most 1024",
            ),
            (
                "/install/report/".into(),
                "not a report: expected /install/report/<mac>/<stage>?<key>=<value>&…",
            ),
            (
                M.to_string(),
                "not a report: expected /install/report/<mac>/<stage>?<key>=<value>&…",
            ),
            (
                "/install/report/nope/complete".into(),
                "\"nope\" is not a MAC address: expected six two-digit hex pairs such as 52:54:00:12:34:56 or 52-54-00-12-34-56",
            ),
            (
                format!("{M}/rebooting"),
                "unknown stage \"rebooting\": expected network, disk, progress, verified, database, complete or fatal",
            ),
            (
                format!("{M}/complete/x"),
                "unknown stage \"complete/x\": expected network, disk, progress, verified, database, complete or fatal",
            ),
            (format!("{M}/complete?x=1"), "complete: unknown key \"x\""),
            (format!("{M}/complete?&"), "complete: unknown key \"\""),
            (
                format!("{M}/progress?bytes=1&bytes=1&total=2"),
                "progress: bytes given twice",
            ),
            (
                format!("{M}/progress?bytes=1"),
                "progress: total is missing",
            ),
            (
                format!("{M}/progress?bytes=3&total=2"),
                "progress: bytes: 3 is more than the total 2",
            ),
            (
                format!("{M}/progress?bytes=-1&total=2"),
                "progress: bytes: \"-1\" is not a number",
            ),
            (
                format!("{M}/progress?bytes=1&total=99999999999999999999"),
                "progress: total: 99999999999999999999 is more than 18446744073709551615",
            ),
            (
                format!("{M}/progress?bytes=1&total=2&map=2"),
                "progress: map: \"2\": expected 0 or 1",
            ),
            (
                format!("{M}/network?iface=eth0&ip=192.0.2.2/24"),
                "network: ip: \"/\" must be percent-encoded",
            ),
            (
                format!("{M}/network?iface=eth0&ip=192.0.2.2%2F33"),
                "network: ip: \"192.0.2.2/33\" is not an address such as 192.0.2.2/24",
            ),
            (
                format!("{M}/network?iface=eth%200&ip=192.0.2.2%2F24"),
                "network: iface: \"eth 0\" is not a name (1 to 32 letters, digits or \"-_.\")",
            ),
            (
                format!("{M}/disk?name={}&size=1", "a".repeat(33)),
                "disk: name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is not a name (1 to 32 letters, digits or \"-_\")",
            ),
            (
                format!("{M}/fatal?line=%1B%5B2J"),
                "fatal: line: holds a control character",
            ),
            (format!("{M}/fatal?line=%FF"), "fatal: line: not UTF-8"),
            (
                format!("{M}/fatal?line=%4"),
                "fatal: line: a '%' not followed by two hex digits",
            ),
            (
                format!("{M}/fatal?line=<b>"),
                "fatal: line: \"<\" must be percent-encoded",
            ),
            (
                format!("{M}/fatal?line={}", "x".repeat(MAX_LINE + 1)),
                "fatal: line: 1 to 256 characters",
            ),
            (
                format!("{M}/fatal?line="),
                "fatal: line: 1 to 256 characters",
            ),
        ];
        for (target, want) in cases {
            assert_eq!(err(target), *want, "{target}");
        }
    }
}
