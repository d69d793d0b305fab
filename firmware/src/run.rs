//! The runner: the only code that reads the clock and acts on the machine,
//! through [`ze_hal::Os`]. It feeds what happens to the sans-IO pieces
//! (`cmdline`, `net`, `dhcp`, `http`, `disk`, `install`, `console`,
//! `recovery`) and carries out what they decide.
//!
//! The same code runs as PID 1 over `ze_hal::linux::LinuxOs`, on the host
//! for benchmarks, and under `cargo test` over `ze_hal::fake::FakeOs`.

use crate::{
    VERSION,
    cmdline::{self, Config, Source},
    console::{Line, Progress},
    dhcp::{Event, Lease},
    dhcp_port::DhcpPort,
    disk::{self, Mode},
    http::{self, Failure, Fetch, HttpError, Method, Response, Start},
    install::{self, Fatal},
    net::{self, Mac, ProbeResult, Prober},
    recovery::{self, Action, Choice, Menu, Policy},
};
use core::{fmt::Write, net::Ipv4Addr, time::Duration};
use heapless::{String, Vec};
use sha2::{Digest as _, Sha256};
use ze_hal::{
    block,
    os::{BlockDev, FileOut, LinkInfo, NetError, Os, PowerAction, TcpConn},
    sysfs::SysFs,
};

/// Where the kernel command line is read from.
pub const PROC_CMDLINE: &str = "/proc/cmdline";
/// The largest command line read (the kernel's limit is 2048 on x86).
pub const MAX_CMDLINE: usize = 4096;
/// Timeout for a TCP connect of a download.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest URL path built.
pub const MAX_URL_PATH: usize = 192;

/// The fixed buffers the install uses (the firmware has no heap).
#[derive(Debug)]
pub struct Buffers<'a> {
    /// The held-back first MiB of the image ([`install::HEAD_LEN`]).
    pub head: &'a mut [u8],
    /// The receive buffer of the download pipeline ([`install::IO_CHUNK`]).
    pub io: &'a mut [u8],
}

/// Print one `[ze-install] ` line on every console.
macro_rules! say {
    ($os:expr, $($arg:tt)*) => {{
        let mut line = Line::new();
        let _ = write!(line, $($arg)*);
        $os.consoles_write(line.finish());
    }};
}
pub(crate) use say;

fn fatal_line<O: Os>(os: &mut O, fatal: &Fatal) {
    let mut line = Line::fatal();
    let _ = write!(line, "{fatal}");
    os.consoles_write(line.finish());
}

/// PID 1's whole life: mount, open consoles, install, recover; returns
/// what to do with the machine at the end.
pub fn boot<O: Os>(os: &mut O, bufs: &mut Buffers<'_>) -> PowerAction {
    let mounted = os.mount_kernel_filesystems();
    let names = ze_hal::console::active(os.sys()).unwrap_or_default();
    let list: Vec<&str, { ze_hal::console::MAX_CONSOLES }> =
        names.iter().map(|n| n.as_str()).collect();
    let opened = os.consoles_open(&list);
    say!(os, "ze-installer {VERSION} starting");
    if let Err(e) = mounted {
        say!(os, "warning: mounting /proc, /sys, /dev: {e}");
    }
    if opened < list.len() {
        say!(
            os,
            "warning: {} of {} consoles could not be opened",
            list.len() - opened,
            list.len()
        );
    }
    let mut text = [0u8; MAX_CMDLINE];
    let cmdline = match os.sys().read(PROC_CMDLINE, &mut text) {
        Ok(n) => core::str::from_utf8(text.get(..n).unwrap_or_default()).unwrap_or(""),
        Err(e) => {
            fatal_line(os, &Fatal::NoCmdline(e));
            return recover_without_config(os, recovery::policy(Source::Http, None), "");
        }
    };
    let cfg = match Config::parse(cmdline) {
        Ok(cfg) => cfg,
        Err(e) => {
            fatal_line(os, &Fatal::Cmdline(e));
            // The credential may still be readable on its own.
            let auth = cmdline::words(cmdline)
                .find_map(|w| w.strip_prefix("ze.shell-auth="))
                .and_then(cmdline::parse_hex::<32>);
            return recover_without_config(os, recovery::policy(Source::Http, auth), cmdline);
        }
    };
    for key in &cfg.unknown {
        say!(os, "warning: unknown kernel parameter {key} ignored");
    }
    loop {
        match install(os, &cfg, bufs) {
            Ok(()) if cfg.source == Source::Iso => {
                // Never reboot into the installer again while the media is
                // still in (spec: "Appliance ISO Install").
                say!(
                    os,
                    "install complete; powering off: remove the installer media before the next boot"
                );
                return PowerAction::PowerOff;
            }
            Ok(()) => {
                say!(os, "install complete; rebooting");
                return PowerAction::Reboot;
            }
            Err(fatal) => {
                fatal_line(os, &fatal);
                let policy = recovery::policy(cfg.source, cfg.shell_auth);
                match recover_choice(os, policy, cmdline) {
                    Choice::RetryNetwork => continue,
                    Choice::PowerOff => return PowerAction::PowerOff,
                    Choice::Reboot | Choice::Diagnostics => return PowerAction::Reboot,
                }
            }
        }
    }
}

