//! Stage reports to the install server (checklist F5): best-effort
//! `GET /install/report/<mac>/<stage>?<key>=<value>&…` requests, so the
//! server's status views know where each machine stands.
//!
//! | stage | keys | when |
//! |---|---|---|
//! | `network` | `iface`, `ip` (`A.B.C.D/N`) | the server answered a probe |
//! | `disk` | `name`, `size` | the target disk was chosen |
//! | `progress` | `bytes`, `total`, `map` (`1` for a block-map transfer) | at most every [`PROGRESS_EVERY`] |
//! | `verified` | `bytes` | the whole image is written and checked |
//! | `database` | `bytes` | `/perm/ze/database.zefs` is durable |
//! | `complete` | — | the partition table is written; the machine reboots |
//! | `fatal` | `line` | the install stopped with this FATAL line |
//!
//! `<mac>` is the uplink's address with dashes (`52-54-00-12-34-56`);
//! values are percent-encoded. A report never fails or slows an install:
//! each has [`TIMEOUT`] for everything, and after one that does not get
//! an answer (or gets `404`: a server without reports) no more are sent.

use super::download::CONNECT_TIMEOUT;
use crate::{
    console::say,
    http::{self, Method, Request, Response},
    install::Fatal,
};
use core::{
    fmt::{self, Write},
    net::Ipv4Addr,
    time::Duration,
};
use heapless::String;
use ze_hal::{
    os::{Os, TcpConn},
    time::Instant,
};

/// How long one report may take, connect to answer.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// The most one progress report per this long.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// The URL path prefix of reports.
pub const REPORT_URL: &str = "/install/report/";
/// The longest report path built (a FATAL line is cut to fit).
pub const MAX_REPORT_PATH: usize = 400;

/// One value of a report.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// A number.
    Num(u64),
    /// Text, percent-encoded on the way out.
    Text(&'a str),
    /// An address with its prefix length.
    Net(Ipv4Addr, u8),
}

