//! ISO installs (`ze.source=iso`), PID 1's whole life, against
//! `ze_hal::fake::FakeOs`: the installer media is a fake CD (or a fake
//! disk written with `dd`) holding an ISO 9660 volume built here byte by
//! byte, or by `xorriso` as `ze appliance iso` does. Checklist O1–O5 in
//! the names.

mod common;

use common::in_order;

use sha2::{Digest, Sha256};
use std::io::Write as _;
use ze_hal::{
    PowerAction,
    fake::{FakeOs, FakeSys},
};
use ze_installer::install::HEAD_LEN;

const MIB: usize = 1 << 20;
const ID: &str = "0123456789abcdef0123456789abcdef";
const OTHER_ID: &str = "fedcba9876543210fedcba9876543210";
const IMAGE: &str = "ze-20260101-000000.img";
const DISK: u64 = 8 << 20;

/// 3 MiB like a disk image: a recognisable first sector, random-looking
/// stretches and long zero runs.
fn image() -> Vec<u8> {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut v: Vec<u8> = (0..3 * MIB)
        .map(|i| {
            if (i / 100_000) % 2 == 1 {
                return 0;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    v[..8].copy_from_slice(b"GPTHEAD!");
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A minimal ISO 9660 volume (ECMA-119): primary descriptor at LBA 16,
/// terminator, root directory, `/ZE` directory, then the files. A file may
/// be split into several extents (multi-extent records).
struct Iso {
    files: Vec<(String, Vec<u8>, usize)>,
}

const SECTOR: usize = 2048;

fn both32(v: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn record(name: &[u8], lba: u32, len: u32, flags: u8) -> Vec<u8> {
    let pad = usize::from(name.len().is_multiple_of(2));
    let total = 33 + name.len() + pad;
    let mut r = vec![0u8; total];
    r[0] = total as u8;
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(len));
    r[25] = flags;
    r[28..32].copy_from_slice(&[1, 0, 0, 1]);
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

impl Iso {
    fn new() -> Iso {
        Iso { files: Vec::new() }
    }

    /// `/ze/<name>` with `content`, split into `extents` extents.
    fn file(mut self, name: &str, content: &[u8], extents: usize) -> Iso {
        self.files
            .push((name.to_uppercase(), content.to_vec(), extents.max(1)));
        self
    }

    fn ours(image: &[u8], gz: &[u8]) -> Iso {
        Iso::new()
            .file("media-id", format!("{ID}\n").as_bytes(), 1)
            .file(&format!("{IMAGE}.gz"), gz, 1)
            .file(
                &format!("{IMAGE}.sha256"),
                format!("{}  {IMAGE}\n", sha(image)).as_bytes(),
                1,
            )
    }

    fn build(&self) -> Vec<u8> {
        let (root, ze, mut next) = (18u32, 19u32, 20u32);
        let mut ze_dir = [
            record(&[0], ze, SECTOR as u32, 2),
            record(&[1], root, SECTOR as u32, 2),
        ]
        .concat();
        let mut data: Vec<(u32, &[u8])> = Vec::new();
        for (name, content, extents) in &self.files {
            let per = content.len().div_ceil(*extents).div_ceil(SECTOR) * SECTOR;
            let chunks: Vec<&[u8]> = if content.is_empty() {
                vec![&content[..]]
            } else {
                content.chunks(per.max(SECTOR)).collect()
            };
            for (i, chunk) in chunks.iter().enumerate() {
                let last = i + 1 == chunks.len();
                let flags = if last { 0 } else { 0x80 };
                ze_dir.extend(record(
                    format!("{name};1").as_bytes(),
                    next,
                    chunk.len() as u32,
                    flags,
                ));
                data.push((next, chunk));
                next += chunk.len().div_ceil(SECTOR).max(1) as u32;
            }
        }
        assert!(ze_dir.len() <= SECTOR, "keep the test directory small");
        let blocks = next;
        let mut iso = vec![0u8; blocks as usize * SECTOR];
        let pvd = &mut iso[16 * SECTOR..17 * SECTOR];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[6] = 1;
        pvd[40..72].copy_from_slice(&[b' '; 32]);
        pvd[40..47].copy_from_slice(b"ZE_TEST");
        pvd[80..88].copy_from_slice(&both32(blocks));
        pvd[128..132].copy_from_slice(&[0, 8, 8, 0]);
        pvd[156..190].copy_from_slice(&record(&[0], root, SECTOR as u32, 2));
        let term = &mut iso[17 * SECTOR..18 * SECTOR];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
        let root_dir = [
            record(&[0], root, SECTOR as u32, 2),
            record(&[1], root, SECTOR as u32, 2),
            record(b"ZE", ze, SECTOR as u32, 2),
        ]
        .concat();
        iso[root as usize * SECTOR..][..root_dir.len()].copy_from_slice(&root_dir);
        iso[ze as usize * SECTOR..][..ze_dir.len()].copy_from_slice(&ze_dir);
        for (lba, bytes) in data {
            iso[lba as usize * SECTOR..][..bytes.len()].copy_from_slice(bytes);
        }
        iso
    }
}

struct Machine {
    os: FakeOs,
    image: Vec<u8>,
}

/// A QEMU-like machine booted from the ISO: `console=tty0 console=ttyS0`,
/// the ISO's command line plus `extra`. Add devices afterwards.
fn machine(extra: &str, image: &[u8]) -> Machine {
    let mut sys = FakeSys::new();
    sys.file(
        "/proc/cmdline",
        &format!(
            "BOOT_IMAGE=/boot/vmlinuz ze.source=iso ze.media-id={ID} ze.image={IMAGE} {extra} console=tty0 console=ttyS0\n"
        ),
    );
    sys.file("/sys/class/tty/console/active", "tty0 ttyS0\n");
    Machine {
        os: FakeOs::new(sys),
        image: image.to_vec(),
    }
}

/// The command line `ze appliance iso` writes: digest and size included.
fn checked(image: &[u8]) -> String {
    format!("ze.sha256={} ze.size={}", sha(image), image.len())
}

fn boot(m: &mut Machine) -> PowerAction {
    common::boot(&mut m.os)
}

fn disk(m: &Machine, name: &str) -> Vec<u8> {
    m.os.st().disks[&format!("/dev/{name}")].data.clone()
}

fn events(m: &Machine) -> Vec<String> {
    m.os.st().events.clone()
}

/// Whether the named device was opened for writing or written.
fn touched(m: &Machine, name: &str) -> bool {
    let path = format!("/dev/{name}");
    events(m)
        .iter()
        .any(|e| e == &format!("open {path}") || e.starts_with(&format!("write {path} ")))
}

/// Type "4" (power off) on the recovery menu after `at_ms`.
fn power_off_from_menu(m: &Machine, at_ms: u64) {
    m.os.st().input.push_back((at_ms, b"4\r".to_vec()));
}

#[test]
fn o1_o4_o5_iso_install_writes_the_image_first_mib_last_and_powers_off() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] ze-installer ",
            &format!("[ze-install] installing {IMAGE} from the installer media (ze.media-id={ID})"),
            &format!("[ze-install] installer media: /dev/sr0 (ISO 9660, media id {ID})"),
            &format!(
                "[ze-install] image: /ze/{IMAGE}.gz on /dev/sr0 ({} bytes gzip'd, {} bytes inflated)",
                gz.len(),
                img.len()
            ),
            "[ze-install] target disk /dev/vda (8388608 bytes)",
            "[ze-install] image: 3145728/3145728 bytes (100%)",
            &format!(
                "[ze-install] image written: 3145728 bytes, sha256 {}",
                sha(&m.image)
            ),
            "[ze-install] /perm/ze/database.zefs comes with the image (ISO install: no database download)",
            "[ze-install] install complete; powering off: remove the installer media before the next boot",
        ],
    );
    assert!(!console.contains("FATAL"), "{console}");
    let d = disk(&m, "vda");
    assert!(
        d[..m.image.len()] == m.image[..],
        "the image is on the disk"
    );
    // O4: no network, no database, no /perm mount.
    let st = m.os.st();
    assert!(st.requests.is_empty(), "no HTTP request in ISO mode");
    assert!(
        st.files.is_empty(),
        "no file written: {:?}",
        st.files.keys()
    );
    assert!(
        !st.events.iter().any(|e| e.starts_with("mount /dev")
            || e.starts_with("addpart")
            || e.starts_with("link up")),
        "{:#?}",
        st.events
    );
    drop(st);
    // The media was only read.
    let ev = events(&m);
    assert!(ev.contains(&"open-ro /dev/sr0".to_string()));
    assert!(!touched(&m, "sr0"));
    // Write order: zero the head, the rest, fsync, the head, fsync, sync.
    let (last_tail, head) = common::assert_head_written_last(&ev);
    assert!(
        ev[last_tail..head].contains(&"sync /dev/vda".to_string()),
        "fsync between the rest and the head"
    );
    assert_eq!(ev.last().unwrap(), "sync");
}

#[test]
fn o3_media_found_by_id_among_other_isos() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    // sr0: another appliance's ISO; sr1: an ISO without a media id;
    // sr2: ours. The disk vda is blank.
    let other = Iso::new()
        .file("media-id", format!("{OTHER_ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.gz"), &gzip(b"not this one"), 1);
    let plain = Iso::new().file(&format!("{IMAGE}.gz"), &gz, 1);
    m.os.add_device("sr0", other.build(), true, true);
    m.os.add_device("sr1", plain.build(), true, true);
    m.os.add_device("sr2", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            &format!(
                "[ze-install] media: /dev/sr0: an ISO with media id {OTHER_ID}, not ze.media-id={ID}; ignored"
            ),
            "[ze-install] media: /dev/sr1: an ISO 9660 volume without a ze media id; ignored",
            "[ze-install] installer media: /dev/sr2 (ISO 9660, media id ",
            "[ze-install] media: /dev/vda: not an ISO 9660 volume",
            "[ze-install] image: /ze/ze-20260101-000000.img.gz on /dev/sr2",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "vda")[..img.len()] == img[..]);
}

