//! `ze install remote`: provision targets over PXE from this host
//! (spec: "Remote Provisioning (PXE)", checklist R1–R18).
//!
//! Validate every flag, work out the server address and the pools, stage
//! the boot files into `<pxe-dir>`, generate the brace config, then run
//! `ze -` as a child with the config on its standard input and forward
//! SIGINT/SIGTERM/SIGHUP to it. An address this command added to the
//! interface is removed when it exits. `--dry-run` prints the steps and
//! the config and changes nothing.
//!
//! `--proxy-dhcp` (checklist N1) runs the DHCP server as proxyDHCP beside
//! the site's own: no pool, and no address is ever added to the interface
//! (it must already have one in `--network`). `--relay-network` (N2) adds
//! subnets behind DHCP relays.

use crate::{
    cli::InstallRemote,
    config::brace::{Document, Node, write},
    credentials,
    netaddr::{self, Ipv4Net},
    netlink::{self, IfAddr},
    plan::{Plan, Step},
    provision::{
        image::bootscript::{self, INITRD, KERNEL},
        machines::boot::Unknown,
    },
    sysroot::{Sysroot, normalize},
};
use anyhow::{Context as _, bail};
pub use coexist::{RelayNetwork, proxy_server_address, relay_networks};
use std::{
    io::Write,
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

mod coexist;

/// iPXE binaries handed out by the DHCP server: they must be staged.
pub const REQUIRED_IPXE: [&str; 2] = ["ipxe.efi", "ipxe.pxe"];
/// iPXE binaries staged too when the source has them.
pub const OPTIONAL_IPXE: [&str; 2] = ["undionly.kpxe", "snponly.efi"];
/// Bootfile for each option 93 architecture (spec: BIOS 0 → ipxe.pxe;
/// UEFI 6, 7, 9 → ipxe.efi).
pub const BOOTFILES: [(u16, &str); 4] = [
    (0, "ipxe.pxe"),
    (6, "ipxe.efi"),
    (7, "ipxe.efi"),
    (9, "ipxe.efi"),
];

/// Everything `ze install remote` decided before acting.
#[derive(Debug)]
pub struct Setup {
    pub interface: String,
    pub network: Ipv4Net,
    pub server: Ipv4Addr,
    /// The address to add to the interface (none when it has one).
    pub add_address: Option<IfAddr>,
    /// proxyDHCP: no pools, the site's DHCP server hands out addresses.
    pub proxy: bool,
    /// The pool on `network`; none in proxy mode.
    pub pool: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Subnets behind relays.
    pub relays: Vec<RelayNetwork>,
    pub pxe_dir: PathBuf,
    pub image: PathBuf,
    pub image_name: String,
    /// The machine records.
    pub machines: PathBuf,
    /// What a machine without a record gets.
    pub unknown: Unknown,
    pub plan: Plan,
}

impl Setup {
    pub fn boot_dir(&self) -> PathBuf {
        self.pxe_dir.join("boot")
    }
    pub fn tftp_dir(&self) -> PathBuf {
        self.pxe_dir.join("tftp")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.pxe_dir.join("state")
    }
    pub fn boot_script_url(&self) -> String {
        format!("http://{}/install/boot/boot.ipxe", self.server)
    }

    /// What the DHCP server does, for the messages: `DHCP pool a-b` or
    /// `proxyDHCP for PXE clients on <network>`, and the relayed subnets.
    pub fn dhcp_summary(&self) -> String {
        let mut text = match self.pool {
            Some((a, b)) => format!("DHCP pool {a}-{b}"),
            None => format!(
                "proxyDHCP for PXE clients on {} (addresses from the network's own DHCP server)",
                self.network.trunc()
            ),
        };
        for r in &self.relays {
            match r.pool {
                Some((a, b)) => text.push_str(&format!(", relayed {} pool {a}-{b}", r.net)),
                None => text.push_str(&format!(", relayed {}", r.net)),
            }
        }
        text
    }
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = cwd.join(p);
    normalize(&joined).unwrap_or(joined)
}

fn regular_file(path: &Path, flag: &str) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    if !meta.is_file() {
        bail!("{flag} {} is not a regular file", path.display());
    }
    Ok(())
}

