//! Network policy (spec: "Kernel Command Line"): trust the kernel's route
//! only when `ze.server` answers, else DHCP per interface and keep only an
//! interface that reaches the server; probe with a 2 s timeout, up to
//! `ze.wait` attempts, telling "TCP unreachable" from "HTTP error" (a 404
//! is an answer: the server is reachable); log interface state and routes
//! every [`DIAGNOSTICS_EVERY`] attempts.
//!
//! This module holds the decisions and the wording; the runner performs the
//! probes and the netlink calls.

use crate::http::HttpError;
use core::{fmt, time::Duration};
use ze_hal::os::{LinkInfo, NetError};

/// Timeout of one probe (connect + response head).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probe attempts start at least this far apart.
pub const PROBE_PERIOD: Duration = Duration::from_secs(2);
/// Log interface state and routes every this many attempts.
pub const DIAGNOSTICS_EVERY: u32 = 10;
/// Attempts the kernel's own route gets before the DHCP fallback.
pub const TRUST_ATTEMPTS: u32 = 3;
/// Attempts each DHCP lease gets before its interface is flushed.
pub const VERIFY_ATTEMPTS: u32 = 3;
/// How long to wait for carrier after bringing interfaces up.
pub const CARRIER_WAIT: Duration = Duration::from_secs(10);
/// How often carrier is checked while waiting.
pub const CARRIER_POLL: Duration = Duration::from_millis(250);
/// How long DHCP may take on one interface.
pub const DHCP_TIMEOUT: Duration = Duration::from_secs(10);
/// The most interfaces the installer tries.
pub const MAX_LINKS: usize = 16;

/// What one probe of `ze.server:ze.port` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// An HTTP response with this status: the server is reachable, even
    /// when the status is an error (404 included).
    Answered(u16),
    /// The TCP connection failed: no route, refused, timed out.
    TcpUnreachable(NetError),
    /// TCP connected but no valid HTTP response came back in time.
    HttpError(Option<HttpError>),
}

impl ProbeResult {
    /// Whether the server counts as reachable.
    pub fn reachable(&self) -> bool {
        matches!(self, ProbeResult::Answered(_))
    }
}

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeResult::Answered(status) => write!(f, "reachable (HTTP {status})"),
            ProbeResult::TcpUnreachable(e) => write!(f, "TCP unreachable: {e}"),
            ProbeResult::HttpError(Some(e)) => write!(f, "HTTP error: {e}"),
            ProbeResult::HttpError(None) => f.write_str("HTTP error: no response in time"),
        }
    }
}

/// The probe budget: `ze.wait` attempts over the whole network setup.
#[derive(Debug, Clone)]
pub struct Prober {
    used: u32,
    budget: u32,
}

impl Prober {
    /// `budget` attempts in total (`ze.wait`).
    pub fn new(budget: u32) -> Self {
        Prober { used: 0, budget }
    }

    /// Attempts made so far.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// The attempt budget.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// Attempts left.
    pub fn left(&self) -> u32 {
        self.budget.saturating_sub(self.used)
    }

    /// Take the next attempt; its 1-based number, or `None` when spent.
    pub fn take(&mut self) -> Option<u32> {
        if self.used >= self.budget {
            return None;
        }
        self.used += 1;
        Some(self.used)
    }

    /// Whether interface state and routes are due after attempt `n`.
    pub fn diagnostics_due(n: u32) -> bool {
        n > 0 && n.is_multiple_of(DIAGNOSTICS_EVERY)
    }
}

/// ARPHRD_ETHER: ethernet (and Wi-Fi) links.
pub const ARPHRD_ETHER: u16 = 1;

/// The interfaces worth trying, in index order: ethernet links only (not
/// loopback, and not the tunnels the kernel creates by itself such as
/// `sit0`, which can never get a DHCP lease).
pub fn candidates<'a>(links: &'a [LinkInfo]) -> impl Iterator<Item = &'a LinkInfo> + 'a {
    links
        .iter()
        .filter(|l| !l.loopback && l.kind == ARPHRD_ETHER)
}

/// A MAC address as `52:54:00:12:34:56`.
#[derive(Debug, Clone, Copy)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn i9_probe_budget_and_diagnostics_cadence() {
        let mut p = Prober::new(30);
        let mut diag = std::vec::Vec::new();
        while let Some(n) = p.take() {
            if Prober::diagnostics_due(n) {
                diag.push(n);
            }
        }
        assert_eq!(p.used(), 30);
        assert_eq!(diag, [10, 20, 30]);
        assert_eq!(Prober::new(0).take(), None);
    }

    #[test]
    fn i9_404_is_reachable_tcp_failure_is_not() {
        assert!(ProbeResult::Answered(404).reachable());
        assert!(ProbeResult::Answered(500).reachable());
        assert!(!ProbeResult::TcpUnreachable(NetError::Refused).reachable());
        assert!(!ProbeResult::HttpError(None).reachable());
        assert_eq!(
            ProbeResult::Answered(404).to_string(),
            "reachable (HTTP 404)"
        );
        assert_eq!(
            ProbeResult::TcpUnreachable(NetError::Refused).to_string(),
            "TCP unreachable: connection refused"
        );
        assert_eq!(
            ProbeResult::HttpError(Some(HttpError::Malformed)).to_string(),
            "HTTP error: malformed HTTP response"
        );
    }

    #[test]
    fn i8_only_ethernet_links_are_candidates() {
        let mk = |index: u32, name: &str, loopback: bool, kind: u16| LinkInfo {
            index,
            name: name.try_into().unwrap(),
            mac: [0; 6],
            up: false,
            carrier: false,
            loopback,
            kind,
            link_kind: heapless::String::new(),
        };
        let links = [
            mk(1, "lo", true, 772),
            mk(2, "eth0", false, 1),
            mk(3, "eth1", false, 1),
        ];
        let names: std::vec::Vec<&str> = candidates(&links).map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(
            Mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(),
            "52:54:00:12:34:56"
        );
    }
}