#[test]
fn o3_wrong_id_only_is_not_the_media_and_the_menu_opens() {
    let img = image();
    let mut m = machine(&checked(&img), &img);
    let other = Iso::new()
        .file("media-id", format!("{OTHER_ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.gz"), &gzip(&img), 1);
    m.os.add_device("sr0", other.build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 60_000);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] media: /dev/sr0: an ISO with media id fedcba98",
            "[ze-install] waiting up to 20 s for the installer media",
            &format!(
                "[ze-install] FATAL: installer media not found: none of 2 block devices holds the ISO with ze.media-id={ID} (looked for 20 s); is the ISO attached?"
            ),
            // O5 / I14: no credential on ISO media: the menu, no reboot.
            "[ze-install] recovery menu:",
            "[ze-install] powering off",
        ],
    );
    assert_eq!(
        console.matches("media: /dev/sr0:").count(),
        1,
        "each finding is logged once:\n{console}"
    );
    assert!(!console.contains("rebooting in"));
    assert!(!touched(&m, "vda"), "nothing written without the media");
}

#[test]
fn o2_media_written_with_dd_to_a_fixed_disk_is_not_a_target() {
    // A stick behind a USB-SATA bridge that says removable=0: the ISO is
    // on the whole disk vda; vdb is the only target.
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    let iso = Iso::ours(&img, &gz).build();
    m.os.add_device("vda", iso.clone(), false, false);
    m.os.add_disk("vdb", DISK, "/dev/vdb4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] installer media: /dev/vda",
            "[ze-install] target disk /dev/vdb (8388608 bytes)",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "vdb")[..img.len()] == img[..]);
    assert!(disk(&m, "vda") == iso, "the media is unchanged");
    assert!(!touched(&m, "vda"));
}