/// Decide the server address: `--address`, else the interface's first IPv4
/// address, else the one `--network` implies. Returns the address and
/// whether it must be added to the interface.
pub fn server_address(
    args_address: Option<Ipv4Addr>,
    network: &Ipv4Net,
    interface: &str,
    existing: &[IfAddr],
) -> anyhow::Result<(Ipv4Addr, Option<IfAddr>)> {
    let on_interface = |a: Ipv4Addr| existing.iter().any(|e| e.addr == a);
    let add = |a: Ipv4Addr| IfAddr {
        addr: a,
        prefix: network.prefix(),
    };
    if let Some(a) = args_address {
        netaddr::provisioning_pool(network, a)
            .map_err(|e| anyhow::anyhow!("--address {a}: {e}"))?;
        return Ok((a, (!on_interface(a)).then(|| add(a))));
    }
    if let Some(first) = existing.first() {
        if !network.contains(first.addr) {
            bail!(
                "{interface} has {}/{}, which is not in --network {}: pass --address, or name the interface's network",
                first.addr,
                first.prefix,
                network.trunc()
            );
        }
        return Ok((first.addr, None));
    }
    let a = netaddr::server_address_for(network)
        .map_err(|e| anyhow::anyhow!("--network {network}: {e}"))?;
    Ok((a, Some(add(a))))
}

/// Validate the flags and build the plan. `existing` is the interface's
/// IPv4 addresses; `cwd` resolves relative paths.
pub fn prepare(args: &InstallRemote, cwd: &Path, existing: &[IfAddr]) -> anyhow::Result<Setup> {
    let network: Ipv4Net = args
        .network
        .parse()
        .map_err(|e| anyhow::anyhow!("--network: {e}"))?;
    netaddr::check_provisioning_prefix(&network)
        .map_err(|e| anyhow::anyhow!("--network {network}: {e}"))?;
    credentials::validate_username(&args.ssh_username).context("--ssh-username")?;
    let (server, add_address) = if args.proxy_dhcp {
        let a = proxy_server_address(args.address, &network, &args.interface, existing)?;
        (a, None)
    } else {
        server_address(args.address, &network, &args.interface, existing)?
    };
    let pool = match args.proxy_dhcp {
        true => None,
        false => Some(netaddr::provisioning_pool(&network, server)?),
    };
    let relays = relay_networks(&args.relay_network, &network, args.proxy_dhcp)?;
    let unknown: Unknown = args
        .unknown
        .parse()
        .map_err(|e| anyhow::anyhow!("--unknown {e}"))?;

    let image = absolute(cwd, &args.image);
    regular_file(&image, "--image")?;
    let image_name = image
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .unwrap_or_default();
    if !bootscript::is_plain_name(&image_name) {
        bail!(
            "--image {}: the file name must be plain (letters, digits, '.', '-', '_', '+') because it goes on the kernel command line",
            image.display()
        );
    }
    let pxe_dir = absolute(cwd, &args.pxe_dir);
    let ipxe_dir = absolute(cwd, &args.ipxe_dir);
    let boot = pxe_dir.join("boot");
    let tftp = pxe_dir.join("tftp");

    let machines = match &args.machines {
        Some(d) => absolute(cwd, d),
        None => pxe_dir.join("machines"),
    };
    if machines.exists() && !machines.is_dir() {
        bail!("--machines {}: not a directory", machines.display());
    }
    let mut plan = Plan::new();
    for d in [&boot, &tftp, &pxe_dir.join("state"), &machines] {
        if !d.is_dir() {
            plan.push(Step::CreateDir(d.clone()));
        }
    }
    let mut missing: Vec<String> = Vec::new();
    for (flag, given, name) in [
        ("--kernel", &args.kernel, KERNEL),
        ("--initrd", &args.initrd, INITRD),
    ] {
        let dest = boot.join(name);
        match given {
            Some(src) => {
                let src = absolute(cwd, src);
                regular_file(&src, flag)?;
                plan.push(Step::CopyFile {
                    from: src.clone(),
                    from_label: src.display().to_string(),
                    to: dest,
                    mode: 0o644,
                });
            }
            None if dest.is_file() => {}
            None => missing.push(format!(
                "{} (pass {flag}, or stage it with `make ze-pxe`)",
                dest.display()
            )),
        }
    }
    for name in REQUIRED_IPXE.iter().chain(OPTIONAL_IPXE.iter()) {
        let dest = tftp.join(name);
        if dest.is_file() {
            continue;
        }
        let src = ipxe_dir.join(name);
        if src.is_file() {
            plan.push(Step::CopyFile {
                from: src.clone(),
                from_label: src.display().to_string(),
                to: dest,
                mode: 0o644,
            });
        } else if REQUIRED_IPXE.contains(name) {
            missing.push(format!(
                "{} (and {} is missing too: install Debian's ipxe package, or pass --ipxe-dir)",
                dest.display(),
                src.display()
            ));
        }
    }
    if !missing.is_empty() {
        bail!("missing artifacts:\n  {}", missing.join("\n  "));
    }
    Ok(Setup {
        interface: args.interface.clone(),
        network,
        server,
        add_address,
        proxy: args.proxy_dhcp,
        pool,
        relays,
        pxe_dir,
        image_name,
        image,
        machines,
        unknown,
        plan,
    })
}

