//! `ze-qemu bench` (`make bench-firmware`): the installer against a peer
//! measured side by side in the same run, as ratios (docs/PERFORMANCE.md).
//!
//! - size: `initrd.img.gz` vs a busybox-static + shell-script initramfs
//!   that does the same job (`wget | dd`), built here with `cpio` and
//!   `gzip -9`;
//! - start-up: from the kernel's `Run /init` to the first `[ze-install]`
//!   line on the serial console, both initrds booted alternately in QEMU;
//! - pipeline: the firmware's own download + sha256 + write code
//!   (`run::http_install::write_image` over `LinuxOs` sockets into a file), vs
//!   `curl | tee >(sha256sum) | dd conv=fsync`, against the same loopback
//!   server.

use crate::{server::Server, suite, vm::Vm};
use anyhow::{Context, bail, ensure};
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// The busybox installer script of the peer initramfs.
pub const PEER_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /perm
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "[ze-install] busybox installer starting"
/bin/busybox --install -s /bin
export PATH=/bin
S=; P=80; I=ze.img
for a in $(cat /proc/cmdline); do
  case "$a" in
    ze.server=*) S=${a#*=} ;;
    ze.port=*) P=${a#*=} ;;
    ze.image=*) I=${a#*=} ;;
  esac
done
wget -q -O - "http://$S:$P/install/image/$I" | dd of=/dev/vda bs=1M
blockdev --rereadpt /dev/vda
sleep 1
mount -t ext4 /dev/vda4 /perm && mkdir -p /perm/ze &&
  wget -q -O /perm/ze/database.zefs "http://$S:$P/install/database.zefs"
umount /perm
sync
echo "[ze-install] busybox installer done"
reboot -f
"#;

/// Median of a non-empty list.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Run `cmd` (its output shown), failing with its status.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    ensure!(st.success(), "{cmd:?} failed: {st}");
    Ok(())
}

/// Build the busybox-static + script initramfs with `cpio` and `gzip -9`.
pub fn build_peer(dir: &Path) -> anyhow::Result<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    ensure!(
        busybox.is_file(),
        "/bin/busybox missing (Debian package busybox-static)"
    );
    let root = dir.join("peer-root");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    std::fs::write(root.join("init"), PEER_INIT)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let out = dir.join("busybox-initrd.img.gz");
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet -R 0:0 | gzip -9 > '{}'",
        root.display(),
        out.display()
    )))?;
    Ok(out)
}

fn size(p: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("{}", p.display()))?
        .len())
}

/// Seconds from `Run /init` to the first `[ze-install]` line, one boot.
fn startup_once(ctx: &suite::Ctx, initrd: &Path, dir: &Path) -> anyhow::Result<f64> {
    let mut vm: Vm = ctx.vm(dir, 9, 1, "ip=off ze.wait=0")?;
    vm.initrd = initrd.to_path_buf();
    vm.echo = false;
    vm.monitor = None;
    let mut s = vm.start()?;
    let a = s.wait_for("Run /init as init process", 0, Duration::from_secs(60))?;
    let b = s.wait_for("[ze-install] ", a, Duration::from_secs(60))?;
    let ta = s.arrival(a).context("no arrival time")?;
    let tb = s.arrival(b).context("no arrival time")?;
    drop(s);
    Ok((tb - ta).as_secs_f64())
}

/// The firmware pipeline on the host: returns seconds for `image`.
fn ours_once(port: u16, image: &str, out: &Path, len: u64) -> anyhow::Result<f64> {
    firmware_into_file(port, image, out, len, "")
}

