//! The HTTP install (checklist I3, I5, I6, I17, W4–W6, W8): the network
//! stage, the image's block map, the target disk, the image — only its
//! mapped ranges when the map is there and trusted, else the whole stream
//! — then `/perm/ze/database.zefs`, and only then the partition table.
//! The caller reboots.
//!
//! `/perm` is partition 4 of the image. To reach it before the partition
//! table is on the disk, the installer reads partition 4's place from the
//! held-back table ([`crate::gpt`]) and tells the kernel about it with
//! `BLKPG_ADD_PARTITION`; the kernel then has `/dev/<disk>4` although
//! the disk's first MiB is still zero. After the database is durable the
//! partition is removed again and the table written.

use super::{
    download::{Download, Sink},
    image::{self, MapSink, MapWriter, Stream},
    network::{self, url_path},
    report::{Reporter, Value},
    target::{self, Buffers, Device, Target},
};
use crate::{
    bmap::{Bmap, BmapError},
    cmdline::Config,
    console::say,
    disk::{self, Mode},
    gpt,
    install::{self, Fatal, Hex, IO_CHUNK},
};
use core::net::Ipv4Addr;
use ze_hal::os::{BlockDev, FileOut, Os};

/// The suffix of an image's block map on the server.
pub const BMAP_SUFFIX: &str = ".bmap";

/// The whole HTTP install, from the network to the partition table.
pub fn install<O: Os>(os: &mut O, cfg: &Config, bufs: &mut Buffers<'_>) -> Result<(), Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::missing("ze.server"));
    };
    say!(os, "installing {} from {server}:{port}", cfg.image);
    let up = network::network(os, cfg)?;
    let mut report = Reporter::new(server, port, up.mac);
    let fields = [
        ("iface", Value::Text(&up.name)),
        (
            "ip",
            up.addr.map_or(Value::Text(""), |(a, n)| Value::Net(a, n)),
        ),
    ];
    report.send(os, "network", &fields);
    let result = install_on_the_network(os, cfg, bufs, &mut report);
    match &result {
        Ok(()) => report.send(os, "complete", &[]),
        Err(f) => report.fatal(os, f),
    }
    result
}

/// The install once the network is up: the disk, the image, the database.
fn install_on_the_network<O: Os>(
    os: &mut O,
    cfg: &Config,
    bufs: &mut Buffers<'_>,
    report: &mut Reporter,
) -> Result<(), Fatal> {
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::missing("ze.server"));
    };
    let facts = target::choose_disk(os, cfg, Mode::Http)?;
    let path = disk::disk_path(&facts.name);
    report.send(
        os,
        "disk",
        &[
            ("name", Value::Text(&facts.name)),
            ("size", Value::Num(facts.size_bytes())),
        ],
    );
    let device = Device {
        name: &facts.name,
        path: &path,
    };
    write_image(os, cfg, device, bufs, report, |os, target, io, report| {
        let size = perm_stage(os, target, server, port, &mut io[..])?;
        report.send(os, "database", &[("bytes", Value::Num(size))]);
        Ok(())
    })?;
    super::bootentry::register(
        os,
        &facts.name,
        bufs.head,
        crate::efiboot::Place::AfterNetwork { current: None },
    );
    Ok(())
}

/// The image from `ze.server` onto `device` through the guarded write
/// path: its block map when `ze.bmap-sha256` asks for one and the server
/// has it, else the whole stream; `complete` runs before the partition
/// table is written. Returns the image size. Installs call it with the
/// chosen disk, host benchmarks with a file.
pub fn write_image<O, C>(
    os: &mut O,
    cfg: &Config,
    device: Device<'_>,
    bufs: &mut Buffers<'_>,
    report: &mut Reporter,
    complete: C,
) -> Result<u64, Fatal>
where
    O: Os,
    C: FnOnce(
        &mut O,
        &mut Target<'_, O::Disk>,
        &mut [u8; IO_CHUNK],
        &mut Reporter,
    ) -> Result<(), Fatal>,
{
    let Some((server, port)) = cfg.server() else {
        return Err(Fatal::missing("ze.server"));
    };
    let Buffers { head, io, bmap } = bufs;
    let map_len = fetch_map(os, cfg, server, port, &mut bmap[..], &mut io[..])?;
    let map = match map_len {
        Some(n) => Some(image::trust_map(
            os,
            cfg,
            bmap.get(..n).unwrap_or_default(),
        )?),
        None => None,
    };
    let path = url_path(install::IMAGE_URL, &cfg.image);
    let mut dl = Download::new(server, port, &path, "image");
    // Both stages report; one at a time.
    let report = core::cell::RefCell::new(report);
    target::write_guarded(
        os,
        device,
        map.as_ref().map(|m| m.image_size).or(cfg.size),
        head,
        io,
        |os, target, io| {
            let mut report = report.borrow_mut();
            let size = match &map {
                Some(map) => write_mapped(os, &mut dl, map, target, &mut io[..], &mut report)?,
                None => write_stream(os, &mut dl, cfg, target, &mut io[..], &mut report)?,
            };
            report.send(os, "verified", &[("bytes", Value::Num(size))]);
            Ok(size)
        },
        |os, target, io| complete(os, target, io, &mut report.borrow_mut()),
    )
}

