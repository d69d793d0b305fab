//! The target disk: which one ([`choose_disk`]), and the write path that
//! never leaves it bootable but incomplete: the first MiB is zeroed before
//! anything else ([`disarm`]), held back in memory while the image goes
//! through ([`ImageSink`]), and written only at the end ([`ImageSink::seal`]).

use crate::{
    cmdline::{self, Config},
    disk::{self, Mode},
    install::{self, Fatal, HEAD_LEN, IO_CHUNK},
};
use core::time::Duration;
use sha2::{Digest as _, Sha256};
use ze_hal::{
    block,
    os::{BlockDev, Os},
};

use super::download::Sink;

/// The fixed buffers the install uses (the firmware has no heap).
#[derive(Debug)]
pub struct Buffers<'a> {
    /// The held-back first MiB of the image.
    pub head: &'a mut [u8; HEAD_LEN],
    /// The receive buffer of the download pipeline.
    pub io: &'a mut [u8; IO_CHUNK],
}

/// Choose the target disk, waiting up to [`install::DISK_WAIT`] for disks
/// that appear late.
pub fn choose_disk<O: Os>(
    os: &mut O,
    cfg: &Config,
    mode: Mode<'_>,
) -> Result<block::BlockFacts, Fatal> {
    let start = os.now();
    loop {
        let scan = block::scan(os.sys()).unwrap_or_default();
        match disk::choose(&scan.devices, cfg.target.as_deref(), mode) {
            Ok(d) => return Ok(d.clone()),
            // More disks appearing cannot make these right.
            Err(
                e @ (disk::DiskError::Ambiguous { .. } | disk::DiskError::TargetUnsuitable(..)),
            ) => {
                return Err(Fatal::Disk(e));
            }
            Err(e) => {
                // Disks can appear late (USB, slow controllers): wait a bit.
                if os.now().saturating_since(start) >= install::DISK_WAIT {
                    return Err(Fatal::Disk(e));
                }
                os.sleep(Duration::from_millis(250));
            }
        }
    }
}

/// The image pipeline: hash everything, hold the first MiB back, write
/// the rest through.
pub struct ImageSink<'a, D: BlockDev> {
    /// The target disk.
    pub disk: &'a mut D,
    /// Holds the first [`install::HEAD_LEN`] bytes.
    pub head: &'a mut [u8; HEAD_LEN],
    /// The running digest.
    pub sha: Sha256,
    /// The disk's size.
    pub disk_size: u64,
    /// `ze.size`, checked as soon as the server announces its size.
    pub expected_size: Option<u64>,
}

impl<D: BlockDev> core::fmt::Debug for ImageSink<'_, D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ImageSink")
            .field("disk_size", &self.disk_size)
            .field("expected_size", &self.expected_size)
            .finish_non_exhaustive()
    }
}

impl<O: Os, D: BlockDev> Sink<O> for ImageSink<'_, D> {
    fn restart(&mut self, _os: &mut O) -> Result<(), Fatal> {
        self.sha = Sha256::new();
        Ok(())
    }

    fn total(&mut self, total: u64) -> Result<(), Fatal> {
        if total > self.disk_size {
            return Err(Fatal::TooLarge {
                image: total,
                disk: self.disk_size,
            });
        }
        if let Some(expected) = self.expected_size
            && expected != total
        {
            return Err(Fatal::SizeMismatch {
                expected,
                got: total,
            });
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        self.sha.update(bytes);
        let p = install::place(offset, bytes.len());
        if let Some((range, at)) = p.head {
            let src = bytes.get(range.clone()).unwrap_or_default();
            if let Some(dst) = self.head.get_mut(at..at + src.len()) {
                dst.copy_from_slice(src);
            }
        }
        if let Some((range, at)) = p.tail {
            self.disk
                .write_at(at, bytes.get(range).unwrap_or_default())
                .map_err(|error| Fatal::DiskIo {
                    what: "write",
                    error,
                })?;
        }
        Ok(())
    }
}

impl<D: BlockDev> ImageSink<'_, D> {
    /// The whole image (`total` bytes) went through [`Sink::write`]: flush
    /// it, check it against `ze.size` and `ze.sha256`, and only then write
    /// the held-back first MiB and flush again. Returns the digest.
    pub fn seal(
        &mut self,
        total: u64,
        expected_size: Option<u64>,
        expected_digest: Option<cmdline::Digest>,
    ) -> Result<[u8; 32], Fatal> {
        let io_err = |what| move |error| Fatal::DiskIo { what, error };
        let digest: [u8; 32] = self.sha.clone().finalize().into();
        // Everything after the first MiB must be on the disk before the
        // partition table that points at it.
        self.disk.sync().map_err(io_err("fsync"))?;
        install::verify(expected_size, expected_digest, total, digest)?;
        let head_len = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(install::HEAD_LEN);
        self.disk
            .write_at(0, self.head.get(..head_len).unwrap_or_default())
            .map_err(io_err("write the first MiB"))?;
        self.disk.sync().map_err(io_err("fsync"))?;
        Ok(digest)
    }
}

/// Zero the first MiB (the partition table and boot code) and flush.
pub fn disarm<D: BlockDev>(disk: &mut D, size: u64, zeros: &mut [u8]) -> Result<(), ze_hal::Error> {
    zeros.fill(0);
    let mut at = 0u64;
    let end = size.min(install::HEAD_LEN as u64);
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        disk.write_at(at, zeros.get(..n).unwrap_or_default())?;
        at += n as u64;
    }
    disk.sync()
}

pub fn reread_partitions<O: Os, D: BlockDev>(os: &mut O, dev: &mut D) -> Result<(), Fatal> {
    let mut last = ze_hal::Error::NotFound;
    for _ in 0..install::REREAD_TRIES {
        match dev.reread_partitions() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        os.sleep(install::REREAD_DELAY);
    }
    Err(Fatal::DiskIo {
        what: "re-read the partition table (BLKRRPART)",
        error: last,
    })
}
