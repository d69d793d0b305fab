//! `GET /`: the table for a browser — plain HTML and CSS, a few lines of
//! script, nothing from the internet. Every value is HTML-escaped here,
//! on the server, so a host name such as `<script>` renders as text.
//!
//! The page refreshes itself every [`REFRESH_MS`]: the script fetches
//! `/` again and swaps in the new summary and table (parsed with
//! `DOMParser`, which runs no script), so all rendering and escaping
//! stays in this one file. Periodic refresh was chosen over Server-Sent
//! Events because the imageserver gives each connection a thread and
//! caps connections: a stream per open tab would hold both for as long
//! as the tab is open, where a refresh costs one short request. Without
//! script the page reloads itself every 5 s.

use super::{clock, elapsed, percent, rate, summary};
use crate::provision::status::{Fleet, Machine, Stage};
use std::fmt::Write as _;

/// How often the page refreshes itself.
pub const REFRESH_MS: u64 = 2000;

/// `text` with `&`, `<`, `>`, `"` and `'` escaped, for text and
/// attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The colour class of a stage.
fn tone(stage: Stage) -> &'static str {
    match stage {
        Stage::Dhcp | Stage::Pxe | Stage::Ipxe | Stage::Kernel | Stage::Initrd => "boot",
        Stage::Network | Stage::Disk | Stage::Image | Stage::Verified | Stage::Database => "work",
        Stage::Complete | Stage::Up => "done",
        Stage::Failed => "fail",
    }
}

const STYLE: &str = "
:root { font-family: system-ui, sans-serif; color: #1d2430; background: #f4f6f9; }
body { margin: 0; }
header { background: #1d2430; color: #fff; padding: 14px 24px; display: flex; align-items: baseline; gap: 24px; }
header h1 { font-size: 20px; margin: 0; letter-spacing: .5px; }
#summary { margin: 0; color: #c8d1dc; }
main { padding: 16px 24px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
th, td { text-align: left; padding: 8px 12px; border-bottom: 1px solid #e4e8ee; white-space: nowrap; }
th { font-size: 12px; text-transform: uppercase; color: #5b6676; background: #fafbfc; }
td.mac, td.ip { font-family: ui-monospace, monospace; font-size: 13px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.host { white-space: normal; overflow-wrap: anywhere; }
td.error { white-space: normal; overflow-wrap: anywhere; min-width: 16em; color: #a4262c; font-family: ui-monospace, monospace; font-size: 12px; }
.stage { display: inline-block; min-width: 64px; text-align: center; padding: 2px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.boot .stage { background: #e3ecfb; color: #1c4f9c; }
.work .stage { background: #fff1d6; color: #8a5300; }
.done .stage { background: #dff3e4; color: #1e6b34; }
.fail .stage { background: #fbe0e1; color: #a4262c; }
.bar { display: inline-block; vertical-align: middle; width: 140px; height: 10px; background: #e4e8ee; border-radius: 5px; overflow: hidden; }
.bar span { display: block; height: 100%; background: #d38b00; }
.done .bar span { background: #2f9a4f; }
.pct { display: inline-block; width: 44px; text-align: right; font-size: 13px; font-variant-numeric: tabular-nums; }
.empty { padding: 24px; color: #5b6676; }
footer { padding: 0 24px 16px; color: #5b6676; font-size: 12px; }
footer a { color: #1c4f9c; }
";

const SCRIPT: &str = "
(function () {
  async function refresh() {
    try {
      const r = await fetch(location.pathname, { cache: 'no-store' });
      if (!r.ok) return;
      const fresh = new DOMParser().parseFromString(await r.text(), 'text/html');
      for (const id of ['summary', 'fleet', 'updated']) {
        const next = fresh.getElementById(id), now = document.getElementById(id);
        if (next && now) now.replaceWith(document.adoptNode(next));
      }
    } catch (e) { /* the next round tries again */ }
  }
  setInterval(refresh, REFRESH_MS);
})();
";

fn row(out: &mut String, m: &Machine, now: u64) {
    let progress = match (m.stage, percent(m)) {
        (Stage::Complete | Stage::Up | Stage::Verified | Stage::Database, _) => Some(100),
        (Stage::Failed, _) => None,
        (_, p) => p,
    };
    let bar = match progress {
        Some(p) => format!(
            "<span class=\"bar\"><span style=\"width:{p}%\"></span></span><span class=\"pct\">{p}%</span>"
        ),
        None => String::new(),
    };
    let _ = writeln!(
        out,
        "<tr class=\"machine {tone}\"><td class=\"mac\">{mac}</td><td class=\"ip\">{ip}</td>\
         <td class=\"host\">{host}</td><td><span class=\"stage\">{stage}</span></td>\
         <td class=\"progress\">{bar}</td><td class=\"num\">{rate}</td><td class=\"num\">{elapsed}</td>\
         <td class=\"error\">{error}</td></tr>",
        tone = tone(m.stage),
        mac = m.mac,
        ip = m.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        host = escape(m.hostname.as_deref().unwrap_or_default()),
        stage = m.stage,
        rate = escape(&rate(m)),
        elapsed = clock(elapsed(m, now)),
        error = escape(m.error.as_deref().unwrap_or_default()),
    );
}

/// The page for `rows` at `now` (ms).
pub fn render(rows: &[Machine], now: u64) -> String {
    let mut out = String::with_capacity(4096 + rows.len() * 512);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>\
         <title>ze fleet</title><style>{STYLE}</style></head>\n<body>\
         <header><h1>ze fleet</h1><p id=\"summary\">{}</p></header>\n<main id=\"fleet\">",
        escape(&summary(rows))
    );
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">No machine has booted from this server yet.</p>");
    } else {
        out.push_str(
            "<table><thead><tr><th>MAC</th><th>IP</th><th>Hostname</th><th>Stage</th>\
             <th>Progress</th><th>Rate</th><th>Elapsed</th><th>Error</th></tr></thead><tbody>\n",
        );
        for m in rows {
            row(&mut out, m, now);
        }
        out.push_str("</tbody></table>");
    }
    let _ = write!(
        out,
        "</main>\n<footer>updated <time id=\"updated\">{}</time> · \
         <a href=\"/install/status\">JSON</a> · <a href=\"/metrics\">metrics</a></footer>\n\
         <script>{}</script></body></html>\n",
        crate::timefmt::rfc3339((now / 1000) as i64),
        SCRIPT.replace("REFRESH_MS", &REFRESH_MS.to_string())
    );
    out
}

/// The handler of `GET /`.
pub fn index(fleet: &Fleet) -> String {
    render(&fleet.machines(), crate::timefmt::now_ms())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{T0, sample};
    use super::*;

    #[test]
    fn f6_every_value_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let d = tempfile::tempdir().unwrap();
        let page = render(&sample(d.path()).machines(), T0 + 61_000);
        assert!(page.contains("<td class=\"host\">&lt;script&gt;alert(1)&lt;/script&gt;</td>"));
        assert!(page.contains("FATAL: &lt;img src=x onerror=alert(2)&gt; &amp; no disk"));
        assert!(!page.contains("<script>alert"));
        assert!(!page.contains("<img"));
        // One script only: the page's own.
        assert_eq!(page.matches("<script>").count(), 1);
        assert_eq!(page.matches("<tr class=\"machine ").count(), 4);
        assert!(page.contains("<p id=\"summary\">4 machines: 2 installing, 1 up, 1 failed</p>"));
        assert!(page.contains("style=\"width:29%\""));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "nothing from the internet"
        );
        let empty = render(&[], T0);
        assert!(empty.contains("No machine has booted from this server yet."));
    }
}
