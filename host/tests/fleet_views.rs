//! The fleet's views against real readers (checklist F5, F6): the
//! metrics text through Prometheus' own parser (Debian's
//! python3-prometheus-client), the status page in headless Chromium
//! (Debian's chromium) served from a namespace that has only a loopback
//! interface, and a flood of installer reports against the table.

mod common;
mod pxe_support;

use pxe_support::*;
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};
use ze::provision::{
    mac::Mac,
    status::{self, DhcpClient, DhcpMessage, Event, Fetch, Fleet, Report, Stage},
    views,
};

fn mac(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac([0x52, 0x54, b[0], b[1], b[2], b[3]])
}

fn ack(n: u32, hostname: &str) -> Event {
    Event::Dhcp {
        message: DhcpMessage::Ack,
        ip: Some(Ipv4Addr::new(192, 0, 2, 10 + n as u8)),
        client: DhcpClient::Firmware,
        hostname: Some(hostname.into()),
    }
}

/// A fleet of `n` machines in every kind of state, one with a hostile
/// host name and one with a hostile FATAL line.
fn fleet(dir: &Path, n: u32) -> Arc<Fleet> {
    let f = Fleet::open(dir);
    let now = ze::timefmt::now_ms();
    for i in 0..n {
        let ip = Ipv4Addr::new(192, 0, 2, 10 + i as u8);
        let host = match i {
            1 => "<script>document.title='pwned'</script>".to_string(),
            _ => format!("rack1-node{i}"),
        };
        f.event_at(mac(i), ack(i, &host), now - 90_000).unwrap();
        let report = |r: Report, ago: u64| f.report_at(mac(i), r, ip, now - ago).unwrap();
        match i % 4 {
            0 => {
                f.event_at(mac(i), Event::Fetch(Fetch::Image), now - 30_000)
                    .unwrap();
                let total = 2u64 << 30;
                report(
                    Report::Progress {
                        bytes: total / 10 * u64::from(i % 9),
                        total,
                        map: true,
                    },
                    4000,
                );
                report(
                    Report::Progress {
                        bytes: total / 10 * u64::from(i % 9 + 1),
                        total,
                        map: true,
                    },
                    2000,
                );
            }
            1 => report(
                Report::Fatal {
                    line: "FATAL: no writable disk: <img src=x onerror=document.title='pwned'>"
                        .into(),
                },
                50_000,
            ),
            2 => {
                report(Report::Complete, 40_000);
                let plain = Event::Dhcp {
                    message: DhcpMessage::Ack,
                    ip: Some(ip),
                    client: DhcpClient::Other,
                    hostname: None,
                };
                f.event_at(mac(i), plain, now - 10_000).unwrap();
            }
            _ => f
                .event_at(mac(i), Event::Fetch(Fetch::Kernel), now - 60_000)
                .unwrap(),
        }
    }
    f
}