/// Download `<image>.bmap` into `buf` when `ze.bmap-sha256` asks for a
/// map; `None` means the whole image is streamed instead.
fn fetch_map<O: Os>(
    os: &mut O,
    cfg: &Config,
    server: Ipv4Addr,
    port: u16,
    buf: &mut [u8],
    io: &mut [u8],
) -> Result<Option<usize>, Fatal> {
    let mut path = url_path(install::IMAGE_URL, &cfg.image);
    if path.push_str(BMAP_SUFFIX).is_err() {
        return Err(Fatal::Bmap(BmapError::Truncated));
    }
    if cfg.bmap_sha256.is_none() {
        say!(
            os,
            "no ze.bmap-sha256 on the command line: downloading the whole image"
        );
        return Ok(None);
    }
    let mut sink = MemSink { buf, len: 0 };
    match Download::new(server, port, &path, "block map").whole(os, &mut sink, io) {
        Ok(_) => Ok(Some(sink.len)),
        Err(Fatal::Download {
            error: crate::http::FetchError::NotFound(status),
            ..
        }) => {
            say!(
                os,
                "no block map at http://{server}:{port}{path} (HTTP {status}): downloading the whole image"
            );
            Ok(None)
        }
        Err(f) => Err(f),
    }
}

/// The mapped ranges only, over one keep-alive connection, each checked
/// against its sha256; the holes zeroed on the disk first.
fn write_mapped<O: Os, D: BlockDev>(
    os: &mut O,
    dl: &mut Download<'_, O>,
    map: &Bmap<'_>,
    target: &mut Target<'_, D>,
    io: &mut [u8],
    report: &mut Reporter,
) -> Result<u64, Fatal> {
    let holes = image::zero_holes(os, target, map, io)?;
    let mut writer = MapWriter::new(map, os.now());
    while let Some(window) = writer.window() {
        let mut sink = MapSink {
            writer: &mut writer,
            target,
            report,
            mapped: map.mapped_bytes,
        };
        dl.window(os, window, map.image_size, &mut sink, io)?;
    }
    writer.finish(os)?;
    say!(
        os,
        "image written: {} bytes in {} ranges, each sha256 verified ({} requests on {} connection(s)); {} bytes of holes zeroed",
        writer.done,
        map.range_count,
        dl.requests,
        dl.connections,
        holes
    );
    Ok(map.image_size)
}

/// The whole image as one stream, checked against `ze.sha256`.
fn write_stream<O: Os, D: BlockDev>(
    os: &mut O,
    dl: &mut Download<'_, O>,
    cfg: &Config,
    target: &mut Target<'_, D>,
    io: &mut [u8],
    report: &mut Reporter,
) -> Result<u64, Fatal> {
    let mut stream = Stream::new(target, cfg.size, Some(report));
    let total = dl.whole(os, &mut stream, io)?;
    let digest = stream.finish(os, total, cfg.sha256)?;
    say!(os, "image written: {total} bytes, sha256 {}", Hex(&digest));
    Ok(total)
}

