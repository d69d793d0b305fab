//! `GET /metrics`: Prometheus text format 0.0.4, every family with
//! `# HELP` and `# TYPE`.
//!
//! | name | type | what |
//! |---|---|---|
//! | `ze_fleet_machines{stage}` | gauge | machines in the status table, by stage (every stage, zeros too) |
//! | `ze_served_bytes_total{server}` | counter | bytes sent by `imageserver` and `tftpserver` |
//! | `ze_dhcp_leases_in_use` | gauge | DHCP leases bound now |
//! | `ze_tftp_transfers_total` | counter | TFTP transfers started |
//! | `ze_installs_completed_total` | counter | installs that reported `complete` |
//! | `ze_installs_failed_total` | counter | installs that reported a FATAL line |
//! | `ze_fleet_dropped_total` | counter | events dropped because the table was full |
//! | `ze_fleet_rejected_reports_total` | counter | installer reports refused: malformed, or from another address |
//!
//! The counters start at zero when the servers start.

use crate::provision::status::{Counters, Fleet, Stage};
use std::fmt::Write as _;

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// The metrics text of `fleet`.
pub fn metrics(fleet: &Fleet) -> String {
    let rows = fleet.machines();
    let c = fleet.counters();
    let get = Counters::get;
    let mut out = String::new();
    let by_stage: Vec<(String, u64)> = Stage::ALL
        .iter()
        .map(|s| {
            let n = rows.iter().filter(|m| m.stage == *s).count() as u64;
            (format!("{{stage=\"{s}\"}}"), n)
        })
        .collect();
    family(
        &mut out,
        "ze_fleet_machines",
        "gauge",
        "Machines in the status table, by stage.",
        &by_stage,
    );
    family(
        &mut out,
        "ze_served_bytes_total",
        "counter",
        "Bytes sent to machines, by server.",
        &[
            ("{server=\"imageserver\"}".into(), get(&c.http_bytes)),
            ("{server=\"tftpserver\"}".into(), get(&c.tftp_bytes)),
        ],
    );
    for (name, kind, help, counter) in [
        (
            "ze_dhcp_leases_in_use",
            "gauge",
            "DHCP leases bound now.",
            &c.leases_in_use,
        ),
        (
            "ze_tftp_transfers_total",
            "counter",
            "TFTP transfers started.",
            &c.tftp_transfers,
        ),
        (
            "ze_installs_completed_total",
            "counter",
            "Installs that reported complete.",
            &c.installs_completed,
        ),
        (
            "ze_installs_failed_total",
            "counter",
            "Installs that reported a FATAL line.",
            &c.installs_failed,
        ),
        (
            "ze_fleet_dropped_total",
            "counter",
            "Events dropped because the status table was full.",
            &c.dropped,
        ),
        (
            "ze_fleet_rejected_reports_total",
            "counter",
            "Installer reports refused: malformed, or from another address than the machine's.",
            &c.rejected_reports,
        ),
    ] {
        family(&mut out, name, kind, help, &[(String::new(), get(counter))]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn f6_metrics_count_machines_by_stage_and_the_counters() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        Counters::add(&f.counters().http_bytes, 1234);
        f.counters()
            .leases_in_use
            .store(3, std::sync::atomic::Ordering::Relaxed);
        let text = metrics(&f);
        for want in [
            "# HELP ze_fleet_machines Machines in the status table, by stage.\n# TYPE ze_fleet_machines gauge\n",
            "ze_fleet_machines{stage=\"image\"} 1\n",
            "ze_fleet_machines{stage=\"kernel\"} 0\n",
            "ze_fleet_machines{stage=\"failed\"} 1\n",
            "ze_served_bytes_total{server=\"imageserver\"} 1234\n",
            "ze_dhcp_leases_in_use 3\n",
            "ze_installs_completed_total 1\n",
            "ze_installs_failed_total 1\n",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert_eq!(text.matches("# TYPE ").count(), 8);
        assert_eq!(text.matches("ze_fleet_machines{").count(), Stage::ALL.len());
    }
}
