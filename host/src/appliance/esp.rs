//! FAT volumes for UEFI: the image's EFI system partition (FAT32) and the
//! ISO's El Torito boot image (FAT16), written in one pass from a list of
//! files (Microsoft's FAT specification, fatgen103).
//!
//! Names are 8.3 (`EFI/BOOT/BOOTX64.EFI`, `ze/a/vmlinuz`); a name part
//! written in lowercase keeps its case through the NT lowercase flags, as
//! Windows and Linux do, so no long-name entries are needed. Directories
//! and files get consecutive clusters; every time stamp is 1980-01-01, so
//! the same inputs give the same bytes.
//!
//! ```text
//! FAT32: boot sector | FSInfo | … | backup boot sector (6) | FSInfo copy (7) | …
//!        reserved (32 sectors) | FAT 1 | FAT 2 | clusters 2… (root directory first)
//! FAT16: boot sector | FAT 1 | FAT 2 | root directory (512 entries) | clusters 2…
//! ```

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    path::PathBuf,
};
use thiserror::Error;

/// Bytes per sector.
pub const SECTOR: u64 = 512;
/// FAT32 needs at least this many clusters (fatgen103 §3.5).
pub const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// FAT16 needs at least this many clusters.
pub const FAT16_MIN_CLUSTERS: u64 = 4_085;
/// Root directory entries of a FAT16 volume.
const FAT16_ROOT_ENTRIES: u64 = 512;
const DIR_ENTRY: u64 = 32;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_ARCHIVE: u8 = 0x20;
const ATTR_VOLUME_ID: u8 = 0x08;
const NT_LOWER_BASE: u8 = 0x08;
const NT_LOWER_EXT: u8 = 0x10;
/// 1980-01-01 as a FAT date.
const FAT_EPOCH_DATE: u16 = (1 << 5) | 1;

/// What a file on the volume holds.
#[derive(Debug, Clone)]
pub enum Content {
    /// These bytes.
    Bytes(Vec<u8>),
    /// A copy of this file.
    Copy(PathBuf),
}

impl Content {
    fn len(&self) -> io::Result<u64> {
        match self {
            Content::Bytes(b) => Ok(b.len() as u64),
            Content::Copy(p) => Ok(std::fs::metadata(p)?.len()),
        }
    }
}

/// One file to put on the volume, at a `/`-separated path.
#[derive(Debug, Clone)]
pub struct FatFile {
    /// Path on the volume, e.g. `EFI/BOOT/BOOTX64.EFI`.
    pub path: String,
    /// Its content.
    pub content: Content,
}

/// Which FAT to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// FAT32: what UEFI requires of a fixed disk's system partition.
    Fat32,
    /// FAT16: small volumes (the ISO's El Torito image).
    Fat16,
}

/// Why a volume could not be written.
#[derive(Debug, Error)]
pub enum FatError {
    /// A path component that is not a valid 8.3 name.
    #[error(
        "{path}: {part:?} is not an 8.3 name (1–8 characters, optional '.' and 1–3 more; letters of one case, digits, and ! # $ % & ' ( ) - @ ^ _ {{ }} ~)"
    )]
    BadName { path: String, part: String },
    /// Two paths that name the same entry (FAT names ignore case), or a
    /// file where a directory is needed.
    #[error("{0}: clashes with another file on the volume")]
    Clash(String),
    /// The volume is too small or too large for the kind asked.
    #[error(
        "a {size}-byte volume cannot hold {kind:?}: it would have {clusters} clusters ({need})"
    )]
    Geometry {
        size: u64,
        kind: Kind,
        clusters: u64,
        need: &'static str,
    },
    /// The files do not fit.
    #[error("the files need {need} clusters but the volume has {have}")]
    Full { need: u64, have: u64 },
    /// Reading a source file or writing the volume failed.
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> FatError {
    let what = what.into();
    move |source| FatError::Io { what, source }
}