/// Recovery when the command line itself is unusable: retrying cannot
/// help, so that choice only says so.
fn recover_without_config<O: Os>(os: &mut O, policy: Policy, cmdline: &str) -> PowerAction {
    loop {
        match recover_choice(os, policy, cmdline) {
            Choice::RetryNetwork => {
                say!(
                    os,
                    "nothing to retry: fix the kernel command line and boot again"
                );
            }
            Choice::PowerOff => return PowerAction::PowerOff,
            Choice::Reboot | Choice::Diagnostics => return PowerAction::Reboot,
        }
    }
}

/// Run the recovery console and return the operator's final choice
/// (never `Diagnostics`, which is handled inside).
pub fn recover_choice<O: Os>(os: &mut O, policy: Policy, cmdline: &str) -> Choice {
    let Some(mut menu) = Menu::new(policy) else {
        let Policy::RebootAfter(wait) = policy else {
            return Choice::Reboot;
        };
        say!(
            os,
            "no recovery password (ze.shell-auth) on this network install: rebooting in {} s",
            wait.as_secs()
        );
        let mut left = wait;
        while left > Duration::ZERO {
            let step = left.min(recovery::COUNTDOWN_EVERY);
            os.sleep(step);
            left = left.saturating_sub(step);
            if left > Duration::ZERO {
                say!(os, "rebooting in {} s", left.as_secs());
            }
        }
        return Choice::Reboot;
    };
    os.consoles_raw(true);
    os.consoles_write(menu.prompt().as_bytes());
    let mut buf = [0u8; 64];
    loop {
        let Some(input) = os.consoles_read(&mut buf, Duration::from_secs(1)) else {
            continue;
        };
        let typed = buf.get(..input.len).unwrap_or_default();
        let mut out: Vec<u8, 512> = Vec::new();
        let action = menu.feed(typed, &mut |b| {
            let _ = out.extend_from_slice(b);
        });
        os.consoles_write(&out);
        match action {
            None => {}
            Some(Action::Delay(d)) => {
                os.sleep(d);
                os.consoles_write(menu.prompt().as_bytes());
            }
            Some(Action::Run(Choice::Diagnostics)) => {
                diagnostics(os, cmdline);
                os.consoles_write(menu.prompt().as_bytes());
            }
            Some(Action::Run(choice)) => {
                os.consoles_raw(false);
                let what = match choice {
                    Choice::RetryNetwork => "retrying the install",
                    Choice::Reboot => "rebooting",
                    Choice::PowerOff => "powering off",
                    Choice::Diagnostics => "",
                };
                say!(os, "{what}");
                return choice;
            }
        }
    }
}

/// Print the command line, interfaces, addresses, routes and disks.
pub fn diagnostics<O: Os>(os: &mut O, cmdline: &str) {
    say!(os, "cmdline: {}", cmdline.trim());
    log_network(os);
    match block::scan(os.sys()) {
        Ok(scan) => {
            for d in &scan.devices {
                let why = disk::skip_reason(d);
                say!(
                    os,
                    "disk {} {} bytes{}{}",
                    d.name,
                    d.size_bytes(),
                    if why.is_some() {
                        ", skipped: "
                    } else {
                        ", candidate"
                    },
                    match why {
                        Some(disk::Skip::Kind) => "virtual/optical/flash",
                        Some(disk::Skip::Removable) => "removable",
                        Some(disk::Skip::ReadOnly) => "read-only",
                        Some(disk::Skip::Empty) => "no medium",
                        Some(disk::Skip::Source) => "source media",
                        None => "",
                    }
                );
            }
        }
        Err(e) => say!(os, "disks: cannot read /sys/block: {e}"),
    }
}

fn links<O: Os>(os: &mut O) -> Vec<LinkInfo, { net::MAX_LINKS }> {
    let mut out: Vec<LinkInfo, { net::MAX_LINKS }> = Vec::new();
    let _ = os.links(&mut |l| {
        let _ = out.push(l.clone());
    });
    out
}

