//! The HTTP install (checklist I3, I5, I6, I17): the network stage, the
//! target disk, the image from `ze.server` with resume and retries, then
//! partition 4, `/perm/ze/database.zefs`, unmount, sync. The caller reboots.

use super::{
    download::{Download, Sink},
    network::{self, url_path},
    target::{self, Buffers, ImageSink},
};
use crate::{
    cmdline::Config,
    console::say,
    disk::{self, Mode},
    install::{self, Fatal},
};
use core::net::Ipv4Addr;
use sha2::{Digest as _, Sha256};
use ze_hal::os::{BlockDev, FileOut, Os};

/// Download the image to `disk` and make it bootable only when verified.
/// Returns the image size and digest.
pub fn write_image<O: Os, D: BlockDev>(
    os: &mut O,
    cfg: &Config,
    disk: &mut D,
    bufs: &mut Buffers<'_>,
) -> Result<(u64, [u8; 32]), Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::missing("ze.server"));
    };
    let io_err = |what| move |error| Fatal::DiskIo { what, error };
    let disk_size = disk.size().map_err(io_err("size"))?;
    let path = url_path(install::IMAGE_URL, &cfg.image);
    let mut sink = ImageSink {
        disk,
        head: &mut *bufs.head,
        sha: Sha256::new(),
        disk_size,
        expected_size: cfg.size,
    };
    let total = Download::new(server, port, &path, "image").run(os, &mut sink, &mut bufs.io[..])?;
    let digest = sink.seal(total, cfg.size, cfg.sha256)?;
    Ok((total, digest))
}

struct FileSink<O: Os> {
    file: Option<O::File>,
}

impl<O: Os> Sink<O> for FileSink<O> {
    fn restart(&mut self, os: &mut O) -> Result<(), Fatal> {
        self.file = None;
        self.file = Some(
            os.file_create(install::ZEFS_TMP)
                .map_err(|error| Fatal::Perm {
                    what: "create the database",
                    error,
                })?,
        );
        Ok(())
    }
    fn total(&mut self, total: u64) -> Result<(), Fatal> {
        if total > install::MAX_ZEFS {
            return Err(Fatal::ZefsTooLarge(total));
        }
        Ok(())
    }
    fn write(&mut self, _offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        let Some(f) = self.file.as_mut() else {
            return Err(Fatal::Perm {
                what: "write the database",
                error: ze_hal::Error::NotFound,
            });
        };
        f.write_all(bytes).map_err(|error| Fatal::Perm {
            what: "write the database",
            error,
        })
    }
}

fn write_database<O: Os>(
    os: &mut O,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<u64, Fatal> {
    let perm = |what| move |error| Fatal::Perm { what, error };
    os.mkdir(install::ZE_DIR).map_err(perm("mkdir ze"))?;
    let mut sink: FileSink<O> = FileSink { file: None };
    Sink::<O>::restart(&mut sink, os)?;
    let size = Download::new(server, port, install::ZEFS_URL, "database").run(os, &mut sink, io)?;
    let mut file = sink.file.take().ok_or(Fatal::Perm {
        what: "write the database",
        error: ze_hal::Error::NotFound,
    })?;
    file.sync().map_err(perm("fsync the database"))?;
    drop(file);
    os.rename(install::ZEFS_TMP, install::ZEFS_PATH)
        .map_err(perm("rename the database into place"))?;
    os.sync_dir(install::ZE_DIR).map_err(perm("fsync ze/"))?;
    Ok(size)
}

/// The whole HTTP install, from the network to the unmount.
pub fn install<O: Os>(os: &mut O, cfg: &Config, bufs: &mut Buffers<'_>) -> Result<(), Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::missing("ze.server"));
    };
    say!(os, "installing {} from {server}:{port}", cfg.image);
    network::network(os, cfg)?;
    let facts = target::choose_disk(os, cfg, Mode::Http)?;
    let path = disk::disk_path(&facts.name);
    let io_err = |what| move |error| Fatal::DiskIo { what, error };
    let mut dev = os.disk_open(&path).map_err(io_err("open"))?;
    let size = dev.size().map_err(io_err("size"))?;
    say!(os, "target disk {path} ({size} bytes)");
    target::disarm(&mut dev, size, &mut bufs.io[..]).map_err(io_err("zero the first MiB"))?;
    let result = write_image(os, cfg, &mut dev, bufs).and_then(|(total, digest)| {
        say!(
            os,
            "image written: {total} bytes, sha256 {}",
            install::Hex(&digest)
        );
        target::reread_partitions(os, &mut dev)
    });
    if let Err(fatal) = result {
        let _ = target::disarm(&mut dev, size, &mut bufs.io[..]);
        return Err(fatal);
    }
    drop(dev);
    let after = perm_stage(os, &facts.name, server, port, &mut bufs.io[..]);
    if let Err(fatal) = after {
        // The image is complete but the install is not: make sure the disk
        // does not boot without its database.
        let _ = os.unmount(install::PERM);
        if let Ok(mut dev) = os.disk_open(&path) {
            let _ = target::disarm(&mut dev, size, &mut bufs.io[..]);
        }
        say!(
            os,
            "first MiB of {path} zeroed: the disk will not boot a partial install"
        );
        return Err(fatal);
    }
    Ok(())
}

fn perm_stage<O: Os>(
    os: &mut O,
    disk_name: &str,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<(), Fatal> {
    let node = disk::partition_path(disk_name, install::PERM_PARTITION);
    let start = os.now();
    while !os.exists(&node) {
        if os.now().saturating_since(start) >= install::PARTITION_WAIT {
            let mut n = heapless::String::new();
            let _ = n.push_str(&node);
            return Err(Fatal::NoPartition { node: n });
        }
        os.sleep(install::PARTITION_POLL);
    }
    let perm = |what| move |error| Fatal::Perm { what, error };
    os.mkdir(install::PERM).map_err(perm("mkdir"))?;
    os.mount_ext4(&node, install::PERM)
        .map_err(perm("mount ext4"))?;
    say!(os, "mounted {node} (ext4) at {}", install::PERM);
    let written = write_database(os, server, port, io);
    let unmounted = os.unmount(install::PERM);
    let size = written?;
    unmounted.map_err(perm("unmount"))?;
    say!(os, "wrote {} ({size} bytes)", install::ZEFS_PATH);
    os.sync_all();
    Ok(())
}