#[test]
fn o2_dd_media_named_as_ze_target_is_refused() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&format!("{} ze.target=/dev/vda", checked(&img)), &img);
    m.os.add_device("vda", Iso::ours(&img, &gz).build(), false, false);
    m.os.add_disk("vdb", DISK, "/dev/vdb4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &["[ze-install] FATAL: ze.target=/dev/vda: refusing to write: the installer's own media"],
    );
    assert!(!touched(&m, "vda") && !touched(&m, "vdb"));
}

#[test]
fn o2_two_fixed_disks_without_target_is_fatal_and_both_are_untouched() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    m.os.add_disk("vdb", 2 * DISK, "/dev/vdb4");
    power_off_from_menu(&m, 10_000);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] installer media: /dev/sr0",
            "[ze-install] FATAL: 2 fixed disks (/dev/vda 8.0 MiB, /dev/vdb 16 MiB) and no ze.target: refusing to guess which to erase; rebuild the ISO with `ze appliance iso --target /dev/<disk> <appliance>`",
            "[ze-install] recovery menu:",
            "[ze-install] powering off",
        ],
    );
    assert!(!touched(&m, "vda") && !touched(&m, "vdb"));
    assert!(disk(&m, "vda").iter().all(|&b| b == 0xee));
    assert!(disk(&m, "vdb").iter().all(|&b| b == 0xee));
}

