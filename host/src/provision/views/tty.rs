//! The live table for a terminal: a summary line, then one row per
//! machine with its MAC, address, host name, stage, a progress bar, the
//! rate and the elapsed time — every line at most `width` characters.
//! Narrow terminals lose the rate, then the address, then the host name,
//! then the elapsed time; the MAC, the stage and the bar stay.
//!
//! ```text
//! 3 machines: 1 installing, 1 up, 1 failed
//! MAC                IP               HOSTNAME     STAGE     PROGRESS                    RATE  ELAPSED
//! 52:54:00:00:00:01  192.0.2.11       rack1-node1  image     [######.............]  29%  100.0 MiB/s     1:01
//! 52:54:00:00:00:02  192.0.2.12       node2        failed    FATAL: no disk                               0:05
//! 52:54:00:00:00:03  192.0.2.13       rack1-node3  up        [###################] done                   1:30
//! ```

use super::{clock, elapsed, percent, rate, summary};
use crate::provision::status::{Fleet, Machine, Stage, clean};

struct Column {
    title: &'static str,
    min: usize,
    max: usize,
    /// Dropped when the terminal is too narrow, lower first; [`ALWAYS`] never.
    keep: u8,
    right: bool,
}

/// A column that is never dropped.
const ALWAYS: u8 = u8::MAX;

const COLUMNS: [Column; 7] = [
    Column {
        title: "MAC",
        min: 17,
        max: 17,
        keep: ALWAYS,
        right: false,
    },
    Column {
        title: "IP",
        min: 15,
        max: 15,
        keep: 2,
        right: false,
    },
    Column {
        title: "HOSTNAME",
        min: 8,
        max: 24,
        keep: 3,
        right: false,
    },
    Column {
        title: "STAGE",
        min: 8,
        max: 8,
        keep: ALWAYS,
        right: false,
    },
    Column {
        title: "PROGRESS",
        min: 12,
        max: 40,
        keep: ALWAYS,
        right: false,
    },
    Column {
        title: "RATE",
        min: 11,
        max: 11,
        keep: 1,
        right: true,
    },
    Column {
        title: "ELAPSED",
        min: 7,
        max: 7,
        keep: 4,
        right: true,
    },
];

/// `text` in exactly `width` characters: cut, or padded.
fn fit(text: &str, width: usize, right: bool) -> String {
    let cut: String = text.chars().take(width).collect();
    if right {
        format!("{cut:>width$}")
    } else {
        format!("{cut:<width$}")
    }
}

/// `[######......]  42%` in `width` characters; the FATAL line for a
/// failed machine.
fn progress(m: &Machine, width: usize) -> String {
    if m.stage == Stage::Failed {
        return m.error.clone().unwrap_or_else(|| "failed".into());
    }
    let (filled, tail) = match (m.stage, percent(m)) {
        (Stage::Complete | Stage::Up, _) => (1.0, "done".to_string()),
        (Stage::Verified | Stage::Database, _) => (1.0, "100%".to_string()),
        (_, Some(p)) => (p as f64 / 100.0, format!("{p:>3}%")),
        (_, None) => return String::new(),
    };
    let inner = width.saturating_sub(tail.len() + 3).max(1);
    let n = (filled * inner as f64).round() as usize;
    format!("[{}{}] {tail}", "#".repeat(n), ".".repeat(inner - n))
}

/// The table for a terminal `width` characters wide, at `now` (ms).
pub fn render(fleet: &Fleet, width: usize, now: u64) -> String {
    render_rows(&fleet.machines(), width, now)
}