fn link_name(links: &[LinkInfo], index: u32) -> &str {
    links
        .iter()
        .find(|l| l.index == index)
        .map(|l| l.name.as_str())
        .unwrap_or("?")
}

/// Log interface state and routes (every 10 probes, and in diagnostics).
pub fn log_network<O: Os>(os: &mut O) {
    let all = links(os);
    for l in &all {
        say!(
            os,
            "link {} index {} {} {} {}",
            l.name,
            l.index,
            if l.up { "up" } else { "down" },
            if l.carrier { "carrier" } else { "no-carrier" },
            Mac(l.mac)
        );
    }
    let mut addrs: Vec<ze_hal::os::AddrInfo, 16> = Vec::new();
    let _ = os.addrs(&mut |a| {
        let _ = addrs.push(*a);
    });
    for a in &addrs {
        say!(
            os,
            "addr {} {}/{}",
            link_name(&all, a.index),
            a.addr,
            a.prefix
        );
    }
    let mut routes: Vec<ze_hal::os::RouteInfo, 16> = Vec::new();
    let _ = os.routes(&mut |r| {
        let _ = routes.push(*r);
    });
    if routes.is_empty() {
        say!(os, "route: none");
    }
    for r in &routes {
        let name = link_name(&all, r.oif);
        match (r.prefix, r.gateway) {
            (0, Some(gw)) => say!(os, "route default via {gw} dev {name}"),
            (p, Some(gw)) => say!(os, "route {}/{p} via {gw} dev {name}", r.dst),
            (p, None) => say!(os, "route {}/{p} dev {name}", r.dst),
        }
    }
}

/// One reachability probe: `HEAD path` with [`net::PROBE_TIMEOUT`].
pub fn probe<O: Os>(os: &mut O, server: Ipv4Addr, port: u16, path: &str) -> ProbeResult {
    let deadline = os.now() + net::PROBE_TIMEOUT;
    let mut tcp = match os.tcp_connect(server, port, net::PROBE_TIMEOUT) {
        Ok(t) => t,
        Err(e) => return ProbeResult::TcpUnreachable(e),
    };
    let mut req = [0u8; http::MAX_REQUEST];
    let Ok(req) = http::write_request(&mut req, Method::Head, server, port, path, 0) else {
        return ProbeResult::HttpError(Some(HttpError::RequestTooLarge));
    };
    if tcp.send_all(req, net::PROBE_TIMEOUT).is_err() {
        return ProbeResult::HttpError(None);
    }
    let mut resp = Response::new(Method::Head);
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_since(os.now());
        if left.is_zero() {
            return ProbeResult::HttpError(None);
        }
        match tcp.recv(&mut buf, left) {
            Ok(0) => return ProbeResult::HttpError(Some(HttpError::NoHead)),
            Ok(n) => match resp.feed(buf.get(..n).unwrap_or_default()) {
                Ok(fed) => {
                    if let Some(head) = fed.head {
                        return ProbeResult::Answered(head.status);
                    }
                }
                Err(e) => return ProbeResult::HttpError(Some(e)),
            },
            Err(_) => return ProbeResult::HttpError(None),
        }
    }
}

fn url_path(dir: &str, name: &str) -> String<MAX_URL_PATH> {
    let mut p = String::new();
    let _ = p.push_str(dir);
    let _ = p.push_str(name);
    p
}

/// Probe up to `limit` attempts of the budget; `Ok` when reachable, else
/// the last result.
fn probe_some<O: Os>(
    os: &mut O,
    prober: &mut Prober,
    limit: u32,
    server: Ipv4Addr,
    port: u16,
    path: &str,
) -> Result<ProbeResult, Option<ProbeResult>> {
    let mut last = None;
    for _ in 0..limit {
        let Some(n) = prober.take() else {
            break;
        };
        let start = os.now();
        let r = probe(os, server, port, path);
        say!(os, "probe {n}/{} {server}:{port}: {r}", prober.budget());
        if r.reachable() {
            return Ok(r);
        }
        last = Some(r);
        if Prober::diagnostics_due(n) {
            log_network(os);
        }
        let elapsed = os.now().saturating_since(start);
        if prober.left() > 0 {
            os.sleep(net::PROBE_PERIOD.saturating_sub(elapsed));
        }
    }
    Err(last)
}

fn has_default_route<O: Os>(os: &mut O) -> Option<(Ipv4Addr, u32)> {
    let mut found = None;
    let _ = os.routes(&mut |r| {
        if r.prefix == 0 && found.is_none() {
            found = Some((r.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED), r.oif));
        }
    });
    found
}

