//! `ze-qemu map-bench` (`make bench-map`): what the block map buys.
//!
//! - **PXE install in QEMU**: the same appliance image (the default 2 GiB
//!   of `ze appliance build`) installed over HTTP from the real
//!   imageserver, with its block map (`ze.bmap-sha256`) and without it
//!   (the whole stream, `ze.sha256`), alternating, `runs` times each:
//!   time from the kernel's first line to `install complete`, and the
//!   bytes the imageserver logged for `/install/image/` (the wire).
//! - **Host pipeline**: the installer's own map transfer (its code over
//!   `LinuxOs`, a file as the disk) against `bmaptool copy --bmap` from
//!   the same HTTP server into a file, alternating.

use crate::{
    bench::median,
    iso::Ctx,
    suite,
    vm::{Session, Vm},
};
use anyhow::{Context, bail, ensure};
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The imageserver as `ze -` on 127.0.0.1, its log collected.
struct ImageServer {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl ImageServer {
    fn start(ctx: &Ctx, ze: &Path) -> anyhow::Result<ImageServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let boot = ctx.work.join("bench-boot");
        let state = ctx.work.join("bench-state");
        std::fs::create_dir_all(&boot)?;
        std::fs::create_dir_all(&state)?;
        std::fs::copy(&ctx.kernel, boot.join("vmlinuz"))?;
        std::fs::copy(&ctx.initrd, boot.join("initrd.img.gz"))?;
        let hash = ze::credentials::hash_password(&ctx.ssh.1)?;
        let dir = ctx.image.parent().context("image directory")?;
        let config = format!(
            "daemon {{ log info; }}\nimageserver {{ image-dir \"{}\"; image {}; boot-dir \"{}\"; state-dir \"{}\"; ssh-username {}; ssh-password-hash \"{hash}\"; address 127.0.0.1; port {port}; }}\n",
            dir.display(),
            ctx.meta.image,
            boot.display(),
            state.display(),
            ctx.ssh.0
        );
        let mut child = Command::new(ze)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {} -", ze.display()))?;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(config.as_bytes())?;
        stdin.write_all(&[ze::cmd::daemon::END_OF_CONFIG])?;
        // Kept open: EOF would stop the server.
        std::mem::forget(stdin);
        let log = crate::provision::collect_output(&mut child, false)?;
        let s = ImageServer { child, port, log };
        let start = Instant::now();
        while !s.log().contains("ze: started") {
            ensure!(
                start.elapsed() < Duration::from_secs(300),
                "the imageserver did not start:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(s)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Body bytes the server logged for `/install/image/` after byte
    /// `from` of its log.
    fn image_bytes_since(&self, from: usize) -> u64 {
        let log = self.log();
        log.get(from..)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("path=/install/image/"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("bytes="))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .sum()
    }
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One PXE-style install: seconds from the kernel's first line to
/// `install complete`, and the image bytes on the wire.
fn install_once(
    ctx: &Ctx,
    srv: &ImageServer,
    dir: &Path,
    with_map: bool,
) -> anyhow::Result<(f64, u64)> {
    std::fs::create_dir_all(dir)?;
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)?.set_len(ctx.disk_size)?;
    let map = if with_map {
        format!(" ze.bmap-sha256={}", ctx.meta.bmap_sha256)
    } else {
        String::new()
    };
    let vm = Vm {
        arch: "amd64".into(),
        kernel: ctx.kernel.clone(),
        initrd: ctx.initrd.clone(),
        append: format!(
            "console=ttyS0 ip=dhcp panic=-1 ze.server=10.0.2.2 ze.port={} ze.image={} ze.sha256={}{map}",
            srv.port, ctx.meta.image, ctx.meta.sha256
        ),
        disks: vec![crate::vm::Drive::virtio(disk)],
        nic: ctx.nic.clone(),
        tap: None,
        monitor: None,
        echo: ctx.echo,
        memory_mib: 512,
    };
    let log_at = srv.log().len();
    let mut s: Session = vm.start()?;
    let first = s.wait_for("Linux version", 0, ctx.boot_timeout)?;
    let done = s
        .wait_for(
            "[ze-install] install complete; rebooting",
            first,
            ctx.boot_timeout,
        )
        .inspect_err(|_| {
            let _ = std::fs::write(dir.join("serial.log"), s.serial());
        })?;
    let secs =
        (s.arrival(done).context("arrival")? - s.arrival(first).context("arrival")?).as_secs_f64();
    let serial = s.serial();
    let _ = s.wait(Duration::from_secs(30));
    let mode = if with_map {
        "each sha256 verified"
    } else {
        "sha256 "
    };
    ensure!(
        serial.contains(mode),
        "the {} install did not go the way asked:\n{serial}",
        if with_map { "map" } else { "stream" }
    );
    // Let the server log the last request.
    std::thread::sleep(Duration::from_millis(300));
    let wire = srv.image_bytes_since(log_at);
    let _ = std::fs::remove_dir_all(dir);
    Ok((secs, wire))
}

/// The installer's map transfer on the host into a file; seconds.
fn ours_into_file(port: u16, ctx: &Ctx, out: &Path) -> anyhow::Result<f64> {
    crate::bench::firmware_into_file(
        port,
        &ctx.meta.image,
        out,
        ctx.meta.image_size,
        &format!("ze.bmap-sha256={}", ctx.meta.bmap_sha256),
    )
}

/// `bmaptool copy --bmap` of the same image from the same server; seconds.
fn bmaptool_into_file(port: u16, ctx: &Ctx, out: &Path) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(out);
    let map = PathBuf::from(format!("{}.bmap", ctx.image.display()));
    let url = format!("http://127.0.0.1:{port}/install/image/{}", ctx.meta.image);
    let t = Instant::now();
    let st = Command::new("bmaptool")
        .args(["-q", "copy", "--bmap"])
        .arg(&map)
        .arg(&url)
        .arg(out)
        .status()
        .context("cannot run bmaptool (Debian package bmap-tools)")?;
    ensure!(st.success(), "bmaptool copy failed: {st}");
    Ok(t.elapsed().as_secs_f64())
}

/// Run both benchmarks, `runs` times each; print the report.
pub fn bench(ctx: &Ctx, runs: usize) -> anyhow::Result<()> {
    let ze = suite::env("ZE_BIN")
        .map(PathBuf::from)
        .unwrap_or(suite::root()?.join("target/release/ze"));
    let ze = if ze.is_file() {
        ze
    } else {
        suite::root()?.join("target/debug/ze")
    };
    let srv = ImageServer::start(ctx, &ze)?;
    let mapped = srv
        .log()
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("mapped="))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .context("the imageserver's startup line has no mapped=")?;
    let (mut map_t, mut map_w, mut full_t, mut full_w) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let (t, w) = install_once(ctx, &srv, &ctx.work.join(format!("map-{i}")), true)?;
        eprintln!("map-bench run {i}: with the map {t:.1} s, {w} bytes on the wire");
        map_t.push(t);
        map_w.push(w as f64);
        let (t, w) = install_once(ctx, &srv, &ctx.work.join(format!("full-{i}")), false)?;
        eprintln!("map-bench run {i}: whole stream {t:.1} s, {w} bytes on the wire");
        full_t.push(t);
        full_w.push(w as f64);
    }
    let (mt, ft) = (median(map_t), median(full_t));
    let (mw, fw) = (median(map_w), median(full_w));
    if mt <= 0.0 {
        bail!("an install measured as zero seconds");
    }
    println!(
        "# block map vs whole stream, {} ({} bytes, {mapped} mapped), {runs} runs each, medians",
        ctx.meta.image, ctx.meta.image_size
    );
    println!(
        "pxe install in QEMU (kernel start to `install complete`): map {mt:.1} s, whole stream {ft:.1} s: {:.1}x faster",
        ft / mt
    );
    println!(
        "bytes on the wire (imageserver log): map {mw:.0} ({:.3}x the mapped bytes), whole stream {fw:.0} ({:.1}x the mapped bytes)",
        mw / mapped as f64,
        fw / mapped as f64
    );
    drop(srv);

    // Host pipeline: the harness's in-memory server, so neither side pays
    // for the imageserver's disk reads.
    let server = crate::server::Server::start()?;
    server.put(
        &format!("/install/image/{}", ctx.meta.image),
        std::fs::read(&ctx.image)?,
    );
    server.put(
        &format!("/install/image/{}.bmap", ctx.meta.image),
        std::fs::read(format!("{}.bmap", ctx.image.display()))?,
    );
    let out = ctx.work.join("pipeline.img");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(ours_into_file(server.port(), ctx, &out)?);
        b.push(bmaptool_into_file(server.port(), ctx, &out)?);
    }
    let (ta, tb) = (median(a), median(b));
    println!(
        "host pipeline, map transfer over loopback into a file: ze installer {ta:.2} s, bmaptool copy --bmap {tb:.2} s: {:.1}x",
        tb / ta
    );
    let _ = std::fs::remove_file(&out);
    Ok(())
}
