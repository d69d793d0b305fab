//! `ze appliance iso`: offline install media (checklist A7, O1–O5, W7).
//!
//! A hybrid ISO: an ISO 9660 volume (Rock Ridge, Joliet) that boots by
//! UEFI from a CD (El Torito, no emulation) and from a USB stick written
//! with `dd` (GPT with the same FAT boot image as an EFI system partition).
//!
//! ```text
//! /EFI/BOOT/BOOTX64.EFI        the boot loader (BOOTAA64.EFI for arm64)
//! /boot/vmlinuz                the installer kernel
//! /boot/initrd.img.gz          the installer initrd
//! /boot/grub/grub.cfg          a copy of the boot configuration embedded in the loader
//! /ze/media-id                 32 lowercase hex digits and a newline
//! /ze/<image>.bmap             the image's block map (bmap 2.0, crate::bmap)
//! /ze/<image>.data.gz          one gzip stream: the bytes of every range of
//!                              the map, [start, end) of the image, in order
//! /ze/<image>.sha256           "<sha256 of the uncompressed image>  <image>\n"
//! /ze/install.json             the metadata below
//! ```
//!
//! Only the mapped data is carried: the rest of the image is zeros, which
//! the installer writes itself. The boot loader finds the volume by its
//! UUID (the volume's modification time, which ze sets) and boots
//! `ze.source=iso ze.media-id=<id> ze.image=<image> ze.sha256=<hex> ze.bmap-sha256=<hex> ze.size=<bytes> [ze.target=<disk>]`
//! plus the console arguments (`ze.size` is the map's `ImageSize`,
//! `ze.bmap-sha256` the digest of `/ze/<image>.bmap`). The installer must
//! read `/ze/media-id` from a volume and match it against `ze.media-id`
//! before trusting anything on it (`ze_installer::iso9660::media_id_matches`).

use super::{
    config::{Appliance, Arch},
    esp::{self, Content, FatFile},
    grub,
    image::{self, MANIFEST_FILE},
    size::human,
};
use crate::{
    bmap::{self, BlockMap, Walk},
    build,
    manifest::Manifest,
    progress::Progress,
    timefmt,
};
use anyhow::{Context, bail};
use flate2::{Compression, write::GzEncoder};
use serde::{Deserialize, Serialize};
use std::{
    fs::{self, File},
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::Command,
};
use ze_installer::iso9660;

/// Where the media id lives on the volume (shared with the installer).
pub const MEDIA_ID_PATH: &str = iso9660::MEDIA_ID_PATH;
/// The metadata file.
pub const METADATA_PATH: &str = "ze/install.json";
/// gzip level for the mapped data: zlib's default.
pub const GZIP_LEVEL: u32 = 6;
/// What follows the image's name in the data file's name.
pub const DATA_SUFFIX: &str = ".data.gz";

/// `/ze/install.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IsoMetadata {
    /// The media id, as in `/ze/media-id` and `ze.media-id=`.
    pub media_id: String,
    /// The appliance.
    pub appliance: String,
    /// The image's file name (`ze.image=`).
    pub image: String,
    /// Where the block map is on the volume.
    pub bmap_path: String,
    /// Its sha256 (`ze.bmap-sha256=`).
    pub bmap_sha256: String,
    /// Where the mapped data, gzip'd, is on the volume.
    pub data_path: String,
    /// The bytes the map's ranges cover (the data inflated).
    pub mapped_bytes: u64,
    /// The uncompressed image's size (`ze.size=`).
    pub image_size: u64,
    /// The uncompressed image's sha256 (`ze.sha256=`).
    pub sha256: String,
    /// When the image was built (`YYYYMMDD-HHMMSS`), from its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<String>,
    /// `amd64` or `arm64`.
    pub arch: String,
    /// The disk to install to (`ze.target=`), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The kernel command line the boot loader passes.
    pub kernel_cmdline: String,
    /// The ze that made the ISO.
    pub ze_version: String,
    /// When the ISO was made (RFC 3339).
    pub created: String,
}

