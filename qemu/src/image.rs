//! Test images: a real GPT disk image with four partitions, partition 4
//! an ext4 filesystem (the appliance image's layout, docs/appliance.md), made with `sgdisk` and
//! `mke2fs -d`; plus a GPT reader to find partition 4 on the written disk
//! and `debugfs` to read `/ze/database.zefs` back without mounting.

use anyhow::{Context, bail, ensure};
use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    process::Command,
};

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// The smallest image the layout fits in.
pub const MIN_SIZE: u64 = 32 << 20;

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {:?} (make deps installs it)", cmd.get_program()))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Deterministic filler bytes (xorshift), so a byte-for-byte comparison of
/// the written disk means something.
pub fn filler(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Build a test image of `size` bytes at `path`: GPT with p1 (EFI type,
/// 4 MiB), p2 and p3 (8 MiB each, filled with pseudo-random bytes) and p4
/// (the rest, ext4 holding `ze/build.json`).
pub fn build(path: &Path, size: u64) -> anyhow::Result<()> {
    ensure!(
        size >= MIN_SIZE,
        "image size {size} is below {MIN_SIZE} bytes"
    );
    ensure!(
        size.is_multiple_of(SECTOR),
        "image size {size} is not a multiple of 512"
    );
    let f = File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.set_len(size)?;
    drop(f);
    run(Command::new("sgdisk").arg("-Z").arg(path))?;
    run(Command::new("sgdisk")
        .args([
            "-n1:2048:+4M",
            "-t1:ef00",
            "-c1:ESP",
            "-n2:0:+8M",
            "-c2:rootA",
            "-n3:0:+8M",
            "-c3:rootB",
            "-n4:0:0",
            "-t4:8300",
            "-c4:perm",
        ])
        .arg(path))?;
    let table = read_gpt(path)?;
    let mut f = OpenOptions::new().write(true).open(path)?;
    for n in 1..=3u32 {
        let (first, last) = table.partition(n)?;
        let len = ((last - first + 1) * SECTOR) as usize;
        f.seek(SeekFrom::Start(first * SECTOR))?;
        f.write_all(&filler(u64::from(n) * 0x9e37_79b9, len))?;
    }
    f.sync_all()?;
    drop(f);
    let (first, last) = table.partition(4)?;
    let staging = tempdir_near(path)?;
    std::fs::create_dir_all(staging.join("ze"))?;
    std::fs::write(
        staging.join("ze/build.json"),
        "{\"image\":\"ze-test.img\",\"appliance\":\"qemu-test\"}\n",
    )?;
    let kib = (last - first + 1) * SECTOR / 1024;
    let r = run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "perm", "-E"])
        .arg(format!("offset={}", first * SECTOR))
        .arg("-d")
        .arg(&staging)
        .arg(path)
        .arg(format!("{kib}k")));
    let _ = std::fs::remove_dir_all(&staging);
    r?;
    Ok(())
}

fn tempdir_near(path: &Path) -> anyhow::Result<PathBuf> {
    let dir = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!(".perm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The partition entries of a GPT disk.
#[derive(Debug, Clone)]
pub struct Gpt {
    /// (first LBA, last LBA) of each entry in table order; unused entries
    /// are (0, 0).
    pub entries: Vec<(u64, u64)>,
}

impl Gpt {
    /// Partition `n` (1-based) as (first LBA, last LBA).
    pub fn partition(&self, n: u32) -> anyhow::Result<(u64, u64)> {
        match self.entries.get(n as usize - 1) {
            Some(&(first, last)) if first > 0 && last >= first => Ok((first, last)),
            _ => bail!("no partition {n} in the GPT"),
        }
    }
}

/// Parse the primary GPT of the disk image at `path`.
pub fn read_gpt(path: &Path) -> anyhow::Result<Gpt> {
    let mut f = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hdr = [0u8; 92];
    f.seek(SeekFrom::Start(SECTOR))?;
    f.read_exact(&mut hdr)?;
    ensure!(
        &hdr[..8] == b"EFI PART",
        "{}: no GPT header at LBA 1",
        path.display()
    );
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let le32 = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let entries_lba = le64(&hdr, 72);
    let count = le32(&hdr, 80).min(256) as usize;
    let size = le32(&hdr, 84) as usize;
    ensure!((128..=4096).contains(&size), "odd GPT entry size {size}");
    let mut table = vec![0u8; count * size];
    f.seek(SeekFrom::Start(entries_lba * SECTOR))?;
    f.read_exact(&mut table)?;
    let entries = table
        .chunks(size)
        .map(|e| (le64(e, 32), le64(e, 40)))
        .collect();
    Ok(Gpt { entries })
}

/// Copy partition `n` of the disk image `disk` into the file `out`.
pub fn extract_partition(disk: &Path, n: u32, out: &Path) -> anyhow::Result<()> {
    let (first, last) = read_gpt(disk)?.partition(n)?;
    let mut f = File::open(disk)?;
    f.seek(SeekFrom::Start(first * SECTOR))?;
    let mut part = f.take((last - first + 1) * SECTOR);
    let mut o = File::create(out)?;
    std::io::copy(&mut part, &mut o)?;
    Ok(())
}

/// Read `file` from the ext4 filesystem image `fs` with `debugfs`.
pub fn debugfs_cat(fs: &Path, file: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {file}"))
        .arg(fs)
        .output()
        .context("cannot run debugfs (package e2fsprogs; make deps installs it)")?;
    ensure!(
        out.status.success(),
        "debugfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !err.contains("File not found"),
        "{file} is not in {}: {}",
        fs.display(),
        err.trim()
    );
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_gpt_image_with_ext4_partition_4() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("t.img");
        build(&img, 40 << 20).unwrap();
        let gpt = read_gpt(&img).unwrap();
        let (first, last) = gpt.partition(4).unwrap();
        assert_eq!(gpt.partition(1).unwrap().0, 2048);
        assert!(last * SECTOR < 40 << 20);
        let p4 = dir.path().join("p4");
        extract_partition(&img, 4, &p4).unwrap();
        assert_eq!(
            std::fs::metadata(&p4).unwrap().len(),
            (last - first + 1) * SECTOR
        );
        let json = debugfs_cat(&p4, "/ze/build.json").unwrap();
        assert!(String::from_utf8_lossy(&json).contains("qemu-test"));
        assert!(debugfs_cat(&p4, "/ze/database.zefs").is_err());
        assert!(gpt.partition(5).is_err());
    }

    #[test]
    fn filler_is_deterministic() {
        assert_eq!(filler(1, 100), filler(1, 100));
        assert_ne!(filler(1, 100), filler(2, 100));
        assert_eq!(filler(3, 13).len(), 13);
    }

    #[test]
    fn a_blank_disk_has_no_gpt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blank");
        File::create(&p).unwrap().set_len(1 << 20).unwrap();
        assert!(read_gpt(&p).is_err());
    }
}
