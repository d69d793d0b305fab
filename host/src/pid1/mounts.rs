//! PID 1's filesystems: the kernel's pseudo filesystems, tmpfs, and
//! `/perm`, found by its GPT partition name.

use super::say;
use crate::{appliance::disk, context::Context};
use rustix::mount::{MountFlags, UnmountFlags};
use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The logical mount point of `/perm`.
pub const PERM: &str = "/perm";

/// One line of `/proc/self/mountinfo` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The device's major:minor.
    pub dev: (u32, u32),
    /// The filesystem type.
    pub fstype: String,
}

/// `\040` and friends back to bytes.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/mountinfo`; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let (maj, min) = fields.get(2)?.split_once(':')?;
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountInfo {
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                dev: (maj.parse().ok()?, min.parse().ok()?),
                fstype: fields.get(sep + 1)?.to_string(),
            })
        })
        .collect()
}

fn mountinfo(ctx: &Context) -> Vec<MountInfo> {
    fs::read_to_string(ctx.real("/proc/self/mountinfo"))
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

fn is_mounted(ctx: &Context, logical: &str) -> bool {
    let real = ctx.real(logical);
    mountinfo(ctx).iter().any(|m| m.mount_point == real)
}

fn mount(ctx: &Context, source: &str, target: &str, fstype: &str, flags: MountFlags, data: &str) {
    let real = ctx.real(target);
    let data = CString::new(data).unwrap_or_default();
    match rustix::mount::mount(source, &real, fstype, flags, data.as_c_str()) {
        Ok(()) => say(&format!("mounted {fstype} on {target}")),
        Err(e) => say(&format!("cannot mount {fstype} on {target}: {e}")),
    }
}

/// Mount `/proc`, `/sys`, `/dev`, `/run` and `/tmp`, skipping what is
/// already mounted (the kernel mounts devtmpfs on `/dev` itself when
/// built with `DEVTMPFS_MOUNT`).
pub fn early(ctx: &Context) {
    let safe = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if !ctx.real("/proc/self").exists() {
        mount(ctx, "proc", "/proc", "proc", safe, "");
    }
    let table: [(&str, &str, &str, MountFlags, &str); 4] = [
        ("sysfs", "/sys", "sysfs", safe, ""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            "mode=0755",
        ),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=0755",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            "mode=1777",
        ),
    ];
    for (source, target, fstype, flags, data) in table {
        if !is_mounted(ctx, target) {
            mount(ctx, source, target, fstype, flags, data);
        }
    }
}

/// A block device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDev {
    /// Kernel name (`vda4`).
    pub name: String,
    /// GPT partition name, for partitions that have one.
    pub partname: Option<String>,
    /// The whole disk a partition belongs to (`vda`).
    pub disk: Option<String>,
    /// major:minor.
    pub dev: Option<(u32, u32)>,
}