#[test]
fn f6_metrics_parse_with_the_prometheus_client_parser() {
    let has_parser = common::have_prometheus_parser();
    if !require(
        "f6_metrics_parse_with_the_prometheus_client_parser",
        &[(
            "python3-prometheus-client (for /usr/bin/python3)",
            has_parser,
        )],
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let f = fleet(d.path(), 8);
    status::Counters::add(&f.counters().http_bytes, 123_456_789);
    status::Counters::add(&f.counters().tftp_transfers, 3);
    let text = views::metrics::metrics(&f);
    let families = common::prometheus_families(&text);
    // The parser drops a counter's `_total` from the family name.
    for (name, kind) in [
        ("ze_fleet_machines", "gauge"),
        ("ze_served_bytes", "counter"),
        ("ze_dhcp_leases_in_use", "gauge"),
        ("ze_tftp_transfers", "counter"),
        ("ze_installs_completed", "counter"),
        ("ze_installs_failed", "counter"),
        ("ze_fleet_dropped", "counter"),
        ("ze_fleet_rejected_reports", "counter"),
    ] {
        let fam = &families[name];
        assert_eq!(fam["type"], kind, "{name}: {families}");
        assert!(!fam["help"].as_str().unwrap().is_empty(), "{name} has HELP");
    }
    let by_stage: Vec<(String, f64)> = families["ze_fleet_machines"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[1]["stage"].as_str().unwrap().to_string(),
                s[2].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_stage.len(), Stage::ALL.len());
    let count = |st: &str| by_stage.iter().find(|(s, _)| s == st).unwrap().1;
    assert_eq!(
        (
            count("image"),
            count("failed"),
            count("up"),
            count("kernel")
        ),
        (2.0, 2.0, 2.0, 2.0)
    );
    let served = &families["ze_served_bytes"]["samples"][0];
    assert_eq!(
        (
            served[0].as_str(),
            served[1]["server"].as_str(),
            served[2].as_f64()
        ),
        (
            Some("ze_served_bytes_total"),
            Some("imageserver"),
            Some(123_456_789.0)
        )
    );
    assert_eq!(families["ze_installs_completed"]["samples"][0][2], 2.0);
    assert_eq!(families["ze_tftp_transfers"]["samples"][0][2], 3.0);
}

/// A tiny HTTP/1.0 server for the views, in `ns`: every request through
/// `views::route`. After the first page is served, `late` is added to
/// the fleet, so a page that shows it has refreshed itself.
struct TestServer {
    port: u16,
    stop: Arc<AtomicBool>,
    pages: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(ns: &Netns, fleet: Arc<Fleet>, late: u32) -> TestServer {
        let listener = in_ns(ns, || TcpListener::bind("127.0.0.1:0").unwrap());
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let pages = Arc::new(AtomicUsize::new(0));
        let (s, p) = (stop.clone(), pages.clone());
        let thread = thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((mut conn, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply =
                    views::route(&fleet, &target, Ipv4Addr::LOCALHOST).unwrap_or(views::Reply {
                        status: 404,
                        content_type: "text/plain",
                        body: "not found\n".into(),
                    });
                let _ = write!(
                    conn,
                    "HTTP/1.0 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    reply.status,
                    reply.content_type,
                    reply.body.len(),
                    reply.body
                );
                if target == "/" && p.fetch_add(1, Ordering::SeqCst) == 0 {
                    fleet.event(mac(late), ack(late, "late-arrival")).unwrap();
                }
            }
        });
        TestServer {
            port,
            stop,
            pages,
            thread: Some(thread),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn f6_chromium_shows_every_machine_escaped_and_live() {
    if !require(
        "f6_chromium_shows_every_machine_escaped_and_live",
        &[
            ("root", is_root()),
            ("ip (iproute2)", have("ip")),
            ("chromium", have("chromium")),
        ],
    ) {
        return;
    }
    const N: u32 = 12;
    let d = tempfile::tempdir().unwrap();
    let f = fleet(d.path(), N);
    let ns = Netns::new("fleet");
    let server = TestServer::start(&ns, f.clone(), N);
    let url = format!("http://127.0.0.1:{}/", server.port);

    let dom = chromium(&ns, &url, &["--dump-dom"], 7000);
    assert!(
        server.pages.load(Ordering::SeqCst) >= 2,
        "the page never refreshed itself"
    );
    let rows = dom.matches("<tr class=\"machine ").count();
    assert_eq!(
        rows,
        N as usize + 1,
        "every machine and the one that came after the first page:\n{dom}"
    );
    assert!(dom.contains("late-arrival"), "{dom}");
    assert!(
        dom.contains("13 machines:"),
        "the summary refreshed too:\n{dom}"
    );
    // Hostile values are text, not markup: no script of theirs, no image.
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{dom}"
    );
    assert!(
        dom.contains("&lt;img src=x onerror=document.title='pwned'&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");
    assert!(
        dom.contains("<title>ze fleet</title>"),
        "the title was not changed:\n{dom}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fleet-status.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &ns,
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,720",
            "--hide-scrollbars",
        ],
        7000,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a page with a table is more than {} bytes",
        png.len()
    );
    eprintln!("screenshot of the status page: {}", shot.display());
    drop(server);
}

#[test]
fn f5_a_flood_of_reports_stays_bounded_and_the_table_correct() {
    let d = tempfile::tempdir().unwrap();
    let f = Fleet::open(d.path());
    let real = Mac([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
    let real_ip = Ipv4Addr::new(192, 0, 2, 50);
    let lease = Event::Dhcp {
        message: DhcpMessage::Ack,
        ip: Some(real_ip),
        client: DhcpClient::Firmware,
        hostname: Some("real".into()),
    };
    f.event(real, lease).unwrap();
    let forger = Ipv4Addr::new(192, 0, 2, 66);
    let rss_before = rss_kib(std::process::id());
    // 50,000 reports at 10,000 a second (5 s; never faster, a little
    // slower on a loaded machine): forged MACs, oversized and broken
    // reports, reports for the real machine from the forger, and every
    // 1,000th the real machine's own progress.
    const FLOOD: u64 = 50_000;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut real_bytes = 0u64;
    let long = "x".repeat(5000);
    while sent < FLOOD && start.elapsed() < Duration::from_secs(30) {
        let due = (start.elapsed().as_millis() as u64 + 1) * 10;
        while sent < due.min(FLOOD) {
            let n = sent as u32;
            let target = match n % 5 {
                0 => format!(
                    "/install/report/{}/progress?bytes=1&total=2",
                    mac(n).dashed()
                ),
                1 => format!("/install/report/{}/fatal?line={long}", mac(n).dashed()),
                2 => format!("/install/report/{}/complete", real.dashed()),
                3 => format!(
                    "/install/report/{}/progress?bytes=9&total=2",
                    mac(n).dashed()
                ),
                _ => format!(
                    "/install/report/{}/disk?name=vda&size=1&x={n}",
                    mac(n).dashed()
                ),
            };
            let r = views::report(&f, &target, forger);
            assert!(matches!(r.status, 200 | 400 | 403 | 503), "{target}: {r:?}");
            if sent.is_multiple_of(1000) {
                real_bytes += 1 << 20;
                let t = format!(
                    "/install/report/{}/progress?bytes={real_bytes}&total={}&map=1",
                    real.dashed(),
                    1u64 << 40
                );
                assert_eq!(views::report(&f, &t, real_ip).status, 200);
            }
            sent += 1;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let took = start.elapsed();
    assert_eq!(sent, FLOOD, "only {sent} reports in {took:?}");
    assert!(
        took >= Duration::from_millis(4990),
        "faster than 10,000 a second: {took:?}"
    );
    let rows = f.machines();
    assert!(rows.len() <= status::MAX_MACHINES, "{} rows", rows.len());
    assert_eq!(
        rows.len(),
        status::MAX_MACHINES,
        "the forged MACs filled the table"
    );
    let row = f.machine(real).expect("the leased machine is kept");
    assert_eq!(
        (row.stage, row.bytes, row.total, row.ip),
        (Stage::Image, real_bytes, 1 << 40, Some(real_ip))
    );
    assert_eq!(row.hostname.as_deref(), Some("real"));
    assert!(
        status::Counters::get(&f.counters().rejected_reports) >= sent / 5 * 3,
        "fatal lines, bad bytes, the forged complete"
    );
    assert_eq!(
        status::Counters::get(&f.counters().installs_completed),
        0,
        "no forged complete counted"
    );
    let grown = rss_kib(std::process::id()).saturating_sub(rss_before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB");
    eprintln!(
        "{sent} reports in {:?}: {} rows, RSS grew {grown} KiB",
        start.elapsed(),
        rows.len()
    );
    // A newcomer with a lease still gets in: a forged row makes room.
    let newcomer = Mac([0x52, 0x54, 0, 0xaa, 0xbb, 0xcd]);
    f.event(
        newcomer,
        Event::Dhcp {
            message: DhcpMessage::Offer,
            ip: Some(Ipv4Addr::new(192, 0, 2, 51)),
            client: DhcpClient::Firmware,
            hostname: None,
        },
    )
    .unwrap();
    assert!(f.machine(newcomer).is_some());
}