/// Run DHCP on one interface until a lease or [`net::DHCP_TIMEOUT`].
pub fn dhcp_lease<O: Os>(os: &mut O, link: &LinkInfo) -> Result<Option<Lease>, NetError> {
    let mut port = DhcpPort::open(os, link)?;
    let deadline = os.now() + net::DHCP_TIMEOUT;
    loop {
        let now = os.now();
        if now >= deadline {
            return Ok(None);
        }
        port.transmit(now)?;
        if let Some(Event::Bound(lease)) = port.client.poll_event() {
            return Ok(Some(lease));
        }
        let wake = port.client.poll_timeout().min(deadline);
        port.receive(wake.saturating_since(now), || os.now())?;
    }
}

/// "router A.B.C.D", or "no router" for a lease without one (the server
/// is then reached on the link itself).
struct RouterNote(Option<Ipv4Addr>);

impl core::fmt::Display for RouterNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(r) => write!(f, "router {r}"),
            None => f.write_str("no router"),
        }
    }
}

fn apply_lease<O: Os>(os: &mut O, link: &LinkInfo, lease: &Lease) -> Result<(), ze_hal::Error> {
    os.addr_add(link.index, lease.addr, lease.prefix)?;
    if let Some(router) = lease.router {
        os.route_add_default(link.index, router)?;
    }
    Ok(())
}

/// Configure the network until `ze.server` answers (spec: "Kernel Command
/// Line"). See [`net`] for the policy.
pub fn network<O: Os>(os: &mut O, cfg: &Config) -> Result<(), Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::Cmdline(cmdline::CmdlineError {
            key: "ze.server",
            value: String::new(),
            problem: cmdline::Problem::Missing,
        }));
    };
    let path = url_path(install::IMAGE_URL, &cfg.image);
    let mut prober = Prober::new(cfg.wait);
    let mut last: Option<ProbeResult> = None;
    let unreachable = |prober: &Prober, last| Fatal::Unreachable {
        server,
        port,
        attempts: prober.used(),
        last,
    };

    if let Some((gw, oif)) = has_default_route(os) {
        let all = links(os);
        say!(
            os,
            "kernel network: default route via {gw} dev {}",
            link_name(&all, oif)
        );
        if cfg.wait == 0 {
            say!(os, "ze.wait=0: not probing ze.server");
            return Ok(());
        }
        match probe_some(os, &mut prober, net::TRUST_ATTEMPTS, server, port, &path) {
            Ok(_) => {
                say!(os, "using the kernel's network configuration");
                return Ok(());
            }
            Err(l) => {
                last = l;
                say!(
                    os,
                    "the kernel's route does not reach {server}:{port}; trying DHCP on every interface"
                );
            }
        }
    } else {
        say!(
            os,
            "no default route from the kernel; trying DHCP on every interface"
        );
    }

    // Bring every candidate up and wait for carrier.
    let all = links(os);
    for l in net::candidates(&all) {
        if let Err(e) = os.link_up(l.index) {
            say!(os, "{}: cannot bring up: {e}", l.name);
        }
    }
    let start = os.now();
    let mut with_carrier = links(os);
    loop {
        let waiting = net::candidates(&with_carrier).any(|l| !l.carrier);
        if !waiting || os.now().saturating_since(start) >= net::CARRIER_WAIT {
            break;
        }
        os.sleep(net::CARRIER_POLL);
        with_carrier = links(os);
    }
    let mut first_lease: Option<(LinkInfo, Lease)> = None;
    let mut tried = 0usize;
    for link in net::candidates(&with_carrier) {
        if !link.carrier {
            say!(
                os,
                "{}: no carrier after {} s; skipped",
                link.name,
                net::CARRIER_WAIT.as_secs()
            );
            continue;
        }
        tried += 1;
        let _ = os.flush(link.index);
        let lease = match dhcp_lease(os, link) {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                say!(
                    os,
                    "{}: no DHCP lease in {} s",
                    link.name,
                    net::DHCP_TIMEOUT.as_secs()
                );
                continue;
            }
            Err(e) => {
                say!(os, "{}: DHCP failed: {e}", link.name);
                continue;
            }
        };
        say!(
            os,
            "{}: lease {}/{} {} from {} for {} s",
            link.name,
            lease.addr,
            lease.prefix,
            RouterNote(lease.router),
            lease.server,
            lease.duration.as_secs()
        );
        if let Err(e) = apply_lease(os, link, &lease) {
            say!(os, "{}: cannot apply the lease: {e}", link.name);
            let _ = os.flush(link.index);
            continue;
        }
        if cfg.wait == 0 {
            say!(os, "ze.wait=0: not probing ze.server");
            return Ok(());
        }
        match probe_some(os, &mut prober, net::VERIFY_ATTEMPTS, server, port, &path) {
            Ok(_) => {
                say!(os, "{}: reaches {server}:{port}; using it", link.name);
                return Ok(());
            }
            Err(l) => {
                last = l.or(last);
                say!(
                    os,
                    "{}: cannot reach {server}:{port} through this lease; flushed",
                    link.name
                );
                let _ = os.flush(link.index);
                if first_lease.is_none() {
                    first_lease = Some((link.clone(), lease));
                }
            }
        }
    }
    let Some((link, lease)) = first_lease else {
        if prober.used() > 0 {
            return Err(unreachable(&prober, last));
        }
        return Err(Fatal::NoLease { tried });
    };
    // The server may just be slow to become reachable (switch ports in
    // STP listening state): keep the first lease and use the rest of the
    // ze.wait budget.
    if prober.left() == 0 {
        return Err(unreachable(&prober, last));
    }
    say!(
        os,
        "{}: keeping the lease and waiting for {server}:{port}",
        link.name
    );
    if let Err(e) = apply_lease(os, &link, &lease) {
        say!(os, "{}: cannot apply the lease: {e}", link.name);
        return Err(unreachable(&prober, last));
    }
    let left = prober.left();
    match probe_some(os, &mut prober, left, server, port, &path) {
        Ok(_) => Ok(()),
        Err(l) => Err(unreachable(&prober, l.or(last))),
    }
}

