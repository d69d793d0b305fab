//! DHCP clients for the server tests: hand-built messages sent from a
//! socket in the client namespace, and busybox udhcpc with a script that
//! records every event it sees.

use super::{Logged, Netns, sh, udp_in};
use std::{
    fs,
    net::{Ipv4Addr, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};
use ze::wire::dhcp::{self, MessageType, Op, Options, Repr, opt};

/// A DISCOVER from `mac` as EDK2 sends it: option 93 = 7 and a
/// `PXEClient:Arch:00007` vendor class.
pub fn discover(mac: [u8; 6], xid: u32) -> Repr {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac);
    let mut options = Options::new();
    options.set(opt::MESSAGE_TYPE, [MessageType::Discover.code()]);
    options.set(opt::CLIENT_ARCH, [0, 7]);
    options.set(
        opt::VENDOR_CLASS_ID,
        b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
    );
    Repr {
        op: Op::Request,
        htype: 1,
        hlen: 6,
        hops: 0,
        xid,
        secs: 0,
        flags: dhcp::FLAG_BROADCAST,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        yiaddr: Ipv4Addr::UNSPECIFIED,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: Ipv4Addr::UNSPECIFIED,
        chaddr,
        sname: vec![],
        file: vec![],
        options,
    }
}

/// `req` turned into another message type, keeping its client and xid.
pub fn with_type(mut req: Repr, kind: MessageType, xid: u32) -> Repr {
    req.options.set(opt::MESSAGE_TYPE, [kind.code()]);
    req.xid = xid;
    req
}

/// A REQUEST selecting `offer` (from the server named in its option 54).
pub fn select(offer: &Repr, mac: [u8; 6], xid: u32) -> Repr {
    let mut req = with_type(discover(mac, xid), MessageType::Request, xid);
    let server = offer
        .options
        .server_id()
        .expect("the offer names its server");
    req.options.set(opt::SERVER_ID, server.octets());
    req.options.set(opt::REQUESTED_IP, offer.yiaddr.octets());
    req
}

/// A socket on port 68 of `zc0` in `ns`, as a client without an address
/// has one.
pub fn dhcp_client(ns: &Netns) -> UdpSocket {
    let s = udp_in(ns, "0.0.0.0:68", Some("zc0"));
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

/// Broadcast `req` to port 67 and wait up to `timeout` for a reply with
/// its xid.
pub fn exchange(sock: &UdpSocket, req: &Repr, timeout: Duration) -> Option<Repr> {
    sock.send_to(&req.to_bytes(), "255.255.255.255:67").unwrap();
    first_reply(sock, req.xid, timeout)
}

/// The first reply with `xid` that arrives within `timeout`.
pub fn first_reply(sock: &UdpSocket, xid: u32, timeout: Duration) -> Option<Repr> {
    replies(sock, xid, timeout, 1).pop()
}

/// Every reply with `xid` that arrives within `timeout`, at most `max`.
pub fn replies(sock: &UdpSocket, xid: u32, timeout: Duration, max: usize) -> Vec<Repr> {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    while start.elapsed() < timeout && out.len() < max {
        if let Ok(n) = sock.recv(&mut buf)
            && let Ok(r) = Repr::parse_bytes(&buf[..n])
            && r.xid == xid
            && r.op == Op::Reply
        {
            out.push(r);
        }
    }
    out
}

/// The reply among `replies` whose option 54 names `server`.
pub fn reply_from(replies: &[Repr], server: Ipv4Addr) -> Option<&Repr> {
    replies
        .iter()
        .find(|r| r.options.server_id() == Some(server))
}

/// Broadcast a DISCOVER and require an OFFER.
pub fn assert_offer(sock: &UdpSocket, mac: [u8; 6], xid: u32) -> Repr {
    let offer = exchange(sock, &discover(mac, xid), Duration::from_secs(5)).expect("an OFFER");
    assert_eq!(offer.message_type(), Some(MessageType::Offer));
    offer
}

/// busybox udhcpc on an interface, its events (`bound`, `renew`, …) written
/// by its script, one line each:
/// `<event> <ip> <lease> <serverid> router=<router> bootfile=<boot_file>`.
pub struct Udhcpc {
    pub proc: Logged,
    pub events: PathBuf,
}

impl Udhcpc {
    /// Start `udhcpc -f -i <dev>` in `ns` (retrying 5 times a second
    /// apart) with `extra` arguments; its script and events live in `dir`.
    pub fn start(ns: &Netns, dev: &str, dir: &Path, extra: &[&str]) -> Udhcpc {
        fs::create_dir_all(dir).unwrap();
        let events = dir.join(format!("udhcpc-{dev}.events"));
        let script = dir.join(format!("udhcpc-{dev}.sh"));
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$1 $ip $lease $serverid router=$router bootfile=$boot_file\" >> {}\ncase \"$1\" in\n  deconfig) ip -4 addr flush dev \"$interface\" ;;\n  bound|renew) ip -4 addr replace \"$ip/$mask\" dev \"$interface\" ;;\nesac\n",
                events.display()
            ),
        )
        .unwrap();
        sh("chmod", &["755", script.to_str().unwrap()]);
        let mut cmd = ns.cmd("busybox");
        cmd.args(["udhcpc", "-f", "-i", dev, "-t", "5", "-T", "1", "-s"])
            .arg(&script)
            .args(extra);
        Udhcpc {
            proc: Logged::spawn(cmd),
            events,
        }
    }

    /// The events so far.
    pub fn events(&self) -> String {
        fs::read_to_string(&self.events).unwrap_or_default()
    }

    /// Wait up to `timeout` for an event line containing `needle`.
    pub fn wait_event(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.events().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stop it; returns the events and its own output.
    pub fn stop(mut self) -> (String, String) {
        self.proc.signal(rustix::process::Signal::TERM);
        self.proc.wait_exit(Duration::from_secs(5));
        (self.events(), self.proc.text())
    }
}
