//! The views of the fleet's status table (checklist F6): renderers only,
//! with no bookkeeping of their own — every figure comes from
//! [`Fleet`].
//!
//! - [`tty`]: the live table under the log, for a terminal width, and
//!   [`terminal`], the `statustable` plugin that keeps it there;
//! - [`json`]: `GET /install/status`;
//! - [`html`]: `GET /`, the same table for a browser, refreshing itself;
//! - [`metrics`]: `GET /metrics`, Prometheus text format 0.0.4.
//!
//! [`route`] is the imageserver's entry: the answer for a request target
//! these views own (the installer's reports under `/install/report/`
//! included), or `None` for the rest.

pub mod html;
pub mod json;
pub mod metrics;
pub mod terminal;
pub mod tty;

use crate::provision::status::{self, Fleet, Machine, human_bytes};
use std::net::Ipv4Addr;

/// The status page.
pub const INDEX_PATH: &str = "/";
/// The status as JSON.
pub const STATUS_PATH: &str = "/install/status";
/// The Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";

/// An answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    fn text(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// The answer to `target` (a GET's request target) from `peer`, when
/// these views own it.
pub fn route(fleet: &Fleet, target: &str, peer: Ipv4Addr) -> Option<Reply> {
    let path = target.split('?').next().unwrap_or_default();
    Some(match path {
        INDEX_PATH => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: html::index(fleet),
        },
        STATUS_PATH => Reply {
            status: 200,
            content_type: "application/json",
            body: json::status_json(fleet),
        },
        METRICS_PATH => Reply {
            status: 200,
            content_type: metrics::CONTENT_TYPE,
            body: metrics::metrics(fleet),
        },
        p if p.starts_with(status::report::PREFIX) => report(fleet, target, peer),
        _ => return None,
    })
}

/// `GET /install/report/<mac>/<stage>?…` from `peer`: 200 when taken,
/// 400 for a malformed report, 403 from another address than the
/// machine's, 503 when the table is full.
pub fn report(fleet: &Fleet, target: &str, peer: Ipv4Addr) -> Reply {
    let (mac, r) = match status::report::parse(target) {
        Ok(parsed) => parsed,
        Err(e) => {
            status::Counters::add(&fleet.counters().rejected_reports, 1);
            return Reply::text(400, format!("{e}\n"));
        }
    };
    match fleet.report_at(mac, r, peer, crate::timefmt::now_ms()) {
        Ok(()) => Reply::text(200, "ok\n".into()),
        Err(e @ status::Refused::Full) => Reply::text(503, format!("{e}\n")),
        Err(e @ status::Refused::NotItsAddress { .. }) => Reply::text(400, format!("{e}\n")),
        Err(e) => Reply::text(403, format!("{e}\n")),
    }
}

/// `0:42`, `12:03`, `1:02:03` for a duration in ms.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// How long the machine's boot has taken: until now, or until its last
/// event once it is done.
pub fn elapsed(m: &Machine, now: u64) -> u64 {
    let end = if m.stage.is_final() { m.updated } else { now };
    end.saturating_sub(m.started)
}

/// The written share of the image, 0 to 100, when a total is known.
pub fn percent(m: &Machine) -> Option<u64> {
    (m.total > 0).then(|| (m.bytes.min(m.total) as u128 * 100 / m.total as u128) as u64)
}

/// `30.1 MiB/s`, or nothing while no rate is known.
pub fn rate(m: &Machine) -> String {
    if m.rate == 0 || m.stage != status::Stage::Image {
        String::new()
    } else {
        format!("{}/s", human_bytes(m.rate))
    }
}