/// Choose the target disk, waiting up to [`install::DISK_WAIT`] for disks
/// that appear late.
pub fn choose_disk<O: Os>(
    os: &mut O,
    cfg: &Config,
    mode: Mode<'_>,
) -> Result<block::BlockFacts, Fatal> {
    let start = os.now();
    loop {
        let scan = block::scan(os.sys()).unwrap_or_default();
        match disk::choose(&scan.devices, cfg.target.as_deref(), mode) {
            Ok(d) => return Ok(d.clone()),
            // More disks appearing cannot make these right.
            Err(
                e @ (disk::DiskError::Ambiguous { .. } | disk::DiskError::TargetUnsuitable(..)),
            ) => {
                return Err(Fatal::Disk(e));
            }
            Err(e) => {
                // Disks can appear late (USB, slow controllers): wait a bit.
                if os.now().saturating_since(start) >= install::DISK_WAIT {
                    return Err(Fatal::Disk(e));
                }
                os.sleep(Duration::from_millis(250));
            }
        }
    }
}

/// Where downloaded bytes go.
pub trait Sink<O: Os> {
    /// The server sent the whole file again: forget what was received.
    fn restart(&mut self, os: &mut O) -> Result<(), Fatal>;
    /// The file's size is known.
    fn total(&mut self, total: u64) -> Result<(), Fatal>;
    /// Bytes at `offset`.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Fatal>;
}

enum Attempt {
    Failed(Failure),
    Fatal(Fatal),
}