#[test]
fn o2_ze_target_wins_over_ambiguity() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&format!("{} ze.target=/dev/vdb", checked(&img)), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    m.os.add_disk("vdb", DISK, "/dev/vdb4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] target disk /dev/vdb",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "vdb")[..img.len()] == img[..]);
    assert!(!touched(&m, "vda"));
}

/// Two fixed disks with udev-visible identities: an NVMe drive and a
/// virtio disk, as sysfs shows them (`ze_hal::block` module docs).
fn two_named_disks(m: &mut Machine) {
    m.os.add_disk("nvme0n1", DISK, "/dev/nvme0n1p4");
    m.os.sys_file(
        "/sys/block/nvme0n1/device/model",
        &format!("{:<40}\n", "Samsung SSD 970 EVO Plus 1TB"),
    );
    m.os.sys_file(
        "/sys/block/nvme0n1/device/serial",
        &format!("{:<20}\n", "S4EWNX0N123456"),
    );
    m.os.add_disk("vda", DISK, "/dev/vda4");
    m.os.sys_file("/sys/block/vda/serial", "VIRT0SERIAL1");
}

#[test]
fn h2_by_id_target_is_resolved_from_sysfs() {
    let img = image();
    let gz = gzip(&img);
    let target = "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456";
    let mut m = machine(&format!("{} ze.target={target}", checked(&img)), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    two_named_disks(&mut m);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            &format!("[ze-install] ze.target={target} is /dev/nvme0n1"),
            "[ze-install] target disk /dev/nvme0n1",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "nvme0n1")[..img.len()] == img[..]);
    assert!(!touched(&m, "vda"));
}

#[test]
fn h2_serial_target_and_unknown_by_id_name() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(
        &format!("{} ze.target=serial:VIRT0SERIAL1", checked(&img)),
        &img,
    );
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    two_named_disks(&mut m);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(&m.os.console_text(), &["[ze-install] target disk /dev/vda"]);
    assert!(!touched(&m, "nvme0n1"));

    // A name no disk has: every disk's names are listed, then the FATAL,
    // and nothing is written; the menu stays open until told.
    let target = "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N999999";
    let mut m = machine(&format!("{} ze.target={target}", checked(&img)), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    two_named_disks(&mut m);
    power_off_from_menu(&m, 20_000);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] disk /dev/nvme0n1 (8.0 MiB) /dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456 serial:S4EWNX0N123456",
            "[ze-install] disk /dev/vda (8.0 MiB) /dev/disk/by-id/virtio-VIRT0SERIAL1 serial:VIRT0SERIAL1",
            &format!(
                "[ze-install] FATAL: ze.target={target}: no disk has that name; the disks here are /dev/nvme0n1, /dev/vda (their by-id names and serials are listed above)"
            ),
            "[ze-install] recovery menu:",
        ],
    );
    assert!(!touched(&m, "nvme0n1") && !touched(&m, "vda"));
}

