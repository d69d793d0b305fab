//! `/perm` (partition 4): an ext4 filesystem made by `mke2fs -d` straight
//! into the image at the partition's offset, with the partition's exact
//! size, so nothing outside the partition (the backup GPT above all) is
//! ever touched.
//!
//! ```text
//! /ze/                 0700 root:root
//! /ze/database.zefs    0600  credentials (bcrypt), seed config, TLS cert and key
//! /ze/build.json       0644  the build manifest without the checksum
//! ```
//!
//! mke2fs reads its feature defaults from `/etc/mke2fs.conf`, which differs
//! between hosts; ze hands it its own config so every image gets the same
//! feature set, one the 6.1 installer kernel mounts.

use super::gpt::{Guid, Partition};
use super::tools;
use anyhow::{Context, bail};
use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
    process::Command,
};

/// The filesystem label (`LABEL=perm`).
pub const LABEL: &str = "perm";
/// The directory under `/perm` that ze owns.
pub const ZE_DIR: &str = "ze";

/// The mke2fs.conf ze uses: 4 KiB blocks, 256-byte inodes, one inode per
/// 16 KiB, and the ext4 features of e2fsprogs 1.47's defaults that Linux 6.1
/// supports.
pub const MKE2FS_CONF: &str = "\
[defaults]
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
\tze = {
\t\tinode_ratio = 16384
\t}
";

/// What goes into `/perm/ze`.
#[derive(Debug, Clone)]
pub struct PermFiles<'a> {
    /// `database.zefs`.
    pub zefs: &'a [u8],
    /// `build.json` (no sha256).
    pub manifest: &'a [u8],
}

/// Write the staging tree `<dir>/ze/{database.zefs,build.json}`.
pub fn stage(dir: &Path, files: &PermFiles<'_>) -> anyhow::Result<()> {
    let ze = dir.join(ZE_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&ze)
        .with_context(|| format!("cannot create {}", ze.display()))?;
    fs::set_permissions(&ze, fs::Permissions::from_mode(0o700))?;
    for (name, bytes, mode) in [
        (crate::zefs::FILE_NAME, files.zefs, crate::zefs::FILE_MODE),
        ("build.json", files.manifest, 0o644),
    ] {
        let path = ze.join(name);
        fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Make the ext4 filesystem of partition `part` inside `image`, filled
/// from `staging`, with filesystem UUID `uuid`. `scratch` holds the
/// mke2fs config.
pub fn mkfs(
    image: &Path,
    part: &Partition,
    staging: &Path,
    uuid: Guid,
    scratch: &Path,
) -> anyhow::Result<()> {
    let conf = scratch.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF)?;
    let size_kib = part.size() / 1024;
    let mut cmd = Command::new("mke2fs");
    cmd.env("MKE2FS_CONFIG", &conf)
        .args(["-q", "-F", "-t", "ext4", "-T", "ze", "-L", LABEL, "-m", "0"])
        .arg("-U")
        .arg(uuid.to_string())
        .arg("-E")
        .arg(format!(
            "offset={},root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            part.offset()
        ))
        .arg("-d")
        .arg(staging)
        .arg(image)
        .arg(format!("{size_kib}k"));
    tools::run(&mut cmd).context("mke2fs could not make /perm")?;
    // mke2fs -d copies the staging files' owners; on an appliance they
    // belong to root whoever built the image.
    if !rustix::process::getuid().is_root() {
        chown_to_root(image, part, staging)?;
    }
    Ok(())
}

/// `debugfs -w` on the partition: every staged path to uid 0, gid 0.
fn chown_to_root(image: &Path, part: &Partition, staging: &Path) -> anyhow::Result<()> {
    let mut script = String::new();
    let mut paths = vec![format!("/{ZE_DIR}")];
    for entry in fs::read_dir(staging.join(ZE_DIR))? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else {
            bail!("staged file name {name:?} is not UTF-8");
        };
        paths.push(format!("/{ZE_DIR}/{name}"));
    }
    for p in &paths {
        script.push_str(&format!("sif {p} uid 0\nsif {p} gid 0\n"));
    }
    let cmds = staging.with_extension("debugfs");
    fs::write(&cmds, script)?;
    let device = format!("{}?offset={}", image.display(), part.offset());
    let mut cmd = Command::new("debugfs");
    cmd.arg("-w").arg("-f").arg(&cmds).arg(device);
    tools::run(&mut cmd).context("debugfs could not give /perm/ze to root")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_fills_exactly_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let file = fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&image)
            .unwrap();
        file.set_len(48 << 20).unwrap();
        // Canaries on both sides of the partition.
        use std::os::unix::fs::FileExt;
        file.write_all_at(&[0xAA; 4096], (8 << 20) - 4096).unwrap();
        file.write_all_at(&[0xBB; 4096], 40 << 20).unwrap();
        let part = Partition {
            type_guid: super::super::gpt::types::LINUX_DATA,
            guid: Guid::default(),
            first_lba: (8 << 20) / 512,
            last_lba: (40 << 20) / 512 - 1,
            attributes: 0,
            name: "perm".into(),
        };
        let staging = dir.path().join("stage");
        fs::create_dir(&staging).unwrap();
        stage(
            &staging,
            &PermFiles {
                zefs: b"zefs bytes",
                manifest: b"{}",
            },
        )
        .unwrap();
        let uuid: Guid = "0f0e0d0c-0b0a-4908-8706-050403020100".parse().unwrap();
        mkfs(&image, &part, &staging, uuid, dir.path()).unwrap();
        let mut buf = [0u8; 4096];
        file.read_exact_at(&mut buf, (8 << 20) - 4096).unwrap();
        assert_eq!(buf, [0xAA; 4096]);
        file.read_exact_at(&mut buf, 40 << 20).unwrap();
        assert_eq!(buf, [0xBB; 4096]);

        let device = format!("{}?offset={}", image.display(), 8 << 20);
        let fsck = std::process::Command::new("e2fsck")
            .args(["-fn", &device])
            .output()
            .expect("e2fsck (package e2fsprogs) is needed");
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        let ls = std::process::Command::new("debugfs")
            .args(["-R", "ls -l /ze", &device])
            .output()
            .unwrap();
        let ls = String::from_utf8_lossy(&ls.stdout);
        assert!(ls.contains("100600 (1)      0      0      10"), "{ls}");
        let stats = std::process::Command::new("dumpe2fs")
            .args(["-h", &device])
            .output()
            .unwrap();
        let stats = String::from_utf8_lossy(&stats.stdout);
        assert!(stats.contains("Filesystem volume name:   perm"), "{stats}");
        assert!(
            stats.contains("Filesystem UUID:          0f0e0d0c-0b0a-4908-8706-050403020100"),
            "{stats}"
        );
        assert!(stats.contains("Block count:              8192"), "{stats}");
    }
}