#[allow(clippy::too_many_arguments)]
fn attempt<O: Os, S: Sink<O>>(
    os: &mut O,
    server: Ipv4Addr,
    port: u16,
    path: &str,
    what: &'static str,
    fetch: &mut Fetch,
    sink: &mut S,
    io: &mut [u8],
    progress: &mut Option<Progress>,
) -> Result<(), Attempt> {
    let mut tcp = os
        .tcp_connect(server, port, CONNECT_TIMEOUT)
        .map_err(|e| Attempt::Failed(Failure::Net(e)))?;
    let mut req = [0u8; http::MAX_REQUEST];
    let req = http::write_request(&mut req, Method::Get, server, port, path, fetch.offset())
        .map_err(|e| Attempt::Failed(Failure::Http(e)))?;
    tcp.send_all(req, http::STALL_TIMEOUT)
        .map_err(|e| Attempt::Failed(Failure::Net(e)))?;
    let mut resp = Response::new(Method::Get);
    loop {
        let n = match tcp.recv(io, http::STALL_TIMEOUT) {
            Ok(0) => {
                return resp
                    .end_of_stream()
                    .map_err(|e| Attempt::Failed(Failure::Http(e)));
            }
            Ok(n) => n,
            Err(NetError::TimedOut) => return Err(Attempt::Failed(Failure::Stalled)),
            Err(e) => return Err(Attempt::Failed(Failure::Net(e))),
        };
        let fed = resp
            .feed(io.get(..n).unwrap_or_default())
            .map_err(|e| Attempt::Failed(Failure::Http(e)))?;
        if let Some(head) = fed.head {
            let resumed_at = fetch.offset();
            match fetch.on_head(&head) {
                Ok(Start::Continue) => {}
                Ok(Start::Restart) => {
                    say!(
                        os,
                        "{what}: the server ignored Range; starting over from byte 0"
                    );
                    sink.restart(os).map_err(Attempt::Fatal)?;
                }
                Err(Ok(e)) => {
                    return Err(Attempt::Fatal(Fatal::Download { what, error: e }));
                }
                Err(Err(f)) => return Err(Attempt::Failed(f)),
            }
            let total = fetch.total().unwrap_or(0);
            sink.total(total).map_err(Attempt::Fatal)?;
            if resumed_at > 0 && fetch.offset() > 0 {
                say!(os, "{what}: resuming at byte {} of {total}", fetch.offset());
            } else if progress.is_none() {
                say!(os, "{what}: http://{server}:{port}{path} ({total} bytes)");
            }
            if progress.is_none() || fetch.offset() == 0 {
                *progress = Some(Progress::new(what, os.now(), fetch.offset(), Some(total)));
            }
        }
        if !fed.body.is_empty() {
            sink.write(fetch.offset(), fed.body)
                .map_err(Attempt::Fatal)?;
            fetch.on_body(fed.body.len());
            if let Some(p) = progress.as_mut()
                && let Some(mut line) = p.update(os.now(), fetch.offset())
            {
                os.consoles_write(line.finish());
            }
        }
        if resp.is_done() {
            return Ok(());
        }
    }
}

/// Download `path` into `sink` with resume and retries; returns the size.
pub fn download<O: Os, S: Sink<O>>(
    os: &mut O,
    server: Ipv4Addr,
    port: u16,
    path: &str,
    what: &'static str,
    sink: &mut S,
    io: &mut [u8],
) -> Result<u64, Fatal> {
    let mut fetch = Fetch::new();
    let mut progress = None;
    loop {
        match attempt(
            os,
            server,
            port,
            path,
            what,
            &mut fetch,
            sink,
            io,
            &mut progress,
        ) {
            Ok(()) if fetch.is_complete() => break,
            Ok(()) => {
                let missing = fetch.total().unwrap_or(0).saturating_sub(fetch.offset());
                let failure = Failure::Http(HttpError::Cut { missing });
                fetch
                    .on_failure(failure)
                    .map_err(|error| Fatal::Download { what, error })?;
            }
            Err(Attempt::Fatal(f)) => return Err(f),
            Err(Attempt::Failed(failure)) => {
                say!(
                    os,
                    "{what}: attempt {} failed at byte {}: {failure}",
                    fetch.failures() + 1,
                    fetch.offset()
                );
                fetch
                    .on_failure(failure)
                    .map_err(|error| Fatal::Download { what, error })?;
                say!(os, "{what}: retrying in {} s", http::RETRY_DELAY.as_secs());
                os.sleep(http::RETRY_DELAY);
            }
        }
    }
    let total = fetch.offset();
    if let Some(p) = &progress {
        let mut line = p.line(os.now(), total);
        os.consoles_write(line.finish());
    }
    Ok(total)
}

/// The image pipeline: hash everything, hold the first MiB back, write
/// the rest through.
pub struct ImageSink<'a, D: BlockDev> {
    /// The target disk.
    pub disk: &'a mut D,
    /// Holds the first [`install::HEAD_LEN`] bytes.
    pub head: &'a mut [u8],
    /// The running digest.
    pub sha: Sha256,
    /// The disk's size.
    pub disk_size: u64,
    /// `ze.size`, checked as soon as the server announces its size.
    pub expected_size: Option<u64>,
}

impl<D: BlockDev> core::fmt::Debug for ImageSink<'_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ImageSink")
            .field("disk_size", &self.disk_size)
            .field("expected_size", &self.expected_size)
            .finish_non_exhaustive()
    }
}