#[test]
fn h4_bad_command_line_on_iso_media_opens_the_menu_without_a_reboot() {
    let img = image();
    let gz = gzip(&img);
    // ze.source=iso parses on its own; ze.size=0 fails the whole line.
    let mut m = machine("ze.size=0", &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    // Nobody at the console for an hour: the menu is still open, then "4".
    power_off_from_menu(&m, 3_600_000);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    let console = m.os.console_text();
    in_order(
        &console,
        &[
            "[ze-install] FATAL: kernel command line: ze.size=\"0\": not a whole number in range",
            "[ze-install] recovery menu:",
            "[ze-install] powering off",
        ],
    );
    assert!(!console.contains("rebooting"), "{console}");
    assert!(m.os.st().now >= 3_600_000);
    assert!(!touched(&m, "vda"));
}

#[test]
fn h3_iso_install_puts_the_disk_first_in_boot_order() {
    use common::{boot_order, device_option, efivar, uefi};
    use ze_installer::efiboot;
    let img = common::gpt_image(5 * MIB, 7);
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    // An earlier install left Boot0003 (in the order) and Boot0004.
    let esp = ze_installer::gpt::partition(&img[..HEAD_LEN], 1).unwrap();
    let ours = efiboot::load_option_file("ze appliance (vda)", &esp, efiboot::LOADER).unwrap();
    uefi(
        &mut m.os,
        &[0, 3, 1],
        &[
            (0, device_option("UEFI QEMU DVD-ROM QM00005")),
            (1, common::pxe_option()),
            (3, ours.to_vec()),
            (4, ours.to_vec()),
        ],
    );
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] /dev/vda: partition table and boot code written last; the disk is complete",
            "[ze-install] boot entry: Boot0002 \"ze appliance (vda)\" = HD(1,GPT,a1a1a1a1-a1a1-a1a1-a1a1-a1a1a1a1a1a1,0x800,0x800)/\\EFI\\BOOT\\BOOTX64.EFI",
            "[ze-install] boot entry: removed Boot0003, left by an earlier install",
            "[ze-install] boot entry: removed Boot0004, left by an earlier install",
            "[ze-install] boot entry: BootOrder 0002,0000,0001 (was 0000,0003,0001)",
            "[ze-install] install complete; powering off",
        ],
    );
    assert_eq!(boot_order(&m.os), [2, 0, 1]);
    let st = m.os.st();
    assert_eq!(st.efivars[&efivar("Boot0002")], &ours[..]);
    assert_eq!(st.efivars_removed, [efivar("Boot0003"), efivar("Boot0004")]);
    let mount = "mount efivarfs efivarfs /sys/firmware/efi/efivars".to_string();
    let at = |e: &str| st.events.iter().position(|x| x.starts_with(e)).unwrap();
    assert!(
        at("sync") < at(&mount),
        "the disk is complete before NVRAM is touched"
    );
}

/// Ventoy's layout on a removable USB disk `sdb`: partition 1 exFAT with
/// `iso` (our ISO) and another ISO one level down, partition 2 a small FAT.
fn ventoy_stick(m: &mut Machine, iso: Vec<u8>) {
    m.os.add_device("sdb", vec![0x5a; 64 << 10], true, false);
    m.os.sys_file("/sys/block/sdb/sdb1/partition", "1\n");
    m.os.sys_file("/sys/block/sdb/sdb2/partition", "2\n");
    m.os.sys_file("/run/ze-media/ventoy/ventoy.json", "{}");
    let mut st = m.os.st();
    for (node, fs) in [("/dev/sdb1", "exfat"), ("/dev/sdb2", "vfat")] {
        st.nodes.push(node.into());
        st.fstypes.insert(node.into(), fs.into());
    }
    for (path, data) in [
        (
            "/run/ze-media/isos/other.iso",
            Iso::new()
                .file("media-id", format!("{OTHER_ID}\n").as_bytes(), 1)
                .build(),
        ),
        ("/run/ze-media/ze-prod.iso", iso),
    ] {
        st.disks.insert(
            path.into(),
            ze_hal::fake::FakeDiskState {
                data,
                ..Default::default()
            },
        );
    }
    drop(st);
    m.os.sys_file("/run/ze-media/isos/other.iso", "");
    m.os.sys_file("/run/ze-media/ze-prod.iso", "");
}

#[test]
fn o6_ventoy_iso_file_on_exfat_is_the_media() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    ventoy_stick(&mut m, Iso::ours(&img, &gz).build());
    m.os.add_disk("vda", DISK, "/dev/vda4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] media: /dev/sdb: not an ISO 9660 volume",
            "[ze-install] media: /dev/sdb1 (exfat): 2 ISO files",
            "[ze-install] media: /run/ze-media/isos/other.iso: an ISO with media id fedcba9876543210fedcba9876543210",
            &format!(
                "[ze-install] installer media: /run/ze-media/ze-prod.iso on /dev/sdb1 (exfat; ISO 9660, media id {ID})"
            ),
            "[ze-install] image: /ze/ze-20260101-000000.img.gz on /run/ze-media/ze-prod.iso (",
            "[ze-install] target disk /dev/vda",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "vda")[..img.len()] == img[..]);
    assert!(!touched(&m, "sdb"));
    let ev = events(&m);
    let at = |e: &str| {
        ev.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} not in {ev:?}"))
    };
    assert!(at("mount exfat /dev/sdb1 /run/ze-media ro") < at("open /dev/vda"));
    assert!(
        at("sync") < at("unmount /run/ze-media"),
        "unmounted after the install"
    );
    assert!(m.os.st().mounts.is_empty());

    // The same stick as the only fixed-looking disk: it is the media, never
    // a target, and a failed install still unmounts it.
    let mut m = machine(
        &format!("ze.sha256={} ze.size={}", "0".repeat(64), img.len()),
        &img,
    );
    ventoy_stick(&mut m, Iso::ours(&img, &gz).build());
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 60_000);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: image sha256 ",
            "[ze-install] recovery menu:",
        ],
    );
    assert!(events(&m).iter().any(|e| e == "unmount /run/ze-media"));
    assert!(m.os.st().mounts.is_empty());
    assert!(!touched(&m, "sdb"));
}