/// The brace config for `ze -` (checklist R13). `password_hash` is the
/// bcrypt hash; the plaintext never appears.
pub fn generate_config(s: &Setup, username: &str, password_hash: &str) -> String {
    let server = s.server.to_string();
    let path = |p: PathBuf| p.display().to_string();
    let image_dir = s
        .image
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".into());
    let mut pxe = vec![Node::leaf("next-server", &[&server])];
    for (arch, file) in BOOTFILES {
        pxe.push(Node::leaf("bootfile", &[&arch.to_string(), file]));
    }
    pxe.push(Node::leaf("boot-script-url", &[&s.boot_script_url()]));
    let pool = |p: (Ipv4Addr, Ipv4Addr)| Node::leaf("pool", &[&p.0.to_string(), &p.1.to_string()]);
    let mut dhcp = vec![Node::leaf("interface", &[&s.interface])];
    if s.proxy {
        dhcp.push(Node::leaf("mode", &["proxy"]));
    }
    dhcp.push(Node::leaf("address", &[&server]));
    dhcp.push(Node::leaf("state-dir", &[&path(s.state_dir())]));
    let fleet = || {
        let mut v = vec![Node::leaf("machines", &[&path(s.machines.clone())])];
        if s.unknown == Unknown::Ignore {
            v.push(Node::leaf("unknown", &["ignore"]));
        }
        v
    };
    dhcp.extend(fleet());
    dhcp.push(Node::block(
        "shared-network",
        &[if s.proxy { "site" } else { "provisioning" }],
        vec![Node::block(
            "subnet",
            &[&s.network.trunc().to_string()],
            s.pool.map(pool).into_iter().collect(),
        )],
    ));
    for r in &s.relays {
        let mut children: Vec<Node> = r.pool.map(pool).into_iter().collect();
        if let Some(router) = r.router {
            children.push(Node::leaf("router", &[&router.to_string()]));
        }
        dhcp.push(Node::block("subnet", &[&r.net.to_string()], children));
    }
    dhcp.push(Node::block("pxe", &[], pxe));
    let doc = Document {
        nodes: vec![
            Node::block("daemon", &[], vec![Node::leaf("log", &["info"])]),
            Node::block("dhcpserver", &[], dhcp),
            Node::block(
                "tftpserver",
                &[],
                vec![
                    Node::leaf("interface", &[&s.interface]),
                    Node::leaf("address", &[&server]),
                    Node::leaf("root", &[&path(s.tftp_dir())]),
                    Node::leaf("state-dir", &[&path(s.state_dir())]),
                ],
            ),
            Node::block(
                "imageserver",
                &[],
                vec![
                    Node::leaf("interface", &[&s.interface]),
                    Node::leaf("address", &[&server]),
                    Node::leaf("image-dir", &[&image_dir]),
                    Node::leaf("image", &[&s.image_name]),
                    Node::leaf("boot-dir", &[&path(s.boot_dir())]),
                    Node::leaf("state-dir", &[&path(s.state_dir())]),
                    Node::leaf("ssh-username", &[username]),
                    Node::leaf("ssh-password-hash", &[password_hash]),
                ]
                .into_iter()
                .chain(fleet())
                .collect(),
            ),
            Node::block(
                "statustable",
                &[],
                vec![Node::leaf("state-dir", &[&path(s.state_dir())])],
            ),
        ],
    };
    format!(
        "# generated by ze install remote: {} on {} ({}){}\n{}",
        s.network.trunc(),
        s.interface,
        s.server,
        if s.proxy { ", proxyDHCP" } else { "" },
        write(&doc)
    )
}

