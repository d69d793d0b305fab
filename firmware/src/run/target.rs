//! The target disk and the one guarded path that writes it (checklist
//! I4, I16, I17, W5, W8, W9).
//!
//! [`write_guarded`] is the only code that opens the target for writing.
//! Both installs go through it:
//!
//! ```text
//! choose the disk → open → zero the first MiB, fsync (disarm)
//!   → fill: the image's bytes; the first MiB goes to the held-back
//!     `head` buffer, everything else to the disk        (caller's closure)
//!   → fsync
//!   → complete: what must be durable before the disk may boot, e.g.
//!     /perm/ze/database.zefs                            (caller's closure)
//!   → write the held-back first MiB, fsync (arm)
//! any error after the open: zero the first MiB again
//! ```
//!
//! So at every instant the disk is either unbootable (its first MiB, with
//! the partition table and boot code, is zero) or complete.

use crate::{
    bmap::MAX_BMAP,
    byid::{self, Spec},
    cmdline::Config,
    console::{self, say},
    disk::{self, MAX_PATH, Mode},
    install::{self, Fatal, HEAD_LEN, IO_CHUNK},
};
use core::{fmt::Write, time::Duration};
use heapless::String;
use ze_hal::{
    Error,
    block::{self, BlockFacts, MAX_DEVICE_NAME},
    os::{BlockDev, Os},
};

/// The fixed buffers the install uses (the firmware has no heap).
#[derive(Debug)]
pub struct Buffers<'a> {
    /// The held-back first MiB of the image.
    pub head: &'a mut [u8; HEAD_LEN],
    /// The receive buffer of the download pipeline (and zeros, when a
    /// device cannot zero a range itself).
    pub io: &'a mut [u8; IO_CHUNK],
    /// The image's block map, as downloaded or read from the media.
    pub bmap: &'a mut [u8; MAX_BMAP],
}

/// Choose the target disk, waiting up to [`install::DISK_WAIT`] for disks
/// that appear late. A `/dev/disk/by-id/` or `serial:` target is resolved
/// from sysfs first ([`byid`]); when it names no disk, or several, every
/// disk's names are logged before the FATAL.
pub fn choose_disk<O: Os>(os: &mut O, cfg: &Config, mode: Mode<'_>) -> Result<BlockFacts, Fatal> {
    let start = os.now();
    let text = cfg.target.as_deref();
    // The command line was validated; a target that fails here is none.
    let spec = text.and_then(|t| byid::parse(t).ok());
    loop {
        let scan = block::scan(os.sys()).unwrap_or_default();
        let late = os.now().saturating_since(start) >= install::DISK_WAIT;
        let kernel = match spec {
            None => None,
            Some(Spec::Kernel(name)) => Some(name),
            Some(spec) => {
                let sys = os.sys();
                match byid::resolve(text.unwrap_or(""), spec, &scan.devices, &mut |d| {
                    block::read_ids(sys, d)
                }) {
                    Ok(d) => {
                        say!(os, "ze.target={} is /dev/{}", text.unwrap_or(""), d.name);
                        Some(d.name.as_str())
                    }
                    // A disk that appears late cannot make two one.
                    Err(e) if e.matched > 1 || late => {
                        say_disks(os, &scan.devices);
                        return Err(Fatal::Disk(disk::DiskError::Resolve(e)));
                    }
                    Err(_) => {
                        os.sleep(Duration::from_millis(250));
                        continue;
                    }
                }
            }
        };
        match disk::choose(&scan.devices, kernel, mode) {
            Ok(d) => return Ok(d.clone()),
            // More disks appearing cannot make these right.
            Err(
                e @ (disk::DiskError::Ambiguous { .. } | disk::DiskError::TargetUnsuitable(..)),
            ) => {
                return Err(Fatal::Disk(e));
            }
            Err(e) => {
                // Disks can appear late (USB, slow controllers): wait a bit.
                if late {
                    return Err(Fatal::Disk(e));
                }
                os.sleep(Duration::from_millis(250));
            }
        }
    }
}

