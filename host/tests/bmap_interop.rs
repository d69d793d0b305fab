//! Block maps of real images (checklist W1, W3, W7): the map `ze
//! appliance build` writes beside a real image, and the map ze derives
//! for a file with zero blocks inside its data extents, both make
//! `bmaptool copy --bmap <image>.bmap <image> <out>` write a file equal to
//! the image, with bmaptool checking ze's range digests on the way;
//! `bmaptool create <image>` output is taken by the installer's parser
//! and maps every block ze maps; and `ze appliance iso` carries that map
//! and exactly the mapped bytes. (The imageserver serving a bmaptool map
//! is in `pxe_bmap.rs`.) A missing bmaptool fails these tests in CI.

mod pxe_support;

use pxe_support::{have, require};
use std::{
    collections::BTreeSet,
    fs,
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};
use ze_installer::{
    bmap::Bmap,
    iso9660::{SliceSectors, Volume},
};

const MIB: u64 = 1 << 20;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether two files hold the same bytes (read in chunks).
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if n == 0 {
            return true;
        }
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
    }
}

/// The blocks a map covers.
fn blocks(map: &Bmap<'_>) -> BTreeSet<u64> {
    map.ranges().flat_map(|r| r.first..=r.last).collect()
}

/// `bmaptool copy --bmap <map> <image> <out>`.
fn bmaptool_copy(map: &Path, image: &Path, out: &Path) -> Output {
    Command::new("bmaptool")
        .arg("copy")
        .arg("--bmap")
        .arg(map)
        .arg(image)
        .arg(out)
        .output()
        .unwrap()
}

/// `bmaptool create <image>`, its output.
fn bmaptool_create(image: &Path) -> Vec<u8> {
    run(Command::new("bmaptool").arg("create").arg(image)).stdout
}

/// A home for `ze appliance` with a stand-in kernel (the build checks
/// only the bzImage header).
struct Home {
    dir: tempfile::TempDir,
    kernel: PathBuf,
}

impl Home {
    fn ze(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ze"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("ZE_INSTALL_IMAGE_SIZE")
            .stdin(Stdio::null());
        c
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

/// One image built by the real `ze appliance build` (busybox as the
/// root's static binary), shared by the tests of this file.
struct Built {
    home: Home,
    stdout: String,
    manifest: ze::manifest::Manifest,
    image: PathBuf,
    map_path: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let kernel = dir.path().join("bzImage");
        let mut k = vec![0u8; 8192];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        fs::write(&kernel, &k).unwrap();
        let home = Home { dir, kernel };
        let busybox =
            String::from_utf8(run(Command::new("sh").args(["-c", "command -v busybox"])).stdout)
                .unwrap();
        run(&mut home.ze(&[
            "appliance",
            "init",
            "--ssh-username",
            "admin",
            "--ssh-password",
            "secret",
            "bm",
        ]));
        let out = run(&mut home.ze(&[
            "appliance",
            "build",
            "--kernel",
            home.kernel.to_str().unwrap(),
            "--ze",
            busybox.trim(),
            "--size",
            "384M",
            "bm",
        ]));
        let dir = home.path("config/ze/appliances/bm");
        let manifest =
            ze::manifest::Manifest::parse(&fs::read_to_string(dir.join("build.json")).unwrap())
                .unwrap();
        Built {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            image: dir.join(&manifest.image),
            map_path: dir.join(format!("{}.bmap", manifest.image)),
            manifest,
            home,
        }
    })
}

/// The build's prerequisites, and `more`.
fn build_prerequisites(test: &str, more: &[&str]) -> bool {
    let mut tools = vec![
        "bmaptool",
        "grub-mkstandalone",
        "mke2fs",
        "debugfs",
        "busybox",
    ];
    tools.extend_from_slice(more);
    let checks: Vec<(&str, bool)> = tools.iter().map(|t| (*t, have(t))).collect();
    require(test, &checks)
}

