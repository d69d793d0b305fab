//! `ze appliance build`: write the A/B appliance image (checklist A1, A9).
//!
//! The image is written to a hidden temporary file beside its final name
//! and renamed only when it is complete and verified, so a failure or an
//! interrupt never leaves a half-written `ze-*.img`. The file is sparse:
//! only the partition table, the boot files, the squashfs roots and the
//! ext4 metadata are written; everything else stays a hole.
//!
//! Steps: GPT → boot loader (UEFI; on amd64 also BIOS: GRUB's core image
//! in the BIOS boot partition and its boot sector in LBA 0) → ESP (FAT32: boot loader, a kernel per slot,
//! the slot selector) → roots A and B (squashfs) → `/perm` (ext4: zefs and
//! the baked manifest) → verify the GPT, hash and map → rename →
//! `<image>.bmap` (the block map, [`crate::bmap`]) → `build.json`.

use super::{
    bios,
    config::{Appliance, TLS_CERT_FILE, TLS_KEY_FILE},
    disk::{DiskLayout, Identities, Slot},
    esp::{self, Content, FatFile},
    gpt::Table,
    grub, perm,
    region::Region,
    rootfs,
    size::{ByteSize, human},
};
use crate::{
    bmap::{self, BlockMap},
    build, fsutil,
    manifest::Manifest,
    progress::Progress,
    timefmt,
    zefs::{UserRecord, Zefs, keys},
};
use anyhow::{Context, bail};
use std::{
    fs::{self, File},
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The external manifest beside the images.
pub const MANIFEST_FILE: &str = "build.json";
/// zefs key of the TLS certificate.
pub const TLS_CERT_KEY: &str = "tls/cert.pem";
/// zefs key of the TLS private key.
pub const TLS_KEY_KEY: &str = "tls/key.pem";
/// The ESP's FAT label.
pub const ESP_LABEL: &str = "ZE-ESP";

/// Everything a build needs, resolved and checked by the command.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The appliance name.
    pub name: String,
    /// Its definition.
    pub appliance: Appliance,
    /// Its directory (where the image goes).
    pub dir: PathBuf,
    /// Image size in bytes.
    pub size: u64,
    /// The kernel for the ESP.
    pub kernel: PathBuf,
    /// The static ze for the root.
    pub ze: PathBuf,
    /// The seed config text.
    pub seed_config: String,
    /// Build time, seconds since the epoch.
    pub now: i64,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image.
    pub image: PathBuf,
    /// The external manifest (with sha256).
    pub manifest_path: PathBuf,
    /// The block map beside the image.
    pub bmap_path: PathBuf,
    /// What it says.
    pub bmap: BlockMap,
    /// Its content.
    pub manifest: Manifest,
    /// Bytes allocated on disk (the file is sparse).
    pub allocated: u64,
    /// The layout written.
    pub layout: DiskLayout,
}

/// `ze-<YYYYMMDD-HHMMSS>.img`.
pub fn image_name(now: i64) -> String {
    format!("ze-{}.img", timefmt::compact(now))
}

/// The zefs baked into `/perm/ze/database.zefs`.
pub fn database(inputs: &Inputs, image: &str) -> anyhow::Result<Zefs> {
    let ssh = inputs
        .appliance
        .ssh
        .as_ref()
        .context("appliance.json has no ssh credentials")?;
    let mut db = Zefs::new();
    db.set_user(
        &ssh.username,
        &UserRecord {
            role: crate::zefs::ADMIN_ROLE.into(),
            password_hash: ssh.password_hash.clone(),
        },
    )?;
    db.insert(keys::TEMPLATE_CONFIG, inputs.seed_config.as_bytes())?;
    for (key, file) in [(TLS_CERT_KEY, TLS_CERT_FILE), (TLS_KEY_KEY, TLS_KEY_FILE)] {
        let path = inputs.dir.join(file);
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "cannot read {} (the appliance's TLS identity; `ze appliance init --force {}` makes a new one)",
                path.display(),
                inputs.name
            )
        })?;
        db.insert(key, bytes)?;
    }
    db.insert(keys::META_CREATED, timefmt::rfc3339(inputs.now))?;
    db.insert(keys::META_VERSION, build::VERSION)?;
    db.insert("meta/appliance", inputs.name.as_bytes())?;
    db.insert("meta/image", image.as_bytes())?;
    Ok(db)
}