impl<O: Os, D: BlockDev> Sink<O> for ImageSink<'_, D> {
    fn restart(&mut self, _os: &mut O) -> Result<(), Fatal> {
        self.sha = Sha256::new();
        Ok(())
    }

    fn total(&mut self, total: u64) -> Result<(), Fatal> {
        if total > self.disk_size {
            return Err(Fatal::TooLarge {
                image: total,
                disk: self.disk_size,
            });
        }
        if let Some(expected) = self.expected_size
            && expected != total
        {
            return Err(Fatal::SizeMismatch {
                expected,
                got: total,
            });
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        self.sha.update(bytes);
        let p = install::place(offset, bytes.len());
        if let Some((range, at)) = p.head {
            let src = bytes.get(range.clone()).unwrap_or_default();
            if let Some(dst) = self.head.get_mut(at..at + src.len()) {
                dst.copy_from_slice(src);
            }
        }
        if let Some((range, at)) = p.tail {
            self.disk
                .write_at(at, bytes.get(range).unwrap_or_default())
                .map_err(|error| Fatal::DiskIo {
                    what: "write",
                    error,
                })?;
        }
        Ok(())
    }
}

/// Download the image to `disk` and make it bootable only when verified.
/// Returns the image size and digest.
pub fn write_image<O: Os, D: BlockDev>(
    os: &mut O,
    cfg: &Config,
    disk: &mut D,
    bufs: &mut Buffers<'_>,
) -> Result<(u64, [u8; 32]), Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(no_server());
    };
    let io_err = |what| move |error| Fatal::DiskIo { what, error };
    let disk_size = disk.size().map_err(io_err("size"))?;
    let path = url_path(install::IMAGE_URL, &cfg.image);
    let mut sink = ImageSink {
        disk,
        head: &mut *bufs.head,
        sha: Sha256::new(),
        disk_size,
        expected_size: cfg.size,
    };
    let total = download(os, server, port, &path, "image", &mut sink, bufs.io)?;
    let digest = sink.seal(total, cfg.size, cfg.sha256)?;
    Ok((total, digest))
}

fn no_server() -> Fatal {
    Fatal::Cmdline(cmdline::CmdlineError {
        key: "ze.server",
        value: String::new(),
        problem: cmdline::Problem::Missing,
    })
}

impl<D: BlockDev> ImageSink<'_, D> {
    /// The whole image (`total` bytes) went through [`Sink::write`]: flush
    /// it, check it against `ze.size` and `ze.sha256`, and only then write
    /// the held-back first MiB and flush again. Returns the digest.
    pub fn seal(
        &mut self,
        total: u64,
        expected_size: Option<u64>,
        expected_digest: Option<cmdline::Digest>,
    ) -> Result<[u8; 32], Fatal> {
        let io_err = |what| move |error| Fatal::DiskIo { what, error };
        let digest: [u8; 32] = self.sha.clone().finalize().into();
        // Everything after the first MiB must be on the disk before the
        // partition table that points at it.
        self.disk.sync().map_err(io_err("fsync"))?;
        install::verify(expected_size, expected_digest, total, digest)?;
        let head_len = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(install::HEAD_LEN);
        self.disk
            .write_at(0, self.head.get(..head_len).unwrap_or_default())
            .map_err(io_err("write the first MiB"))?;
        self.disk.sync().map_err(io_err("fsync"))?;
        Ok(digest)
    }
}

/// Zero the first MiB (the partition table and boot code) and flush.
pub fn disarm<D: BlockDev>(disk: &mut D, size: u64, zeros: &mut [u8]) -> Result<(), ze_hal::Error> {
    zeros.fill(0);
    let mut at = 0u64;
    let end = size.min(install::HEAD_LEN as u64);
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        disk.write_at(at, zeros.get(..n).unwrap_or_default())?;
        at += n as u64;
    }
    disk.sync()
}

struct FileSink<O: Os> {
    file: Option<O::File>,
}

impl<O: Os> Sink<O> for FileSink<O> {
    fn restart(&mut self, os: &mut O) -> Result<(), Fatal> {
        self.file = None;
        self.file = Some(
            os.file_create(install::ZEFS_TMP)
                .map_err(|error| Fatal::Perm {
                    what: "create the database",
                    error,
                })?,
        );
        Ok(())
    }
    fn total(&mut self, total: u64) -> Result<(), Fatal> {
        if total > install::MAX_ZEFS {
            return Err(Fatal::ZefsTooLarge(total));
        }
        Ok(())
    }
    fn write(&mut self, _offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        let Some(f) = self.file.as_mut() else {
            return Err(Fatal::Perm {
                what: "write the database",
                error: ze_hal::Error::NotFound,
            });
        };
        f.write_all(bytes).map_err(|error| Fatal::Perm {
            what: "write the database",
            error,
        })
    }
}