/// One line per disk: its kernel name, size, every by-id name and its
/// serial, so an operator can copy the right `ze.target`.
pub fn say_disks<O: Os>(os: &mut O, devices: &[BlockFacts]) {
    for d in devices {
        if disk::skip_reason(d) == Some(disk::Skip::Kind) {
            continue;
        }
        let ids = block::read_ids(os.sys(), &d.name);
        let mut line = console::Line::new();
        let _ = write!(
            line,
            "disk /dev/{} ({})",
            d.name,
            disk::Size(d.size_bytes())
        );
        for n in byid::names(&d.name, &ids) {
            let _ = write!(line, " {}{n}", byid::BY_ID);
        }
        if let Some(s) = byid::serial(&d.name, &ids) {
            let _ = write!(line, " {}{s}", byid::SERIAL);
        }
        os.consoles_write(line.finish());
    }
}

/// The open target disk while an image is written to it: the first MiB
/// goes to the held-back `head`, the rest to the disk.
pub struct Target<'a, D: BlockDev> {
    /// The disk.
    pub disk: D,
    /// Its kernel name (`vda`, `nvme0n1`).
    pub name: String<MAX_DEVICE_NAME>,
    /// Its `/dev/...` path.
    pub path: String<MAX_PATH>,
    /// Its size in bytes.
    pub size: u64,
    head: &'a mut [u8; HEAD_LEN],
    /// Bytes the device zeroed itself (BLKZEROOUT).
    pub zeroed_by_device: u64,
    /// Bytes of zeros written because the device refused to zero them.
    pub zeroed_by_writes: u64,
}

impl<D: BlockDev> core::fmt::Debug for Target<'_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Target")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn disk_io(what: &'static str) -> impl Fn(Error) -> Fatal {
    move |error| Fatal::DiskIo { what, error }
}

impl<D: BlockDev> Target<'_, D> {
    /// The held-back first MiB.
    pub fn head(&self) -> &[u8; HEAD_LEN] {
        self.head
    }

    /// Bytes of the image at `offset`.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        let end = offset.saturating_add(bytes.len() as u64);
        if end > self.size {
            return Err(Fatal::TooLarge {
                image: end,
                disk: self.size,
            });
        }
        let p = install::place(offset, bytes.len());
        if let Some((range, at)) = p.head {
            let src = bytes.get(range).unwrap_or_default();
            if let Some(dst) = self.head.get_mut(at..at + src.len()) {
                dst.copy_from_slice(src);
            }
        }
        if let Some((range, at)) = p.tail {
            self.disk
                .write_at(at, bytes.get(range).unwrap_or_default())
                .map_err(disk_io("write"))?;
        }
        Ok(())
    }

    /// Make the image's bytes `from..to` zero on the disk: the part in the
    /// first MiB in the held-back copy, the rest by the device itself
    /// (`BLKZEROOUT`) or, where it refuses, by writing `zeros` (which this
    /// fills with zeros).
    pub fn zero(&mut self, from: u64, to: u64, zeros: &mut [u8]) -> Result<(), Fatal> {
        if to <= from {
            return Ok(());
        }
        if to > self.size {
            return Err(Fatal::TooLarge {
                image: to,
                disk: self.size,
            });
        }
        let head_len = HEAD_LEN as u64;
        if from < head_len {
            let end = to.min(head_len) as usize;
            if let Some(h) = self.head.get_mut(from as usize..end) {
                h.fill(0);
            }
        }
        let from = from.max(head_len);
        if from >= to {
            return Ok(());
        }
        if self.disk.zero_range(from, to - from).is_ok() {
            self.zeroed_by_device += to - from;
            return Ok(());
        }
        zeros.fill(0);
        let mut at = from;
        while at < to {
            let n = (to - at).min(zeros.len() as u64) as usize;
            self.disk
                .write_at(at, zeros.get(..n).unwrap_or_default())
                .map_err(disk_io("write zeros"))?;
            at += n as u64;
        }
        self.zeroed_by_writes += to - from;
        Ok(())
    }
}

