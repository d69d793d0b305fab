//! Tier 3, QEMU (TCG) with OVMF: a built appliance image boots to ze as
//! PID 1, which prints the version lines with the image's name, and so it
//! does under SeaBIOS (QEMU's default firmware) from its BIOS boot
//! partition; the
//! install ISO boots, as a CD and as a USB-style disk, to the installer
//! kernel with `ze.source=iso ze.media-id=<id>`, and Linux finds the media
//! id on the volume; the ISO carries the image as its block map and the
//! mapped data only. Checklist A1, A7, A9, O3, W7.
//!
//! These tests are `#[ignore]`d in plain `cargo test`; `make
//! appliance-qemu-test` (part of `make test`) runs them. A missing tool or
//! kernel fails the test with what to install; nothing is skipped.
//! `ZE_TEST_KERNEL` names the kernel (default: `build/kernel/Image`, from
//! `make kernel`); `ZE_QEMU_ACCEL` overrides `tcg`. Serial logs are kept in
//! `target/tmp/appliance-qemu/`.

mod common;

use common::*;
use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};
use ze::{
    appliance::{gpt::Table, iso::IsoMetadata},
    manifest::Manifest,
    zefs::Zefs,
};

const NAME: &str = "qemu-test";
const SIZE: &str = "384M";
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn kernel() -> PathBuf {
    let path = std::env::var_os("ZE_TEST_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("build/kernel/Image"));
    assert!(
        path.is_file(),
        "no installer kernel at {}: run `make kernel` (or set ZE_TEST_KERNEL)",
        path.display()
    );
    path
}

fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is needed: apt-get install {package} (or `make deps`)"
    );
}

fn home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("appliance-qemu")
}

fn ze(args: &[&str]) -> Command {
    let mut cmd = Command::new(ze_bin());
    cmd.args(args)
        .current_dir(home())
        .env("XDG_CONFIG_HOME", home().join("config"))
        .env_remove("ZE_INSTALL_IMAGE_SIZE")
        .stdin(Stdio::null());
    cmd
}

struct Fixture {
    dir: PathBuf,
    image: PathBuf,
    manifest: Manifest,
}

/// One appliance and one image for every test in this file.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        for (program, package) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("grub-mkstandalone", "grub-common grub-efi-amd64-bin"),
            ("grub-mkimage", "grub-common grub-pc-bin"),
            ("xorriso", "xorriso"),
            ("mke2fs", "e2fsprogs"),
            ("debugfs", "e2fsprogs"),
            ("sgdisk", "gdisk"),
            ("unsquashfs", "squashfs-tools"),
            ("mdir", "mtools"),
            ("cpio", "cpio"),
            ("busybox", "busybox-static"),
        ] {
            require(program, package);
        }
        assert!(
            Path::new(OVMF_CODE).is_file(),
            "OVMF is needed: apt-get install ovmf"
        );
        let kernel = kernel();
        let _ = fs::remove_dir_all(home());
        fs::create_dir_all(home()).unwrap();
        run_ok(ze(&[
            "appliance",
            "init",
            "--ssh-username",
            "admin",
            "--ssh-password",
            "secret",
            NAME,
        ]));
        let started = Instant::now();
        let out = run_ok(ze(&[
            "appliance",
            "build",
            "--size",
            SIZE,
            "--kernel",
            kernel.to_str().unwrap(),
            NAME,
        ]));
        println!(
            "ze appliance build ({:.1} s):\n{}",
            started.elapsed().as_secs_f64(),
            text(&out.stdout)
        );
        let dir = home().join("config/ze/appliances").join(NAME);
        let manifest =
            Manifest::parse(&fs::read_to_string(dir.join("build.json")).unwrap()).unwrap();
        let image = dir.join(&manifest.image);
        Fixture {
            dir,
            image,
            manifest,
        }
    })
}

/// The machine's firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Firmware {
    /// OVMF (UEFI), with a fresh copy of its variables.
    Uefi,
    /// QEMU's default firmware, SeaBIOS: no `-bios`, no pflash.
    Bios,
}

