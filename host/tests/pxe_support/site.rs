//! A site's network for the proxyDHCP and relay tests: a bridge that
//! namespaces plug into, the site's own DHCP server (Kea, ISC dhcpd or
//! dnsmasq) and relay agents (dhcrelay, dnsmasq), each run from the
//! configuration docs/install-remote.md shows, so the documented snippets
//! are the tested ones.
//!
//! Addresses (RFC 5737): the site's subnet 192.0.2.0/24 with its DHCP
//! server at .2, ze at .10, the site's pool .100–.199 and a relay at .254;
//! behind the relay 198.51.100.0/24 with the relay at .1.

use super::{Logged, Netns, have, sh, workspace};
use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

pub const SITE_SERVER: &str = "192.0.2.2";
pub const ZE: &str = "192.0.2.10";
pub const RELAY_UP: &str = "192.0.2.254";
pub const RELAY_DOWN: &str = "198.51.100.1";

/// The code block after `<!-- tested: <name> -->` in
/// docs/install-remote.md.
pub fn doc_snippet(name: &str) -> String {
    let doc = fs::read_to_string(workspace().join("docs/install-remote.md")).unwrap();
    let marker = format!("<!-- tested: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/install-remote.md has no {marker}"))
        .1;
    let block = after
        .split_once("```")
        .and_then(|(_, rest)| rest.split_once('\n'))
        .map(|(_, body)| body)
        .and_then(|body| body.split_once("```"))
        .map(|(code, _)| code)
        .unwrap_or_else(|| panic!("no code block after {marker}"));
    block.to_string()
}

/// Plug `ns` into bridge `bridge` of `lan` through a veth pair: `ifname`
/// in `ns`, with `addr` (CIDR) when given, up.
pub fn plug(lan: &Netns, bridge: &str, ns: &Netns, ifname: &str, addr: Option<&str>) {
    let peer = format!("v{ifname}");
    sh(
        "ip",
        &[
            "link", "add", ifname, "netns", &ns.name, "type", "veth", "peer", "name", &peer,
            "netns", &lan.name,
        ],
    );
    lan.ip(&["link", "set", &peer, "master", bridge]);
    lan.ip(&["link", "set", &peer, "up"]);
    if let Some(a) = addr {
        ns.ip(&["addr", "add", a, "dev", ifname]);
    }
    ns.ip(&["link", "set", ifname, "up"]);
}

/// Wait until something in `ns` listens on UDP `port`.
pub fn wait_udp_port(ns: &Netns, port: u16, what: &Logged) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let out = ns.run("ss", &["-H", "-l", "-n", "-u", &format!("sport = :{port}")]);
        if !out.stdout.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on UDP port {port}:\n{}", what.text());
}

/// The site's own DHCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteServer {
    Kea,
    Dhcpd,
    Dnsmasq,
}

impl SiteServer {
    /// The program and the Debian package it comes from.
    pub fn program(self) -> (&'static str, &'static str) {
        match self {
            SiteServer::Kea => ("kea-dhcp4", "kea-dhcp4-server"),
            SiteServer::Dhcpd => ("dhcpd", "isc-dhcp-server"),
            SiteServer::Dnsmasq => ("dnsmasq", "dnsmasq-base"),
        }
    }

    pub fn installed(self) -> bool {
        have(self.program().0)
    }

    /// Start it in `ns` on `ifname` from its documented config, with its
    /// state in `dir`; returns once it listens on port 67.
    pub fn start(self, ns: &Netns, ifname: &str, dir: &Path) -> Logged {
        self.start_with(ns, ifname, dir, "")
    }

    /// [`SiteServer::start`] with `extra` lines after the documented
    /// config (dhcpd and dnsmasq, whose configs are lists of statements).
    pub fn start_with(self, ns: &Netns, ifname: &str, dir: &Path, extra: &str) -> Logged {
        assert!(
            extra.is_empty() || self != SiteServer::Kea,
            "Kea's JSON takes no extra lines"
        );
        fs::create_dir_all(dir).unwrap();
        let d = dir.display().to_string();
        let conf = dir.join("site.conf");
        let mut cmd = match self {
            SiteServer::Kea => {
                let text = doc_snippet("site-kea")
                    .replace("\"eth0\"", &format!("\"{ifname}\""))
                    .replace("/var/lib/kea/", &format!("{d}/"));
                fs::write(&conf, text).unwrap();
                let mut c = ns.cmd("kea-dhcp4");
                c.arg("-c")
                    .arg(&conf)
                    .env("KEA_PIDFILE_DIR", dir)
                    .env("KEA_LOCKFILE_DIR", dir);
                c
            }
            SiteServer::Dhcpd => {
                fs::write(&conf, doc_snippet("site-dhcpd") + extra).unwrap();
                let leases = dir.join("dhcpd.leases");
                fs::write(&leases, "").unwrap();
                let mut c = ns.cmd("dhcpd");
                c.args(["-4", "-f", "-d", "-cf"])
                    .arg(&conf)
                    .arg("-lf")
                    .arg(&leases)
                    .arg("-pf")
                    .arg(dir.join("dhcpd.pid"))
                    .arg(ifname);
                c
            }
            SiteServer::Dnsmasq => {
                let text = doc_snippet("site-dnsmasq")
                    .replace("interface=eth0", &format!("interface={ifname}"))
                    + extra;
                fs::write(&conf, text).unwrap();
                let mut c = ns.cmd("dnsmasq");
                c.arg("--keep-in-foreground")
                    .arg(format!("--conf-file={}", conf.display()))
                    .arg(format!("--dhcp-leasefile={d}/dnsmasq.leases"))
                    .args([
                        "--pid-file=",
                        "--user=root",
                        "--log-dhcp",
                        "--log-facility=-",
                    ]);
                c
            }
        };
        cmd.current_dir(dir);
        let server = Logged::spawn(cmd);
        wait_udp_port(ns, 67, &server);
        server
    }
}