#[test]
fn o1_wrong_digest_leaves_the_first_mib_zero() {
    let img = image();
    let gz = gzip(&img);
    let wrong = sha(b"something else");
    let mut m = machine(&format!("ze.sha256={wrong} ze.size={}", img.len()), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] image: 3145728/3145728 bytes (100%)",
            &format!(
                "[ze-install] FATAL: image sha256 {} differs from ze.sha256={wrong}; disk left unbootable",
                sha(&img)
            ),
            "[ze-install] recovery menu:",
        ],
    );
    let d = disk(&m, "vda");
    assert!(d[..HEAD_LEN].iter().all(|&b| b == 0), "first MiB zero");
    assert!(
        d[HEAD_LEN..img.len()] == img[HEAD_LEN..],
        "the rest written"
    );
}

#[test]
fn o1_truncated_gzip_is_fatal_and_leaves_the_first_mib_zero() {
    let img = image();
    let gz = gzip(&img);
    let cut = gz.len() * 2 / 3;
    let mut m = machine(&checked(&img), &img);
    let iso = Iso::new()
        .file("media-id", format!("{ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.gz"), &gz[..cut], 1);
    m.os.add_device("sr0", iso.build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[&format!(
            "[ze-install] FATAL: /ze/{IMAGE}.gz on the installer media is damaged: truncated: the file ends at byte {cut}, inside the gzip stream; disk left unbootable"
        )],
    );
    assert!(disk(&m, "vda")[..HEAD_LEN].iter().all(|&b| b == 0));
}

#[test]
fn o1_corrupt_gzip_and_unreadable_media_are_fatal() {
    let img = image();
    let mut gz = gzip(&img);
    let n = gz.len();
    gz[n - 6] ^= 0xff; // the CRC-32 in the trailer
    let mut m = machine("", &img);
    let iso = Iso::new()
        .file("media-id", format!("{ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.gz"), &gz, 1);
    m.os.add_device("sr0", iso.build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] warning: no ze.sha256 and no readable /ze/ze-20260101-000000.img.sha256: only the gzip CRC-32 checks the image",
            "[ze-install] FATAL: /ze/ze-20260101-000000.img.gz on the installer media is damaged: CRC-32 of the inflated data is ",
        ],
    );
    assert!(disk(&m, "vda")[..HEAD_LEN].iter().all(|&b| b == 0));

    // A scratched CD: reads fail half way through the compressed image.
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    let bad = (21 * 2048 + gz.len() / 2) as u64;
    m.os.st().disks.get_mut("/dev/sr0").unwrap().bad_from = Some(bad);
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: installer media /dev/sr0: read failed at byte ",
            "os error 5 (I/O error); disk left unbootable",
        ],
    );
    assert!(disk(&m, "vda")[..HEAD_LEN].iter().all(|&b| b == 0));
}

#[test]
fn o1_without_ze_sha256_the_media_sidecar_is_checked() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine("", &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            &format!(
                "[ze-install] no ze.sha256: using /ze/{IMAGE}.sha256 from the media ({})",
                sha(&img)
            ),
            "[ze-install] image: 3145728 bytes, ",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "vda")[..img.len()] == img[..]);

    // A sidecar that disagrees with the image: FATAL.
    let mut m = machine("", &img);
    let iso = Iso::new()
        .file("media-id", format!("{ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.gz"), &gz, 1)
        .file(
            &format!("{IMAGE}.sha256"),
            format!("{}  {IMAGE}\n", sha(b"x")).as_bytes(),
            1,
        );
    m.os.add_device("sr0", iso.build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: image sha256 ",
            "; disk left unbootable",
        ],
    );
    assert!(disk(&m, "vda")[..HEAD_LEN].iter().all(|&b| b == 0));
}

