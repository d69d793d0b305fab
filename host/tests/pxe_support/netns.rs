//! Network namespaces for the tests: one (`Netns`), many at once
//! (`NetnsGroup`), two joined by a veth pair (`VethPair`), and sockets
//! made inside one.

use super::sh;
use std::{
    fs,
    io::Write,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::Duration,
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace, removed on drop (with everything in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A fresh namespace with `lo` up; `tag` makes the name recognisable.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "ze-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n <ns> args…`.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        sh("ip", &full);
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Run inside the namespace; return the output.
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        self.cmd(program).args(args).output().unwrap()
    }

    /// `ip -n <ns> -batch -` with `lines`: many changes, one process.
    pub fn ip_batch(&self, lines: &[String]) {
        ip_batch(Some(&self.name), lines);
    }
}

/// `ip [-n ns] -batch -` with `lines` on standard input, success required.
pub fn ip_batch(ns: Option<&str>, lines: &[String]) {
    let mut cmd = Command::new("ip");
    if let Some(n) = ns {
        cmd.args(["-n", n]);
    }
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ip -batch ({} lines): {}",
        lines.len(),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs in it, then remove it.
        kill_all_in_netns(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The processes whose network namespace is `name` (an `ip netns`
/// name): their `/proc/PID/ns/net` is the same namespace as its file.
pub fn pids_in_netns(name: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = fs::metadata(format!("/var/run/netns/{name}")) else {
        return Vec::new();
    };
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| (m.dev(), m.ino()) == (ns.dev(), ns.ino()))
        })
        .collect()
}

/// SIGKILL every process in namespace `name`; returns how many there were.
pub fn kill_all_in_netns(name: &str) -> usize {
    let pids = pids_in_netns(name);
    for &pid in &pids {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    pids.len()
}

/// Many namespaces at once (a boot storm's targets), each with `lo`
/// down: made and removed with one `ip -batch` each.
pub struct NetnsGroup {
    pub names: Vec<String>,
}

impl NetnsGroup {
    pub fn new(tag: &str, n: usize) -> NetnsGroup {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let names: Vec<String> = (0..n)
            .map(|i| format!("ze-{tag}-{}-{seq}-{i}", std::process::id()))
            .collect();
        let lines: Vec<String> = names.iter().map(|n| format!("netns add {n}")).collect();
        ip_batch(None, &lines);
        NetnsGroup { names }
    }

    /// A command run inside namespace `i`.
    pub fn cmd(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], program]);
        c
    }
}

impl Drop for NetnsGroup {
    fn drop(&mut self) {
        for n in &self.names {
            kill_all_in_netns(n);
        }
        let lines: Vec<String> = self
            .names
            .iter()
            .map(|n| format!("netns del {n}"))
            .collect();
        let _ = Command::new("ip")
            .args(["-force", "-batch", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut c| {
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(lines.join("\n").as_bytes())?;
                c.wait()
            });
    }
}

/// Two namespaces joined by a veth pair: `server` side `zs0` with
/// 192.0.2.1/24 (unless `server_addr` is None), `client` side `zc0`.
pub struct VethPair {
    pub server: Netns,
    pub client: Netns,
}

impl VethPair {
    pub fn new(tag: &str, server_addr: Option<&str>) -> VethPair {
        let server = Netns::new(&format!("{tag}s"));
        let client = Netns::new(&format!("{tag}c"));
        sh(
            "ip",
            &[
                "link",
                "add",
                "zs0",
                "netns",
                &server.name,
                "type",
                "veth",
                "peer",
                "name",
                "zc0",
                "netns",
                &client.name,
            ],
        );
        if let Some(a) = server_addr {
            server.ip(&["addr", "add", a, "dev", "zs0"]);
        }
        server.ip(&["link", "set", "zs0", "up"]);
        client.ip(&["link", "set", "zc0", "up"]);
        VethPair { server, client }
    }
}

/// Run `f` on a thread that has entered namespace `ns`; sockets it
/// creates belong to that namespace wherever they are used afterwards.
pub fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{}", ns.name);
    thread::spawn(move || {
        let file = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&file),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// A UDP socket in `ns` bound to `bind`, optionally to a device, allowed
/// to broadcast, with a receive timeout.
pub fn udp_in(ns: &Netns, bind: &str, device: Option<&str>) -> std::net::UdpSocket {
    let bind: std::net::SocketAddr = bind.parse().unwrap();
    let device = device.map(str::to_string);
    in_ns(ns, move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_broadcast(true).unwrap();
        if let Some(d) = device {
            s.bind_device(Some(d.as_bytes())).unwrap();
        }
        s.bind(&bind.into()).unwrap();
        let s: std::net::UdpSocket = s.into();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    })
}

/// A TCP connection made from inside `ns`.
pub fn tcp_in(ns: &Netns, to: &str) -> std::net::TcpStream {
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
}

/// A TCP connection from `from` (an address of `ns`) to `to`.
pub fn tcp_from(ns: &Netns, from: &str, to: &str) -> std::net::TcpStream {
    let from: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        s.bind(&from.into()).unwrap();
        s.connect_timeout(&to.into(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {from} -> {to}: {e}"));
        let s: std::net::TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    })
}
