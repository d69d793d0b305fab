//! `ze appliance kernel` orchestration against a stand-in kernel tree whose
//! Makefile behaves like Linux's for the targets ze uses (tinyconfig,
//! olddefconfig, bzImage). The real build runs in `make kernel` and every
//! QEMU test boots its result. Checklist A3, A4, A8.

mod common;

use common::*;
use std::{fs, path::Path, process::Command};

const FAKE_MAKEFILE: &str = r#"
# A stand-in for Linux's Makefile: just the targets `ze appliance kernel` runs.
O ?= .
tinyconfig:
	@mkdir -p $(O)
	@printf 'CONFIG_64BIT=y\n# CONFIG_SMP is not set\n' > $(O)/.config
	@echo tinyconfig >> $(O)/calls
olddefconfig:
	@if [ -n "$$FAKE_DROP" ]; then sed -i "/^$$FAKE_DROP=/d" $(O)/.config; fi
	@echo olddefconfig >> $(O)/calls
bzImage:
	@mkdir -p $(O)/arch/x86/boot
	@echo "  CC      init/main.o"
	@printf 'fake bzImage\n' > $(O)/arch/x86/boot/bzImage
	@echo bzImage >> $(O)/calls
	@echo bzImage >> $(MARKER)
"#;

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("linux-fake");
        fs::create_dir_all(&tree).unwrap();
        fs::write(tree.join("Makefile"), FAKE_MAKEFILE).unwrap();
        fs::write(tree.join("Kconfig"), "# fake\n").unwrap();
        let st = Command::new("tar")
            .args(["-cJf", "linux-fake.tar.xz", "linux-fake"])
            .current_dir(tmp.path())
            .status()
            .unwrap();
        assert!(st.success());
        Fixture { tmp }
    }

    fn ze(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ze_bin());
        cmd.args(["appliance", "kernel", "--jobs", "1"])
            .args(args)
            .current_dir(self.tmp.path())
            .env("XDG_CACHE_HOME", self.tmp.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env("MARKER", self.tmp.path().join("builds"))
            .env_remove("FAKE_DROP");
        cmd
    }

    fn builds(&self) -> usize {
        fs::read_to_string(self.tmp.path().join("builds"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.tmp.path().join(rel)
    }
}

#[test]
fn a4_a8_builds_once_then_reuses_the_cache() {
    let fx = Fixture::new();
    let out = run_ok(fx.ze(&["--source", "linux-fake.tar.xz"]));
    let printed = text(&out.stdout);
    assert!(printed.contains("configuring Linux"), "{printed}");
    assert_eq!(
        fs::read(fx.path("build/kernel/Image")).unwrap(),
        b"fake bzImage\n"
    );
    let config = fs::read_to_string(fx.path("build/kernel/config")).unwrap();
    assert!(
        config.contains("CONFIG_VIRTIO_NET=y") && config.contains("CONFIG_EXT4_FS=y"),
        "{config}"
    );
    assert!(
        config.contains("CONFIG_SMP=y"),
        "fragments override tinyconfig"
    );
    let entries: Vec<_> = fs::read_dir(fx.path("cache/ze/installer-kernel"))
        .unwrap()
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "one finished kernel and one build directory"
    );
    assert_eq!(fx.builds(), 1);

    // Same source and fragments: reused, make not run.
    fs::remove_dir_all(fx.path("build")).unwrap();
    let out = run_ok(fx.ze(&["--source", "linux-fake.tar.xz"]));
    assert!(
        text(&out.stdout).contains("from the cache"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(fx.builds(), 1);
    assert_eq!(
        fs::read(fx.path("build/kernel/Image")).unwrap(),
        b"fake bzImage\n"
    );

    // Another profile is another kernel.
    run_ok(fx.ze(&["--source", "linux-fake.tar.xz", "--profile", "hardware"]));
    assert_eq!(fx.builds(), 2);
    let config = fs::read_to_string(fx.path("build/kernel/config")).unwrap();
    assert!(config.contains("CONFIG_BLK_DEV_NVME=y"));

    // An extra fragment changes the key.
    fs::write(fx.path("site.config"), "CONFIG_IXGBE=y\n").unwrap();
    run_ok(fx.ze(&["--source", "linux-fake.tar.xz", "--fragment", "site.config"]));
    assert_eq!(fx.builds(), 3);
    assert!(
        fs::read_to_string(fx.path("build/kernel/config"))
            .unwrap()
            .contains("CONFIG_IXGBE=y")
    );
}

#[test]
fn a4_fails_loudly_naming_each_required_symbol_that_dropped() {
    let fx = Fixture::new();
    let mut cmd = fx.ze(&["--source", "linux-fake.tar.xz", "--profile", "hardware"]);
    cmd.env("FAKE_DROP", "CONFIG_BLK_DEV_NVME");
    let out = run_fails(cmd);
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "CONFIG_BLK_DEV_NVME is absent, not y (required by kernel-config/hardware.require)"
        ),
        "{err}"
    );
    assert!(
        !fx.path("build/kernel/Image").exists(),
        "nothing half-written"
    );
    assert_eq!(fx.builds(), 0, "the build stops before compiling");
}