/// Check a `--target` with the installer's own validator
/// ([`ze_installer::byid::parse`]): `/dev/<disk>`, `/dev/disk/by-id/<name>`
/// or `serial:<serial>`, a whole disk. So an ISO is never built with a
/// target its installer rejects.
pub fn validate_target(target: &str) -> anyhow::Result<()> {
    ze_installer::byid::parse(target)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("--target {target:?}: {e}"))
}

/// The installer's kernel command line.
pub fn kernel_cmdline(
    media_id: &str,
    image: &str,
    sha256: &str,
    bmap_sha256: &str,
    size: u64,
    target: Option<&str>,
    arch: Arch,
) -> String {
    let mut line = format!(
        "ze.source=iso ze.media-id={media_id} ze.image={image} ze.sha256={sha256} ze.bmap-sha256={bmap_sha256} ze.size={size}"
    );
    if let Some(t) = target {
        line.push_str(&format!(" ze.target={t}"));
    }
    line.push(' ');
    line.push_str(grub::console_args(arch));
    line
}

/// The ISO volume's UUID as GRUB shows it, and the 16 digits xorriso takes:
/// the build time to the second, then two digits from the media id so two
/// ISOs made in the same second still differ.
pub fn volume_uuid(now: i64, media_id: &str) -> (String, String) {
    let c = timefmt::compact(now); // YYYYMMDD-HHMMSS
    let cc = u8::from_str_radix(media_id.get(..2).unwrap_or("00"), 16).unwrap_or(0) % 100;
    let digits = format!("{}{}{cc:02}", &c[..8], &c[9..]);
    let grub = format!(
        "{}-{}-{}-{}-{}-{}-{cc:02}",
        &c[..4],
        &c[4..6],
        &c[6..8],
        &c[9..11],
        &c[11..13],
        &c[13..15]
    );
    (grub, digits)
}

/// The ISO 9660 volume id: `ZE_<APPLIANCE>`, d-characters, at most 32.
pub fn volume_id(appliance: &str) -> String {
    let mut id: String = format!("ZE_{appliance}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    id.truncate(32);
    id
}

/// Everything an ISO build needs, resolved by the command.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The appliance name.
    pub name: String,
    /// Its definition.
    pub appliance: Appliance,
    /// The image to carry.
    pub image: PathBuf,
    /// Its manifest, when the appliance's `build.json` describes it.
    pub manifest: Option<Manifest>,
    /// The installer kernel.
    pub kernel: PathBuf,
    /// The installer initrd.
    pub initrd: PathBuf,
    /// `--target`.
    pub target: Option<String>,
    /// Where the ISO goes.
    pub output: PathBuf,
    /// Now, seconds since the epoch.
    pub now: i64,
}

/// What an ISO build produced.
#[derive(Debug, Clone)]
pub struct Built {
    /// The ISO.
    pub path: PathBuf,
    /// Its metadata.
    pub metadata: IsoMetadata,
    /// The ISO's size.
    pub size: u64,
}

/// The newest `ze-*.img` in an appliance directory.
pub fn newest_image(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut images: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ze-") && n.ends_with(".img"))
        })
        .collect();
    images.sort();
    images.pop().with_context(|| {
        format!(
            "{} holds no ze-*.img: build one with `ze appliance build`",
            dir.display()
        )
    })
}

/// The manifest in `build.json` beside `image`, if it describes that image.
pub fn manifest_for(image: &Path) -> Option<Manifest> {
    let path = image.parent()?.join(MANIFEST_FILE);
    let m = Manifest::parse(&fs::read_to_string(path).ok()?).ok()?;
    (Some(m.image.as_str()) == image.file_name().and_then(|n| n.to_str())).then_some(m)
}

