//! Facts about the machine's block devices, read from `/sys/block`.
//!
//! Only facts, no policy: which disk to write is the firmware's `disk`
//! module's decision. Each entry of `/sys/block/<name>` gives:
//!
//! ```text
//! /sys/block/<name>/size       512-byte sectors, decimal
//! /sys/block/<name>/removable  0 or 1
//! /sys/block/<name>/ro         0 or 1
//! ```
//!
//! [`read_ids`] reads what the firmware needs to resolve
//! `/dev/disk/by-id/` names and `serial:` targets itself (the initrd has no
//! udev). What exists depends on the driver; seen on QEMU 7.2's devices
//! under the hardware-profile kernel:
//!
//! ```text
//! virtio-blk-pci,serial=S   /sys/block/vda/serial            "S" (no newline)
//!                           device/vendor                    "0x1af4" (PCI id)
//! nvme,serial=S             device/model                     "QEMU NVMe Ctrl" + spaces to 40
//!                           device/serial                    "S" + spaces to 20
//!                           /sys/block/nvme0n1/wwid          "nvme.1b36-<hex serial>-<hex model>-00000001"
//!                           /sys/block/nvme0n1/nsid          "1"
//! ide-hd on ahci            device/vendor                    "ATA     " (libata)
//!                           device/model                     the first 16 characters of the model
//!                           device/vpd_pg80                  page 80: the 20-character serial
//!                           device/vpd_pg83                  page 83: a T10 designator "ATA     "
//!                                                            + model (40) + serial (20), and with
//!                                                            wwn=… an NAA designator
//!                           device/wwid                      "t10.ATA     <model><serial>", or
//!                                                            "naa.<16 hex>" when the disk has a WWN
//! usb-storage on qemu-xhci  device/vendor, device/model      SCSI INQUIRY ("QEMU    ", "QEMU HARDDISK   ")
//!                           device/wwid                      unreadable (no VPD page 83)
//!                           device/scsi_device/<h:c:t:l>     the SCSI address
//!                           device/../../../bInterfaceClass  "08" (the USB interface: mass storage)
//!                           device/../../../../serial        the USB serial number string
//! ```

use crate::{
    Error,
    sysfs::{SysFs, read_u64},
};
use heapless::{String, Vec};

/// The most block devices the installer considers. A machine with more is
/// still handled: the rest are reported as skipped by [`scan`].
pub const MAX_BLOCK_DEVICES: usize = 32;

/// The longest block device name kept (`nvme10n12`, `mmcblk0boot1`, …).
pub const MAX_DEVICE_NAME: usize = 32;

/// Where the kernel lists block devices.
pub const SYS_BLOCK: &str = "/sys/block";

/// What sysfs says about one whole-disk block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockFacts {
    /// Kernel name: `sda`, `vda`, `nvme0n1`, `mmcblk0`, `sr0`, …
    pub name: String<MAX_DEVICE_NAME>,
    /// `removable` was 1 (USB sticks, card readers, optical drives).
    pub removable: bool,
    /// `ro` was 1 (write-protected).
    pub read_only: bool,
    /// Size in 512-byte sectors (sysfs always counts 512-byte units).
    pub sectors: u64,
}

impl BlockFacts {
    /// Size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.sectors.saturating_mul(512)
    }
}

/// The result of [`scan`]: the devices read, sorted by name, and how many
/// entries did not fit or could not be read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Devices sorted by kernel name.
    pub devices: Vec<BlockFacts, MAX_BLOCK_DEVICES>,
    /// Entries skipped because the table was full, the name too long, or a
    /// sysfs attribute unreadable.
    pub unreadable: usize,
}

/// Read every entry of `/sys/block` and return the facts sorted by name.
pub fn scan<S: SysFs + ?Sized>(fs: &S) -> Result<Scan, Error> {
    let mut names: Vec<String<MAX_DEVICE_NAME>, MAX_BLOCK_DEVICES> = Vec::new();
    let mut unreadable = 0usize;
    fs.list(SYS_BLOCK, &mut |name| {
        let mut owned = String::new();
        if owned.push_str(name).is_err() || names.push(owned).is_err() {
            unreadable += 1;
        }
    })?;
    names.sort_unstable();

    let mut scan = Scan {
        devices: Vec::new(),
        unreadable,
    };
    for name in names {
        match read_facts(fs, &name) {
            // `names` and `devices` share one capacity, so push cannot fail.
            Ok(facts) => {
                let _ = scan.devices.push(facts);
            }
            Err(_) => scan.unreadable += 1,
        }
    }
    Ok(scan)
}

