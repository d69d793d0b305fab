//! The runner's network stage (spec: "Kernel Command Line"; the policy is
//! in [`crate::net`]): trust the kernel's route only when `ze.server`
//! answers a probe, else bring every interface up, run DHCP on each and
//! keep the first lease that reaches the server.

use crate::{
    cmdline::Config,
    console::say,
    dhcp::{Event, Lease},
    dhcp_port::DhcpPort,
    http::{self, HttpError, Method, Response},
    install::{self, Fatal},
    net::{self, Mac, ProbeResult, Prober},
};
use core::net::Ipv4Addr;
use heapless::{String, Vec};
use ze_hal::{
    os::{LinkInfo, NetError, Os, TcpConn},
    time::Instant,
};

/// The longest URL path built.
pub const MAX_URL_PATH: usize = 192;

/// `dir` + `name`, as a request path.
pub fn url_path(dir: &str, name: &str) -> String<MAX_URL_PATH> {
    let mut p = String::new();
    let _ = p.push_str(dir);
    let _ = p.push_str(name);
    p
}

pub(crate) fn links<O: Os>(os: &mut O) -> Vec<LinkInfo, { net::MAX_LINKS }> {
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
    let head = http::Request {
        method: Method::Head,
        path,
        range: None,
        keep_alive: false,
    };
    let Ok(req) = http::write_request(&mut req, server, port, &head) else {
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
/// Line", checklist I7–I9, N3). See [`net`] for the policy.
///
/// Round after round until the `ze.wait` budget is spent: probe what is
/// configured (the kernel's `ip=dhcp` route first), then run DHCP on every
/// ethernet interface with carrier and probe each lease. The kernel's
/// address is kept until a lease replaces it; a lease that cannot reach
/// the server is flushed. A round in which no interface got a lease and
/// there was nothing to probe spends the attempts its time is worth
/// (one per [`net::PROBE_PERIOD`]), so a switch port that forwards only
/// after 30–50 s (STP) or a server that starts late still gets the
/// whole budget.
pub fn network<O: Os>(os: &mut O, cfg: &Config) -> Result<Uplink, Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::missing("ze.server"));
    };
    let path = url_path(install::IMAGE_URL, &cfg.image);
    let mut prober = Prober::new(cfg.wait);
    let mut last: Option<ProbeResult> = None;
    let mut tried = 0usize;
    let mut no_carrier_said: Vec<u32, { net::MAX_LINKS }> = Vec::new();
    let mut round = 0u32;
    loop {
        round += 1;
        // What is configured now: the kernel's route in the first round, a
        // route kept from before in later ones.
        if let Some((gw, oif)) = has_default_route(os) {
            if round == 1 {
                let all = links(os);
                say!(
                    os,
                    "kernel network: default route via {gw} dev {}",
                    link_name(&all, oif)
                );
                if cfg.wait == 0 {
                    say!(os, "ze.wait=0: not probing ze.server");
                    return Ok(uplink(os, oif));
                }
            }
            let n = if round == 1 {
                net::TRUST_ATTEMPTS
            } else {
                net::VERIFY_ATTEMPTS
            };
            match probe_some(os, &mut prober, n, server, port, &path) {
                Ok(_) => {
                    say!(
                        os,
                        "using the {} network configuration",
                        if round == 1 { "kernel's" } else { "current" }
                    );
                    return Ok(uplink(os, oif));
                }
                Err(l) => last = l.or(last),
            }
            if round == 1 {
                say!(
                    os,
                    "the kernel's route does not reach {server}:{port}; trying DHCP on every interface"
                );
            }
        } else if round == 1 {
            say!(
                os,
                "no default route from the kernel; trying DHCP on every interface"
            );
        }
        if round > 1 && prober.left() == 0 {
            break;
        }
        let started = os.now();
        if round == 1 {
            bring_up_and_wait_for_carrier(os);
        }
        let mut leased = 0usize;
        let mut probed = false;
        for link in net::candidates(&links(os)) {
            if !link.carrier {
                if !no_carrier_said.contains(&link.index) {
                    let _ = no_carrier_said.push(link.index);
                    say!(os, "{}: no carrier; will look again", link.name);
                }
                continue;
            }
            tried += 1;
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
            leased += 1;
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
            // The lease replaces whatever the link had (the kernel's
            // address included).
            let _ = os.flush(link.index);
            if let Err(e) = apply_lease(os, link, &lease) {
                say!(os, "{}: cannot apply the lease: {e}", link.name);
                let _ = os.flush(link.index);
                continue;
            }
            if cfg.wait == 0 {
                say!(os, "ze.wait=0: not probing ze.server");
                return Ok(uplink(os, link.index));
            }
            probed = true;
            match probe_some(os, &mut prober, net::VERIFY_ATTEMPTS, server, port, &path) {
                Ok(_) => {
                    say!(os, "{}: reaches {server}:{port}; using it", link.name);
                    return Ok(uplink(os, link.index));
                }
                Err(l) => {
                    last = l.or(last);
                    say!(
                        os,
                        "{}: cannot reach {server}:{port} through this lease; flushed",
                        link.name
                    );
                    let _ = os.flush(link.index);
                }
            }
            if prober.left() == 0 {
                break;
            }
        }
        if cfg.wait == 0 {
            return Err(Fatal::NoLease { tried });
        }
        if !probed && leased == 0 {
            // Nothing to probe this round: spend what the round took.
            spend(os, &mut prober, started);
        }
        if prober.left() == 0 {
            break;
        }
        say!(
            os,
            "{server}:{port} not reached yet; trying again ({} of {} attempts left)",
            prober.left(),
            prober.budget()
        );
    }
    if last.is_none() {
        return Err(Fatal::NoLease { tried });
    }
    Err(Fatal::Unreachable {
        server,
        port,
        attempts: prober.used(),
        last,
    })
}

