//! Real machines on a network that already has DHCP, and behind a relay
//! (checklist N1, N2, R4–R6, R15): QEMU guests (TCG) network-boot, install
//! a real appliance image, and — on the site's network — boot it and take
//! an SSH login.
//!
//! - proxyDHCP, UEFI: dnsmasq (docs/install-remote.md's site config) hands
//!   out the addresses; `ze install remote --proxy-dhcp` on the same
//!   bridge gives EDK2 (OVMF, `romfile=`) its proxy offer with `ipxe.efi`,
//!   then iPXE the boot script URL; the installer installs, the appliance
//!   takes its lease from dnsmasq, and SSH logs in.
//! - proxyDHCP, BIOS: the same with SeaBIOS and QEMU's iPXE ROM; the
//!   written disk (a UEFI appliance image) then boots under OVMF for the
//!   login.
//! - relay: a machine behind dhcrelay on 198.51.100.0/24 boots from ze's
//!   relayed pool (`--relay-network`) and installs.
//!
//! Needs the installer kernel (`make kernel`, or ZE_TEST_KERNEL) and
//! initrd (`make initrd`); the image is built by `ze appliance build`.

mod common;
mod pxe_support;

use pxe_support::{
    qemu::{Firmware, Guest, Machine, add_bridge_with_tap, assert_in_order, prerequisites},
    remote::{
        Artifacts, SSH_PASSWORD, SSH_USER, install_remote, installer_initrd, stop_install_remote,
    },
    site::{Relay, RelayedSite, SiteServer, ZE, plug},
    *,
};
use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

/// The appliance image's size: small, as `ze-qemu demo` builds it.
const IMAGE_MIB: u32 = 384;

/// One machine at a time: each boot is minutes of TCG on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn all_prerequisites(test: &str, firmware: Firmware, tools: &[(&str, &str)]) -> bool {
    if !prerequisites(test, firmware) {
        return false;
    }
    let initrd = installer_initrd();
    let mut tools = tools.to_vec();
    tools.extend([
        ("mke2fs", "e2fsprogs"),
        ("grub-mkstandalone", "grub-common grub-efi-amd64-bin"),
    ]);
    require_tools(
        test,
        &tools,
        &[
            (
                &format!("installer initrd {} (`make initrd`)", initrd.display()),
                initrd.is_file(),
            ),
            (
                "OVMF (ovmf)",
                Path::new(pxe_support::qemu::OVMF_CODE).is_file(),
            ),
        ],
    )
}

/// The appliance image, built once for every test in this file.
fn artifacts() -> &'static Artifacts {
    static BUILT: OnceLock<Artifacts> = OnceLock::new();
    BUILT.get_or_init(|| Artifacts::appliance(&test_kernel(), &installer_initrd(), IMAGE_MIB))
}

/// A blank target disk with room for the image.
fn blank_disk(dir: &Path, image: &Path) -> PathBuf {
    let disk = dir.join("target-disk.img");
    let len = fs::metadata(image).unwrap().len() + (128 << 20);
    fs::File::create(&disk).unwrap().set_len(len).unwrap();
    disk
}

const CONSOLE_MARKS: &[&str] = &[
    "Station IP",
    "NBP file",
    "iPXE initialising",
    "http://",
    "Linux version",
    "[ze-install]",
    "dhcpclient: lease",
    "sshserver: listening",
    "ze: starting mode=",
];

/// Install: the machine network-boots, writes the disk and reboots (which
/// ends QEMU under `-no-reboot`). Returns its console excerpt.
fn install(machine: &Machine, ns: &Netns, dir: &Path, name: &str, servers: &Logged) -> String {
    let mut vm = machine.spawn(ns, dir, name);
    vm.wait_for("[ze-install] install complete", 0, servers);
    assert!(
        vm.wait_exit(Duration::from_secs(120)),
        "the machine did not reboot after the install:\n{}",
        vm.console()
    );
    vm.excerpt(CONSOLE_MARKS)
}