/// Read the facts of one device, `name` being its `/sys/block` entry.
pub fn read_facts<S: SysFs + ?Sized>(fs: &S, name: &str) -> Result<BlockFacts, Error> {
    let mut path: String<96> = String::new();
    let mut attr = |leaf: &str| -> Result<u64, Error> {
        path.clear();
        for part in [SYS_BLOCK, "/", name, "/", leaf] {
            path.push_str(part).map_err(|_| Error::TooLarge)?;
        }
        read_u64(fs, &path)
    };
    let sectors = attr("size")?;
    let removable = attr("removable")? != 0;
    let read_only = attr("ro")? != 0;
    let mut owned = String::new();
    owned.push_str(name).map_err(|_| Error::TooLarge)?;
    Ok(BlockFacts {
        name: owned,
        removable,
        read_only,
        sectors,
    })
}

/// The longest identifying text kept (a model, a serial number).
pub const MAX_ID_TEXT: usize = 128;
/// The longest `wwid` kept (an NVMe `nvme.<vid>-<serial hex>-<model hex>-<nsid>`
/// reaches 140 characters).
pub const MAX_WWID: usize = 160;
/// The most bytes of a SCSI VPD page kept.
pub const MAX_VPD: usize = 512;
/// The longest SCSI address kept (`host:channel:target:lun`).
pub const MAX_SCSI_ADDRESS: usize = 48;

/// What sysfs says about who a disk is: the raw attributes, unnormalised.
/// Attributes a driver does not have are empty. See the module docs for
/// which driver has which.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskIds {
    /// `/sys/block/<d>/serial` (virtio-blk).
    pub serial: String<MAX_ID_TEXT>,
    /// `/sys/block/<d>/wwid` (an NVMe namespace), else `device/wwid` (SCSI).
    pub wwid: String<MAX_WWID>,
    /// `device/model` (NVMe, SCSI INQUIRY).
    pub model: String<MAX_ID_TEXT>,
    /// `device/serial` (the NVMe controller).
    pub device_serial: String<MAX_ID_TEXT>,
    /// `device/vendor` (SCSI INQUIRY; `ATA` for disks behind libata).
    pub vendor: String<MAX_ID_TEXT>,
    /// `device/vpd_pg80`: the unit serial number page.
    pub vpd80: Vec<u8, MAX_VPD>,
    /// `device/vpd_pg83`: the device identification page.
    pub vpd83: Vec<u8, MAX_VPD>,
    /// The one entry of `device/scsi_device/`: `host:channel:target:lun`.
    pub scsi_address: String<MAX_SCSI_ADDRESS>,
    /// The SCSI device sits on a USB interface (`device/../../../bInterfaceClass` exists).
    pub usb: bool,
    /// `device/../../../../serial`: the USB device's serial number string.
    pub usb_serial: String<MAX_ID_TEXT>,
}

fn attr_path(name: &str, leaf: &str) -> Option<String<128>> {
    let mut path = String::new();
    for part in [SYS_BLOCK, "/", name, "/", leaf] {
        path.push_str(part).ok()?;
    }
    Some(path)
}

/// `leaf` of `/sys/block/<name>/` as text without trailing whitespace;
/// empty when missing, unreadable, not UTF-8 or longer than `N`.
fn text_attr<S: SysFs + ?Sized, const N: usize>(fs: &S, name: &str, leaf: &str) -> String<N> {
    let mut out = String::new();
    let mut buf = [0u8; 256];
    if let Some(path) = attr_path(name, leaf)
        && let Ok(text) = crate::sysfs::read_trimmed(fs, &path, &mut buf)
        && out.push_str(text).is_err()
    {
        out.clear();
    }
    out
}