/// Remove what an interrupted build or ISO run left in `dir`: hidden
/// staging files and scratch directories whose name carries the PID of a
/// process that no longer runs (`.ze-….partial.<pid>`,
/// `.ze-build-<pid>-…`, `.ze-iso-<pid>-…`). A build that is still running
/// keeps its own.
pub fn sweep_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let pid = if let Some(rest) = name
            .strip_prefix(".ze-build-")
            .or_else(|| name.strip_prefix(".ze-iso-"))
        {
            rest.split('-').next()
        } else if name.starts_with(".ze-") && name.contains(".partial.") {
            name.rsplit('.').next()
        } else {
            None
        };
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// The prefix of this process's scratch directories.
pub fn scratch_prefix(what: &str) -> String {
    format!(".ze-{what}-{}-", std::process::id())
}

/// Removes the staging file unless the build completed.
struct Staging {
    path: PathBuf,
    keep: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Hash `path` (all `len` bytes, holes included) with progress.
pub fn sha256_file(path: &Path, len: u64, log: &mut dyn Write) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut progress = Progress::new(log, "      hashing", len);
    let mut done = 0u64;
    let (read, sum) = crate::digest::sha256_stream(&mut file, &mut |chunk| {
        done += chunk.len() as u64;
        progress.update(done);
        Ok(())
    })
    .with_context(|| format!("cannot read {}", path.display()))?;
    if read != len {
        bail!("{} changed size while it was hashed", path.display());
    }
    Ok(sum)
}

/// The block map of an image file, with progress.
pub fn map_file(file: &File, path: &Path, log: &mut dyn Write) -> anyhow::Result<BlockMap> {
    let len = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut progress = Progress::new(log, "      mapping", len);
    bmap::derive(file, &mut |done, _| progress.update(done))
        .with_context(|| format!("cannot map the blocks of {}", path.display()))
}