/// A relay agent between two interfaces of one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    Dhcrelay,
    Dnsmasq,
}

impl Relay {
    pub fn program(self) -> (&'static str, &'static str) {
        match self {
            Relay::Dhcrelay => ("dhcrelay", "isc-dhcp-relay"),
            Relay::Dnsmasq => ("dnsmasq", "dnsmasq-base"),
        }
    }

    /// Start it in `ns` from its documented command line: `up` faces ze,
    /// `down` (holding [`RELAY_DOWN`]) the targets; `servers` replaces the
    /// documented server list.
    pub fn start(self, ns: &Netns, up: &str, down: &str, servers: &[&str]) -> Logged {
        let line = match self {
            Relay::Dhcrelay => doc_snippet("relay-dhcrelay"),
            Relay::Dnsmasq => doc_snippet("relay-dnsmasq"),
        };
        let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let mut cmd = ns.cmd(&words.remove(0));
        match self {
            Relay::Dhcrelay => {
                // Foreground, logging to stderr; the documented servers
                // (the trailing addresses) replaced.
                words.retain(|w| w.parse::<std::net::Ipv4Addr>().is_err());
                let words: Vec<String> = words
                    .into_iter()
                    .map(|w| match w.as_str() {
                        "eth0" => up.to_string(),
                        "eth1" => down.to_string(),
                        _ => w,
                    })
                    .collect();
                cmd.arg("-d").args(words).args(servers);
            }
            Relay::Dnsmasq => {
                let words: Vec<String> = words
                    .into_iter()
                    .filter(|w| !w.starts_with("--dhcp-relay="))
                    .collect();
                cmd.args(words)
                    .args(
                        servers
                            .iter()
                            .map(|s| format!("--dhcp-relay={RELAY_DOWN},{s}")),
                    )
                    .args([
                        "--keep-in-foreground",
                        "--conf-file=/dev/null",
                        "--pid-file=",
                    ])
                    .args(["--user=root", "--log-dhcp", "--log-facility=-"]);
            }
        }
        let relay = Logged::spawn(cmd);
        wait_udp_port(ns, 67, &relay);
        relay
    }
}

/// The site's network with a relayed subnet behind it: bridge `br0` (in
/// `lan`) with ze's namespace (`zs0`, [`ZE`]), the site's server's
/// (`site0`, [`SITE_SERVER`]) and the relay's upstream side (`zr0`,
/// [`RELAY_UP`]); in the relay's namespace bridge `br1` (198.51.100.1/24)
/// with `tap0` for a QEMU machine and the client namespace (`zc0`). ze and
/// the site's server route 198.51.100.0/24 through the relay, which
/// forwards.
pub struct RelayedSite {
    pub lan: Netns,
    pub ze: Netns,
    pub site: Netns,
    pub relay: Netns,
    pub client: Netns,
}

impl RelayedSite {
    pub fn new(tag: &str) -> RelayedSite {
        let lan = Netns::new(&format!("{tag}l"));
        lan.ip(&["link", "add", "br0", "type", "bridge"]);
        lan.ip(&["link", "set", "br0", "up"]);
        let ze = Netns::new(&format!("{tag}z"));
        let site = Netns::new(&format!("{tag}s"));
        let relay = Netns::new(&format!("{tag}r"));
        let client = Netns::new(&format!("{tag}c"));
        plug(&lan, "br0", &ze, "zs0", Some(&format!("{ZE}/24")));
        plug(
            &lan,
            "br0",
            &site,
            "site0",
            Some(&format!("{SITE_SERVER}/24")),
        );
        plug(&lan, "br0", &relay, "zr0", Some(&format!("{RELAY_UP}/24")));
        super::qemu::add_bridge_with_tap(&relay, "br1", "tap0");
        relay.ip(&["addr", "add", &format!("{RELAY_DOWN}/24"), "dev", "br1"]);
        plug(&relay, "br1", &client, "zc0", None);
        for ns in [&ze, &site] {
            ns.ip(&["route", "add", "198.51.100.0/24", "via", RELAY_UP]);
        }
        sh(
            "ip",
            &[
                "netns",
                "exec",
                &relay.name,
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
            ],
        );
        RelayedSite {
            lan,
            ze,
            site,
            relay,
            client,
        }
    }
}