/// A QEMU machine whose serial console is captured.
struct Qemu {
    child: Child,
    console: Arc<Mutex<String>>,
    log: PathBuf,
}

impl Qemu {
    /// Boot under OVMF.
    fn boot(name: &str, drives: &[&str]) -> Qemu {
        Qemu::boot_with(Firmware::Uefi, name, drives)
    }

    fn boot_with(firmware: Firmware, name: &str, drives: &[&str]) -> Qemu {
        let mut flash = Vec::new();
        if firmware == Firmware::Uefi {
            let vars = home().join(format!("{name}.vars.fd"));
            fs::copy(OVMF_VARS, &vars).unwrap();
            flash = vec![
                "-drive".to_string(),
                format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
                "-drive".to_string(),
                format!("if=pflash,format=raw,file={}", vars.display()),
            ];
        }
        let accel = std::env::var("ZE_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-accel", &accel, "-m", "512", "-nographic", "-no-reboot"])
            .args(["-monitor", "none", "-serial", "stdio", "-display", "none"])
            .args(&flash)
            .args(drives)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start qemu-system-x86_64");
        let console = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = Arc::clone(&console);
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                    sink.lock().unwrap().push_str(&chunk);
                }
            });
        }
        Qemu {
            child,
            console,
            log: home().join(format!("{name}.serial.log")),
        }
    }

    fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Wait for `pattern` on the console.
    fn expect(&mut self, pattern: &str) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if self.console().contains(pattern) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                if self.console().contains(pattern) {
                    return;
                }
                panic!(
                    "QEMU ended ({status}) before {pattern:?}; console:\n{}",
                    self.console()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {pattern:?} within {BOOT_TIMEOUT:?}; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for the guest to power off (QEMU exits; -no-reboot).
    fn expect_exit(&mut self) {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the guest did not power off; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::write(&self.log, self.console());
    }
}

/// The lines of `text` that contain `needle`, in order.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

fn perm_offset(image: &Path) -> u64 {
    let f = fs::File::open(image).unwrap();
    let sectors = f.metadata().unwrap().len() / 512;
    let table = Table::read_from(&mut &f, sectors).unwrap();
    table.partitions[3].offset()
}