/// The installer's own image transfer (`run::http_install::write_image`
/// over `LinuxOs` sockets, `extra` added to its command line) from
/// `127.0.0.1:port` into the file `out` of `len` bytes; returns seconds.
// The closure's error is the installer's `Fatal` (a few hundred bytes,
// returned once; the firmware has no heap to box it on).
#[allow(clippy::result_large_err)]
pub fn firmware_into_file(
    port: u16,
    image: &str,
    out: &Path,
    len: u64,
    extra: &str,
) -> anyhow::Result<f64> {
    use ze_hal::linux::LinuxOs;
    use ze_installer::{bmap::MAX_BMAP, cmdline::Config, install, run};
    let f = std::fs::File::create(out)?;
    f.set_len(len)?;
    drop(f);
    let cfg = Config::parse(&format!(
        "ze.server=127.0.0.1 ze.port={port} ze.image={image} {extra}"
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut os = LinuxOs::new();
    let path = out.to_str().context("path")?;
    let mut head: Box<[u8; install::HEAD_LEN]> = vec![0u8; install::HEAD_LEN]
        .try_into()
        .map_err(|_| anyhow::anyhow!("head buffer"))?;
    let mut io: Box<[u8; install::IO_CHUNK]> = vec![0u8; install::IO_CHUNK]
        .try_into()
        .map_err(|_| anyhow::anyhow!("io buffer"))?;
    let mut bmap: Box<[u8; MAX_BMAP]> = vec![0u8; MAX_BMAP]
        .try_into()
        .map_err(|_| anyhow::anyhow!("bmap buffer"))?;
    let mut bufs = run::Buffers {
        head: &mut head,
        io: &mut io,
        bmap: &mut bmap,
    };
    let device = run::target::Device {
        name: "bench",
        path,
    };
    let t = Instant::now();
    let mut report = run::report::Reporter::none();
    run::http_install::write_image(
        &mut os,
        &cfg,
        device,
        &mut bufs,
        &mut report,
        |_, _, _, _| Ok(()),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t.elapsed().as_secs_f64())
}

fn peer_once(port: u16, image: &str, out: &Path) -> anyhow::Result<f64> {
    let _ = std::fs::remove_file(out);
    let t = Instant::now();
    run(Command::new("bash").arg("-c").arg(format!(
        "set -o pipefail; curl -sf http://127.0.0.1:{port}/install/image/{image} | tee >(sha256sum >/dev/null) | dd of='{}' bs=1M conv=fsync status=none",
        out.display()
    )))?;
    Ok(t.elapsed().as_secs_f64())
}

/// Run every benchmark `runs` times; print a report.
pub fn bench(initrd: PathBuf, runs: usize, pipeline_mib: u64) -> anyhow::Result<()> {
    let work = std::env::temp_dir().join(format!("ze-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let r = bench_in(&work, initrd, runs.max(1), pipeline_mib);
    let _ = std::fs::remove_dir_all(&work);
    r
}

fn bench_in(work: &Path, initrd: PathBuf, runs: usize, pipeline_mib: u64) -> anyhow::Result<()> {
    println!("# ze installer benchmarks ({runs} runs each, medians)");
    // Size.
    let peer = build_peer(work)?;
    let (ours, theirs) = (size(&initrd)?, size(&peer)?);
    println!(
        "size: ze initrd {ours} bytes, busybox-static + script initrd {theirs} bytes: {:.1}x smaller",
        theirs as f64 / ours as f64
    );
    ensure!(ours <= 192 * 1024, "the initrd is over its 192 KiB budget");

    // Pipeline on the host.
    let len = pipeline_mib << 20;
    let srv = Server::start()?;
    let data = crate::image::filler(7, len as usize);
    srv.put("/install/image/bench.img", data);
    let out = work.join("pipeline.out");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(ours_once(srv.port(), "bench.img", &out, len)?);
        b.push(peer_once(srv.port(), "bench.img", &out)?);
    }
    let (ta, tb) = (median(a), median(b));
    let mb = len as f64 / 1e6;
    println!(
        "pipeline: {pipeline_mib} MiB over loopback into a file: ze {:.0} MB/s ({ta:.3} s), curl | tee >(sha256sum) | dd conv=fsync {:.0} MB/s ({tb:.3} s): {:.2}x",
        mb / ta,
        mb / tb,
        tb / ta
    );

    // Start-up in QEMU.
    let ctx = suite::Ctx::from_env(initrd.clone(), work.join("vm"), false)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..runs {
        a.push(startup_once(
            &ctx,
            &initrd,
            &work.join(format!("s-ours-{i}")),
        )?);
        b.push(startup_once(
            &ctx,
            &peer,
            &work.join(format!("s-peer-{i}")),
        )?);
    }
    let (sa, sb) = (median(a), median(b));
    if sa <= 0.0 {
        bail!("start-up measured as zero");
    }
    println!(
        "start-up (Run /init to the first [ze-install] line, QEMU TCG): ze {:.0} ms, busybox script {:.0} ms: {:.1}x",
        sa * 1e3,
        sb * 1e3,
        sb / sa
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn the_peer_initramfs_holds_busybox_and_the_script() {
        let dir = tempfile::tempdir().unwrap();
        let p = build_peer(dir.path()).unwrap();
        let list = Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -dc '{}' | cpio -t --quiet", p.display()))
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&list.stdout);
        assert!(names.lines().any(|l| l == "init"), "{names}");
        assert!(names.lines().any(|l| l == "bin/busybox"), "{names}");
    }
}