/// The image's block map, checked against its `build.json` when that
/// names one (an image changed after its build is refused).
pub fn map_image(
    image: &Path,
    manifest: Option<&Manifest>,
    log: &mut dyn Write,
) -> anyhow::Result<BlockMap> {
    let file = File::open(image).with_context(|| format!("cannot read {}", image.display()))?;
    let map = image::map_file(&file, image, log)?;
    if let Some(expected) = manifest.and_then(|m| m.bmap_sha256.as_ref())
        && *expected != map.sha256
    {
        bail!(
            "{} does not match its build.json (block map sha256 {}, build.json says {expected}): it changed after it was built",
            image.display(),
            map.sha256
        );
    }
    Ok(map)
}

/// Hash the whole image and gzip the bytes of `map`'s ranges, in order,
/// into `out`, in one read; the walk also checks that the image still
/// matches the map. Returns the image's sha256 and size.
fn pack_mapped(
    image: &Path,
    map: &BlockMap,
    out: &Path,
    log: &mut dyn Write,
) -> anyhow::Result<(String, u64)> {
    let mut src = File::open(image).with_context(|| format!("cannot read {}", image.display()))?;
    let total = src.metadata()?.len();
    let dst = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut gz = GzEncoder::new(std::io::BufWriter::new(dst), Compression::new(GZIP_LEVEL));
    let parsed = map.parsed();
    let mut walk = Walk::new(&parsed);
    let mut progress = Progress::new(log, "      compressing", total);
    let mut done = 0u64;
    let (read, sum) = crate::digest::sha256_stream(&mut src, &mut |chunk| {
        walk.feed(chunk, &mut |mapped| gz.write_all(mapped))
            .map_err(std::io::Error::other)?;
        done += chunk.len() as u64;
        progress.update(done);
        Ok(())
    })
    .with_context(|| format!("cannot pack {} into {}", image.display(), out.display()))?;
    walk.finish()
        .with_context(|| format!("{} changed while it was packed", image.display()))?;
    let mut inner = gz.finish()?;
    inner.flush()?;
    inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((sum, read))
}

/// Reads ISO sectors from a file (to verify what xorriso wrote).
struct FileSectors<'a>(&'a File);

impl iso9660::SectorRead for FileSectors<'_> {
    type Error = std::io::Error;
    fn read_sector(
        &mut self,
        lba: u32,
        buf: &mut [u8; iso9660::SECTOR_SIZE],
    ) -> Result<(), std::io::Error> {
        self.0
            .read_exact_at(buf, u64::from(lba) * iso9660::SECTOR_SIZE as u64)
    }
}

/// Check a finished ISO with the installer's own reader: the media id, and
/// the size of every file the installer reads.
pub fn verify(iso: &Path, meta: &IsoMetadata, sizes: &[(&str, u64)]) -> anyhow::Result<()> {
    let file = File::open(iso)?;
    let mut src = FileSectors(&file);
    let found = iso9660::read_media_id(&mut src)
        .map_err(|e| anyhow::anyhow!("{}: cannot read the media id: {e:?}", iso.display()))?;
    if found != meta.media_id.as_bytes() {
        bail!("{}: the media id on the volume differs", iso.display());
    }
    let volume =
        iso9660::Volume::open(&mut src).map_err(|e| anyhow::anyhow!("{}: {e:?}", iso.display()))?;
    for (path, size) in sizes {
        let entry = volume
            .lookup(&mut src, path)
            .map_err(|e| anyhow::anyhow!("{}: /{path}: {e:?}", iso.display()))?;
        if entry.size() != *size {
            bail!(
                "{}: /{path} holds {} bytes, expected {size}",
                iso.display(),
                entry.size()
            );
        }
    }
    Ok(())
}