/// Every block device under `/sys/class/block`.
pub fn scan_blocks(ctx: &Context) -> Vec<BlockDev> {
    let class = ctx.real("/sys/class/block");
    let Ok(entries) = fs::read_dir(&class) else {
        return Vec::new();
    };
    let mut out: Vec<BlockDev> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let dir = class.join(&name);
            let uevent = fs::read_to_string(dir.join("uevent")).unwrap_or_default();
            let partname = uevent
                .lines()
                .find_map(|l| l.strip_prefix("PARTNAME="))
                .map(str::to_string);
            let disk = dir
                .join("partition")
                .exists()
                .then(|| fs::canonicalize(&dir).ok())
                .flatten()
                .and_then(|p| p.parent()?.file_name()?.to_str().map(str::to_string));
            let dev = fs::read_to_string(dir.join("dev")).ok().and_then(|t| {
                let (a, b) = t.trim().split_once(':')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            });
            Some(BlockDev {
                name,
                partname,
                disk,
                dev,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The disk holding the root filesystem, when the root is a block device.
pub fn root_disk(ctx: &Context, blocks: &[BlockDev]) -> Option<String> {
    let root = ctx.real("/");
    let dev = mountinfo(ctx)
        .into_iter()
        .rev()
        .find(|m| m.mount_point == root)?
        .dev;
    let b = blocks.iter().find(|b| b.dev == Some(dev))?;
    Some(b.disk.clone().unwrap_or_else(|| b.name.clone()))
}

/// Pick the `/perm` partition: the one named `perm` on the root's disk,
/// else the only one named `perm`. Several elsewhere is an error: mounting
/// another appliance's state would be worse than mounting none.
pub fn choose_perm(blocks: &[BlockDev], root_disk: Option<&str>) -> Result<String, String> {
    let name = disk::NAMES[disk::PERM_PARTITION - 1];
    let named: Vec<&BlockDev> = blocks
        .iter()
        .filter(|b| b.partname.as_deref() == Some(name))
        .collect();
    if let Some(root) = root_disk
        && let Some(b) = named.iter().find(|b| b.disk.as_deref() == Some(root))
    {
        return Ok(b.name.clone());
    }
    match named.as_slice() {
        [] => Err(format!("no partition is named {name:?}")),
        [one] => Ok(one.name.clone()),
        many => Err(format!(
            "{} partitions are named {name:?} ({}) and none is on the root's disk",
            many.len(),
            many.iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Find and mount `/perm`; returns its logical path when mounted.
pub fn mount_perm(ctx: &Context, wait: Duration) -> Option<PathBuf> {
    let deadline = Instant::now() + wait;
    let name = loop {
        let blocks = scan_blocks(ctx);
        let root = root_disk(ctx, &blocks);
        match choose_perm(&blocks, root.as_deref()) {
            Ok(n) => break n,
            Err(e) if Instant::now() >= deadline => {
                say(&format!("/perm is not mounted: {e}"));
                return None;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let node = format!("/dev/{name}");
    while !ctx.real(&node).exists() {
        if Instant::now() >= deadline {
            say(&format!("/perm is not mounted: {node} did not appear"));
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME;
    let real_node = ctx.real(&node);
    let real_target = ctx.real(PERM);
    match rustix::mount::mount(&real_node, &real_target, "ext4", flags, None) {
        Ok(()) => {
            say(&format!("mounted {node} (PARTNAME=perm) on {PERM}"));
            Some(PathBuf::from(PERM))
        }
        Err(e) => {
            say(&format!("cannot mount {node} on {PERM} (ext4): {e}"));
            None
        }
    }
}

/// Unmount `/perm`; when it is busy, make it read-only at least.
pub fn unmount_perm(ctx: &Context, logical: &Path) {
    let real = ctx.real(logical);
    match rustix::mount::unmount(&real, UnmountFlags::empty()) {
        Ok(()) => say(&format!("unmounted {}", logical.display())),
        Err(e) => {
            let ro = rustix::mount::mount_remount(&real, MountFlags::RDONLY, "");
            say(&format!(
                "cannot unmount {} ({e}); {}",
                logical.display(),
                match ro {
                    Ok(()) => "remounted it read-only".to_string(),
                    Err(e2) => format!("cannot remount it read-only either: {e2}"),
                }
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "22 1 254:2 / / ro,relatime shared:1 - squashfs /dev/root ro,errors=continue\n\
                    23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw,size=1k\n\
                    40 22 254:4 / /my\\040perm rw - ext4 /dev/vda4 rw\n\
                    garbage\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert_eq!(m[0].dev, (254, 2));
        assert_eq!(m[0].fstype, "squashfs");
        assert_eq!(m[2].mount_point, PathBuf::from("/my perm"));
        assert_eq!(m[2].fstype, "ext4");
    }

    fn dev(name: &str, part: Option<&str>, disk: Option<&str>) -> BlockDev {
        BlockDev {
            name: name.into(),
            partname: part.map(Into::into),
            disk: disk.map(Into::into),
            dev: None,
        }
    }

    #[test]
    fn perm_is_taken_from_the_root_disk_first() {
        let blocks = [
            dev("vda", None, None),
            dev("vda2", Some("root-a"), Some("vda")),
            dev("vda4", Some("perm"), Some("vda")),
            dev("vdb4", Some("perm"), Some("vdb")),
            dev("sr0", None, None),
        ];
        assert_eq!(choose_perm(&blocks, Some("vdb")).unwrap(), "vdb4");
        assert_eq!(choose_perm(&blocks, Some("vda")).unwrap(), "vda4");
        let err = choose_perm(&blocks, None).unwrap_err();
        assert!(
            err.contains("2 partitions") && err.contains("vda4, vdb4"),
            "{err}"
        );
        assert_eq!(choose_perm(&blocks[..3], None).unwrap(), "vda4");
        assert_eq!(
            choose_perm(&blocks[..2], Some("vda")).unwrap_err(),
            "no partition is named \"perm\""
        );
    }
}
