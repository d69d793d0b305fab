//! `ze.target`: its syntax (the one validator, shared with `ze appliance
//! iso --target`) and the stable names it may use, resolved from sysfs by
//! the installer itself, since the initrd has no udev (checklist H2).
//!
//! | form | matches |
//! |---|---|
//! | `/dev/<disk>` | the kernel name, e.g. `/dev/nvme0n1` |
//! | `/dev/disk/by-id/<name>` | the name udev's `60-persistent-storage.rules` would give the disk |
//! | `serial:<serial>` | the disk's serial number, spelled as in its by-id name |
//!
//! The by-id names made here, from the attributes `ze_hal::block::read_ids`
//! reads (which driver has which is in that module's docs):
//!
//! | disk | name | from |
//! |---|---|---|
//! | virtio-blk `vd*` | `virtio-<serial>` | `serial` |
//! | NVMe `nvme*` | `nvme-<model>_<serial>` | `device/model`, `device/serial` |
//! | NVMe `nvme*` | `nvme-<wwid>` | `wwid` (`eui.…`, `nvme.…`) |
//! | ATA `sd*` (vendor `ATA`) | `ata-<model>_<serial>` | VPD page 83's T10 designator (the full 40-character model; `device/model` holds only 16), VPD page 80 |
//! | USB `sd*` | `usb-<vendor>_<model>_<serial>-<target>:<lun>` | SCSI `vendor`, `model`, the USB device's `serial`, the SCSI address |
//! | SCSI/ATA `sd*` with a WWN | `wwn-0x<wwid>` | `device/wwid` `naa.<hex>` |
//!
//! Each field is spelled as udev spells it: leading and trailing whitespace
//! dropped, every run of whitespace inside one `_`, and every character
//! other than ASCII letters, digits, `#+-.:=@_` and non-ASCII text
//! replaced by `_`. Not made (name those disks by `/dev/<disk>`, `wwn-` or
//! `serial:`): `scsi-…` names of plain SCSI disks (udev's `scsi_id`), and
//! `ata-…` names udev gives USB-SATA bridges that answer ATA pass-through
//! (the installer calls those `usb-…`). Partitions (`-part<n>`) are never
//! a target.

use core::fmt;
use heapless::{String, Vec};
use ze_hal::block::{BlockFacts, DiskIds, MAX_DEVICE_NAME};

/// The longest `ze.target` (a by-id path; real ones reach ~90 characters).
pub const MAX_TARGET: usize = 160;
/// The longest by-id name made.
pub const MAX_BYID: usize = 144;
/// The by-id directory.
pub const BY_ID: &str = "/dev/disk/by-id/";
/// The serial-number form's prefix.
pub const SERIAL: &str = "serial:";

/// A by-id name (without the directory).
pub type Name = String<MAX_BYID>;

/// What a `ze.target` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec<'a> {
    /// `/dev/<disk>`: the kernel name.
    Kernel(&'a str),
    /// `/dev/disk/by-id/<name>`: the name.
    ById(&'a str),
    /// `serial:<serial>`: the serial.
    Serial(&'a str),
}

/// Why a `ze.target` is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecError {
    /// Not one of the three forms, or a character that cannot be in it.
    NotADiskPath,
    /// Longer than [`MAX_TARGET`].
    TooLong,
    /// A partition, not a whole disk.
    Partition,
    /// `/dev/disk/by-path/…`, `by-uuid/…` and the like: only udev knows them.
    NotById,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecError::NotADiskPath => {
                "not a disk path: give a whole disk such as /dev/sda, /dev/nvme0n1, /dev/disk/by-id/<name> or serial:<serial>"
            }
            SpecError::TooLong => "longer than 160 characters: not a disk path",
            SpecError::Partition => "names a partition; give the whole disk it is on",
            SpecError::NotById => {
                "only /dev/<disk>, /dev/disk/by-id/<name> and serial:<serial> are understood (the installer has no udev for by-path, by-uuid and the like)"
            }
        })
    }
}