#[test]
fn w1_w3_bmaptool_copy_with_the_map_ze_appliance_build_writes_gives_the_image() {
    if !build_prerequisites("bmap_build", &[]) {
        return;
    }
    let b = built();
    let (stdout, manifest, image, map_path) = (&b.stdout, &b.manifest, &b.image, &b.map_path);

    // W1: bmap 2.0 beside the image, its digest in build.json, named with
    // the mapped size on the console; the same map the imageserver derives.
    let text = fs::read(map_path).unwrap();
    let map = Bmap::parse(&text).unwrap();
    assert_eq!(map.image_size, 384 * MIB);
    assert_eq!(map.block_size, 4096);
    assert_eq!(
        manifest.bmap_sha256.as_deref(),
        Some(ze::digest::sha256_hex(&text).as_str())
    );
    let derived = ze::bmap::derive(&fs::File::open(image).unwrap(), &mut |_, _| {}).unwrap();
    assert!(derived.text() == text.as_slice());
    let line = format!(
        "      block map {}.bmap: {}\n",
        manifest.image,
        derived.summary()
    );
    assert!(stdout.contains(&line), "{line:?} not in\n{stdout}");
    assert!(
        stdout.contains(&format!("block map:  {}\n", map_path.display())),
        "{stdout}"
    );
    assert!(map.mapped_bytes < 16 * MIB, "{}", derived.summary());

    // W3, ze → bmaptool: `bmaptool copy --bmap <image>.bmap <image> <out>`.
    let copy = b.home.path("copy.img");
    let r = bmaptool_copy(map_path, image, &copy);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        same_bytes(image, &copy),
        "bmaptool's copy differs from the image"
    );

    // W3, bmaptool → ze: `bmaptool create <image>` parses, and maps every
    // block ze maps (it maps whole extents, zero blocks included).
    let theirs_text = bmaptool_create(image);
    let theirs = Bmap::parse(&theirs_text).unwrap();
    assert_eq!(theirs.image_size, map.image_size);
    assert!(blocks(&map).is_subset(&blocks(&theirs)));
}

#[test]
fn w3_bmaptool_copy_with_a_derived_map_of_zero_blocks_inside_data_extents() {
    if !require("bmap_copy", &[("bmaptool", have("bmaptool"))]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&image)
        .unwrap();
    let len = 4 * MIB + 123;
    f.set_len(len).unwrap();
    // One written (not sparse) extent of 256 blocks, every third block
    // zeros; a hole; data in the short last block.
    let mut extent: Vec<u8> = (0..256 * 4096u32).map(|i| (i % 253) as u8 | 1).collect();
    for b in (0..256).step_by(3) {
        extent[b * 4096..(b + 1) * 4096].fill(0);
    }
    f.write_all_at(&extent, MIB).unwrap();
    f.write_all_at(b"end", len - 3).unwrap();
    f.sync_all().unwrap();
    let ours = ze::bmap::derive(&f, &mut |_, _| {}).unwrap();
    let map_path = dir.path().join("disk.img.bmap");
    fs::write(&map_path, ours.text()).unwrap();
    let map = Bmap::parse(ours.text()).unwrap();
    // 2 of every 3 blocks of the extent, and the last block.
    assert_eq!(map.mapped_blocks, 256 - 86 + 1);
    assert_eq!(map.mapped_bytes, (256 - 86) * 4096 + 123);
    let theirs_text = bmaptool_create(&image);
    let theirs = Bmap::parse(&theirs_text).unwrap();
    assert!(theirs.mapped_blocks > map.mapped_blocks);
    assert!(blocks(&map).is_subset(&blocks(&theirs)));

    let copy = dir.path().join("copy.img");
    let r = bmaptool_copy(&map_path, &image, &copy);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(
        same_bytes(&image, &copy),
        "bmaptool's copy differs from the image"
    );

    // bmaptool checks ze's range digests: a changed byte in a mapped
    // block makes the copy fail.
    f.write_all_at(b"!", MIB + 4096 + 10).unwrap();
    let r = bmaptool_copy(&map_path, &image, &dir.path().join("bad.img"));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
}