#[test]
fn o1_multi_extent_image_and_progress_at_most_once_a_second() {
    let img = image();
    let gz = gzip(&img);
    let mut m = machine(&checked(&img), &img);
    let iso = Iso::new()
        .file("media-id", format!("{ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.gz"), &gz, 3);
    m.os.add_device("sr0", iso.build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    // Each media read takes 400 ms: several progress lines, each at
    // least a second after the last.
    m.os.st().recv_ms = 400;
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    let console = m.os.console_text();
    let progress: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("[ze-install] image: ") && l.contains(" MB/s"))
        .collect();
    assert!(progress.len() >= 2, "{console}");
    assert!(
        progress.iter().any(|l| l.contains("ETA")),
        "bytes, percent, MB/s and ETA:\n{console}"
    );
    assert!(disk(&m, "vda")[..img.len()] == img[..]);
}

#[test]
fn o1_image_larger_than_ze_size_or_the_disk_is_fatal() {
    let img = image();
    let gz = gzip(&img);
    // ze.size bigger than the disk: refused before the disk is touched.
    let mut m = machine(&format!("ze.size={}", DISK + 512), &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &["[ze-install] FATAL: image is 8389120 bytes but the disk holds only 8388608 bytes"],
    );
    assert!(!events(&m).iter().any(|e| e.starts_with("write /dev/vda")));
    // ze.size smaller than what the gzip holds: stopped at ze.size.
    let mut m = machine("ze.size=2097152", &img);
    m.os.add_device("sr0", Iso::ours(&img, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] FATAL: the image inflates to more than 2097152 bytes (ze.size); disk left unbootable",
        ],
    );
    assert!(disk(&m, "vda")[..HEAD_LEN].iter().all(|&b| b == 0));
}