/// Characters kept in a by-id name (as well as non-ASCII text).
fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "#+-.:=@_".contains(c)
}

/// Whether a kernel disk name ends like a partition: `sda1`, `vdb4`,
/// `xvda2`, `hda1`, `nvme0n1p4`, `mmcblk0p1`.
fn kernel_partition(name: &str) -> bool {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == name.len() {
        return false;
    }
    let letters_after = |p: &str| {
        stem.strip_prefix(p)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase()))
    };
    ["sd", "vd", "hd", "xvd"].iter().any(|p| letters_after(p))
        || ((stem.starts_with("nvme") || stem.starts_with("mmcblk")) && stem.ends_with('p'))
}

/// Check a `ze.target` and say what it names. The installer's command
/// line and `ze appliance iso --target` both call this, so the builder
/// never accepts a target the installer rejects.
pub fn parse(text: &str) -> Result<Spec<'_>, SpecError> {
    if text.len() > MAX_TARGET {
        return Err(SpecError::TooLong);
    }
    if let Some(serial) = text.strip_prefix(SERIAL) {
        if serial.is_empty() || !serial.chars().all(allowed) {
            return Err(SpecError::NotADiskPath);
        }
        return Ok(Spec::Serial(serial));
    }
    if let Some(name) = text.strip_prefix(BY_ID) {
        if name.is_empty() || name.starts_with('.') || !name.chars().all(allowed) {
            return Err(SpecError::NotADiskPath);
        }
        if let Some((_, n)) = name.rsplit_once("-part")
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(SpecError::Partition);
        }
        return Ok(Spec::ById(name));
    }
    let Some(name) = text.strip_prefix("/dev/") else {
        return Err(SpecError::NotADiskPath);
    };
    if name.starts_with("disk/") {
        return Err(SpecError::NotById);
    }
    if name.is_empty()
        || name.len() > MAX_DEVICE_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(SpecError::NotADiskPath);
    }
    if kernel_partition(name) {
        return Err(SpecError::Partition);
    }
    Ok(Spec::Kernel(name))
}

/// Append `field` to `out` the way udev spells it (module docs). Returns
/// false when it does not fit.
fn push_field<const N: usize>(out: &mut String<N>, field: &str) -> bool {
    let mut gap = false;
    for c in field.trim().chars() {
        if c.is_whitespace() {
            gap = true;
            continue;
        }
        if gap && out.push('_').is_err() {
            return false;
        }
        gap = false;
        let c = if c.is_ascii() && !allowed(c) { '_' } else { c };
        if out.push(c).is_err() {
            return false;
        }
    }
    true
}

fn join<const N: usize>(parts: &[&str], seps: &[&str]) -> Option<String<N>> {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if part.trim().is_empty() {
            return None;
        }
        if let Some(sep) = i.checked_sub(1).and_then(|j| seps.get(j)) {
            out.push_str(sep).ok()?;
        }
        if !push_field(&mut out, part) {
            return None;
        }
    }
    Some(out)
}

/// The designator of `kind` (SPC: 1 = T10 vendor id, 3 = NAA) in a VPD
/// page 83, if the page has one.
fn designator(page: &[u8], kind: u8) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*page.get(2)?, *page.get(3)?]));
    let body = page.get(4..)?;
    let mut rest = body.get(..len.min(body.len()))?;
    while rest.len() >= 4 {
        let n = usize::from(rest[3]);
        let value = rest.get(4..4 + n)?;
        if rest[1] & 0x0f == kind {
            return Some(value);
        }
        rest = rest.get(4 + n..)?;
    }
    None
}