/// Zero the first MiB (the partition table and boot code) and flush.
pub fn disarm<D: BlockDev>(disk: &mut D, size: u64, zeros: &mut [u8]) -> Result<(), Error> {
    zeros.fill(0);
    let mut at = 0u64;
    let end = size.min(HEAD_LEN as u64);
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        disk.write_at(at, zeros.get(..n).unwrap_or_default())?;
        at += n as u64;
    }
    disk.sync()
}

/// The disk to write: its kernel name and its path (`/dev/<name>`, or a
/// regular file for benchmarks on the host).
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// Kernel name, for the partition node (`vda` → `vda4`).
    pub name: &'a str,
    /// What to open.
    pub path: &'a str,
}

/// Open `device` and write it the only safe way: zero its first MiB,
/// `fill` it (returns the image size), fsync, `complete` it, and only
/// then write the held-back first MiB. Any error zeroes the first MiB
/// again. An image known to be `image_size` bytes that cannot fit is
/// refused before the disk is touched. See the module documentation.
pub fn write_guarded<'h, O, F, C>(
    os: &mut O,
    device: Device<'_>,
    image_size: Option<u64>,
    head: &'h mut [u8; HEAD_LEN],
    io: &mut [u8; IO_CHUNK],
    fill: F,
    complete: C,
) -> Result<u64, Fatal>
where
    O: Os,
    F: FnOnce(&mut O, &mut Target<'h, O::Disk>, &mut [u8; IO_CHUNK]) -> Result<u64, Fatal>,
    C: FnOnce(&mut O, &mut Target<'h, O::Disk>, &mut [u8; IO_CHUNK]) -> Result<(), Fatal>,
{
    let mut path = String::new();
    let _ = path.push_str(device.path);
    let mut name = String::new();
    let _ = name.push_str(device.name);
    let mut dev = os.disk_open(&path).map_err(disk_io("open"))?;
    let size = dev.size().map_err(disk_io("size"))?;
    say!(os, "target disk {path} ({size} bytes)");
    if let Some(image) = image_size
        && image > size
    {
        return Err(Fatal::TooLarge { image, disk: size });
    }
    disarm(&mut dev, size, &mut io[..]).map_err(disk_io("zero the first MiB"))?;
    // The kernel still knows the partitions of whatever table was there:
    // with the first MiB zero, a re-read drops them.
    if let Err(e) = dev.reread_partitions() {
        say!(
            os,
            "warning: {path}: re-reading the now empty partition table failed: {e}"
        );
    }
    head.fill(0);
    let mut target = Target {
        disk: dev,
        name,
        path,
        size,
        head,
        zeroed_by_device: 0,
        zeroed_by_writes: 0,
    };
    let result = fill(os, &mut target, io).and_then(|image_size| {
        // Everything after the first MiB must be on the disk before the
        // partition table that points at it.
        target.disk.sync().map_err(disk_io("fsync"))?;
        complete(os, &mut target, io)?;
        let head_len = usize::try_from(image_size)
            .unwrap_or(usize::MAX)
            .min(HEAD_LEN);
        let head = target.head.get(..head_len).unwrap_or_default();
        target
            .disk
            .write_at(0, head)
            .map_err(disk_io("write the first MiB"))?;
        target.disk.sync().map_err(disk_io("fsync"))?;
        Ok(image_size)
    });
    match result {
        Ok(image_size) => {
            say!(
                os,
                "{}: partition table and boot code written last; the disk is complete",
                target.path
            );
            Ok(image_size)
        }
        Err(fatal) => {
            let _ = disarm(&mut target.disk, size, &mut io[..]);
            say!(
                os,
                "first MiB of {} zeroed: the disk will not boot a partial install",
                target.path
            );
            Err(fatal)
        }
    }
}