/// An 8.3 name: 11 bytes plus the NT lowercase flags.
fn short_name(path: &str, part: &str) -> Result<([u8; 11], u8), FatError> {
    let bad = || FatError::BadName {
        path: path.to_string(),
        part: part.to_string(),
    };
    let (base, ext) = match part.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (part, None),
    };
    let valid = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'()-@^_{}~".contains(&c))
    };
    if !valid(base, 8) || ext.is_some_and(|e| !valid(e, 3)) {
        return Err(bad());
    }
    let case = |s: &str| -> Result<bool, FatError> {
        let lower = s.bytes().any(|c| c.is_ascii_lowercase());
        let upper = s.bytes().any(|c| c.is_ascii_uppercase());
        if lower && upper {
            Err(bad())
        } else {
            Ok(lower)
        }
    };
    let mut flags = 0;
    if case(base)? {
        flags |= NT_LOWER_BASE;
    }
    if ext.map(case).transpose()?.unwrap_or(false) {
        flags |= NT_LOWER_EXT;
    }
    let mut name = [b' '; 11];
    for (d, s) in name.iter_mut().zip(base.bytes()) {
        *d = s.to_ascii_uppercase();
    }
    for (d, s) in name[8..].iter_mut().zip(ext.unwrap_or("").bytes()) {
        *d = s.to_ascii_uppercase();
    }
    Ok((name, flags))
}

/// A node of the tree being written.
#[derive(Debug)]
enum Node {
    Dir(Dir),
    File(usize),
}

type Dir = BTreeMap<[u8; 11], (u8, Node)>;

fn insert(dir: &mut Dir, parts: &[&str], path: &str, index: usize) -> Result<(), FatError> {
    let Some((first, rest)) = parts.split_first() else {
        return Err(FatError::BadName {
            path: path.to_string(),
            part: String::new(),
        });
    };
    let (name, flags) = short_name(path, first)?;
    if rest.is_empty() {
        if dir.contains_key(&name) {
            return Err(FatError::Clash(path.to_string()));
        }
        dir.insert(name, (flags, Node::File(index)));
        return Ok(());
    }
    let entry = dir
        .entry(name)
        .or_insert_with(|| (flags, Node::Dir(BTreeMap::new())));
    match &mut entry.1 {
        Node::Dir(children) => insert(children, rest, path, index),
        Node::File(_) => Err(FatError::Clash(path.to_string())),
    }
}

/// The volume's geometry.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    kind: Kind,
    sectors: u64,
    per_cluster: u64,
    reserved: u64,
    fat_sectors: u64,
    root_sectors: u64,
    clusters: u64,
}

impl Geometry {
    fn plan(size: u64, kind: Kind) -> Result<Geometry, FatError> {
        let sectors = size / SECTOR;
        let (reserved, root_sectors, min, max, need) = match kind {
            Kind::Fat32 => (
                32,
                0,
                FAT32_MIN_CLUSTERS,
                0x0FFF_FFF5,
                "FAT32 needs at least 65525 (a 33 MiB volume)",
            ),
            Kind::Fat16 => (
                1,
                FAT16_ROOT_ENTRIES * DIR_ENTRY / SECTOR,
                FAT16_MIN_CLUSTERS,
                65_524,
                "FAT16 needs 4085 to 65524",
            ),
        };
        // The smallest cluster that keeps the count under the type's
        // maximum, as Microsoft's formatter chooses.
        let mut per_cluster = 1;
        loop {
            let g = Geometry::with(kind, sectors, per_cluster, reserved, root_sectors);
            if g.clusters <= max || per_cluster == 128 {
                if g.clusters < min || g.clusters > max {
                    return Err(FatError::Geometry {
                        size,
                        kind,
                        clusters: g.clusters,
                        need,
                    });
                }
                return Ok(g);
            }
            per_cluster *= 2;
        }
    }

    /// fatgen103 §3.5: the FAT size for a volume.
    fn with(kind: Kind, sectors: u64, per_cluster: u64, reserved: u64, root: u64) -> Geometry {
        let tmp1 = sectors.saturating_sub(reserved + root);
        let mut tmp2 = 256 * per_cluster + 2;
        if kind == Kind::Fat32 {
            tmp2 /= 2;
        }
        let fat_sectors = tmp1.div_ceil(tmp2);
        let data = sectors.saturating_sub(reserved + 2 * fat_sectors + root);
        Geometry {
            kind,
            sectors,
            per_cluster,
            reserved,
            fat_sectors,
            root_sectors: root,
            clusters: data / per_cluster,
        }
    }

    fn cluster_bytes(&self) -> u64 {
        self.per_cluster * SECTOR
    }

    fn fat_offset(&self, copy: u64) -> u64 {
        (self.reserved + copy * self.fat_sectors) * SECTOR
    }

    fn root_offset(&self) -> u64 {
        self.fat_offset(2)
    }

    fn cluster_offset(&self, cluster: u64) -> u64 {
        (self.reserved + 2 * self.fat_sectors + self.root_sectors) * SECTOR
            + (cluster - 2) * self.cluster_bytes()
    }
}