/// The model and serial of an ATA disk, as `ata_id` reads them from
/// IDENTIFY: libata's T10 designator holds `ATA     ` + model (40) +
/// serial (20); else `device/model` and VPD page 80.
fn ata_model_serial(ids: &DiskIds) -> (&str, &str) {
    let t10 = designator(&ids.vpd83, 1)
        .filter(|v| v.len() >= 68 && v.starts_with(b"ATA"))
        .and_then(|v| core::str::from_utf8(v.get(8..68)?).ok());
    let page80 = ids
        .vpd80
        .get(4..)
        .and_then(|v| core::str::from_utf8(v).ok());
    match t10 {
        Some(v) => (v.get(..40).unwrap_or(""), v.get(40..).unwrap_or("")),
        None => (ids.model.as_str(), page80.unwrap_or("")),
    }
}

fn is_ata(ids: &DiskIds) -> bool {
    ids.vendor.trim() == "ATA"
}

/// The disk's serial number as its by-id name spells it, if it has one.
pub fn serial(kernel: &str, ids: &DiskIds) -> Option<Name> {
    let raw = if kernel.starts_with("vd") {
        ids.serial.as_str()
    } else if kernel.starts_with("nvme") {
        ids.device_serial.as_str()
    } else if ids.usb {
        ids.usb_serial.as_str()
    } else if is_ata(ids) {
        ata_model_serial(ids).1
    } else {
        ""
    };
    join(&[raw], &[])
}

/// Every by-id name udev would give the disk `kernel` with `ids`, in the
/// order of the module docs' table.
pub fn names(kernel: &str, ids: &DiskIds) -> Vec<Name, 3> {
    let mut out: Vec<Name, 3> = Vec::new();
    let mut add = |n: Option<Name>| {
        if let Some(n) = n {
            let _ = out.push(n);
        }
    };
    if kernel.starts_with("vd") {
        add(join(&["virtio", &ids.serial], &["-"]));
    } else if kernel.starts_with("nvme") {
        add(join(&["nvme", &ids.model, &ids.device_serial], &["-", "_"]));
        add(join(&["nvme", &ids.wwid], &["-"]));
    } else if kernel.starts_with("sd") {
        if ids.usb {
            // usb_id: vendor_model[_serial]-target:lun
            let instance = ids.scsi_address.splitn(3, ':').nth(2).unwrap_or("");
            let named = if ids.usb_serial.trim().is_empty() {
                join(
                    &["usb", &ids.vendor, &ids.model, instance],
                    &["-", "_", "-"],
                )
            } else {
                join(
                    &["usb", &ids.vendor, &ids.model, &ids.usb_serial, instance],
                    &["-", "_", "_", "-"],
                )
            };
            add(named);
        } else if is_ata(ids) {
            let (model, serial) = ata_model_serial(ids);
            add(join(&["ata", model, serial], &["-", "_"]));
        }
        if let Some(hex) = ids.wwid.strip_prefix("naa.")
            && !hex.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let mut n = Name::new();
            if n.push_str("wwn-0x").is_ok()
                && hex.chars().all(|c| n.push(c.to_ascii_lowercase()).is_ok())
            {
                add(Some(n));
            }
        }
    }
    out
}

/// Whether the disk `kernel` with `ids` is the one `spec` names.
pub fn matches(spec: Spec<'_>, kernel: &str, ids: &DiskIds) -> bool {
    match spec {
        Spec::Kernel(name) => name == kernel,
        Spec::ById(name) => names(kernel, ids).iter().any(|n| n.as_str() == name),
        Spec::Serial(want) => serial(kernel, ids).is_some_and(|s| s.as_str() == want),
    }
}

/// The longest part of the target quoted back in an error.
pub const MAX_QUOTED: usize = 96;
/// The room for the kernel names of the disks an error lists.
pub const MAX_LISTED: usize = 72;

