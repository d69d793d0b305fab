//! Real PXE firmware against our servers (checklist T6, R1–R13, R15, R17):
//! a QEMU guest (TCG) on a tap device in a bridge inside a network
//! namespace network-boots from `ze install remote`.
//!
//! - UEFI: OVMF with its own network stack (`romfile=` turns the NIC's
//!   iPXE ROM off, so EDK2's PXE base code runs): DHCP → `ipxe.efi` over
//!   TFTP → iPXE DHCP with option 77 → `boot.ipxe` over HTTP → kernel and
//!   initrd over HTTP → the kernel runs our `/init`.
//! - BIOS: SeaBIOS with QEMU's iPXE ROM (option 93 = 0, option 77 `iPXE`):
//!   the boot script URL directly → kernel and initrd → `/init`.
//! - BIOS, no script URL configured: the ROM gets `ipxe.pxe` over TFTP and
//!   runs it, which asks DHCP again — the BIOS bootfile path.
//!
//! The kernel is `build/kernel/Image` (`make kernel`) or `ZE_TEST_KERNEL`.

mod pxe_support;

use pxe_support::{
    qemu::{BOOT_TIMEOUT, Firmware, Machine, assert_in_order, bridge_ns, prerequisites},
    remote::{Artifacts, install_remote, stop_install_remote},
    *,
};
use std::{
    fs,
    time::{Duration, Instant},
};

const MAC: &str = "52:54:00:12:34:56";

struct Fixture {
    artifacts: Artifacts,
    kernel_len: u64,
    initrd_len: u64,
}

fn fixture() -> Fixture {
    let artifacts = Artifacts::tiny(Some(&test_kernel()));
    let kernel_len = fs::metadata(&artifacts.kernel).unwrap().len();
    let initrd_len = fs::metadata(&artifacts.initrd).unwrap().len();
    Fixture {
        artifacts,
        kernel_len,
        initrd_len,
    }
}

fn install(ns: &Netns, fx: &Fixture) -> Logged {
    install_remote(ns, "br0", "192.0.2.0/24", &fx.artifacts, &[])
}

/// Stop `ze install remote` with SIGTERM; the address it added comes off.
fn stop(ns: &Netns, servers: Logged) -> String {
    let log = stop_install_remote(servers);
    assert!(
        log.contains("removed address 192.0.2.1/24 from br0"),
        "{log}"
    );
    let addrs =
        String::from_utf8_lossy(&ns.run("ip", &["-4", "addr", "show", "br0"]).stdout).into_owned();
    assert!(!addrs.contains("192.0.2.1"), "address left behind: {addrs}");
    log
}

#[test]
fn t6_ovmf_network_boot_through_tftp_ipxe_and_http() {
    if !prerequisites("t6_ovmf_network_boot", Firmware::Uefi) {
        return;
    }
    let fx = fixture();
    let ns = bridge_ns("ovmf");
    let servers = install(&ns, &fx);
    let mut vm = Machine::new(Firmware::Uefi, MAC).spawn(&ns, fx.artifacts.dir.path(), "ovmf");
    vm.wait_for(INIT_MARKER, 0, &servers);
    let console = vm.console();
    drop(vm);
    let log = stop(&ns, servers);
    eprintln!("--- server log (OVMF boot) ---\n{log}--- end ---");
    eprintln!("--- guest console (excerpt) ---");
    for line in console.lines().filter(|l| {
        [
            "Station IP",
            "NBP file",
            "iPXE 1",
            "Linux version",
            "Command line",
            "Run /init",
            INIT_MARKER,
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        eprintln!("{}", line.trim_end());
    }
    eprintln!("--- end ---");

    let url = "bootfile=http://192.0.2.1/install/boot/boot.ipxe";
    assert_in_order(
        &log,
        &[
            "added address 192.0.2.1/24 to br0 (removed on exit)",
            "imageserver: image to install image=ze-20260617-160000.img built=20260617-160000 ze-version=0.1.0 sha256=",
            "ze: started plugins=dhcpserver,tftpserver,imageserver",
            // EDK2: option 93 = 7 → ipxe.efi over TFTP.
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={MAC} ip=192.0.2.2 bootfile=ipxe.efi"
            ),
            &format!(
                "dhcpserver: lease request=REQUEST reply=ACK mac={MAC} ip=192.0.2.2 bootfile=ipxe.efi"
            ),
            "tftpserver: read request file=ipxe.efi client=192.0.2.2:",
            // iPXE: option 77 → the script URL, same address.
            &format!("dhcpserver: lease request=DISCOVER reply=OFFER mac={MAC} ip=192.0.2.2 {url}"),
            &format!("dhcpserver: lease request=REQUEST reply=ACK mac={MAC} ip=192.0.2.2 {url}"),
            "imageserver: request method=GET path=/install/boot/boot.ipxe client=192.0.2.2:",
            "imageserver: request method=GET path=/install/boot/vmlinuz client=192.0.2.2:",
            "imageserver: request method=GET path=/install/boot/initrd.img.gz client=192.0.2.2:",
            // The kernel's own ip=dhcp: a plain client, same lease.
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={MAC} ip=192.0.2.2 bootfile=-"
            ),
        ],
    );
    assert!(
        log.contains(&format!("status=200 bytes={}", fx.kernel_len)),
        "whole kernel sent:\n{log}"
    );
    assert!(
        log.contains(&format!("status=200 bytes={}", fx.initrd_len)),
        "whole initrd sent:\n{log}"
    );
    // The guest: EDK2 loaded the NBP, iPXE ran, the kernel started with our
    // command line and ran our /init from the initrd.
    assert_in_order(
        &console,
        &[
            "NBP file downloaded successfully",
            "iPXE",
            "Linux version",
            "ze.server=192.0.2.1",
            INIT_MARKER,
        ],
    );
    assert!(
        console.contains("ze.image=ze-20260617-160000.img"),
        "{console}"
    );
    assert!(console.contains("ze.sha256="), "{console}");
    assert!(console.contains("console=tty0 console=ttyS0"), "{console}");
    assert!(
        !console.contains("console=ttyAMA0"),
        "x86 gets no PL011 console: {console}"
    );
}