/// A file held in memory (the block map).
struct MemSink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<O: Os> Sink<O> for MemSink<'_> {
    fn restart(&mut self, _os: &mut O) -> Result<(), Fatal> {
        self.len = 0;
        Ok(())
    }

    fn total(&mut self, _os: &mut O, total: u64) -> Result<(), Fatal> {
        if total > self.buf.len() as u64 {
            return Err(Fatal::Bmap(BmapError::TooLarge(
                usize::try_from(total).unwrap_or(usize::MAX),
            )));
        }
        Ok(())
    }

    fn write(&mut self, _os: &mut O, offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        let at = offset as usize;
        let dst = self
            .buf
            .get_mut(at..at + bytes.len())
            .ok_or(Fatal::Bmap(BmapError::TooLarge(at + bytes.len())))?;
        dst.copy_from_slice(bytes);
        self.len = self.len.max(at + bytes.len());
        Ok(())
    }
}

/// The database file being downloaded.
struct FileSink<O: Os> {
    file: Option<O::File>,
}

fn perm(what: &'static str) -> impl Fn(ze_hal::Error) -> Fatal {
    move |error| Fatal::Perm { what, error }
}

impl<O: Os> Sink<O> for FileSink<O> {
    fn restart(&mut self, os: &mut O) -> Result<(), Fatal> {
        self.file = None;
        self.file = Some(
            os.file_create(install::ZEFS_TMP)
                .map_err(perm("create the database"))?,
        );
        Ok(())
    }

    fn total(&mut self, _os: &mut O, total: u64) -> Result<(), Fatal> {
        if total > install::MAX_ZEFS {
            return Err(Fatal::ZefsTooLarge(total));
        }
        Ok(())
    }

    fn write(&mut self, _os: &mut O, _offset: u64, bytes: &[u8]) -> Result<(), Fatal> {
        let Some(f) = self.file.as_mut() else {
            return Err(Fatal::Perm {
                what: "write the database",
                error: ze_hal::Error::NotFound,
            });
        };
        f.write_all(bytes).map_err(perm("write the database"))
    }
}

/// Download the database to `/perm/ze/database.zefs`: a temporary file,
/// fsync, rename, fsync of the directory.
fn write_database<O: Os>(
    os: &mut O,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<u64, Fatal> {
    os.mkdir(install::ZE_DIR).map_err(perm("mkdir ze"))?;
    let mut sink: FileSink<O> = FileSink { file: None };
    Sink::<O>::restart(&mut sink, os)?;
    let size =
        Download::new(server, port, install::ZEFS_URL, "database").whole(os, &mut sink, io)?;
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

/// Partition 4 from the held-back table, `/perm` mounted from it, the
/// database written and durable, unmounted, the partition forgotten.
/// Returns the database's size.
fn perm_stage<O: Os, D: BlockDev>(
    os: &mut O,
    target: &mut Target<'_, D>,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<u64, Fatal> {
    let n = install::PERM_PARTITION;
    let p = gpt::partition(target.head(), n).map_err(Fatal::Gpt)?;
    // One left from the disk's old table would be in the way.
    let _ = target.disk.remove_partition(n);
    target
        .disk
        .add_partition(n, p.start(), p.len())
        .map_err(|error| Fatal::DiskIo {
            what: "add partition 4 (BLKPG)",
            error,
        })?;
    let node = disk::partition_path(&target.name, n);
    say!(
        os,
        "{node}: bytes {}..{} of {}, from the image's partition table (not on the disk yet)",
        p.start(),
        p.start() + p.len(),
        target.path
    );
    let result = mount_and_write(os, &node, server, port, io);
    let _ = target.disk.remove_partition(n);
    result
}

fn mount_and_write<O: Os>(
    os: &mut O,
    node: &str,
    server: Ipv4Addr,
    port: u16,
    io: &mut [u8],
) -> Result<u64, Fatal> {
    let start = os.now();
    while !os.exists(node) {
        if os.now().saturating_since(start) >= install::PARTITION_WAIT {
            let mut n = heapless::String::new();
            let _ = n.push_str(node);
            return Err(Fatal::NoPartition { node: n });
        }
        os.sleep(install::PARTITION_POLL);
    }
    os.mkdir(install::PERM).map_err(perm("mkdir"))?;
    os.mount_ext4(node, install::PERM)
        .map_err(perm("mount ext4"))?;
    say!(os, "mounted {node} (ext4) at {}", install::PERM);
    let written = write_database(os, server, port, io);
    let unmounted = os.unmount(install::PERM);
    let size = written?;
    unmounted.map_err(perm("unmount"))?;
    say!(os, "wrote {} ({size} bytes)", install::ZEFS_PATH);
    os.sync_all();
    Ok(size)
}