/// Why a by-id or serial target names no single disk. Every disk's by-id
/// names are logged on the lines before it (`run::target::say_disks`);
/// the error itself stays small, as `install::Fatal` has no heap to box it
/// on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    /// The target as given, cut to [`MAX_QUOTED`].
    pub target: String<MAX_QUOTED>,
    /// How many disks matched (0: unknown, 2 or more: ambiguous).
    pub matched: usize,
    /// The kernel names of the disks seen, `nvme0n1 sda vda`, cut with
    /// `...` when they do not fit.
    pub seen: String<MAX_LISTED>,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ze.target={}: ", self.target)?;
        match self.matched {
            0 => f.write_str("no disk has that name")?,
            n => write!(f, "{n} disks have that name, refusing to guess")?,
        }
        if self.seen.is_empty() {
            f.write_str("; no disks here")
        } else {
            write!(
                f,
                "; the disks here are {} (their by-id names and serials are listed above)",
                self.seen
            )
        }
    }
}

fn cut<const N: usize>(text: &str) -> String<N> {
    let mut out = String::new();
    for c in text.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// Find the one disk among `devices` (from `ze_hal::block::scan`) that
/// `spec` names; `read` gives a disk's ids (`ze_hal::block::read_ids`).
/// `target` is the text given, for the error. Virtual, optical and flash
/// devices (`crate::disk::NEVER`) are not looked at.
pub fn resolve<'d>(
    target: &str,
    spec: Spec<'_>,
    devices: &'d [BlockFacts],
    read: &mut dyn FnMut(&str) -> DiskIds,
) -> Result<&'d BlockFacts, ResolveError> {
    let mut found = None;
    let mut matched = 0;
    let mut seen: String<MAX_LISTED> = String::new();
    let disks = devices
        .iter()
        .filter(|d| crate::disk::skip_reason(d) != Some(crate::disk::Skip::Kind));
    for d in disks {
        if matches(spec, &d.name, &read(&d.name)) {
            matched += 1;
            found.get_or_insert(d);
        }
        let sep = if seen.is_empty() { "" } else { ", " };
        let room = MAX_LISTED - seen.len();
        if sep.len() + 5 + d.name.len() + 5 <= room {
            let _ = seen.push_str(sep);
            let _ = seen.push_str("/dev/");
            let _ = seen.push_str(&d.name);
        } else if !seen.ends_with("...") {
            let _ = seen.push_str(", ...");
        }
    }
    match found {
        Some(d) if matched == 1 => Ok(d),
        _ => Err(ResolveError {
            target: cut(target),
            matched,
            seen,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use ze_hal::{
        block::{read_ids, scan},
        fake::{FakeSys, qemu_disk_ids},
    };

    fn qemu() -> FakeSys {
        let mut sys = FakeSys::new();
        qemu_disk_ids(&mut sys);
        sys
    }

    fn all_names(sys: &FakeSys, disk: &str) -> std::vec::Vec<std::string::String> {
        names(disk, &read_ids(sys, disk))
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn h2_names_of_the_qemu_devices_as_udev_makes_them() {
        let sys = qemu();
        assert_eq!(all_names(&sys, "vda"), ["virtio-VIRT0SERIAL1"]);
        assert_eq!(
            all_names(&sys, "nvme0n1"),
            [
                "nvme-QEMU_NVMe_Ctrl_NVME0SERIAL1",
                "nvme-nvme.1b36-4e564d453053455249414c31-51454d55204e564d65204374726c-00000001"
            ]
        );
        assert_eq!(
            all_names(&sys, "sda"),
            [
                "ata-Samsung_SSD_870_EVO_1TB_SATA0SERIAL1",
                "wwn-0x5002538f4130a1b2"
            ]
        );
        assert_eq!(
            all_names(&sys, "sdb"),
            ["usb-QEMU_QEMU_HARDDISK_USB0SERIAL1-0:0"]
        );
        for (disk, want) in [
            ("vda", "VIRT0SERIAL1"),
            ("nvme0n1", "NVME0SERIAL1"),
            ("sda", "SATA0SERIAL1"),
            ("sdb", "USB0SERIAL1"),
        ] {
            assert_eq!(serial(disk, &read_ids(&sys, disk)).unwrap(), want);
        }
    }

    #[test]
    fn h2_ata_without_a_t10_designator_uses_model_and_page_80() {
        let mut sys = qemu();
        sys.remove("/sys/block/sda/device/vpd_pg83");
        sys.remove("/sys/block/sda/device/wwid");
        // device/model holds only the first 16 characters of the model.
        assert_eq!(all_names(&sys, "sda"), ["ata-Samsung_SSD_870_SATA0SERIAL1"]);
    }

    #[test]
    fn h2_usb_without_a_serial_and_unknown_drivers() {
        let mut sys = qemu();
        sys.remove("/sys/block/sdb/device/../../../../serial");
        assert_eq!(all_names(&sys, "sdb"), ["usb-QEMU_QEMU_HARDDISK-0:0"]);
        assert_eq!(serial("sdb", &read_ids(&sys, "sdb")), None);
        assert!(names("mmcblk0", &read_ids(&sys, "mmcblk0")).is_empty());
    }

    #[test]
    fn h2_fields_are_spelled_as_udev_spells_them() {
        let mut out: String<64> = String::new();
        assert!(push_field(&mut out, "  WDC  WD40EFRX-68N32N0\t "));
        assert_eq!(out, "WDC_WD40EFRX-68N32N0");
        out.clear();
        assert!(push_field(&mut out, "a/b\"c$d#e+f=g@h:i.j"));
        assert_eq!(out, "a_b_c_d#e+f=g@h:i.j");
        out.clear();
        assert!(push_field(&mut out, "Größe 1"));
        assert_eq!(out, "Größe_1");
        let mut tiny: String<4> = String::new();
        assert!(!push_field(&mut tiny, "toolong"));
    }

    #[test]
    fn h2_the_validator_accepts_the_three_forms() {
        let long = "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_2TB_S59CNM0R912345X_1-with-a-long-vendor-suffix-0123456789";
        assert!(long.len() > 100);
        for (text, want) in [
            ("/dev/sda", Spec::Kernel("sda")),
            ("/dev/nvme0n1", Spec::Kernel("nvme0n1")),
            ("/dev/mmcblk0", Spec::Kernel("mmcblk0")),
            ("/dev/xvdb", Spec::Kernel("xvdb")),
            (
                "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456",
                Spec::ById("nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456"),
            ),
            (
                "/dev/disk/by-id/usb-QEMU_QEMU_HARDDISK_USB0SERIAL1-0:0",
                Spec::ById("usb-QEMU_QEMU_HARDDISK_USB0SERIAL1-0:0"),
            ),
            (
                "/dev/disk/by-id/wwn-0x5002538f4130a1b2",
                Spec::ById("wwn-0x5002538f4130a1b2"),
            ),
            ("serial:S4EWNX0N123456", Spec::Serial("S4EWNX0N123456")),
            (long, Spec::ById(&long[16..])),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn h2_the_validator_rejects_partitions_and_non_disks() {
        for (text, want) in [
            ("/dev/sda1", SpecError::Partition),
            ("/dev/vda4", SpecError::Partition),
            ("/dev/nvme0n1p4", SpecError::Partition),
            ("/dev/mmcblk0p1", SpecError::Partition),
            ("/dev/disk/by-id/ata-X_Y-part1", SpecError::Partition),
            (
                "/dev/disk/by-path/pci-0000:00:1f.2-ata-1",
                SpecError::NotById,
            ),
            ("/dev/disk/by-uuid/1234", SpecError::NotById),
            ("sda", SpecError::NotADiskPath),
            ("/dev/", SpecError::NotADiskPath),
            ("/dev/../etc/passwd", SpecError::NotADiskPath),
            ("/dev/sda console=ttyS1", SpecError::NotADiskPath),
            ("/dev/sd\"a", SpecError::NotADiskPath),
            ("/dev/disk/by-id/", SpecError::NotADiskPath),
            ("/dev/disk/by-id/../../sda", SpecError::NotADiskPath),
            ("/dev/disk/by-id/a/b", SpecError::NotADiskPath),
            ("serial:", SpecError::NotADiskPath),
            ("serial:a b", SpecError::NotADiskPath),
        ] {
            assert_eq!(parse(text), Err(want), "{text}");
        }
        let long = std::format!("/dev/disk/by-id/{}", "x".repeat(MAX_TARGET));
        assert_eq!(parse(&long), Err(SpecError::TooLong));
    }

    fn pick(sys: &FakeSys, target: &str) -> Result<std::string::String, ResolveError> {
        let scan = scan(sys).unwrap();
        let spec = parse(target).unwrap();
        resolve(target, spec, &scan.devices, &mut |d| read_ids(sys, d)).map(|d| d.name.to_string())
    }

    #[test]
    fn h2_resolve_by_id_and_serial() {
        let sys = qemu();
        for (target, want) in [
            (
                "/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_NVME0SERIAL1",
                "nvme0n1",
            ),
            (
                "/dev/disk/by-id/ata-Samsung_SSD_870_EVO_1TB_SATA0SERIAL1",
                "sda",
            ),
            ("/dev/disk/by-id/wwn-0x5002538f4130a1b2", "sda"),
            (
                "/dev/disk/by-id/usb-QEMU_QEMU_HARDDISK_USB0SERIAL1-0:0",
                "sdb",
            ),
            ("/dev/disk/by-id/virtio-VIRT0SERIAL1", "vda"),
            ("serial:NVME0SERIAL1", "nvme0n1"),
            ("serial:USB0SERIAL1", "sdb"),
        ] {
            assert_eq!(pick(&sys, target).unwrap(), want, "{target}");
        }
    }

    #[test]
    fn h2_unknown_and_ambiguous_names_list_the_disks() {
        let mut sys = qemu();
        let e = pick(
            &sys,
            "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456",
        )
        .unwrap_err();
        assert_eq!(e.matched, 0);
        assert_eq!(
            e.to_string(),
            "ze.target=/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456: no disk has that name; the disks here are /dev/nvme0n1, /dev/sda, /dev/sdb, /dev/vda (their by-id names and serials are listed above)"
        );
        // Two disks with one serial (a multipath pair, a cloned VM).
        sys.file("/sys/block/vdb/size", "8\n")
            .file("/sys/block/vdb/removable", "0\n")
            .file("/sys/block/vdb/ro", "0\n")
            .file("/sys/block/vdb/serial", "VIRT0SERIAL1")
            .file("/sys/block/loop0/size", "0\n")
            .file("/sys/block/loop0/removable", "0\n")
            .file("/sys/block/loop0/ro", "0\n");
        let e = pick(&sys, "serial:VIRT0SERIAL1").unwrap_err();
        assert_eq!(e.matched, 2);
        assert_eq!(
            e.to_string(),
            "ze.target=serial:VIRT0SERIAL1: 2 disks have that name, refusing to guess; the disks here are /dev/nvme0n1, /dev/sda, /dev/sdb, /dev/vda, /dev/vdb (their by-id names and serials are listed above)",
            "loop devices are not listed"
        );
        // Many disks: the list is cut, and the FATAL still fits one line.
        let mut many = FakeSys::new();
        for i in 0..20 {
            many.file(&std::format!("/sys/block/nvme{i}n1/size"), "8\n")
                .file(&std::format!("/sys/block/nvme{i}n1/removable"), "0\n")
                .file(&std::format!("/sys/block/nvme{i}n1/ro"), "0\n");
        }
        let e = pick(&many, "serial:X").unwrap_err().to_string();
        assert!(e.contains(", ... (their"), "{e}");
        assert!(
            "[ze-install] FATAL: ".len() + e.len() < crate::console::MAX_LINE - 4,
            "{e}"
        );
    }
}