fn write_database<O: Os>(
    os: &mut O,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<u64, Fatal> {
    let perm = |what| move |error| Fatal::Perm { what, error };
    os.mkdir(install::ZE_DIR).map_err(perm("mkdir ze"))?;
    let mut sink: FileSink<O> = FileSink { file: None };
    Sink::<O>::restart(&mut sink, os)?;
    let size = download(
        os,
        server,
        port,
        install::ZEFS_URL,
        "database",
        &mut sink,
        io,
    )?;
    let mut file = sink.file.take().ok_or(Fatal::Perm {
        what: "write the database",
        error: ze_hal::Error::NotFound,
    })?;
    file.sync().map_err(perm("fsync the database"))?;
    drop(file);
    os.rename(install::ZEFS_TMP, install::ZEFS_PATH)
        .map_err(perm("rename the database into place"))?;
    os.sync_dir(install::ZE_DIR).map_err(perm("fsync ze/"))?;
    Ok(size)
}

/// The whole install: over HTTP from the network to the unmount, or from
/// the ISO media ([`crate::media::install`]).
pub fn install<O: Os>(os: &mut O, cfg: &Config, bufs: &mut Buffers<'_>) -> Result<(), Fatal> {
    if cfg.source == Source::Iso {
        return crate::media::install(os, cfg, bufs);
    }
    let Some((server, port)) = cfg.server() else {
        return Err(no_server());
    };
    say!(os, "installing {} from {server}:{port}", cfg.image);
    network(os, cfg)?;
    let facts = choose_disk(os, cfg, Mode::Http)?;
    let path = disk::disk_path(&facts.name);
    let io_err = |what| move |error| Fatal::DiskIo { what, error };
    let mut dev = os.disk_open(&path).map_err(io_err("open"))?;
    let size = dev.size().map_err(io_err("size"))?;
    say!(os, "target disk {path} ({size} bytes)");
    disarm(&mut dev, size, bufs.io).map_err(io_err("zero the first MiB"))?;
    let result = write_image(os, cfg, &mut dev, bufs).and_then(|(total, digest)| {
        say!(
            os,
            "image written: {total} bytes, sha256 {}",
            install::Hex(&digest)
        );
        reread_partitions(os, &mut dev)
    });
    if let Err(fatal) = result {
        let _ = disarm(&mut dev, size, bufs.io);
        return Err(fatal);
    }
    drop(dev);
    let after = perm_stage(os, &facts.name, server, port, bufs.io);
    if let Err(fatal) = after {
        // The image is complete but the install is not: make sure the disk
        // does not boot without its database.
        let _ = os.unmount(install::PERM);
        if let Ok(mut dev) = os.disk_open(&path) {
            let _ = disarm(&mut dev, size, bufs.io);
        }
        say!(
            os,
            "first MiB of {path} zeroed: the disk will not boot a partial install"
        );
        return Err(fatal);
    }
    Ok(())
}

fn reread_partitions<O: Os, D: BlockDev>(os: &mut O, dev: &mut D) -> Result<(), Fatal> {
    let mut last = ze_hal::Error::NotFound;
    for _ in 0..install::REREAD_TRIES {
        match dev.reread_partitions() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        os.sleep(install::REREAD_DELAY);
    }
    Err(Fatal::DiskIo {
        what: "re-read the partition table (BLKRRPART)",
        error: last,
    })
}

fn perm_stage<O: Os>(
    os: &mut O,
    disk_name: &str,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<(), Fatal> {
    let node = disk::partition_path(disk_name, install::PERM_PARTITION);
    let start = os.now();
    while !os.exists(&node) {
        if os.now().saturating_since(start) >= install::PARTITION_WAIT {
            let mut n = heapless::String::new();
            let _ = n.push_str(&node);
            return Err(Fatal::NoPartition { node: n });
        }
        os.sleep(install::PARTITION_POLL);
    }
    let perm = |what| move |error| Fatal::Perm { what, error };
    os.mkdir(install::PERM).map_err(perm("mkdir"))?;
    os.mount_ext4(&node, install::PERM)
        .map_err(perm("mount ext4"))?;
    say!(os, "mounted {node} (ext4) at {}", install::PERM);
    let written = write_database(os, server, port, io);
    let unmounted = os.unmount(install::PERM);
    let size = written?;
    unmounted.map_err(perm("unmount"))?;
    say!(os, "wrote {} ({size} bytes)", install::ZEFS_PATH);
    os.sync_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_without_a_router_says_so() {
        let mut s: String<32> = String::new();
        write!(s, "{}", RouterNote(Some(Ipv4Addr::new(192, 0, 2, 1)))).unwrap();
        assert_eq!(s, "router 192.0.2.1");
        s.clear();
        write!(s, "{}", RouterNote(None)).unwrap();
        assert_eq!(s, "no router");
    }
}