/// Writes text percent-encoded: everything but RFC 3986 unreserved
/// characters becomes `%XX`.
struct Encoded<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Encoded<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                self.0.write_char(char::from(b))?;
            } else {
                write!(self.0, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// The request path of a report; text values are cut where they would
/// not fit [`MAX_REPORT_PATH`].
pub fn path(mac: [u8; 6], stage: &str, fields: &[(&str, Value<'_>)]) -> String<MAX_REPORT_PATH> {
    let mut p: String<MAX_REPORT_PATH> = String::new();
    let m = mac;
    let _ = write!(
        p,
        "{REPORT_URL}{:02x}-{:02x}-{:02x}-{:02x}-{:02x}-{:02x}/{stage}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    );
    for (i, (key, value)) in fields.iter().enumerate() {
        let _ = p.push(if i == 0 { '?' } else { '&' });
        let _ = p.push_str(key);
        let _ = p.push('=');
        match value {
            Value::Num(n) => {
                let _ = write!(p, "{n}");
            }
            Value::Net(a, n) => {
                let _ = write!(p, "{a}%2F{n}");
            }
            Value::Text(t) => {
                for c in t.chars() {
                    let mut one: String<12> = String::new();
                    let mut buf = [0u8; 4];
                    let _ = Encoded(&mut one).write_str(c.encode_utf8(&mut buf));
                    if p.push_str(&one).is_err() {
                        break;
                    }
                }
            }
        }
    }
    p
}

/// The reports of one install.
#[derive(Debug)]
pub struct Reporter {
    server: Ipv4Addr,
    port: u16,
    mac: [u8; 6],
    /// No more reports: one failed.
    off: bool,
    last_progress: Option<Instant>,
}

impl Reporter {
    /// Reports for the machine `mac` to `server:port`.
    pub fn new(server: Ipv4Addr, port: u16, mac: [u8; 6]) -> Self {
        Reporter {
            server,
            port,
            mac,
            off: false,
            last_progress: None,
        }
    }

    /// No reports at all (benchmarks on the host).
    pub fn none() -> Self {
        Reporter {
            off: true,
            ..Reporter::new(Ipv4Addr::UNSPECIFIED, 0, [0; 6])
        }
    }

    /// Report `stage` with `fields`.
    pub fn send<O: Os>(&mut self, os: &mut O, stage: &str, fields: &[(&str, Value<'_>)]) {
        if self.off {
            return;
        }
        let path = path(self.mac, stage, fields);
        if let Err(why) = self.request(os, &path) {
            self.off = true;
            say!(
                os,
                "reports to {}:{}: {why}; the install goes on without them",
                self.server,
                self.port
            );
        }
    }

    /// Report progress, at most every [`PROGRESS_EVERY`].
    pub fn progress<O: Os>(&mut self, os: &mut O, bytes: u64, total: u64, map: bool) {
        let now = os.now();
        if self
            .last_progress
            .is_some_and(|t| now.saturating_since(t) < PROGRESS_EVERY)
        {
            return;
        }
        self.last_progress = Some(now);
        self.send(
            os,
            "progress",
            &[
                ("bytes", Value::Num(bytes)),
                ("total", Value::Num(total)),
                ("map", Value::Num(u64::from(map))),
            ],
        );
    }

    /// Report the FATAL line of `fatal`.
    pub fn fatal<O: Os>(&mut self, os: &mut O, fatal: &Fatal) {
        let mut line: String<240> = String::new();
        let _ = write!(line, "{fatal}");
        self.send(os, "fatal", &[("line", Value::Text(&line))]);
    }

    fn request<O: Os>(&mut self, os: &mut O, path: &str) -> Result<(), &'static str> {
        let deadline = os.now() + TIMEOUT;
        let mut tcp = os
            .tcp_connect(self.server, self.port, TIMEOUT.min(CONNECT_TIMEOUT))
            .map_err(|_| "no connection")?;
        let mut buf = [0u8; http::MAX_REQUEST];
        let req = Request {
            method: Method::Get,
            path,
            range: None,
            keep_alive: false,
        };
        let req = http::write_request(&mut buf, self.server, self.port, &req)
            .map_err(|_| "request too large")?;
        tcp.send_all(req, TIMEOUT).map_err(|_| "send failed")?;
        let mut resp = Response::new(Method::Head);
        let mut got = [0u8; 512];
        loop {
            let left = deadline.saturating_since(os.now());
            if left.is_zero() {
                return Err("no answer in time");
            }
            match tcp.recv(&mut got, left) {
                Ok(0) => return Err("closed without an answer"),
                Err(ze_hal::os::NetError::TimedOut) => return Err("no answer in time"),
                Err(_) => return Err("no answer"),
                Ok(n) => {
                    if let Some(head) = resp
                        .feed(got.get(..n).unwrap_or_default())
                        .map_err(|_| "not HTTP")?
                        .head
                    {
                        return match head.status {
                            200..=299 => Ok(()),
                            404 => Err("the server takes no reports (HTTP 404)"),
                            _ => Err("refused"),
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f5_report_paths_are_encoded_and_bounded() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        assert_eq!(
            path(
                mac,
                "network",
                &[
                    ("iface", Value::Text("eth0")),
                    ("ip", Value::Net(Ipv4Addr::new(192, 0, 2, 2), 24))
                ]
            )
            .as_str(),
            "/install/report/52-54-00-12-34-56/network?iface=eth0&ip=192.0.2.2%2F24"
        );
        assert_eq!(
            path(mac, "fatal", &[("line", Value::Text("a b&c=d/é"))]).as_str(),
            "/install/report/52-54-00-12-34-56/fatal?line=a%20b%26c%3Dd%2F%C3%A9"
        );
        assert_eq!(
            path(mac, "complete", &[]).as_str(),
            "/install/report/52-54-00-12-34-56/complete"
        );
        // A long line is cut, never spilled.
        let long = "x y ".repeat(200);
        let p = path(mac, "fatal", &[("line", Value::Text(&long))]);
        assert!(p.len() <= MAX_REPORT_PATH);
        assert!(p.ends_with("x") || p.ends_with("%20") || p.ends_with("y"));
    }
}