/// Removes an address this command added, whatever way the command ends.
struct AddedAddress {
    interface: String,
    index: u32,
    addr: IfAddr,
}

impl Drop for AddedAddress {
    fn drop(&mut self) {
        match netlink::del_ipv4(self.index, self.addr) {
            Ok(()) => println!(
                "removed address {}/{} from {}",
                self.addr.addr, self.addr.prefix, self.interface
            ),
            Err(e) => eprintln!(
                "ze: warning: cannot remove address {}/{} from {}: {e}; remove it with `ip addr del {}/{} dev {}`",
                self.addr.addr,
                self.addr.prefix,
                self.interface,
                self.addr.addr,
                self.addr.prefix,
                self.interface
            ),
        }
    }
}

/// Run `ze install remote`.
pub fn run(args: &InstallRemote) -> anyhow::Result<()> {
    let index = netlink::ifindex(&args.interface)
        .with_context(|| format!("--interface {}", args.interface))?;
    let existing = netlink::ipv4_addrs(index)
        .with_context(|| format!("cannot read the addresses of {}", args.interface))?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let setup = prepare(args, &cwd, &existing)?;
    // Asked (or read) once every other flag is known good.
    let password = crate::cmd::ssh_password(
        args.ssh_password.as_deref(),
        args.ssh_password_file.as_deref(),
        args.ssh_password_stdin,
    )?;
    let hash = credentials::hash_password(&password)?;
    let config = generate_config(&setup, &args.ssh_username, &hash);
    let mut out = std::io::stdout().lock();
    if matches!(netlink::is_up(&args.interface), Ok(false)) {
        eprintln!(
            "ze: warning: {} is down: targets will not reach the servers until it is up (`ip link set {} up`)",
            args.interface, args.interface
        );
    }

    if args.dry_run {
        setup.plan.print_dry_run(&mut out)?;
        if let Some(a) = setup.add_address {
            writeln!(
                out,
                "would add address {}/{} to {} (removed on exit)",
                a.addr, a.prefix, args.interface
            )?;
        }
        writeln!(
            out,
            "would run `ze -` with this config on standard input ({}):\n",
            setup.dhcp_summary()
        )?;
        out.write_all(config.as_bytes())?;
        writeln!(out, "\ndry run: nothing was changed")?;
        return Ok(());
    }

    // Signals are caught before anything changes, so an early Ctrl-C still
    // lets the address come off again.
    let child_pid: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    let stop_requested = Arc::new(Mutex::new(false));
    let signals = forward_signals(child_pid.clone(), stop_requested.clone())?;

    setup.plan.apply(&Sysroot::host(), &mut out)?;
    let _added = match setup.add_address {
        Some(a) => {
            netlink::add_ipv4(index, a).with_context(|| {
                format!(
                    "cannot add address {}/{} to {}",
                    a.addr, a.prefix, args.interface
                )
            })?;
            writeln!(
                out,
                "added address {}/{} to {} (removed on exit)",
                a.addr, a.prefix, args.interface
            )?;
            Some(AddedAddress {
                interface: args.interface.clone(),
                index,
                addr: a,
            })
        }
        None => None,
    };
    writeln!(
        out,
        "serving on {} ({}): {}, TFTP {}, HTTP http://{}/install/",
        args.interface,
        setup.server,
        setup.dhcp_summary(),
        setup.tftp_dir().display(),
        setup.server
    )?;
    let records = crate::provision::machines::load(&setup.machines);
    writeln!(
        out,
        "machine records: {} ({} read, {} ignored; a machine without one {}); status: http://{}/ (JSON /install/status, metrics /metrics)",
        setup.machines.display(),
        records.records.len(),
        records.errors.len(),
        match setup.unknown {
            Unknown::Follow => "gets this command line's install",
            Unknown::Ignore => "gets no answer",
        },
        setup.server
    )?;
    out.flush()?;
    drop(out);

    let status = {
        let mut guard = child_pid.lock().unwrap_or_else(|e| e.into_inner());
        if *stop_requested.lock().unwrap_or_else(|e| e.into_inner()) {
            bail!("interrupted before the servers started");
        }
        let exe = std::env::current_exe().context("cannot find the running ze binary")?;
        let mut child = Command::new(exe)
            .arg("-")
            .stdin(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches only us,
            // and we forward it once.
            .process_group(0)
            .spawn()
            .context("cannot start `ze -`")?;
        *guard = Some(child.id());
        drop(guard);
        let mut stdin = child.stdin.take().context("no pipe to the child")?;
        let fed = stdin
            .write_all(config.as_bytes())
            .and_then(|_| stdin.write_all(&[crate::cmd::daemon::END_OF_CONFIG]))
            .and_then(|_| stdin.flush());
        if let Err(e) = fed {
            eprintln!("ze: cannot pass the config to `ze -`: {e}");
        }
        // Keep the pipe open while the child runs: closing it means stop.
        let status = child.wait().context("waiting for `ze -`")?;
        drop(stdin);
        *child_pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
        status
    };
    signals.close();
    if !status.success() {
        bail!("the provisioning servers stopped with {status}");
    }
    Ok(())
}

/// Forward SIGINT, SIGTERM and SIGHUP to the child once it runs; before
/// that, remember that a stop (not a SIGHUP) was asked for.
fn forward_signals(
    child: Arc<Mutex<Option<u32>>>,
    stop: Arc<Mutex<bool>>,
) -> anyhow::Result<signal_hook::iterator::Handle> {
    use rustix::process::{Pid, Signal, kill_process};
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install signal handlers")?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("forward-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let signal = match sig {
                    SIGINT => Signal::INT,
                    SIGTERM => Signal::TERM,
                    _ => Signal::HUP,
                };
                let pid = *child.lock().unwrap_or_else(|e| e.into_inner());
                match pid.and_then(|p| Pid::from_raw(p as i32)) {
                    Some(pid) => {
                        let _ = kill_process(pid, signal);
                    }
                    // SIGHUP rereads the records: nothing to stop.
                    None if signal == Signal::HUP => {}
                    None => *stop.lock().unwrap_or_else(|e| e.into_inner()) = true,
                }
            }
        })
        .context("cannot start the signal thread")?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::brace, daemon::Daemon, plugins::PLUGINS};
    use std::fs;

    fn args(dir: &Path) -> InstallRemote {
        InstallRemote {
            interface: "br0".into(),
            network: "192.0.2.0/24".into(),
            proxy_dhcp: false,
            relay_network: vec![],
            image: dir.join("img/ze-20260617-160000.img"),
            ssh_username: "admin".into(),
            ssh_password: None,
            ssh_password_file: None,
            ssh_password_stdin: false,
            address: None,
            kernel: None,
            initrd: None,
            pxe_dir: PathBuf::from("pxe"),
            machines: None,
            unknown: "follow".into(),
            ipxe_dir: dir.join("ipxe"),
            dry_run: false,
        }
    }

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("img")).unwrap();
        fs::write(d.path().join("img/ze-20260617-160000.img"), "image").unwrap();
        fs::create_dir_all(d.path().join("ipxe")).unwrap();
        for n in ["ipxe.efi", "ipxe.pxe", "undionly.kpxe"] {
            fs::write(d.path().join("ipxe").join(n), n).unwrap();
        }
        fs::write(d.path().join("vmlinuz-src"), "kernel").unwrap();
        fs::write(d.path().join("initrd-src"), "initrd").unwrap();
        d
    }

    fn addr(s: &str, p: u8) -> IfAddr {
        IfAddr {
            addr: s.parse().unwrap(),
            prefix: p,
        }
    }

    #[test]
    fn r2_server_address_rules() {
        let net: Ipv4Net = "192.168.1.0/24".parse().unwrap();
        assert_eq!(
            server_address(None, &net, "eth0", &[]).unwrap(),
            (
                "192.168.1.1".parse().unwrap(),
                Some(addr("192.168.1.1", 24))
            )
        );
        assert_eq!(
            server_address(
                None,
                &net,
                "eth0",
                &[addr("192.168.1.7", 24), addr("192.168.1.9", 24)]
            )
            .unwrap(),
            ("192.168.1.7".parse().unwrap(), None)
        );
        let e = server_address(None, &net, "eth0", &[addr("10.0.0.5", 8)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth0 has 10.0.0.5/8, which is not in --network 192.168.1.0/24: pass --address, or name the interface's network"
        );
        assert_eq!(
            server_address(
                Some("192.168.1.9".parse().unwrap()),
                &net,
                "eth0",
                &[addr("192.168.1.7", 24)]
            )
            .unwrap(),
            (
                "192.168.1.9".parse().unwrap(),
                Some(addr("192.168.1.9", 24))
            )
        );
        assert!(server_address(Some("10.0.0.1".parse().unwrap()), &net, "eth0", &[]).is_err());
        let host: Ipv4Net = "192.168.1.5/24".parse().unwrap();
        assert_eq!(
            server_address(None, &host, "eth0", &[]).unwrap().0,
            "192.168.1.5".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn r11_missing_artifacts_are_named_by_absolute_path() {
        let d = tree();
        fs::remove_file(d.path().join("ipxe/ipxe.pxe")).unwrap();
        let err = prepare(&args(d.path()), d.path(), &[])
            .unwrap_err()
            .to_string();
        let pxe = d.path().join("pxe");
        assert_eq!(
            err,
            format!(
                "missing artifacts:\n  {}/boot/vmlinuz (pass --kernel, or stage it with `make ze-pxe`)\n  {}/boot/initrd.img.gz (pass --initrd, or stage it with `make ze-pxe`)\n  {}/tftp/ipxe.pxe (and {}/ipxe/ipxe.pxe is missing too: install Debian's ipxe package, or pass --ipxe-dir)",
                pxe.display(),
                pxe.display(),
                pxe.display(),
                d.path().display()
            )
        );
    }

    #[test]
    fn r10_plan_copies_kernel_initrd_and_stages_ipxe() {
        let d = tree();
        let mut a = args(d.path());
        a.kernel = Some(d.path().join("vmlinuz-src"));
        a.initrd = Some(PathBuf::from("initrd-src"));
        let s = prepare(&a, d.path(), &[]).unwrap();
        let pxe = d.path().join("pxe");
        let lines: Vec<String> = s.plan.steps().iter().map(|st| st.describe()).collect();
        assert_eq!(
            lines,
            [
                format!("create directory {}/boot", pxe.display()),
                format!("create directory {}/tftp", pxe.display()),
                format!("create directory {}/state", pxe.display()),
                format!("create directory {}/machines", pxe.display()),
                format!(
                    "copy {}/vmlinuz-src to {}/boot/vmlinuz (mode 0644)",
                    d.path().display(),
                    pxe.display()
                ),
                format!(
                    "copy {}/initrd-src to {}/boot/initrd.img.gz (mode 0644)",
                    d.path().display(),
                    pxe.display()
                ),
                format!(
                    "copy {}/ipxe/ipxe.efi to {}/tftp/ipxe.efi (mode 0644)",
                    d.path().display(),
                    pxe.display()
                ),
                format!(
                    "copy {}/ipxe/ipxe.pxe to {}/tftp/ipxe.pxe (mode 0644)",
                    d.path().display(),
                    pxe.display()
                ),
                format!(
                    "copy {}/ipxe/undionly.kpxe to {}/tftp/undionly.kpxe (mode 0644)",
                    d.path().display(),
                    pxe.display()
                ),
            ]
        );
        s.plan.apply(&Sysroot::host(), &mut Vec::new()).unwrap();
        assert_eq!(fs::read(pxe.join("boot/vmlinuz")).unwrap(), b"kernel");
        assert_eq!(fs::read(pxe.join("tftp/ipxe.efi")).unwrap(), b"ipxe.efi");
        // Staged once: the next run copies nothing but what it is given.
        let again = prepare(&args(d.path()), d.path(), &[]).unwrap();
        assert!(again.plan.is_empty(), "{:?}", again.plan);
    }

    #[test]
    fn r3_bad_flags() {
        let d = tree();
        let mut a = args(d.path());
        a.network = "192.0.2.0/31".into();
        assert_eq!(
            prepare(&a, d.path(), &[]).unwrap_err().to_string(),
            "--network 192.0.2.0/31: prefix /31 is not supported: use /8 to /30"
        );
        a.network = "192.0.2.0".into();
        assert!(
            prepare(&a, d.path(), &[])
                .unwrap_err()
                .to_string()
                .starts_with("--network: ")
        );
        let mut a = args(d.path());
        a.ssh_username = "Root".into();
        assert!(
            prepare(&a, d.path(), &[])
                .unwrap_err()
                .to_string()
                .starts_with("--ssh-username")
        );
        let mut a = args(d.path());
        a.image = d.path().join("nope.img");
        assert!(
            prepare(&a, d.path(), &[])
                .unwrap_err()
                .to_string()
                .contains("nope.img: cannot read it")
        );
        let mut a = args(d.path());
        a.unknown = "maybe".into();
        assert_eq!(
            prepare(&a, d.path(), &[]).unwrap_err().to_string(),
            "--unknown \"maybe\": expected follow or ignore"
        );
        let mut a = args(d.path());
        std::fs::write(d.path().join("records"), "").unwrap();
        a.machines = Some(PathBuf::from("records"));
        assert_eq!(
            prepare(&a, d.path(), &[]).unwrap_err().to_string(),
            format!("--machines {}/records: not a directory", d.path().display())
        );
        // unknown ignore reaches both servers that answer machines.
        let mut a = args(d.path());
        a.unknown = "ignore".into();
        a.kernel = Some(d.path().join("vmlinuz-src"));
        a.initrd = Some(d.path().join("initrd-src"));
        let s = prepare(&a, d.path(), &[]).unwrap();
        let text = generate_config(
            &s,
            "admin",
            &credentials::hash_password("pw-pw-pw").unwrap(),
        );
        assert_eq!(text.matches("    unknown ignore;\n").count(), 2, "{text}");
    }

    #[test]
    fn r12_r13_generated_config_runs_through_the_daemon_parser() {
        let d = tree();
        let mut a = args(d.path());
        a.kernel = Some(d.path().join("vmlinuz-src"));
        a.initrd = Some(d.path().join("initrd-src"));
        let s = prepare(&a, d.path(), &[]).unwrap();
        let hash = credentials::hash_password("s3cret-pass").unwrap();
        let text = generate_config(&s, "admin", &hash);
        assert!(
            !text.contains("s3cret-pass"),
            "plaintext never in the config"
        );
        assert!(text.contains(&format!("ssh-password-hash {hash};")));
        let doc = brace::parse(&text).unwrap();
        let dhcp = doc.get("dhcpserver").unwrap();
        let subnet = dhcp
            .child("shared-network")
            .unwrap()
            .child("subnet")
            .unwrap();
        assert_eq!(subnet.args, ["192.0.2.0/24"]);
        assert_eq!(
            subnet.child("pool").unwrap().args,
            ["192.0.2.2", "192.0.2.254"]
        );
        let pxe = dhcp.child("pxe").unwrap();
        assert_eq!(
            pxe.value("boot-script-url"),
            Some("http://192.0.2.1/install/boot/boot.ipxe")
        );
        assert_eq!(pxe.all("bootfile").count(), 4);
        // The imageserver keeps derived block maps beside the leases.
        let state = d.path().join("pxe/state").display().to_string();
        assert_eq!(dhcp.value("state-dir"), Some(state.as_str()));
        assert_eq!(
            doc.get("imageserver").unwrap().value("state-dir"),
            Some(state.as_str())
        );
        // Every server reads the records and feeds the one status table
        // (checklist F1, F5).
        let machines = d.path().join("pxe/machines").display().to_string();
        for server in ["dhcpserver", "imageserver"] {
            let b = doc.get(server).unwrap();
            assert_eq!(b.value("machines"), Some(machines.as_str()), "{server}");
            assert_eq!(b.value("unknown"), None, "{server}: follow is the default");
        }
        for server in ["tftpserver", "statustable"] {
            assert_eq!(
                doc.get(server).unwrap().value("state-dir"),
                Some(state.as_str()),
                "{server}"
            );
        }
        let daemon = Daemon::from_text(&text, PLUGINS).unwrap();
        assert_eq!(
            daemon.plugin_names(),
            ["dhcpserver", "tftpserver", "imageserver", "statustable"]
        );
    }

    #[test]
    fn n1_n2_r13_generated_proxy_and_relay_configs_run_through_the_daemon_parser() {
        let d = tree();
        let mut a = args(d.path());
        a.kernel = Some(d.path().join("vmlinuz-src"));
        a.initrd = Some(d.path().join("initrd-src"));
        a.relay_network = vec!["198.51.100.0/24".into()];
        let full = prepare(&a, d.path(), &[]).unwrap();
        assert_eq!(
            full.dhcp_summary(),
            "DHCP pool 192.0.2.2-192.0.2.254, relayed 198.51.100.0/24 pool 198.51.100.2-198.51.100.254"
        );
        let hash = credentials::hash_password("s3cret-pass").unwrap();
        let text = generate_config(&full, "admin", &hash);
        assert!(
            text.contains("    subnet 198.51.100.0/24 {\n        pool 198.51.100.2 198.51.100.254;\n        router 198.51.100.1;\n    }\n"),
            "{text}"
        );
        Daemon::from_text(&text, PLUGINS).unwrap();

        a.proxy_dhcp = true;
        let existing = [addr("192.0.2.40", 24)];
        let proxy = prepare(&a, d.path(), &existing).unwrap();
        assert_eq!(
            (proxy.server, proxy.add_address, proxy.pool),
            ("192.0.2.40".parse().unwrap(), None, None)
        );
        assert_eq!(
            proxy.dhcp_summary(),
            "proxyDHCP for PXE clients on 192.0.2.0/24 (addresses from the network's own DHCP server), relayed 198.51.100.0/24"
        );
        let text = generate_config(&proxy, "admin", &hash);
        assert!(
            text.starts_with(
                "# generated by ze install remote: 192.0.2.0/24 on br0 (192.0.2.40), proxyDHCP\n"
            ),
            "{text}"
        );
        assert!(text.contains("    mode proxy;\n"), "{text}");
        assert!(
            text.contains("        subnet 192.0.2.0/24 {\n        }\n"),
            "{text}"
        );
        assert!(
            text.contains("    subnet 198.51.100.0/24 {\n    }\n"),
            "{text}"
        );
        assert!(!text.contains("pool "), "{text}");
        let daemon = Daemon::from_text(&text, PLUGINS).unwrap();
        assert_eq!(
            daemon.plugin_names(),
            ["dhcpserver", "tftpserver", "imageserver", "statustable"]
        );
        // Without an address on the site's network, nothing starts.
        assert!(
            prepare(&a, d.path(), &[])
                .unwrap_err()
                .to_string()
                .starts_with("--proxy-dhcp: br0 has no IPv4 address")
        );
    }
}