/// Write a FAT volume of `size` bytes into `out`, holding `files`. `label`
/// is at most 11 characters; `serial` is the volume id (GRUB's
/// `--fs-uuid` shows it as `XXXX-XXXX`); `hidden` is the volume's first
/// sector on its disk (0 when it is not a partition).
pub fn write<W: Write + Seek>(
    mut out: W,
    size: u64,
    kind: Kind,
    label: &str,
    serial: u32,
    hidden: u64,
    files: &[FatFile],
) -> Result<(), FatError> {
    let geo = Geometry::plan(size, kind)?;
    // The tree, validated.
    let mut root = BTreeMap::new();
    for (index, file) in files.iter().enumerate() {
        let parts: Vec<&str> = file.path.split('/').filter(|p| !p.is_empty()).collect();
        insert(&mut root, &parts, &file.path, index)?;
    }
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| {
            f.content
                .len()
                .map_err(io_err(format!("cannot read {}", f.path)))
        })
        .collect::<Result<_, _>>()?;

    // Allocate clusters: directories breadth-first, then files, each run
    // contiguous. `chains` holds (first cluster, cluster count).
    let cb = geo.cluster_bytes();
    let mut next = 2u64;
    let mut alloc = |bytes: u64| -> (u64, u64) {
        let n = bytes.div_ceil(cb);
        let first = if n == 0 { 0 } else { next };
        next += n;
        (first, n)
    };
    struct DirOut<'a> {
        root: bool,
        cluster: u64,
        parent: u64,
        children: &'a Dir,
    }
    let mut dirs: Vec<DirOut<'_>> = Vec::new();
    let root_cluster = match kind {
        Kind::Fat32 => alloc((root.len() as u64 + 1) * DIR_ENTRY).0,
        Kind::Fat16 => {
            if root.len() as u64 + 1 > FAT16_ROOT_ENTRIES {
                return Err(FatError::Full {
                    need: root.len() as u64 + 1,
                    have: FAT16_ROOT_ENTRIES,
                });
            }
            0
        }
    };
    let mut chains: Vec<(u64, u64)> = Vec::new();
    if kind == Kind::Fat32 {
        chains.push((
            root_cluster,
            1.max(((root.len() as u64 + 1) * DIR_ENTRY).div_ceil(cb)),
        ));
    }
    dirs.push(DirOut {
        root: true,
        cluster: root_cluster,
        parent: 0,
        children: &root,
    });
    let mut dir_clusters: BTreeMap<*const Dir, u64> = BTreeMap::new();
    let mut file_clusters = vec![0u64; files.len()];
    let mut i = 0;
    while i < dirs.len() {
        let (this, children) = (dirs[i].cluster, dirs[i].children);
        for (_, node) in children.values() {
            match node {
                Node::Dir(grandchildren) => {
                    let (first, n) = alloc((grandchildren.len() as u64 + 2) * DIR_ENTRY);
                    chains.push((first, n));
                    dir_clusters.insert(grandchildren as *const _, first);
                    dirs.push(DirOut {
                        root: false,
                        cluster: first,
                        // ".." of a directory in the root names cluster 0.
                        parent: if i == 0 { 0 } else { this },
                        children: grandchildren,
                    });
                }
                Node::File(_) => {}
            }
        }
        i += 1;
    }
    for (index, size) in sizes.iter().enumerate() {
        let (first, n) = alloc(*size);
        file_clusters[index] = first;
        if n > 0 {
            chains.push((first, n));
        }
    }
    let used = next - 2;
    if used > geo.clusters {
        return Err(FatError::Full {
            need: used,
            have: geo.clusters,
        });
    }

    let w = |out: &mut W, at: u64, bytes: &[u8], what: &str| -> Result<(), FatError> {
        out.seek(SeekFrom::Start(at))
            .and_then(|_| out.write_all(bytes))
            .map_err(io_err(format!("cannot write the {what}")))
    };

    // Boot sector(s) and FSInfo.
    let boot = boot_sector(&geo, label, serial, hidden);
    w(&mut out, 0, &boot, "boot sector")?;
    if kind == Kind::Fat32 {
        let info = fs_info(geo.clusters - used, next);
        w(&mut out, SECTOR, &info, "FSInfo sector")?;
        w(&mut out, 6 * SECTOR, &boot, "backup boot sector")?;
        w(&mut out, 7 * SECTOR, &info, "backup FSInfo sector")?;
    }

    // The FATs.
    let width = match kind {
        Kind::Fat32 => 4,
        Kind::Fat16 => 2,
    };
    let mut fat = vec![0u8; (geo.fat_sectors * SECTOR) as usize];
    let mut set = |cluster: u64, value: u32| {
        let at = (cluster * width) as usize;
        match kind {
            Kind::Fat32 => fat[at..at + 4].copy_from_slice(&value.to_le_bytes()),
            Kind::Fat16 => fat[at..at + 2].copy_from_slice(&(value as u16).to_le_bytes()),
        }
    };
    let (media, eoc) = match kind {
        Kind::Fat32 => (0x0FFF_FFF8, 0x0FFF_FFFF),
        Kind::Fat16 => (0xFFF8, 0xFFFF),
    };
    set(0, media);
    set(1, eoc);
    for (first, n) in &chains {
        for c in *first..first + n {
            set(
                c,
                if c + 1 == first + n {
                    eoc
                } else {
                    c as u32 + 1
                },
            );
        }
    }
    for copy in 0..2 {
        w(&mut out, geo.fat_offset(copy), &fat, "FAT")?;
    }

    // Directories.
    for d in &dirs {
        let mut bytes = Vec::new();
        if d.root {
            let mut vol = [b' '; 11];
            for (dst, src) in vol.iter_mut().zip(label.bytes()) {
                *dst = src.to_ascii_uppercase();
            }
            bytes.extend_from_slice(&dir_entry(&vol, 0, ATTR_VOLUME_ID, 0, 0));
        } else {
            let mut dot = [b' '; 11];
            dot[0] = b'.';
            bytes.extend_from_slice(&dir_entry(&dot, 0, ATTR_DIRECTORY, d.cluster, 0));
            dot[1] = b'.';
            bytes.extend_from_slice(&dir_entry(&dot, 0, ATTR_DIRECTORY, d.parent, 0));
        }
        for (name, (flags, node)) in d.children {
            bytes.extend_from_slice(&match node {
                Node::Dir(c) => dir_entry(
                    name,
                    *flags,
                    ATTR_DIRECTORY,
                    dir_clusters[&(c as *const _)],
                    0,
                ),
                Node::File(index) => dir_entry(
                    name,
                    *flags,
                    ATTR_ARCHIVE,
                    file_clusters[*index],
                    sizes[*index] as u32,
                ),
            });
        }
        let (at, room) = if d.cluster == 0 {
            (geo.root_offset(), geo.root_sectors * SECTOR)
        } else {
            let n = 1.max((bytes.len() as u64).div_ceil(cb));
            (geo.cluster_offset(d.cluster), n * cb)
        };
        bytes.resize(room as usize, 0);
        w(&mut out, at, &bytes, "directory")?;
    }

    // File data.
    for (index, file) in files.iter().enumerate() {
        if sizes[index] == 0 {
            continue;
        }
        let at = geo.cluster_offset(file_clusters[index]);
        out.seek(SeekFrom::Start(at))
            .map_err(io_err(format!("cannot write {}", file.path)))?;
        match &file.content {
            Content::Bytes(b) => out
                .write_all(b)
                .map_err(io_err(format!("cannot write {}", file.path)))?,
            Content::Copy(p) => {
                let mut src = File::open(p).map_err(io_err(format!(
                    "cannot read {} (for {})",
                    p.display(),
                    file.path
                )))?;
                let copied = io::copy(&mut (&mut src).take(sizes[index]), &mut out)
                    .map_err(io_err(format!("cannot write {}", file.path)))?;
                if copied != sizes[index] {
                    return Err(FatError::Io {
                        what: format!("{} shrank while it was copied", p.display()),
                        source: io::ErrorKind::UnexpectedEof.into(),
                    });
                }
            }
        }
    }
    out.flush().map_err(io_err("cannot flush the volume"))
}