/// [`render`] of given rows.
pub fn render_rows(rows: &[Machine], width: usize, now: u64) -> String {
    let width = width.max(20);
    let mut shown: Vec<usize> = (0..COLUMNS.len()).collect();
    let need = |shown: &[usize]| shown.iter().map(|i| COLUMNS[*i].min + 2).sum::<usize>() - 2;
    while need(&shown) > width {
        let Some(pos) = shown
            .iter()
            .enumerate()
            .filter(|(_, i)| COLUMNS[**i].keep != ALWAYS)
            .min_by_key(|(_, i)| COLUMNS[**i].keep)
            .map(|(p, _)| p)
        else {
            break;
        };
        shown.remove(pos);
    }
    // Spare width goes to the host name, then the bar.
    let mut widths: Vec<usize> = shown.iter().map(|i| COLUMNS[*i].min).collect();
    let mut spare = width.saturating_sub(need(&shown));
    for title in ["HOSTNAME", "PROGRESS"] {
        if let Some(p) = shown.iter().position(|i| COLUMNS[*i].title == title) {
            let c = &COLUMNS[shown[p]];
            let more = (c.max - c.min).min(spare);
            widths[p] += more;
            spare -= more;
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(shown.iter().zip(&widths))
            .map(|(cell, (i, w))| fit(cell, *w, COLUMNS[*i].right))
            .collect();
        let text = text.join("  ");
        let text: String = text.trim_end().chars().take(width).collect();
        text + "\n"
    };
    let mut out: String = summary(rows).chars().take(width).collect();
    out.push('\n');
    out.push_str(&line(
        shown
            .iter()
            .map(|i| COLUMNS[*i].title.to_string())
            .collect(),
    ));
    for m in rows {
        let cells = shown
            .iter()
            .zip(&widths)
            .map(|(i, w)| match COLUMNS[*i].title {
                "MAC" => m.mac.to_string(),
                "IP" => m.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "HOSTNAME" => clean(m.hostname.as_deref().unwrap_or_default(), *w),
                "STAGE" => m.stage.to_string(),
                "PROGRESS" => clean(&progress(m, *w), *w),
                "RATE" => rate(m),
                _ => clock(elapsed(m, now)),
            });
        out.push_str(&line(cells.collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{T0, sample};
    use super::*;

    #[test]
    fn f6_the_terminal_table_fits_every_width() {
        let d = tempfile::tempdir().unwrap();
        let f = sample(d.path());
        let now = T0 + 61_000;
        let wide = render(&f, 132, now);
        let lines: Vec<&str> = wide.lines().collect();
        assert_eq!(lines[0], "4 machines: 2 installing, 1 up, 1 failed");
        assert!(
            lines[1].starts_with("MAC                IP               HOSTNAME"),
            "{wide}"
        );
        assert!(
            lines[2].contains("52:54:00:00:00:01  192.0.2.11       rack1-node1"),
            "{wide}"
        );
        assert!(lines[2].contains("image     [#########....."), "{wide}");
        assert!(lines[2].contains(" 29%  100.0 MiB/s     1:01"), "{wide}");
        assert!(
            lines[3].contains("failed    FATAL: <img src=x onerror=alert(2)> &"),
            "{wide}"
        );
        assert!(
            lines[4].contains("up        [") && lines[4].contains("] done"),
            "{wide}"
        );
        let last: Vec<&str> = lines[5].split_whitespace().collect();
        assert_eq!(
            last,
            [
                "52:54:00:00:00:04",
                "192.0.2.14",
                "rack1-node4",
                "dhcp",
                "1:00"
            ]
        );
        for width in [20, 40, 60, 72, 80, 100, 132, 200] {
            let text = render(&f, width, now);
            assert_eq!(text.lines().count(), 6);
            for l in text.lines() {
                assert!(l.chars().count() <= width, "{width}: {l:?}");
            }
            assert!(
                text.contains("52:54:00:00:00:01"),
                "the MAC stays at {width}"
            );
        }
        let narrow = render(&f, 60, now);
        assert!(
            !narrow.contains("RATE") && !narrow.contains("192.0.2.11"),
            "{narrow}"
        );
        assert!(narrow.contains("STAGE"), "{narrow}");
    }

    #[test]
    fn f6_no_field_reaches_the_terminal_raw() {
        let d = tempfile::tempdir().unwrap();
        let f = Fleet::open(d.path());
        let mac = crate::provision::mac::Mac([2, 0, 0, 0, 0, 1]);
        let evil = crate::provision::status::Event::Dhcp {
            message: crate::provision::status::DhcpMessage::Ack,
            ip: None,
            client: crate::provision::status::DhcpClient::Firmware,
            hostname: Some("\u{1b}]0;owned\u{7}\u{1b}[2J".into()),
        };
        f.event_at(mac, evil, T0).unwrap();
        let text = render(&f, 120, T0);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
    }
}