/// Boot the written disk under OVMF to bootstrap mode and its lease, log
/// in over SSH from `ns` and run `show version`. Returns the lease's
/// address, the console excerpt and what `show version` printed.
fn boot_and_log_in(
    ns: &Netns,
    dir: &Path,
    disk: &Path,
    mac: &str,
    servers: &Logged,
) -> (String, String, String) {
    let mut machine = Machine::new(Firmware::Uefi, mac);
    machine.disk = Some(disk.to_path_buf());
    let mut vm: Guest = machine.spawn(ns, dir, "appliance");
    let at = vm.wait_for("ze: starting mode=bootstrap", 0, servers);
    let lease = "dhcpclient: lease interface=eth0 ip=";
    let at = vm.wait_for(lease, at, servers);
    let ip: String = vm.console()[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    vm.wait_for("sshserver: listening", 0, servers);
    let known = dir.join("known_hosts");
    let started = Instant::now();
    let shown = loop {
        let out = common::ssh_with_password(ns.cmd("sshpass"), SSH_PASSWORD, &known, 22)
            .arg(format!("{SSH_USER}@{ip}"))
            .arg("show version")
            .output()
            .unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no SSH login to {ip}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.console()
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let excerpt = vm.excerpt(CONSOLE_MARKS);
    drop(vm);
    (ip, excerpt, shown)
}

/// The site's LAN: bridge `br0` with `tap0` and ze's address, and the
/// site's dnsmasq plugged in.
fn site_lan(tag: &str, dir: &Path) -> (Netns, Netns, Logged) {
    let lan = Netns::new(tag);
    add_bridge_with_tap(&lan, "br0", "tap0");
    lan.ip(&["addr", "add", &format!("{ZE}/24"), "dev", "br0"]);
    let site = Netns::new(&format!("{tag}s"));
    plug(&lan, "br0", &site, "site0", Some("192.0.2.2/24"));
    let dnsmasq = SiteServer::Dnsmasq.start(&site, "site0", &dir.join("site"));
    (lan, site, dnsmasq)
}

fn proxy_boot(firmware: Firmware, tag: &str, mac: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let a = artifacts();
    let image_name = a.image.file_name().unwrap().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (lan, _site, dnsmasq) = site_lan(tag, dir.path());
    let servers = install_remote(&lan, "br0", "192.0.2.0/24", a, &["--proxy-dhcp"]);
    let disk = blank_disk(dir.path(), &a.image);
    let mut machine = Machine::new(firmware, mac);
    machine.disk = Some(disk.clone());
    let installed = install(&machine, &lan, dir.path(), "install", &servers);
    let (ip, booted, shown) = boot_and_log_in(&lan, dir.path(), &disk, mac, &servers);
    let site_log = dnsmasq.text();
    drop(dnsmasq);
    let log = stop_install_remote(servers);
    eprintln!(
        "--- {firmware:?}: ze's log ---\n{log}--- install console (excerpt) ---\n{installed}--- appliance console (excerpt) ---\n{booted}--- ssh {SSH_USER}@{ip} show version ---\n{shown}--- dnsmasq ---\n{site_log}--- end ---"
    );

    // The lease came from the site's dnsmasq, in its pool.
    let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with("192.0.2.") && (100..=199).contains(&last),
        "{ip}"
    );
    assert!(
        site_log.contains(&format!("DHCPACK(site0) {ip} {mac}")),
        "{site_log}"
    );
    // ze answered only the PXE part: proxy offers, then TFTP and HTTP.
    let url = format!("bootfile=http://{ZE}/install/boot/boot.ipxe");
    let mut expected = vec![format!(
        "dhcpserver: listening interface=br0 address={ZE} mode=proxy"
    )];
    if firmware == Firmware::Uefi {
        expected.push(format!(
            "dhcpserver: lease request=DISCOVER reply=PROXY mac={mac} ip=- bootfile=ipxe.efi"
        ));
        expected.push("tftpserver: read request file=ipxe.efi client=192.0.2.".into());
    }
    expected.extend([
        format!("dhcpserver: lease request=DISCOVER reply=PROXY mac={mac} ip=- {url}"),
        "imageserver: request method=GET path=/install/boot/boot.ipxe client=192.0.2.".into(),
        "imageserver: request method=GET path=/install/boot/vmlinuz".into(),
        "imageserver: request method=GET path=/install/boot/initrd.img.gz".into(),
        format!("imageserver: request method=GET path=/install/image/{image_name}"),
        "imageserver: request method=GET path=/install/database.zefs".into(),
    ]);
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_in_order(&log, &expected);
    for line in log.lines().filter(|l| l.starts_with("dhcpserver: lease")) {
        assert!(
            line.contains("reply=PROXY")
                || line.contains("port=4011")
                || line.contains("reply=none"),
            "ze handed out an address: {line}"
        );
    }
    assert!(!log.contains("added address"), "{log}");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with(&format!("image: {image_name}"))),
        "{shown}"
    );
    assert!(
        installed.contains("[ze-install] install complete"),
        "{installed}"
    );
}