fn boot_sector(geo: &Geometry, label: &str, serial: u32, hidden: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    let fat32 = geo.kind == Kind::Fat32;
    b[0..3].copy_from_slice(if fat32 {
        &[0xEB, 0x58, 0x90]
    } else {
        &[0xEB, 0x3C, 0x90]
    });
    b[3..11].copy_from_slice(b"ZE      ");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = geo.per_cluster as u8;
    b[14..16].copy_from_slice(&(geo.reserved as u16).to_le_bytes());
    b[16] = 2;
    let root_entries = if fat32 { 0 } else { FAT16_ROOT_ENTRIES as u16 };
    b[17..19].copy_from_slice(&root_entries.to_le_bytes());
    if !fat32 && geo.sectors < 0x10000 {
        b[19..21].copy_from_slice(&(geo.sectors as u16).to_le_bytes());
    } else {
        b[32..36].copy_from_slice(&(geo.sectors as u32).to_le_bytes());
    }
    b[21] = 0xF8;
    b[24..26].copy_from_slice(&63u16.to_le_bytes());
    b[26..28].copy_from_slice(&255u16.to_le_bytes());
    b[28..32].copy_from_slice(&(hidden as u32).to_le_bytes());
    let ext = if fat32 {
        b[36..40].copy_from_slice(&(geo.fat_sectors as u32).to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root cluster
        b[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
        b[50..52].copy_from_slice(&6u16.to_le_bytes()); // backup boot sector
        64
    } else {
        b[22..24].copy_from_slice(&(geo.fat_sectors as u16).to_le_bytes());
        36
    };
    b[ext] = 0x80; // drive number
    b[ext + 2] = 0x29; // extended boot signature
    b[ext + 3..ext + 7].copy_from_slice(&serial.to_le_bytes());
    let mut vol = [b' '; 11];
    for (dst, src) in vol.iter_mut().zip(label.bytes()) {
        *dst = src.to_ascii_uppercase();
    }
    b[ext + 7..ext + 18].copy_from_slice(&vol);
    b[ext + 18..ext + 26].copy_from_slice(if fat32 { b"FAT32   " } else { b"FAT16   " });
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

fn fs_info(free: u64, next_free: u64) -> [u8; 512] {
    let mut s = [0u8; 512];
    s[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    s[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    s[488..492].copy_from_slice(&(free as u32).to_le_bytes());
    s[492..496].copy_from_slice(&(next_free as u32).to_le_bytes());
    s[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
    s
}

fn dir_entry(name: &[u8; 11], nt_flags: u8, attr: u8, cluster: u64, size: u32) -> [u8; 32] {
    let mut e = [0u8; 32];
    e[0..11].copy_from_slice(name);
    e[11] = attr;
    e[12] = nt_flags;
    for at in [16, 18, 24] {
        // creation, access and write dates
        e[at..at + 2].copy_from_slice(&FAT_EPOCH_DATE.to_le_bytes());
    }
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// The size of a FAT16 volume that holds `files` with room to spare,
/// rounded up to a whole MiB and at least 4 MiB: the ISO's El Torito image.
pub fn small_volume_size(files: &[FatFile]) -> io::Result<u64> {
    let mut total = 0u64;
    for f in files {
        // Each file wastes at most one cluster (2 KiB at these sizes).
        total += f.content.len()? + 2048;
    }
    let with_overhead = total + total / 8 + (256 << 10);
    Ok((with_overhead.div_ceil(1 << 20) << 20).max(4 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn files() -> Vec<FatFile> {
        vec![
            FatFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                content: Content::Bytes((0..300_000u32).map(|i| i as u8).collect()),
            },
            FatFile {
                path: "ze/grubenv".into(),
                content: Content::Bytes(b"# GRUB Environment Block\n".to_vec()),
            },
            FatFile {
                path: "ze/a/vmlinuz".into(),
                content: Content::Bytes(vec![0x4d; 5000]),
            },
            FatFile {
                path: "ze/empty".into(),
                content: Content::Bytes(Vec::new()),
            },
        ]
    }

    fn fsck(path: &std::path::Path) {
        let out = Command::new("fsck.vfat")
            .arg("-vn")
            .arg(path)
            .output()
            .expect("fsck.vfat (package dosfstools) is needed: apt-get install dosfstools");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "fsck.vfat: {text}");
        for complaint in ["Fixing", "should be", "Invalid", "Bad ", "Deleting"] {
            assert!(!text.contains(complaint), "fsck.vfat: {text}");
        }
    }

    fn mtype(path: &std::path::Path, file: &str) -> Vec<u8> {
        let out = Command::new("mtype")
            .arg("-i")
            .arg(path)
            .arg(format!("::{file}"))
            .output()
            .expect("mtype (package mtools) is needed: apt-get install mtools");
        assert!(out.status.success(), "mtype {file}");
        out.stdout
    }

    fn listing(path: &std::path::Path) -> String {
        let out = Command::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(path)
            .arg("::/")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_fat32_system_partition_that_fsck_and_mtools_accept() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(64 << 20).unwrap();
        write(
            file.as_file(),
            64 << 20,
            Kind::Fat32,
            "ze-esp",
            0x1234_abcd,
            2048,
            &files(),
        )
        .unwrap();
        fsck(file.path());
        let list = listing(file.path());
        for want in [
            "::/EFI/BOOT/BOOTX64.EFI",
            "::/ze/grubenv",
            "::/ze/a/vmlinuz",
            "::/ze/empty",
        ] {
            assert!(list.contains(want), "{want} not in\n{list}");
        }
        assert_eq!(
            mtype(file.path(), "/EFI/BOOT/BOOTX64.EFI"),
            match &files()[0].content {
                Content::Bytes(b) => b.clone(),
                Content::Copy(_) => unreachable!(),
            }
        );
        assert_eq!(mtype(file.path(), "/ze/a/vmlinuz"), vec![0x4d; 5000]);
        let info = Command::new("minfo")
            .arg("-i")
            .arg(file.path())
            .arg("::")
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains("serial number: 1234ABCD"), "{info}");
        assert!(info.contains("disk label=\"ZE-ESP     \""), "{info}");
        assert!(info.contains("disk type=\"FAT32   \""), "{info}");
        assert!(info.contains("hidden sectors: 2048"), "{info}");
    }

    #[test]
    fn a_fat16_boot_image_sized_for_its_files() {
        let files = files();
        let size = small_volume_size(&files).unwrap();
        assert_eq!(size, 4 << 20);
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; size as usize];
        write(
            io::Cursor::new(&mut bytes[..]),
            size,
            Kind::Fat16,
            "ZE-BOOT",
            7,
            0,
            &files,
        )
        .unwrap();
        std::fs::write(file.path(), &bytes).unwrap();
        fsck(file.path());
        assert_eq!(
            mtype(file.path(), "/ze/grubenv"),
            b"# GRUB Environment Block\n"
        );
    }

    #[test]
    fn copies_files_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("kernel");
        std::fs::write(&src, vec![9u8; 70_000]).unwrap();
        let image = dir.path().join("esp.img");
        let f = File::create(&image).unwrap();
        f.set_len(40 << 20).unwrap();
        let files = [FatFile {
            path: "ze/b/vmlinuz".into(),
            content: Content::Copy(src),
        }];
        write(&f, 40 << 20, Kind::Fat32, "ESP", 1, 0, &files).unwrap();
        fsck(&image);
        assert_eq!(mtype(&image, "/ze/b/vmlinuz"), vec![9u8; 70_000]);
    }

    #[test]
    fn bad_names_and_sizes_are_named() {
        let one = |path: &str| {
            vec![FatFile {
                path: path.into(),
                content: Content::Bytes(vec![1]),
            }]
        };
        let mut buf = vec![0u8; 40 << 20];
        let mut try_write = |files: &[FatFile], size: u64, kind| {
            write(io::Cursor::new(&mut buf[..]), size, kind, "X", 1, 0, files)
                .unwrap_err()
                .to_string()
        };
        for bad in [
            "ze/vmlinuz-a1",
            "a.b.c",
            "Mixed",
            "x/.hidden",
            "sp ace",
            "long.name",
        ] {
            let err = try_write(&one(bad), 40 << 20, Kind::Fat32);
            assert!(err.contains("not an 8.3 name"), "{bad}: {err}");
        }
        let mut clash = one("ze/x");
        clash.extend(one("ZE/X"));
        assert!(try_write(&clash, 40 << 20, Kind::Fat32).contains("clashes"));
        let mut clash = one("ze");
        clash.extend(one("ze/x"));
        assert!(try_write(&clash, 40 << 20, Kind::Fat32).contains("clashes"));
        let err = try_write(&[], 32 << 20, Kind::Fat32);
        assert!(err.contains("FAT32 needs at least 65525"), "{err}");
        let err = try_write(&[], 1 << 20, Kind::Fat16);
        assert!(err.contains("FAT16 needs"), "{err}");
        let big = [FatFile {
            path: "big".into(),
            content: Content::Bytes(vec![0; 5 << 20]),
        }];
        let err = try_write(&big, 4 << 20, Kind::Fat16);
        assert!(err.contains("the files need"), "{err}");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let make = || {
            let mut b = vec![0u8; 4 << 20];
            write(
                io::Cursor::new(&mut b[..]),
                4 << 20,
                Kind::Fat16,
                "Z",
                3,
                0,
                &files(),
            )
            .unwrap();
            b
        };
        assert!(make() == make());
    }
}