fn bytes_attr<S: SysFs + ?Sized>(fs: &S, name: &str, leaf: &str) -> Vec<u8, MAX_VPD> {
    let mut buf = [0u8; MAX_VPD];
    match attr_path(name, leaf).map(|p| fs.read(&p, &mut buf)) {
        Some(Ok(n)) => Vec::from_slice(buf.get(..n).unwrap_or_default()).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Read who the disk `name` (its `/sys/block` entry) is. Never fails: what
/// cannot be read stays empty.
pub fn read_ids<S: SysFs + ?Sized>(fs: &S, name: &str) -> DiskIds {
    let mut wwid: String<MAX_WWID> = text_attr(fs, name, "wwid");
    if wwid.is_empty() {
        wwid = text_attr(fs, name, "device/wwid");
    }
    let mut scsi_address = String::new();
    if let Some(dir) = attr_path(name, "device/scsi_device") {
        let _ = fs.list(&dir, &mut |entry| {
            scsi_address.clear();
            if scsi_address.push_str(entry).is_err() {
                scsi_address.clear();
            }
        });
    }
    let usb = attr_path(name, "device/../../../bInterfaceClass").is_some_and(|p| fs.exists(&p));
    DiskIds {
        serial: text_attr(fs, name, "serial"),
        wwid,
        model: text_attr(fs, name, "device/model"),
        device_serial: text_attr(fs, name, "device/serial"),
        vendor: text_attr(fs, name, "device/vendor"),
        vpd80: bytes_attr(fs, name, "device/vpd_pg80"),
        vpd83: bytes_attr(fs, name, "device/vpd_pg83"),
        scsi_address,
        usb,
        usb_serial: if usb {
            text_attr(fs, name, "device/../../../../serial")
        } else {
            String::new()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSys;

    #[test]
    fn h2_read_ids_of_the_qemu_devices() {
        let mut sys = FakeSys::new();
        crate::fake::qemu_disk_ids(&mut sys);
        let v = read_ids(&sys, "vda");
        assert_eq!(v.serial.as_str(), "VIRT0SERIAL1");
        assert_eq!(v.vendor.as_str(), "0x1af4");
        assert!(v.wwid.is_empty() && !v.usb);
        let n = read_ids(&sys, "nvme0n1");
        assert_eq!(n.model.as_str(), "QEMU NVMe Ctrl");
        assert_eq!(n.device_serial.as_str(), "NVME0SERIAL1");
        assert!(n.wwid.starts_with("nvme.1b36-"));
        let a = read_ids(&sys, "sda");
        assert_eq!(a.vendor.as_str(), "ATA");
        assert_eq!(a.wwid.as_str(), "naa.5002538f4130a1b2");
        assert_eq!(a.vpd80.len(), 24);
        assert!(!a.usb);
        let u = read_ids(&sys, "sdb");
        assert!(u.usb);
        assert_eq!(u.usb_serial.as_str(), "USB0SERIAL1");
        assert_eq!(u.scsi_address.as_str(), "12:0:0:0");
        assert_eq!(u.model.as_str(), "QEMU HARDDISK");
        assert!(u.wwid.is_empty() && u.vpd83.is_empty());
    }

    fn disk(sys: &mut FakeSys, name: &str, size: u64, removable: u8, ro: u8) {
        sys.file(&format!("/sys/block/{name}/size"), &format!("{size}\n"));
        sys.file(
            &format!("/sys/block/{name}/removable"),
            &format!("{removable}\n"),
        );
        sys.file(&format!("/sys/block/{name}/ro"), &format!("{ro}\n"));
    }

    #[test]
    fn scan_reads_and_sorts_devices() {
        let mut sys = FakeSys::new();
        disk(&mut sys, "sdb", 30_031_872, 1, 0); // a USB stick
        disk(&mut sys, "sda", 976_773_168, 0, 0);
        disk(&mut sys, "sr0", 2_097_151, 1, 1);
        let scan = scan(&sys).unwrap();
        let names: std::vec::Vec<&str> = scan.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sdb", "sr0"]);
        assert_eq!(scan.devices[0].size_bytes(), 976_773_168 * 512);
        assert!(!scan.devices[0].removable);
        assert!(scan.devices[1].removable);
        assert!(scan.devices[2].read_only);
        assert_eq!(scan.unreadable, 0);
    }

    #[test]
    fn scan_counts_unreadable_entries_instead_of_failing() {
        let mut sys = FakeSys::new();
        disk(&mut sys, "vda", 4_194_304, 0, 0);
        sys.file("/sys/block/vdb/size", "garbage\n");
        sys.file("/sys/block/vdb/removable", "0\n");
        sys.file("/sys/block/vdb/ro", "0\n");
        let scan = scan(&sys).unwrap();
        assert_eq!(scan.devices.len(), 1);
        assert_eq!(scan.unreadable, 1);
    }

    #[test]
    fn scan_bounds_the_table() {
        let mut sys = FakeSys::new();
        for i in 0..(MAX_BLOCK_DEVICES + 5) {
            disk(&mut sys, &format!("loop{i:02}"), 0, 0, 0);
        }
        let scan = scan(&sys).unwrap();
        assert_eq!(scan.devices.len(), MAX_BLOCK_DEVICES);
        assert_eq!(scan.unreadable, 5);
    }

    #[test]
    fn missing_sys_block_is_an_error() {
        let sys = FakeSys::new();
        assert_eq!(scan(&sys).unwrap_err(), Error::NotFound);
    }
}