fn debugfs_cat(image: &Path, path: &str) -> Vec<u8> {
    let device = format!("{}?offset={}", image.display(), perm_offset(image));
    let out = Command::new("debugfs")
        .args(["-R", &format!("cat {path}"), &device])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
#[ignore = "tier 3 (QEMU): make appliance-qemu-test"]
fn a1_a9_the_image_boots_to_ze_as_pid1_and_prints_its_version_lines() {
    let fx = fixture();
    let img = fx.image.to_str().unwrap();

    // The layout, as sgdisk sees it.
    let verify = text(
        &Command::new("sgdisk")
            .args(["-v", img])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(verify.contains("No problems found"), "{verify}");
    let listing = text(
        &Command::new("sgdisk")
            .args(["-p", img])
            .output()
            .unwrap()
            .stdout,
    );
    println!("sgdisk -p {}:\n{listing}", fx.manifest.image);
    for (n, code, name) in [
        (1, "EF00", "ESP"),
        (2, "8304", "root-a"),
        (3, "8304", "root-b"),
        (4, "8300", "perm"),
        (5, "EF02", "bios-boot"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{n} "))
                    && l.contains(code)
                    && l.trim_end().ends_with(name)),
            "partition {n} {code} {name} missing:\n{listing}"
        );
    }

    // p1: the boot loader and a kernel per slot.
    let esp = format!("{img}@@1M");
    let dir = text(
        &Command::new("mdir")
            .args(["-/", "-b", "-i", &esp, "::/"])
            .output()
            .unwrap()
            .stdout,
    );
    for f in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/ze/a/vmlinuz",
        "::/ze/b/vmlinuz",
        "::/ze/grubenv",
    ] {
        assert!(dir.contains(f), "{f} missing from the ESP:\n{dir}");
    }

    // p2: the squashfs root.
    let root = text(
        &Command::new("unsquashfs")
            .args(["-o", &(65u64 << 20).to_string(), "-lln", img])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(root.contains("squashfs-root/usr/bin/ze"), "{root}");
    assert!(
        root.contains("squashfs-root/sbin/init -> ../usr/bin/ze"),
        "{root}"
    );

    // p4: the baked manifest (no checksum) and the database.
    let baked = Manifest::parse(&text(&debugfs_cat(&fx.image, "/ze/build.json"))).unwrap();
    assert_eq!(baked.image, fx.manifest.image);
    assert_eq!(baked.appliance, NAME);
    assert!(
        baked.sha256.is_none(),
        "the baked manifest carries no checksum"
    );
    assert_eq!(fx.manifest.sha256.as_ref().unwrap().len(), 64);
    let db = Zefs::parse(&debugfs_cat(&fx.image, "/ze/database.zefs")).unwrap();
    let user = db.user("admin").unwrap();
    assert_eq!(user.role, "admin");
    assert!(ze::credentials::verify_password(
        "secret",
        &user.password_hash
    ));
    assert_eq!(
        db.get("file/template/ze.conf").unwrap(),
        fs::read(fx.dir.join("ze.conf")).unwrap()
    );
    assert_eq!(
        db.get("tls/cert.pem").unwrap(),
        fs::read(fx.dir.join("tls/cert.pem")).unwrap()
    );
    assert!(
        db.get("tls/key.pem")
            .unwrap()
            .starts_with(b"-----BEGIN PRIVATE KEY-----")
    );

    // The first boot.
    first_boot(fx, Firmware::Uefi, "image");
}

/// Boot the fixture's image under `firmware` to `ze: init: ready` and
/// check the boot's lines, in order: GRUB's slot choice, the squashfs
/// root, ze as PID 1 with /perm and its version lines. Returns the
/// console.
fn first_boot(fx: &Fixture, firmware: Firmware, name: &str) -> String {
    let img = fx.image.to_str().unwrap();
    let started = Instant::now();
    let mut vm = Qemu::boot_with(
        firmware,
        name,
        &[
            "-drive",
            &format!("file={img},if=virtio,format=raw,snapshot=on"),
        ],
    );
    vm.expect("ze: init: ready");
    println!(
        "{firmware:?}: booted to ze as PID 1 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // GRUB paints its banner and echo with cursor moves, and on a slow
    // serial line they can land inside a word ("We\x1b[10;02H\x1b[10;03Hlcome
    // to GRUB", seen in CI): every check reads the text with the terminal's
    // escapes taken out.
    let console = without_escapes(&vm.console());
    let first_boot: Vec<&str> = console
        .lines()
        .filter(|l| {
            l.starts_with("ze")
                || l.starts_with("commit:")
                || l.starts_with("image:")
                || l.starts_with("appliance:")
                || l.contains("Mounted root")
                || l.contains("Booting from")
                || l.contains("SeaBIOS (version")
                || l.contains("GRUB loading")
                || l.contains("efi: EFI v")
        })
        .collect();
    println!(
        "{firmware:?} first-boot console:\n{}",
        first_boot.join("\n")
    );
    let order = [
        "ze: booting slot a".to_string(),
        "VFS: Mounted root (squashfs filesystem) readonly".to_string(),
        "ze: init: ze 0.1.0 starting as PID 1".to_string(),
        "ze: init: mounted /dev/vda4 (PARTNAME=perm) on /perm".to_string(),
        "ze 0.1.0 (built ".to_string(),
        format!("image: {} (built {})", fx.manifest.image, fx.manifest.built),
        format!("appliance: {NAME}"),
        "ze: init: ready".to_string(),
    ];
    let mut at = 0;
    for want in &order {
        match console[at..].find(want.as_str()) {
            Some(i) => at += i + want.len(),
            None => panic!("{want:?} missing or out of order; console:\n{console}"),
        }
    }
    assert!(
        lines_with(&console, "Kernel command line:")
            .iter()
            .any(|l| l.contains("ro rootfstype=squashfs rootwait init=/sbin/init ze.slot=a console=tty0 console=ttyS0")),
        "{console}"
    );
    console
}

#[test]
#[ignore = "tier 3 (QEMU): make appliance-qemu-test"]
fn the_image_boots_to_ze_as_pid1_under_seabios_too() {
    let fx = fixture();
    let img = fx.image.to_str().unwrap();
    // p5, the BIOS boot partition, holds GRUB's i386-pc core image; LBA 0
    // GRUB's boot sector pointing at it, the protective MBR's table kept.
    let bytes = {
        let mut f = fs::File::open(&fx.image).unwrap();
        let mut head = vec![0u8; 1 << 20];
        f.read_exact(&mut head).unwrap();
        head
    };
    let sectors = fs::metadata(&fx.image).unwrap().len() / 512;
    let table = Table::read_from(&mut &fs::File::open(&fx.image).unwrap(), sectors).unwrap();
    let p5 = &table.partitions[4];
    assert_eq!(p5.type_guid, ze::appliance::gpt::types::BIOS_BOOT);
    assert_eq!(
        (p5.first_lba, p5.last_lba, p5.name.as_str()),
        (40, 2047, "bios-boot")
    );
    let boot_img = fs::read("/usr/lib/grub/i386-pc/boot.img")
        .expect("GRUB for BIOS is needed: apt-get install grub-pc-bin");
    assert_eq!(bytes[..3], boot_img[..3]);
    assert_eq!(bytes[0x5c..0x64], 40u64.to_le_bytes());
    assert_eq!(bytes[446 + 4], 0xEE, "the protective MBR's partition");
    assert_eq!(bytes[510..512], [0x55, 0xAA]);
    let core = &bytes[40 * 512..41 * 512];
    assert_eq!(core[0x1f4..0x1fc], 41u64.to_le_bytes());
    assert_eq!(core[0x1fe..0x200], 0x820u16.to_le_bytes());
    let listing = text(
        &Command::new("sgdisk")
            .args(["-p", img])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        listing.lines().any(|l| l.trim_start().starts_with("5 ")
            && l.contains("EF02")
            && l.trim_end().ends_with("bios-boot")),
        "partition 5 EF02 bios-boot missing:\n{listing}"
    );

    // SeaBIOS boots it: GRUB from p5 with its console on the serial line,
    // then the same slot a and ze as under UEFI; no EFI anywhere.
    let console = first_boot(fx, Firmware::Bios, "image-bios");
    let mut at = 0;
    for want in [
        "SeaBIOS (version ",
        "Booting from Hard Disk...",
        "GRUB loading",
        "Welcome to GRUB",
        "ze: booting slot a",
        "Command line: BOOT_IMAGE=(hd0,gpt1)/ze/a/vmlinuz ",
    ] {
        match console[at..].find(want) {
            Some(i) => at += i + want.len(),
            None => panic!("{want:?} missing or out of order; console:\n{console}"),
        }
    }
    // The UEFI kernel says "efi: EFI v2.70 by EDK II"; this one was not
    // started by UEFI.
    assert!(!console.contains("efi: EFI v"), "{console}");
}

/// The console as a person reads it: ANSI/VT100 escape sequences removed
/// (CSI `ESC [ params final`, and two-byte `ESC x`), so a test can look for a
/// phrase that the firmware drew in pieces.
fn without_escapes(console: &str) -> String {
    let mut out = String::with_capacity(console.len());
    let mut chars = console.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        // `ESC x` is two bytes; `ESC [` runs on through its parameters and
        // intermediates to one final byte in @..~.
        if chars.next() == Some('[') {
            for n in chars.by_ref() {
                if ('@'..='~').contains(&n) {
                    break;
                }
            }
        }
    }
    out
}

#[test]
fn without_escapes_joins_a_word_grub_drew_in_pieces() {
    let drawn = "GRUB loading...\n\x1b[0;30;47mWe\x1b[10;02H\x1b[10;03Hlcome to GRUB\x1b[H\x1b[J\x1b[1;1Hze: booting slot a!\x1bc";
    assert_eq!(
        without_escapes(drawn),
        "GRUB loading...\nWelcome to GRUBze: booting slot a!"
    );
}

/// A one-shot initrd: busybox finds the volume whose /ze/media-id matches
/// `ze.media-id`, reports what it found, and powers off. It stands in for
/// the installer initrd, which is not built by this issue's code.
fn test_initrd() -> PathBuf {
    let out = home().join("test-initrd.img.gz");
    if out.is_file() {
        return out;
    }
    let tree = home().join("initrd-tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    let busybox = Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    fs::copy(text(&busybox.stdout).trim(), tree.join("bin/busybox")).unwrap();
    let script = r#"#!/bin/busybox sh
b=/bin/busybox
$b mkdir -p /proc /sys /dev /mnt
$b mount -t proc proc /proc
$b mount -t sysfs sysfs /sys
$b mount -t devtmpfs devtmpfs /dev 2>/dev/null
want=$($b sed -n 's/.*ze\.media-id=\([0-9a-f]*\).*/\1/p' /proc/cmdline)
img=$($b sed -n 's/.*ze\.image=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "ISO-TEST: looking for media $want"
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /dev/sr0 /dev/vda /dev/sda; do
    [ -b "$d" ] || continue
    if $b mount -t iso9660 -o ro "$d" /mnt 2>/dev/null; then
      got=$($b cat /mnt/ze/media-id 2>/dev/null)
      if [ "$got" = "$want" ]; then
        echo "ISO-TEST: media-id $got found on $d"
        echo "ISO-TEST: $img.data.gz is $($b stat -c %s /mnt/ze/$img.data.gz) bytes"
        $b grep -q "\"media-id\": \"$want\"" /mnt/ze/install.json && echo "ISO-TEST: install.json names the media id"
        $b poweroff -f
      fi
      $b umount /mnt
    fi
  done
  $b sleep 1
done
echo "ISO-TEST: media not found"
$b poweroff -f
"#;
    fs::write(tree.join("init"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tree.join("init"), fs::Permissions::from_mode(0o755)).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -9 > '{}'",
            tree.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    out
}

#[test]
#[ignore = "tier 3 (QEMU): make appliance-qemu-test"]
fn a7_o3_the_iso_boots_the_installer_kernel_with_its_media_id() {
    let fx = fixture();
    let initrd = test_initrd();
    let kernel = kernel();
    let iso = home().join("install.iso");
    let out = run_ok(ze(&[
        "appliance",
        "iso",
        "--kernel",
        kernel.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
        "--target",
        "/dev/vda",
        "--output",
        iso.to_str().unwrap(),
        NAME,
    ]));
    let stdout = text(&out.stdout);
    println!("ze appliance iso:\n{stdout}");
    let media_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("media id:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(media_id.len(), 32);

    // What is on the volume, read with the installer's own reader.
    let bytes = fs::read(&iso).unwrap();
    let mut src = ze_installer::iso9660::SliceSectors(&bytes);
    assert_eq!(
        ze_installer::iso9660::read_media_id(&mut src).unwrap(),
        media_id.as_bytes()
    );
    let volume = ze_installer::iso9660::Volume::open(&mut src).unwrap();
    let read = |path: &str| {
        let mut src = ze_installer::iso9660::SliceSectors(&bytes);
        let e = volume.lookup(&mut src, path).unwrap();
        let mut buf = vec![0u8; e.size() as usize];
        volume.read(&mut src, &e, &mut buf).unwrap();
        buf
    };
    let meta: IsoMetadata = serde_json::from_slice(&read("ze/install.json")).unwrap();
    assert_eq!(meta.media_id, media_id);
    assert_eq!(meta.image, fx.manifest.image);
    assert_eq!(Some(&meta.sha256), fx.manifest.sha256.as_ref());
    assert_eq!(meta.image_size, fs::metadata(&fx.image).unwrap().len());
    assert_eq!(meta.target.as_deref(), Some("/dev/vda"));
    assert_eq!(
        text(&read(&format!("ze/{}.sha256", meta.image))),
        format!("{}  {}\n", meta.sha256, meta.image)
    );
    assert_eq!(read("boot/vmlinuz"), fs::read(&kernel).unwrap());
    // W7: the map and only the mapped data; the image rebuilt from them
    // (zeros elsewhere) is the image.
    let map_text = read(&meta.bmap_path);
    assert_eq!(meta.bmap_path, format!("ze/{}.bmap", meta.image));
    assert_eq!(meta.bmap_sha256, ze::digest::sha256_hex(&map_text));
    assert_eq!(Some(&meta.bmap_sha256), fx.manifest.bmap_sha256.as_ref());
    let map = ze_installer::bmap::Bmap::parse(&map_text).unwrap();
    assert_eq!(map.image_size, meta.image_size);
    let gz = read(&meta.data_path);
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut data)
        .unwrap();
    assert_eq!(data.len() as u64, map.mapped_bytes);
    let mut image = vec![0u8; map.image_size as usize];
    let mut at = 0;
    for r in map.ranges() {
        let (s, e) = (
            r.start(map.block_size) as usize,
            r.end(map.block_size, map.image_size) as usize,
        );
        image[s..e].copy_from_slice(&data[at..at + e - s]);
        at += e - s;
    }
    assert!(
        image == fs::read(&fx.image).unwrap(),
        "the image rebuilt from the map and the data differs"
    );
    assert!(
        volume
            .lookup(
                &mut ze_installer::iso9660::SliceSectors(&bytes),
                &format!("ze/{}.gz", meta.image)
            )
            .is_err(),
        "the whole gzip'd image is no longer carried"
    );
    let gz_len = gz.len();
    assert!(!read("EFI/BOOT/BOOTX64.EFI").is_empty());

    let cmdline = format!(
        "Command line: BOOT_IMAGE=/boot/vmlinuz ze.source=iso ze.media-id={media_id} ze.image={} ze.sha256={} ze.bmap-sha256={} ze.size={} ze.target=/dev/vda console=tty0 console=ttyS0",
        meta.image, meta.sha256, meta.bmap_sha256, meta.image_size
    );
    assert!(
        meta.kernel_cmdline
            .starts_with("ze.source=iso ze.media-id=")
    );
    // As a CD (El Torito) next to a blank disk, then as a disk written
    // with dd (the hybrid GPT's EFI system partition).
    let blank = home().join("blank.img");
    fs::File::create(&blank)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    for (name, drives, device) in [
        (
            "iso-cdrom",
            vec![
                "-cdrom".to_string(),
                iso.display().to_string(),
                "-drive".to_string(),
                format!("file={},if=virtio,format=raw", blank.display()),
            ],
            "/dev/sr0",
        ),
        (
            "iso-disk",
            vec![
                "-drive".to_string(),
                format!("file={},if=virtio,format=raw,readonly=on", iso.display()),
            ],
            "/dev/vda",
        ),
    ] {
        let started = Instant::now();
        let args: Vec<&str> = drives.iter().map(String::as_str).collect();
        let mut vm = Qemu::boot(name, &args);
        vm.expect(&cmdline);
        vm.expect(&format!("ISO-TEST: media-id {media_id} found on {device}"));
        vm.expect(&format!(
            "ISO-TEST: {}.data.gz is {gz_len} bytes",
            meta.image
        ));
        vm.expect("ISO-TEST: install.json names the media id");
        vm.expect_exit();
        println!(
            "{name}: {} ({:.1} s)",
            lines_with(&vm.console(), "Command line:")
                .first()
                .copied()
                .unwrap_or(""),
            started.elapsed().as_secs_f64()
        );
    }
}