#[test]
fn a3_reads_arch_and_profile_from_the_appliance_and_flags_win() {
    let fx = Fixture::new();
    let dir = fx.path("config/ze/appliances/prod");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("appliance.json"),
        r#"{"image":{"arch":"amd64","kernel-profile":"hardware"}}"#,
    )
    .unwrap();
    let out = run_ok(fx.ze(&["--source", "linux-fake.tar.xz", "--dry-run", "prod"]));
    let text_out = text(&out.stdout);
    assert!(text_out.contains("profile hardware"), "{text_out}");
    assert!(
        text_out.contains("kernel-config/hardware.config"),
        "{text_out}"
    );
    let out = run_ok(fx.ze(&[
        "--source",
        "linux-fake.tar.xz",
        "--dry-run",
        "--profile",
        "qemu",
        "prod",
    ]));
    assert!(text(&out.stdout).contains("profile qemu"));
    assert_eq!(fx.builds(), 0, "dry runs build nothing");

    let out = run_fails(fx.ze(&["--dry-run", "nosuch"]));
    assert!(
        text(&out.stderr).contains("run `ze appliance init nosuch` first"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_inputs_are_named() {
    let fx = Fixture::new();
    let out = run_fails(fx.ze(&["--source", "/no/such/linux.tar.xz"]));
    assert!(
        text(&out.stderr).contains("--source /no/such/linux.tar.xz"),
        "{}",
        text(&out.stderr)
    );
    fs::create_dir(fx.path("empty")).unwrap();
    let out = run_fails(fx.ze(&["--source", "empty"]));
    assert!(
        text(&out.stderr).contains("not a kernel tree"),
        "{}",
        text(&out.stderr)
    );
    fs::write(fx.path("junk.config"), "hello\n").unwrap();
    let out = run_fails(fx.ze(&["--source", "linux-fake.tar.xz", "--fragment", "junk.config"]));
    assert!(
        text(&out.stderr).contains("holds no CONFIG_ lines"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(ze_bin())
        .args(["appliance", "kernel", "--profile", "cloud"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cloud"), "{}", text(&out.stderr));
}

#[test]
fn tree_sources_build_in_place_without_touching_the_tree() {
    let fx = Fixture::new();
    let tree = fx.path("linux-fake");
    run_ok(fx.ze(&["--source", tree.to_str().unwrap()]));
    assert!(
        !Path::new(&tree.join(".config")).exists(),
        "the O= build directory holds the config"
    );
    assert_eq!(fx.builds(), 1);
}

#[test]
fn h6_version_without_its_tarball_names_what_was_looked_for() {
    let fx = Fixture::new();
    let out = run_fails(fx.ze(&["--version", "9.99", "--dry-run"]));
    let err = text(&out.stderr);
    assert!(
        err.contains("--version 9.99: /usr/src/linux-source-9.99.tar.xz does not exist"),
        "{err}"
    );
    assert!(err.contains("pass --source TARBALL"), "{err}");
    let out = run_fails(fx.ze(&["--version", "latest"]));
    assert!(
        text(&out.stderr).contains("--version \"latest\" is not a kernel version"),
        "{}",
        text(&out.stderr)
    );
    let out = run_fails(fx.ze(&["--version", "6.1", "--source", "linux-fake.tar.xz"]));
    assert!(
        text(&out.stderr).contains("--version and --source both name the kernel source"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fx.builds(), 0);
}

#[test]
fn h6_a_bogus_tarball_fails_naming_the_file() {
    let fx = Fixture::new();
    // Not compressed data at all: refused before anything runs.
    fs::write(fx.path("linux-9.9.tar.xz"), "not a tarball\n").unwrap();
    let out = run_fails(fx.ze(&["--source", "linux-9.9.tar.xz", "--dry-run"]));
    let err = text(&out.stderr);
    let named = fx.path("linux-9.9.tar.xz").canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "--source {}: not a Linux source tarball",
            named.display()
        )),
        "{err}"
    );

    // xz's magic, then garbage: tar fails, and the error names the file.
    fs::write(fx.path("broken.tar.xz"), b"\xfd7zXZ\0 and then garbage").unwrap();
    let out = run_fails(fx.ze(&["--source", "broken.tar.xz"]));
    let err = text(&out.stderr);
    let named = fx.path("broken.tar.xz").canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "cannot extract {}: it is not a readable Linux source tarball",
            named.display()
        )),
        "{err}"
    );

    // A real tarball that holds no kernel tree.
    fs::create_dir_all(fx.path("notlinux/docs")).unwrap();
    fs::write(fx.path("notlinux/docs/README"), "hello\n").unwrap();
    let st = Command::new("tar")
        .args(["-czf", "notlinux.tar.gz", "notlinux"])
        .current_dir(fx.tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let out = run_fails(fx.ze(&["--source", "notlinux.tar.gz"]));
    let err = text(&out.stderr);
    let named = fx.path("notlinux.tar.gz").canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "{} does not hold a Linux source tree",
            named.display()
        )),
        "{err}"
    );
    // Neither failure leaves an extracted tree behind.
    let src = fx.path("cache/ze/src");
    let left: Vec<_> = fs::read_dir(&src)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} in {}", src.display());
    assert_eq!(fx.builds(), 0);
}