#[test]
fn t6_seabios_ipxe_rom_boots_the_script_url() {
    if !prerequisites("t6_seabios_ipxe_rom", Firmware::Bios) {
        return;
    }
    let fx = fixture();
    let ns = bridge_ns("bios");
    let servers = install(&ns, &fx);
    let mut vm = Machine::new(Firmware::Bios, MAC).spawn(&ns, fx.artifacts.dir.path(), "bios");
    vm.wait_for(INIT_MARKER, 0, &servers);
    drop(vm);
    let log = stop(&ns, servers);
    eprintln!("--- server log (SeaBIOS + iPXE ROM) ---\n{log}--- end ---");
    assert_in_order(
        &log,
        &[
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={MAC} ip=192.0.2.2 bootfile=http://192.0.2.1/install/boot/boot.ipxe"
            ),
            "imageserver: request method=GET path=/install/boot/boot.ipxe",
            "imageserver: request method=GET path=/install/boot/vmlinuz",
            "imageserver: request method=GET path=/install/boot/initrd.img.gz",
        ],
    );
    assert!(
        !log.contains("tftpserver: read request"),
        "the iPXE ROM needs no TFTP:\n{log}"
    );
}

#[test]
fn t6_seabios_loads_ipxe_pxe_over_tftp_without_a_script_url() {
    if !prerequisites("t6_seabios_ipxe_pxe", Firmware::Bios) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tftp = dir.path().join("tftp");
    fs::create_dir_all(&tftp).unwrap();
    fs::copy("/usr/lib/ipxe/ipxe.pxe", tftp.join("ipxe.pxe")).unwrap();
    let ns = bridge_ns("biospxe");
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "br0"]);
    // No boot-script-url: every PXE client with option 93 = 0 gets ipxe.pxe.
    let config = format!(
        "dhcpserver {{ interface br0; address 192.0.2.1;
            shared-network t {{ subnet 192.0.2.0/24 {{ pool 192.0.2.2 192.0.2.9; }} }}
            pxe {{ bootfile 0 ipxe.pxe; }} }}
         tftpserver {{ interface br0; address 192.0.2.1; root {}; }}",
        tftp.display()
    );
    let mut servers = start_daemon(&ns, &config);
    let mut vm = Machine::new(Firmware::Bios, MAC).spawn(&ns, dir.path(), "biospxe");
    // The ROM fetches ipxe.pxe and runs it; the chainloaded iPXE asks DHCP
    // again and fetches ipxe.pxe a second time.
    let start = Instant::now();
    while start.elapsed() < BOOT_TIMEOUT
        && servers
            .text()
            .matches("tftpserver: read request file=ipxe.pxe")
            .count()
            < 2
    {
        if vm.wait_exit(Duration::from_millis(250)) {
            break;
        }
    }
    drop(vm);
    servers.signal(rustix::process::Signal::TERM);
    servers.wait_exit(Duration::from_secs(30));
    let log = servers.text();
    eprintln!("--- server log (SeaBIOS, ipxe.pxe over TFTP) ---\n{log}--- end ---");
    let size = fs::metadata(tftp.join("ipxe.pxe")).unwrap().len();
    assert_in_order(
        &log,
        &[
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={MAC} ip=192.0.2.2 bootfile=ipxe.pxe"
            ),
            &format!(
                "dhcpserver: lease request=REQUEST reply=ACK mac={MAC} ip=192.0.2.2 bootfile=ipxe.pxe"
            ),
            "tftpserver: read request file=ipxe.pxe client=192.0.2.2:",
            "tftpserver: debug: sent file=ipxe.pxe client=192.0.2.2:",
            &format!("bytes={size}"),
            // ipxe.pxe runs and asks again.
            &format!(
                "dhcpserver: lease request=DISCOVER reply=OFFER mac={MAC} ip=192.0.2.2 bootfile=ipxe.pxe"
            ),
            "tftpserver: read request file=ipxe.pxe client=192.0.2.2:",
        ],
    );
}