/// Write the image. Progress goes to `log`.
pub fn build(inputs: &Inputs, log: &mut dyn Write) -> anyhow::Result<Built> {
    let arch = inputs.appliance.image.arch;
    let name = image_name(inputs.now);
    let final_path = inputs.dir.join(&name);
    if final_path.exists() {
        bail!(
            "{} already exists (one build per second): wait a second and build again",
            final_path.display()
        );
    }
    let ids = Identities::random()?;
    let layout = DiskLayout::plan(inputs.size, arch, ids)?;
    sweep_stale(&inputs.dir);
    let scratch = tempfile::Builder::new()
        .prefix(&scratch_prefix("build"))
        .tempdir_in(&inputs.dir)
        .with_context(|| {
            format!(
                "cannot create a scratch directory in {}",
                inputs.dir.display()
            )
        })?;
    let staging_path = inputs
        .dir
        .join(format!(".{name}.partial.{}", std::process::id()));
    let mut staging = Staging {
        path: staging_path.clone(),
        keep: false,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&staging_path)
        .with_context(|| format!("cannot create {}", staging_path.display()))?;
    file.set_len(inputs.size).with_context(|| {
        format!(
            "cannot size {} to {}",
            staging_path.display(),
            ByteSize(inputs.size)
        )
    })?;

    writeln!(
        log,
        "[1/7] partition table: GPT, disk {}",
        layout.table.disk_guid
    )?;
    for p in &layout.table.partitions {
        writeln!(
            log,
            "      {:<7} {:>10} at {:>10}  PARTUUID={}",
            p.name,
            ByteSize(p.size()).to_string(),
            ByteSize(p.offset()).to_string(),
            p.guid
        )?;
    }
    layout.table.write_to(&mut &file)?;

    writeln!(
        log,
        "[2/7] boot loader: grub-mkstandalone {}",
        grub::platform(arch)
    )?;
    let mut serial_bytes = [0u8; 4];
    crate::random::fill(&mut serial_bytes)?;
    let serial = u32::from_le_bytes(serial_bytes);
    let serial_text = format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff);
    let config = grub::disk_config(&grub::DiskBoot {
        root_a: &layout.root(Slot::A).guid.to_string(),
        root_b: &layout.root(Slot::B).guid.to_string(),
        esp_serial: &serial_text,
        arch,
    });
    let loader = scratch.path().join(arch.efi_loader());
    grub::mkstandalone(arch, &config, &loader, scratch.path())?;
    if let Some(part) = layout.bios_boot() {
        // amd64: GRUB for BIOS too, in p5 and LBA 0 (see bios.rs).
        let bios_config = grub::bios_disk_config(&grub::DiskBoot {
            root_a: &layout.root(Slot::A).guid.to_string(),
            root_b: &layout.root(Slot::B).guid.to_string(),
            esp_serial: &serial_text,
            arch,
        });
        let core = scratch.path().join("core.img");
        bios::mkimage(
            &bios::early_config(&serial_text),
            &bios_config,
            &core,
            scratch.path(),
        )?;
        let core_bytes =
            fs::read(&core).with_context(|| format!("cannot read {}", core.display()))?;
        let done = bios::install(&file, part, &core_bytes)?;
        writeln!(
            log,
            "      and grub-mkimage {}: p5 {} holds the core image ({} of {} sectors), LBA 0 GRUB's boot sector",
            bios::PLATFORM,
            part.name,
            done.core_sectors,
            done.room
        )?;
    }

    writeln!(
        log,
        "[3/7] p1 ESP: FAT32 with EFI/BOOT/{}, the kernel for slots a and b, slot a selected",
        arch.efi_loader()
    )?;
    let esp_part = layout.esp();
    let files = vec![
        FatFile {
            path: format!("EFI/BOOT/{}", arch.efi_loader()),
            content: Content::Copy(loader),
        },
        FatFile {
            path: grub::kernel_path(Slot::A.letter()),
            content: Content::Copy(inputs.kernel.clone()),
        },
        FatFile {
            path: grub::kernel_path(Slot::B.letter()),
            content: Content::Copy(inputs.kernel.clone()),
        },
        FatFile {
            path: grub::ENV_PATH.into(),
            content: Content::Bytes(grub::env_block(&[("ze_slot", Slot::A.letter())])),
        },
    ];
    esp::write(
        Region::new(
            &file,
            esp_part.offset(),
            esp_part.size(),
            "the ESP (partition 1)",
        ),
        esp_part.size(),
        esp::Kind::Fat32,
        ESP_LABEL,
        serial,
        esp_part.first_lba,
        &files,
    )?;

    let version = build::VERSION;
    let root_inputs = rootfs::RootInputs {
        ze: &inputs.ze,
        appliance: &inputs.name,
        image: &name,
        version,
        mtime: inputs.now.clamp(0, u32::MAX as i64) as u32,
    };
    let mut root_bytes = 0;
    for (slot, what) in [
        (Slot::A, "root A (partition 2)"),
        (Slot::B, "root B (partition 3)"),
    ] {
        let part = layout.root(slot);
        root_bytes = rootfs::write(
            Region::new(&file, part.offset(), part.size(), what),
            &root_inputs,
        )
        .with_context(|| format!("cannot write {what}"))?;
    }
    writeln!(
        log,
        "[4/7] p2 root-a, p3 root-b: squashfs with the static {} ({}), {} each",
        rootfs::ZE_PATH,
        human(fs::metadata(&inputs.ze)?.len()),
        human(root_bytes)
    )?;

    let username = inputs
        .appliance
        .ssh
        .as_ref()
        .map(|s| s.username.clone())
        .unwrap_or_default();
    let db = database(inputs, &name)?;
    let manifest = Manifest {
        image: name.clone(),
        built: timefmt::compact(inputs.now),
        appliance: inputs.name.clone(),
        ze_version: version.to_string(),
        arch: Some(arch.to_string()),
        sha256: None,
        bmap_sha256: None,
    };
    let baked = serde_json::to_vec_pretty(&manifest)?;
    let stage = scratch.path().join("perm");
    fs::create_dir(&stage)?;
    perm::stage(
        &stage,
        &perm::PermFiles {
            zefs: &db.to_bytes(),
            manifest: &baked,
        },
    )?;
    writeln!(
        log,
        "[5/7] p4 perm: ext4 with ze/database.zefs (user {username}, seed config, TLS) and ze/build.json"
    )?;
    let perm_part = layout.perm();
    perm::mkfs(
        &staging_path,
        perm_part,
        &stage,
        perm_part.guid,
        scratch.path(),
    )?;

    writeln!(
        log,
        "[6/7] verifying the partition table, hashing the image and mapping its blocks"
    )?;
    file.sync_all()?;
    let back = Table::read_from(&mut &file, layout.table.disk_sectors)
        .context("the partition table did not read back")?;
    if back != layout.table {
        bail!("the partition table read back differs from the one written");
    }
    let sha256 = sha256_file(&staging_path, inputs.size, log)?;
    let map = map_file(&file, &staging_path, log)?;
    let bmap_name = format!("{name}{}", bmap::SUFFIX);
    writeln!(log, "      block map {bmap_name}: {}", map.summary())?;
    let allocated = file.metadata()?.blocks() * 512;
    drop(file);

    fs::rename(&staging_path, &final_path).with_context(|| {
        format!(
            "cannot rename {} to {}",
            staging_path.display(),
            final_path.display()
        )
    })?;
    staging.keep = true;
    let bmap_path = inputs.dir.join(&bmap_name);
    if let Err(e) = fsutil::write_atomic(&bmap_path, map.text(), 0o644) {
        let _ = fs::remove_file(&final_path);
        bail!(
            "cannot write {}: {e}; the image was removed",
            bmap_path.display()
        );
    }
    let external = Manifest {
        sha256: Some(sha256),
        bmap_sha256: Some(map.sha256.clone()),
        ..manifest
    };
    let manifest_path = inputs.dir.join(MANIFEST_FILE);
    let mut text = serde_json::to_vec_pretty(&external)?;
    text.push(b'\n');
    if let Err(e) = fsutil::write_atomic(&manifest_path, &text, 0o644) {
        let _ = fs::remove_file(&final_path);
        let _ = fs::remove_file(&bmap_path);
        bail!(
            "cannot write {}: {e}; the image and its map were removed",
            manifest_path.display()
        );
    }
    fsutil::sync_dir(&inputs.dir)?;
    writeln!(
        log,
        "[7/7] {} ({} nominal, {} allocated), {bmap_name} and {}",
        final_path.display(),
        ByteSize(inputs.size),
        human(allocated),
        MANIFEST_FILE
    )?;
    Ok(Built {
        image: final_path,
        manifest_path,
        manifest: external,
        bmap_path,
        bmap: map,
        allocated,
        layout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::{
        config::{Arch, SshCredentials},
        disk,
        gpt::types,
    };
    use std::os::unix::fs::FileExt;

    /// Build a small image for `arch` from stand-ins (kernel, ze, TLS).
    fn build_for(arch: Arch) -> (tempfile::TempDir, Built) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("tls")).unwrap();
        for f in [TLS_CERT_FILE, TLS_KEY_FILE] {
            fs::write(dir.path().join(f), b"stand-in").unwrap();
        }
        let stand_in = dir.path().join("stand-in");
        fs::write(&stand_in, vec![0x5a; 8192]).unwrap();
        let mut appliance = Appliance::default();
        appliance.image.arch = arch;
        appliance.ssh = Some(SshCredentials {
            username: "admin".into(),
            password_hash: bcrypt::hash("secret", 4).unwrap(),
        });
        let inputs = Inputs {
            name: "unit".into(),
            appliance,
            dir: dir.path().to_path_buf(),
            size: disk::min_image_bytes(),
            kernel: stand_in.clone(),
            ze: stand_in,
            seed_config: String::new(),
            now: 1_781_712_000,
        };
        let built = build(&inputs, &mut Vec::new()).unwrap();
        (dir, built)
    }

    #[test]
    fn an_amd64_image_carries_the_bios_boot_path() {
        let (_dir, built) = build_for(Arch::Amd64);
        let file = File::open(&built.image).unwrap();
        let sectors = file.metadata().unwrap().len() / 512;
        let table = Table::read_from(&mut &file, sectors).unwrap();
        assert_eq!(table, built.layout.table);
        let p5 = &table.partitions[disk::BIOS_BOOT_PARTITION - 1];
        assert_eq!(p5.type_guid, types::BIOS_BOOT);
        assert_eq!((p5.first_lba, p5.last_lba), (40, 2047));
        assert_eq!(p5.name, "bios-boot");
        // LBA 0: GRUB's boot code pointing at p5, the protective MBR's
        // table and signature.
        let mut lba0 = [0u8; 512];
        file.read_exact_at(&mut lba0, 0).unwrap();
        let boot = fs::read(bios::modules_dir().join(bios::BOOT_IMG)).unwrap();
        assert_eq!(lba0[..3], boot[..3]);
        assert_eq!(lba0[0x5c..0x64], 40u64.to_le_bytes());
        assert_eq!(
            lba0[bios::MBR_CODE_END..],
            table.protective_mbr()[bios::MBR_CODE_END..]
        );
        // p5: diskboot's block list names the rest of core.img, which
        // fits p5 with its end zero-padded.
        let mut core = vec![0u8; p5.size() as usize];
        file.read_exact_at(&mut core, p5.offset()).unwrap();
        assert_eq!(core[0x1f4..0x1fc], 41u64.to_le_bytes());
        let rest = u16::from_le_bytes([core[0x1fc], core[0x1fd]]) as usize;
        assert!(
            (100..bios::MAX_CORE_SECTORS as usize).contains(&rest),
            "{rest}"
        );
        assert!(core[(rest + 1) * 512..].iter().all(|&b| b == 0));
        // sgdisk agrees.
        let out = std::process::Command::new("sgdisk")
            .arg("-v")
            .arg(&built.image)
            .output()
            .expect("sgdisk (package gdisk) is needed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("No problems found"), "{text}");
    }

    #[test]
    fn sweeps_only_what_dead_processes_left() {
        let dir = tempfile::tempdir().unwrap();
        let dead = 999_999_999u32;
        let me = std::process::id();
        let names = [
            format!(".ze-20260617-160000.img.partial.{dead}"),
            format!(".ze-20260617-160001.img.partial.{me}"),
            format!(".ze-build-{dead}-abc"),
            format!(".ze-iso-{me}-abc"),
            "ze-20260617-160000.img".to_string(),
            ".ze-unrelated".to_string(),
        ];
        for n in &names[..2] {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        for n in &names[2..4] {
            fs::create_dir(dir.path().join(n)).unwrap();
        }
        for n in &names[4..] {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        sweep_stale(dir.path());
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [false, true, false, true, true, true]);
        assert_eq!(image_name(1_781_712_000), "ze-20260617-160000.img");
    }
}