/// Build the ISO. Progress goes to `log`.
pub fn build(inputs: &Inputs, log: &mut dyn Write) -> anyhow::Result<Built> {
    let arch = inputs.appliance.image.arch;
    let image_name = inputs
        .image
        .file_name()
        .and_then(|n| n.to_str())
        .context("the image path has no file name")?
        .to_string();
    if let Some(t) = &inputs.target {
        validate_target(t)?;
    }
    let out_dir = inputs
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    super::image::sweep_stale(out_dir);
    let scratch = tempfile::Builder::new()
        .prefix(&super::image::scratch_prefix("iso"))
        .tempdir_in(out_dir)
        .with_context(|| format!("cannot create a scratch directory in {}", out_dir.display()))?;
    let tree = scratch.path().join("tree");
    for d in ["EFI/BOOT", "boot/grub", "ze"] {
        fs::create_dir_all(tree.join(d))?;
    }
    let media_id = crate::random::hex(16)?;

    writeln!(
        log,
        "[1/5] mapping {} and compressing its data into the ISO tree",
        inputs.image.display()
    )?;
    let map = map_image(&inputs.image, inputs.manifest.as_ref(), log)?;
    let bmap_rel = format!("ze/{image_name}{}", bmap::SUFFIX);
    fs::write(tree.join(&bmap_rel), map.text())?;
    let data_rel = format!("ze/{image_name}{DATA_SUFFIX}");
    let (sha256, image_size) = pack_mapped(&inputs.image, &map, &tree.join(&data_rel), log)?;
    if let Some(m) = &inputs.manifest
        && let Some(expected) = &m.sha256
        && *expected != sha256
    {
        bail!(
            "{} does not match its build.json (sha256 {sha256}, build.json says {expected}): it changed after it was built",
            inputs.image.display()
        );
    }
    let data_size = fs::metadata(tree.join(&data_rel))?.len();
    writeln!(
        log,
        "      block map: {}; the data gzip'd: {} (image sha256 {sha256})",
        map.summary(),
        human(data_size)
    )?;

    let cmdline = kernel_cmdline(
        &media_id,
        &image_name,
        &sha256,
        &map.sha256,
        image_size,
        inputs.target.as_deref(),
        arch,
    );
    let metadata = IsoMetadata {
        media_id: media_id.clone(),
        appliance: inputs.name.clone(),
        image: image_name.clone(),
        bmap_path: bmap_rel.clone(),
        bmap_sha256: map.sha256.clone(),
        data_path: data_rel.clone(),
        mapped_bytes: map.mapped_bytes,
        image_size,
        sha256: sha256.clone(),
        built: inputs.manifest.as_ref().map(|m| m.built.clone()),
        arch: arch.to_string(),
        target: inputs.target.clone(),
        kernel_cmdline: cmdline.clone(),
        ze_version: build::VERSION.to_string(),
        created: timefmt::rfc3339(inputs.now),
    };
    let mut meta_text = serde_json::to_vec_pretty(&metadata)?;
    meta_text.push(b'\n');
    fs::write(tree.join(METADATA_PATH), &meta_text)?;
    fs::write(tree.join(MEDIA_ID_PATH), format!("{media_id}\n"))?;
    fs::write(
        tree.join(format!("ze/{image_name}.sha256")),
        format!("{sha256}  {image_name}\n"),
    )?;
    fs::copy(&inputs.kernel, tree.join(&grub::ISO_KERNEL[1..]))
        .with_context(|| format!("cannot copy the kernel {}", inputs.kernel.display()))?;
    fs::copy(&inputs.initrd, tree.join(&grub::ISO_INITRD[1..]))
        .with_context(|| format!("cannot copy the initrd {}", inputs.initrd.display()))?;

    writeln!(
        log,
        "[2/5] boot loader: grub-mkstandalone {}",
        grub::platform(arch)
    )?;
    let (uuid, uuid_digits) = volume_uuid(inputs.now, &media_id);
    let config = grub::iso_config(&grub::IsoBoot {
        volume_uuid: &uuid,
        cmdline: &cmdline,
        banner: &format!(
            "ze installer: appliance {}, image {image_name}",
            inputs.name
        ),
    });
    fs::write(tree.join("boot/grub/grub.cfg"), &config)?;
    let loader = tree.join("EFI/BOOT").join(arch.efi_loader());
    grub::mkstandalone(arch, &config, &loader, scratch.path())?;

    writeln!(
        log,
        "[3/5] El Torito boot image: FAT16 with EFI/BOOT/{}",
        arch.efi_loader()
    )?;
    let boot_files = [FatFile {
        path: format!("EFI/BOOT/{}", arch.efi_loader()),
        content: Content::Copy(loader.clone()),
    }];
    let efiboot_size = esp::small_volume_size(&boot_files)?;
    let efiboot = scratch.path().join("efiboot.img");
    let f = File::create(&efiboot)?;
    f.set_len(efiboot_size)?;
    esp::write(
        &f,
        efiboot_size,
        esp::Kind::Fat16,
        "ZE-BOOT",
        u32::from_str_radix(&media_id[..8], 16)?,
        0,
        &boot_files,
    )?;
    drop(f);

    writeln!(
        log,
        "[4/5] xorriso: hybrid ISO, volume {}",
        volume_id(&inputs.name)
    )?;
    let staging = scratch.path().join("out.iso");
    let mut xorriso = Command::new(super::tools::XORRISO.program);
    xorriso
        .args([
            "-as",
            "mkisofs",
            "-quiet",
            "-iso-level",
            "3",
            "-rational-rock",
            "-joliet",
            "-joliet-long",
        ])
        .arg("-volid")
        .arg(volume_id(&inputs.name))
        .arg("-appid")
        .arg(format!("ze {} appliance installer", build::VERSION))
        .arg(format!("--modification-date={uuid_digits}"))
        .args(["-partition_offset", "16", "-append_partition", "2"])
        .arg("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
        .arg(&efiboot)
        .args([
            "-appended_part_as_gpt",
            "-e",
            "--interval:appended_partition_2:all::",
            "-no-emul-boot",
            "-o",
        ])
        .arg(&staging)
        .arg(&tree);
    super::tools::run(&mut xorriso).context("xorriso could not write the ISO")?;

    writeln!(
        log,
        "[5/5] verifying the ISO with the installer's ISO 9660 reader"
    )?;
    let sizes = [
        (bmap_rel.as_str(), map.text().len() as u64),
        (data_rel.as_str(), data_size),
        (&grub::ISO_KERNEL[1..], fs::metadata(&inputs.kernel)?.len()),
        (&grub::ISO_INITRD[1..], fs::metadata(&inputs.initrd)?.len()),
        (METADATA_PATH, meta_text.len() as u64),
    ];
    verify(&staging, &metadata, &sizes)?;
    File::open(&staging)?.sync_all()?;
    fs::rename(&staging, &inputs.output)
        .with_context(|| format!("cannot move the ISO to {}", inputs.output.display()))?;
    let size = fs::metadata(&inputs.output)?.len();
    Ok(Built {
        path: inputs.output.clone(),
        metadata,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a7_w7_kernel_cmdline_with_and_without_target() {
        let id = "0123456789abcdef0123456789abcdef";
        let line = kernel_cmdline(
            id,
            "ze-20260617-160000.img",
            "ab",
            "cd",
            384 << 20,
            None,
            Arch::Amd64,
        );
        assert_eq!(
            line,
            "ze.source=iso ze.media-id=0123456789abcdef0123456789abcdef ze.image=ze-20260617-160000.img ze.sha256=ab ze.bmap-sha256=cd ze.size=402653184 console=tty0 console=ttyS0"
        );
        let line = kernel_cmdline(id, "x.img", "ab", "cd", 1, Some("/dev/vda"), Arch::Arm64);
        assert!(
            line.contains(" ze.target=/dev/vda console=tty0 console=ttyS0 console=ttyAMA0"),
            "{line}"
        );
    }

    #[test]
    fn volume_identities() {
        let (grub, digits) = volume_uuid(1_781_712_000, "2a00");
        assert_eq!(grub, "2026-06-17-16-00-00-42");
        assert_eq!(digits, "2026061716000042");
        assert_eq!(volume_id("prod"), "ZE_PROD");
        assert_eq!(volume_id("lab-1_x"), "ZE_LAB_1_X");
        assert_eq!(volume_id(&"a".repeat(64)).len(), 32);
    }

    #[test]
    fn o2_h2_targets_must_be_whole_disks() {
        for ok in [
            "/dev/sda",
            "/dev/vda",
            "/dev/nvme0n1",
            "/dev/mmcblk0",
            "/dev/xvdb",
            "/dev/disk/by-id/ata-X_Y",
            "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456",
            "/dev/disk/by-id/usb-SanDisk_Extreme_Pro_55AF_32303139443435353530303334363132-0:0",
            "serial:S4EWNX0N123456",
        ] {
            validate_target(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("/dev/sda1", "partition"),
            ("/dev/vda4", "partition"),
            ("/dev/nvme0n1p4", "partition"),
            ("/dev/mmcblk0p1", "partition"),
            ("sda", "not a disk path"),
            ("/dev/", "not a disk path"),
            ("/dev/../etc/passwd", "not a disk path"),
            ("/dev/sda console=ttyS1", "not a disk path"),
            ("/dev/sd\"a", "not a disk path"),
            ("/dev/disk/by-id/ata-X_Y-part2", "partition"),
            ("/dev/disk/by-path/pci-0000:00:1f.2-ata-1", "no udev"),
        ] {
            let err = validate_target(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn metadata_round_trips_and_names_its_fields() {
        let m = IsoMetadata {
            media_id: "0123456789abcdef0123456789abcdef".into(),
            appliance: "prod".into(),
            image: "ze-20260617-160000.img".into(),
            bmap_path: "ze/ze-20260617-160000.img.bmap".into(),
            bmap_sha256: "cd".into(),
            data_path: "ze/ze-20260617-160000.img.data.gz".into(),
            mapped_bytes: 3_457_024,
            image_size: 402_653_184,
            sha256: "ab".into(),
            built: Some("20260617-160000".into()),
            arch: "amd64".into(),
            target: None,
            kernel_cmdline: "ze.source=iso".into(),
            ze_version: "0.1.0".into(),
            created: "2026-06-17T16:05:00Z".into(),
        };
        let text = serde_json::to_string(&m).unwrap();
        for key in [
            "\"media-id\"",
            "\"bmap-path\"",
            "\"bmap-sha256\"",
            "\"data-path\"",
            "\"mapped-bytes\"",
            "\"image-size\"",
            "\"kernel-cmdline\"",
        ] {
            assert!(text.contains(key), "{text}");
        }
        assert!(!text.contains("target"));
        assert_eq!(serde_json::from_str::<IsoMetadata>(&text).unwrap(), m);
    }

    #[test]
    fn newest_image_and_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            newest_image(dir.path())
                .unwrap_err()
                .to_string()
                .contains("no ze-*.img")
        );
        for n in [
            "ze-20260101-000000.img",
            "ze-20260617-160000.img",
            "other.img",
        ] {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        let newest = newest_image(dir.path()).unwrap();
        assert!(newest.ends_with("ze-20260617-160000.img"));
        assert!(manifest_for(&newest).is_none());
        fs::write(
            dir.path().join("build.json"),
            r#"{"image":"ze-20260617-160000.img","built":"20260617-160000","appliance":"prod","ze-version":"0.1.0","sha256":"ab"}"#,
        )
        .unwrap();
        assert_eq!(manifest_for(&newest).unwrap().sha256.as_deref(), Some("ab"));
        assert!(manifest_for(&dir.path().join("ze-20260101-000000.img")).is_none());
    }
}