#[test]
fn o1_missing_image_on_the_media_names_the_file() {
    let img = image();
    let mut m = machine(&checked(&img), &img);
    let iso = Iso::new().file("media-id", format!("{ID}\n").as_bytes(), 1);
    m.os.add_device("sr0", iso.build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    in_order(
        &m.os.console_text(),
        &[&format!(
            "[ze-install] FATAL: installer media /dev/sr0: /ze/{IMAGE}.gz: not found (does ze.image match the ISO?)"
        )],
    );
    assert!(!touched(&m, "vda"));
}

/// The volume `ze appliance iso` makes: xorriso, Rock Ridge and Joliet,
/// level 3, the long image name only in Rock Ridge.
#[test]
fn o1_o3_installs_from_a_xorriso_volume() {
    let img = image();
    let gz = gzip(&img);
    let dir = std::env::temp_dir().join(format!("ze-iso-flow-{}", std::process::id()));
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("ze")).unwrap();
    std::fs::write(tree.join("ze/media-id"), format!("{ID}\n")).unwrap();
    std::fs::write(tree.join(format!("ze/{IMAGE}.gz")), &gz).unwrap();
    std::fs::write(tree.join("ze/install.json"), "{}\n").unwrap();
    let iso = dir.join("t.iso");
    let st = std::process::Command::new("xorriso")
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-iso-level",
            "3",
            "-rational-rock",
        ])
        .args(["-joliet", "-joliet-long", "-volid", "ZE_TEST", "-o"])
        .arg(&iso)
        .arg(&tree)
        .status()
        .expect("xorriso is needed (apt-get install xorriso, or make deps)");
    assert!(st.success());
    let bytes = std::fs::read(&iso).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let mut m = machine(&checked(&img), &img);
    m.os.add_device("sr0", bytes, true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    in_order(
        &m.os.console_text(),
        &[
            "[ze-install] installer media: /dev/sr0",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(disk(&m, "vda")[..img.len()] == img[..]);
}

/// The mapped bytes of `image` under `map`, concatenated in range order:
/// what `ze appliance iso` gzips into `/ze/<image>.data.gz`.
fn mapped_data(image: &[u8], map: &[u8]) -> Vec<u8> {
    let m = ze_installer::bmap::Bmap::parse(map).unwrap();
    let mut out = Vec::new();
    for r in m.ranges() {
        let (a, b) = (r.start(m.block_size), r.end(m.block_size, m.image_size));
        out.extend_from_slice(&image[a as usize..b as usize]);
    }
    out
}

/// An ISO carrying the map and the mapped data (and no whole image).
fn map_iso(image: &[u8], map: &[u8], data_gz: &[u8]) -> Iso {
    Iso::new()
        .file("media-id", format!("{ID}\n").as_bytes(), 1)
        .file(&format!("{IMAGE}.bmap"), map, 1)
        .file(&format!("{IMAGE}.data.gz"), data_gz, 2)
        .file(
            &format!("{IMAGE}.sha256"),
            format!("{}  {IMAGE}\n", sha(image)).as_bytes(),
            1,
        )
}

#[test]
fn w7_iso_with_a_map_writes_only_the_mapped_data_and_zeroes_the_rest() {
    let img = common::gpt_image(6 * MIB, 0x0151_0000);
    let map = common::bmap_of(&img);
    let data = mapped_data(&img, &map);
    let gz = gzip(&data);
    let mut m = machine(
        &format!("ze.bmap-sha256={} ze.size={}", sha(&map), img.len()),
        &img,
    );
    m.os.add_device("sr0", map_iso(&img, &map, &gz).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    // The disk held something else before.
    m.os.st().disks.get_mut("/dev/vda").unwrap().data =
        (0..DISK as usize).map(|i| (i % 251) as u8 | 1).collect();
    assert_eq!(boot(&mut m), PowerAction::PowerOff);
    let console = m.os.console_text();
    let parsed = ze_installer::bmap::Bmap::parse(&map).unwrap();
    in_order(
        &console,
        &[
            "[ze-install] block map: ",
            " matches ze.bmap-sha256",
            &format!(
                "[ze-install] image: /ze/{IMAGE}.data.gz on /dev/sr0 ({} bytes gzip'd, {} bytes mapped)",
                gz.len(),
                data.len()
            ),
            "[ze-install] target disk /dev/vda (8388608 bytes)",
            "[ze-install] zeroing the ",
            &format!(
                "[ze-install] image written: {} bytes in {} ranges, each sha256 verified",
                data.len(),
                parsed.range_count
            ),
            "[ze-install] /dev/vda: partition table and boot code written last; the disk is complete",
            "[ze-install] install complete; powering off",
        ],
    );
    assert!(
        disk(&m, "vda")[..img.len()] == img[..],
        "the disk equals the image"
    );
    assert!(!touched(&m, "sr0"));
    common::assert_head_written_last(&events(&m));
}

#[test]
fn w7_mapped_data_that_does_not_fit_its_map_is_fatal() {
    let img = common::gpt_image(6 * MIB, 0x0151_0001);
    let map = common::bmap_of(&img);
    let data = mapped_data(&img, &map);
    let cmd = format!("ze.bmap-sha256={} ze.size={}", sha(&map), img.len());
    // One byte changed in the data: the range's sha256 catches it.
    let mut bad = data.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0xff;
    // Short, and long.
    let short = data[..data.len() - 4096].to_vec();
    let mut long = data.clone();
    long.extend_from_slice(&[7; 4096]);
    for (content, why) in [
        (bad, "has sha256 "),
        (short, "the mapped data ended before the block map did"),
        (long, "the image inflates to more than"),
    ] {
        let mut m = machine(&cmd, &img);
        m.os.add_device(
            "sr0",
            map_iso(&img, &map, &gzip(&content)).build(),
            true,
            true,
        );
        m.os.add_disk("vda", DISK, "/dev/vda4");
        power_off_from_menu(&m, 10_000);
        boot(&mut m);
        let console = m.os.console_text();
        assert!(
            console.contains("[ze-install] FATAL: ") && console.contains(why),
            "{why}:\n{console}"
        );
        assert!(disk(&m, "vda")[..HEAD_LEN].iter().all(|&b| b == 0), "{why}");
    }
    // A map whose digest is not ze.bmap-sha256: refused before any write.
    let mut m = machine(
        &format!("ze.bmap-sha256={} ze.size={}", sha(b"x"), img.len()),
        &img,
    );
    m.os.add_device("sr0", map_iso(&img, &map, &gzip(&data)).build(), true, true);
    m.os.add_disk("vda", DISK, "/dev/vda4");
    power_off_from_menu(&m, 10_000);
    boot(&mut m);
    assert!(m.os.console_text().contains("differs from ze.bmap-sha256="));
    assert!(!events(&m).iter().any(|e| e.starts_with("write /dev/vda")));
}