/// `12 machines: 3 installing, 7 up, 1 failed` for a glance.
pub fn summary(rows: &[Machine]) -> String {
    use status::Stage;
    let count = |f: &dyn Fn(Stage) -> bool| rows.iter().filter(|m| f(m.stage)).count();
    let up = count(&|s| s == Stage::Up);
    let failed = count(&|s| s == Stage::Failed);
    let complete = count(&|s| s == Stage::Complete);
    let busy = rows.len() - up - failed - complete;
    let mut parts = vec![format!("{busy} installing")];
    if complete > 0 {
        parts.push(format!("{complete} complete"));
    }
    parts.push(format!("{up} up"));
    parts.push(format!("{failed} failed"));
    format!(
        "{} machine{}: {}",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        parts.join(", ")
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::provision::{
        mac::Mac,
        status::{DhcpClient, DhcpMessage, Event, Fetch, Report},
    };

    pub const T0: u64 = 1_781_712_000_000;

    /// A fleet with one machine in each kind of state, and a hostile
    /// host name and FATAL line.
    pub fn sample(dir: &std::path::Path) -> std::sync::Arc<Fleet> {
        let f = Fleet::open(dir);
        let ack = |n: u8, host: &str| Event::Dhcp {
            message: DhcpMessage::Ack,
            ip: Some(Ipv4Addr::new(192, 0, 2, n)),
            client: DhcpClient::Firmware,
            hostname: Some(host.into()),
        };
        let mac = |n: u8| Mac([0x52, 0x54, 0, 0, 0, n]);
        let ip = |n: u8| Ipv4Addr::new(192, 0, 2, n);
        f.event_at(mac(1), ack(11, "rack1-node1"), T0).unwrap();
        f.event_at(mac(1), Event::Fetch(Fetch::Image), T0 + 10_000)
            .unwrap();
        for (i, bytes) in [100u64 << 20, 300 << 20].into_iter().enumerate() {
            let p = Report::Progress {
                bytes,
                total: 1 << 30,
                map: false,
            };
            f.report_at(mac(1), p, ip(11), T0 + 20_000 + 2000 * i as u64)
                .unwrap();
        }
        f.event_at(mac(2), ack(12, "<script>alert(1)</script>"), T0)
            .unwrap();
        let fatal = Report::Fatal {
            line: "FATAL: <img src=x onerror=alert(2)> & no disk".into(),
        };
        f.report_at(mac(2), fatal, ip(12), T0 + 5000).unwrap();
        f.event_at(mac(3), ack(13, "rack1-node3"), T0).unwrap();
        f.report_at(mac(3), Report::Complete, ip(13), T0 + 60_000)
            .unwrap();
        let plain = Event::Dhcp {
            message: DhcpMessage::Ack,
            ip: Some(ip(13)),
            client: DhcpClient::Other,
            hostname: None,
        };
        f.event_at(mac(3), plain, T0 + 90_000).unwrap();
        f.event_at(mac(4), ack(14, "rack1-node4"), T0 + 1000)
            .unwrap();
        f
    }

    #[test]
    fn f6_route_serves_the_views_and_takes_reports() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        let peer = Ipv4Addr::new(192, 0, 2, 14);
        let r = route(&f, "/", peer).unwrap();
        assert_eq!(
            (r.status, r.content_type),
            (200, "text/html; charset=utf-8")
        );
        let r = route(&f, "/install/status?x", peer).unwrap();
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        let r = route(&f, "/metrics", peer).unwrap();
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(route(&f, "/install/boot/boot.ipxe", peer), None);
        let report = |t: &str, from: Ipv4Addr| route(&f, t, from).unwrap();
        let r = report(
            "/install/report/52-54-00-00-00-04/disk?name=vda&size=1024",
            peer,
        );
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
        assert_eq!(
            f.machine(Mac([0x52, 0x54, 0, 0, 0, 4])).unwrap().stage,
            status::Stage::Disk
        );
        let r = report("/install/report/52-54-00-00-00-04/disk?name=vda", peer);
        assert_eq!(
            (r.status, r.body.as_str()),
            (400, "disk: size is missing\n")
        );
        let r = report(
            "/install/report/52-54-00-00-00-04/complete",
            Ipv4Addr::new(192, 0, 2, 99),
        );
        assert_eq!(r.status, 403, "{}", r.body);
        let r = report(
            "/install/report/52-54-00-00-00-04/network?iface=eth0&ip=192.0.2.98%2F24",
            peer,
        );
        assert_eq!(r.status, 400, "{}", r.body);
        // A good report is still taken after the bad ones.
        let r = report("/install/report/52-54-00-00-00-04/complete", peer);
        assert_eq!(r.status, 200);
        assert_eq!(status::Counters::get(&f.counters().rejected_reports), 3);
    }

    #[test]
    fn f6_figures_for_people() {
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(42_999), "0:42");
        assert_eq!(clock(723_000), "12:03");
        assert_eq!(clock(3_723_000), "1:02:03");
        let d = tempfile::tempdir().unwrap();
        let rows = sample(d.path()).machines();
        assert_eq!(summary(&rows), "4 machines: 2 installing, 1 up, 1 failed");
        assert_eq!(percent(&rows[0]), Some(29));
        assert_eq!(rate(&rows[0]), "100.0 MiB/s");
        assert_eq!(
            elapsed(&rows[2], T0 + 999_999),
            90_000,
            "done: until its last event"
        );
        assert_eq!(elapsed(&rows[3], T0 + 61_000), 60_000, "busy: until now");
    }
}