#[test]
fn n1_r5_ovmf_pxe_with_the_lease_from_dnsmasq_installs_and_logs_in() {
    if all_prerequisites(
        "proxy_ovmf",
        Firmware::Uefi,
        &[("dnsmasq", "dnsmasq-base"), ("sshpass", "sshpass")],
    ) {
        proxy_boot(Firmware::Uefi, "cxovmf", "52:54:00:0e:00:01");
    }
}

#[test]
fn n1_r6_seabios_ipxe_rom_with_the_lease_from_dnsmasq_installs_and_logs_in() {
    if all_prerequisites(
        "proxy_bios",
        Firmware::Bios,
        &[("dnsmasq", "dnsmasq-base"), ("sshpass", "sshpass")],
    ) {
        proxy_boot(Firmware::Bios, "cxbios", "52:54:00:0e:00:02");
    }
}

#[test]
fn n2_r5_ovmf_behind_dhcrelay_boots_from_the_relayed_pool_and_installs() {
    if !all_prerequisites(
        "relay_ovmf",
        Firmware::Uefi,
        &[("dhcrelay", "isc-dhcp-relay")],
    ) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let a = artifacts();
    let image_name = a.image.file_name().unwrap().to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let net = RelayedSite::new("cxrel");
    let servers = install_remote(
        &net.ze,
        "zs0",
        "192.0.2.0/24",
        a,
        &["--relay-network", "198.51.100.0/24,router=198.51.100.1"],
    );
    let relay = Relay::Dhcrelay.start(&net.relay, "zr0", "br1", &[ZE]);
    let mac = "52:54:00:0e:00:03";
    let mut machine = Machine::new(Firmware::Uefi, mac);
    machine.disk = Some(blank_disk(dir.path(), &a.image));
    let installed = install(&machine, &net.relay, dir.path(), "install", &servers);
    drop(relay);
    let log = stop_install_remote(servers);
    eprintln!(
        "--- behind dhcrelay: ze's log ---\n{log}--- install console (excerpt) ---\n{installed}--- end ---"
    );
    let relayed = "giaddr=198.51.100.1";
    assert_in_order(
        &log,
        &[
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={mac} ip=198.51.100.2 bootfile=ipxe.efi {relayed}"
            ),
            &format!(
                "dhcpserver: lease request=REQUEST reply=ACK mac={mac} ip=198.51.100.2 bootfile=ipxe.efi {relayed}"
            ),
            "tftpserver: read request file=ipxe.efi client=198.51.100.2:",
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={mac} ip=198.51.100.2 bootfile=http://{ZE}/install/boot/boot.ipxe {relayed}"
            ),
            "imageserver: request method=GET path=/install/boot/vmlinuz client=198.51.100.2:",
            &format!(
                "imageserver: request method=GET path=/install/image/{image_name} client=198.51.100.2:"
            ),
            "imageserver: request method=GET path=/install/database.zefs client=198.51.100.2:",
        ],
    );
    assert!(
        installed.contains("[ze-install] install complete"),
        "{installed}"
    );
}