/// The interface the installer reaches its server through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    /// Its name (`eth0`).
    pub name: heapless::String<{ ze_hal::os::MAX_IFNAME }>,
    /// Its hardware address: the machine's identity to the server.
    pub mac: [u8; 6],
    /// Its first IPv4 address and prefix length, if any.
    pub addr: Option<(Ipv4Addr, u8)>,
}

/// What the kernel says about interface `index` now.
fn uplink<O: Os>(os: &mut O, index: u32) -> Uplink {
    let all = links(os);
    let link = all.iter().find(|l| l.index == index);
    let mut addr = None;
    let _ = os.addrs(&mut |a| {
        if a.index == index && addr.is_none() {
            addr = Some((a.addr, a.prefix));
        }
    });
    Uplink {
        name: link.map(|l| l.name.clone()).unwrap_or_default(),
        mac: link.map_or([0; 6], |l| l.mac),
        addr,
    }
}

/// Bring every candidate interface up and wait up to
/// [`net::CARRIER_WAIT`] for all of them to have carrier.
fn bring_up_and_wait_for_carrier<O: Os>(os: &mut O) {
    for l in net::candidates(&links(os)) {
        if let Err(e) = os.link_up(l.index) {
            say!(os, "{}: cannot bring up: {e}", l.name);
        }
    }
    let start = os.now();
    loop {
        let waiting = net::candidates(&links(os)).any(|l| !l.carrier);
        if !waiting || os.now().saturating_since(start) >= net::CARRIER_WAIT {
            break;
        }
        os.sleep(net::CARRIER_POLL);
    }
}

/// A round without a lease and without a probe: take the attempts its
/// time is worth (at least one, and at least [`net::PROBE_PERIOD`] of
/// time), logging the network state on the attempts that are due.
fn spend<O: Os>(os: &mut O, prober: &mut Prober, since: Instant) {
    let period = net::PROBE_PERIOD.as_millis().max(1) as u64;
    let mut took = os.now().saturating_since(since);
    if took < net::PROBE_PERIOD {
        os.sleep(net::PROBE_PERIOD.saturating_sub(took));
        took = net::PROBE_PERIOD;
    }
    let n = (took.as_millis() as u64 / period).max(1);
    for _ in 0..n {
        let Some(k) = prober.take() else { break };
        if Prober::diagnostics_due(k) {
            say!(
                os,
                "attempt {k}/{}: no lease and no route yet; interfaces and routes:",
                prober.budget()
            );
            log_network(os);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

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