#[test]
fn w7_the_iso_carries_the_map_and_only_the_mapped_data() {
    if !build_prerequisites("bmap_iso", &["xorriso"]) {
        return;
    }
    let b = built();
    let initrd = b.home.path("initrd.img.gz");
    fs::write(&initrd, b"a stand-in initrd").unwrap();
    let iso = b.home.path("bm.iso");
    let out = run(&mut b.home.ze(&[
        "appliance",
        "iso",
        "--kernel",
        b.home.kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--output",
        iso.to_str().unwrap(),
        "bm",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let map_text = fs::read(&b.map_path).unwrap();
    let map = Bmap::parse(&map_text).unwrap();

    // Read back with the installer's ISO 9660 reader.
    let bytes = fs::read(&iso).unwrap();
    let mut src = SliceSectors(&bytes);
    let volume = Volume::open(&mut src).unwrap();
    let read = |path: &str| {
        let mut src = SliceSectors(&bytes);
        let e = volume
            .lookup(&mut src, path)
            .unwrap_or_else(|e| panic!("/{path}: {e:?}"));
        let mut buf = vec![0u8; e.size() as usize];
        volume.read(&mut src, &e, &mut buf).unwrap();
        buf
    };
    let name = &b.manifest.image;
    // The map on the ISO is the one the build wrote beside the image.
    assert!(read(&format!("ze/{name}.bmap")) == map_text);
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(&read(&format!("ze/{name}.data.gz"))[..])
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data.len() as u64, map.mapped_bytes);
    // The ranges' bytes, [start, end) in order, and nothing else.
    let image = fs::File::open(&b.image).unwrap();
    let mut at = 0usize;
    for r in map.ranges() {
        let (s, e) = (
            r.start(map.block_size),
            r.end(map.block_size, map.image_size),
        );
        let mut want = vec![0u8; (e - s) as usize];
        image.read_exact_at(&mut want, s).unwrap();
        assert!(
            data[at..at + want.len()] == want[..],
            "range {}-{}",
            r.first,
            r.last
        );
        at += want.len();
    }
    let sha256 = b.manifest.sha256.as_deref().unwrap();
    assert_eq!(
        String::from_utf8(read(&format!("ze/{name}.sha256"))).unwrap(),
        format!("{sha256}  {name}\n")
    );
    assert!(
        volume
            .lookup(&mut SliceSectors(&bytes), &format!("ze/{name}.gz"))
            .is_err(),
        "no whole gzip'd image any more"
    );
    let grub = String::from_utf8(read("boot/grub/grub.cfg")).unwrap();
    let bmap_sha = b.manifest.bmap_sha256.as_deref().unwrap();
    assert!(
        grub.contains(&format!(
            " ze.image={name} ze.sha256={sha256} ze.bmap-sha256={bmap_sha} ze.size={} ",
            map.image_size
        )),
        "{grub}"
    );
    let meta: ze::appliance::iso::IsoMetadata =
        serde_json::from_slice(&read("ze/install.json")).unwrap();
    assert_eq!(meta.bmap_path, format!("ze/{name}.bmap"));
    assert_eq!(meta.data_path, format!("ze/{name}.data.gz"));
    assert_eq!(meta.bmap_sha256, bmap_sha);
    assert_eq!(meta.mapped_bytes, map.mapped_bytes);
    assert!(stdout.contains("      block map: "), "{stdout}");
    // Much smaller than the image: the ISO is the boot files plus the
    // compressed mapped data.
    assert!(
        (bytes.len() as u64) < map.mapped_bytes + 8 * MIB,
        "{}",
        bytes.len()
    );

    // --check maps the image and says what the ISO will carry; an image
    // changed after its build is named there and refused by the build.
    let check = |cmd: &mut Command| cmd.output().unwrap();
    let out = check(&mut b.home.ze(&[
        "appliance",
        "iso",
        "--check",
        "--kernel",
        b.home.kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "bm",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "  block map:  {}; the ISO carries only the mapped data\n",
            ze::bmap::derive(&image, &mut |_, _| {}).unwrap().summary()
        )),
        "{stdout}"
    );
    let copy = b.home.path("changed");
    fs::create_dir(&copy).unwrap();
    let changed = copy.join(name);
    fs::copy(&b.image, &changed).unwrap();
    fs::copy(
        b.image.with_file_name("build.json"),
        copy.join("build.json"),
    )
    .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&changed)
        .unwrap()
        .write_all_at(b"x", 100 * MIB)
        .unwrap();
    for args in [
        vec!["--check"],
        vec!["--output", copy.join("x.iso").to_str().unwrap()],
    ] {
        let mut all = vec![
            "appliance",
            "iso",
            "--kernel",
            b.home.kernel.to_str().unwrap(),
            "--initrd",
            initrd.to_str().unwrap(),
            "--image",
            changed.to_str().unwrap(),
        ];
        all.extend(args);
        all.push("bm");
        let out = check(&mut b.home.ze(&all));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!(
                "{} does not match its build.json (block map sha256 ",
                changed.display()
            )),
            "{err}"
        );
        assert!(err.contains("it changed after it was built"), "{err}");
    }
    assert!(!copy.join("x.iso").exists());
}
