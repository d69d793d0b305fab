//! `GET /install/status`: the table as JSON, written with serde.
//!
//! ```json
//! {"now": 1781712061, "machines": [{"mac": "52:54:00:00:00:01", "ip": "192.0.2.11",
//!   "hostname": "rack1-node1", "stage": "image", "bytes": 314572800, "total": 1073741824,
//!   "map": false, "rate": 104857600, "started": 1781712000, "updated": 1781712022,
//!   "error": null, "timeline": [{"at": 1781712000, "stage": "dhcp", "detail": "ACK 192.0.2.11 (PXE firmware)"}]}]}
//! ```
//!
//! Times are UNIX seconds; `rate` is bytes a second; `map` says that
//! `bytes` and `total` count a block map's mapped bytes.

use crate::provision::status::{Fleet, Machine, Stage};
use serde::Serialize;

#[derive(Serialize)]
struct Status<'a> {
    now: u64,
    machines: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Row<'a> {
    mac: String,
    ip: Option<String>,
    hostname: Option<&'a str>,
    stage: Stage,
    bytes: u64,
    total: u64,
    map: bool,
    rate: u64,
    started: u64,
    updated: u64,
    error: Option<&'a str>,
    timeline: Vec<Step<'a>>,
}

#[derive(Serialize)]
struct Step<'a> {
    at: u64,
    stage: Stage,
    detail: &'a str,
}

/// The JSON of `rows` at `now` (ms).
pub fn render(rows: &[Machine], now: u64) -> String {
    let status = Status {
        now: now / 1000,
        machines: rows
            .iter()
            .map(|m| Row {
                mac: m.mac.to_string(),
                ip: m.ip.map(|ip| ip.to_string()),
                hostname: m.hostname.as_deref(),
                stage: m.stage,
                bytes: m.bytes,
                total: m.total,
                map: m.map,
                rate: m.rate,
                started: m.started / 1000,
                updated: m.updated / 1000,
                error: m.error.as_deref(),
                timeline: m
                    .timeline
                    .iter()
                    .map(|s| Step {
                        at: s.at / 1000,
                        stage: s.stage,
                        detail: &s.detail,
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_string(&status)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

/// The handler of `GET /install/status`.
pub fn status_json(fleet: &Fleet) -> String {
    render(&fleet.machines(), crate::timefmt::now_ms())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{T0, sample};
    use super::*;
    use serde_json::Value;

    #[test]
    fn f6_the_json_parses_back_with_every_field() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        let v: Value = serde_json::from_str(&render(&f.machines(), T0 + 61_000)).unwrap();
        assert_eq!(v["now"], 1_781_712_061);
        let rows = v["machines"].as_array().unwrap();
        assert_eq!(rows.len(), 4);
        for row in rows {
            for key in [
                "mac", "ip", "hostname", "stage", "bytes", "total", "started", "updated", "error",
                "timeline",
            ] {
                assert!(row.get(key).is_some(), "{key} in {row}");
            }
        }
        let first = &rows[0];
        assert_eq!(first["mac"], "52:54:00:00:00:01");
        assert_eq!(first["ip"], "192.0.2.11");
        assert_eq!(first["stage"], "image");
        assert_eq!(first["bytes"], 300 << 20);
        assert_eq!(first["total"], 1 << 30);
        assert_eq!(first["started"], 1_781_712_000);
        assert_eq!(first["error"], Value::Null);
        assert_eq!(first["timeline"][0]["stage"], "dhcp");
        assert_eq!(
            first["timeline"][0]["detail"],
            "ACK 192.0.2.11 (PXE firmware)"
        );
        assert_eq!(rows[1]["hostname"], "<script>alert(1)</script>");
        assert_eq!(
            rows[1]["error"],
            "FATAL: <img src=x onerror=alert(2)> & no disk"
        );
        assert_eq!(rows[2]["stage"], "up");
    }
}
