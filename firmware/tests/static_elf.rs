//! The installer binary must be a static ELF with no interpreter and no
//! dynamic section: the initrd holds nothing else (checklist I15).
//!
//! Builds the firmware exactly as `make firmware` does (see linker/README.md).

use std::{path::PathBuf, process::Command};

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const ET_EXEC: u16 = 2;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn build_firmware() -> PathBuf {
    let ws = workspace();
    let flags = std::fs::read_to_string(ws.join("linker/rustflags")).unwrap();
    let flags = flags.split_whitespace().collect::<Vec<_>>().join(" ");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&ws)
        .env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS", flags)
        .args([
            "build",
            "--quiet",
            "-p",
            "ze-installer",
            "--bin",
            "ze-installer",
            "--features",
            "pid1",
            "--profile",
            "firmware",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
            "target/firmware",
        ])
        .status()
        .expect("run cargo");
    assert!(status.success(), "the firmware did not build");
    ws.join("target/firmware/x86_64-unknown-linux-gnu/firmware/ze-installer")
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn i15_firmware_is_a_static_elf_without_interpreter() {
    let path = build_firmware();
    let elf = std::fs::read(&path).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF");
    assert_eq!(elf[4], 2, "not 64-bit");
    assert_eq!(
        u16_at(&elf, 16),
        ET_EXEC,
        "not a fixed-address executable (ET_EXEC)"
    );
    let phoff = u64_at(&elf, 32) as usize;
    let phentsize = usize::from(u16_at(&elf, 54));
    let phnum = usize::from(u16_at(&elf, 56));
    assert!(phnum > 0);
    let mut loads = 0;
    for i in 0..phnum {
        let kind = u32_at(&elf, phoff + i * phentsize);
        assert_ne!(kind, PT_INTERP, "has an interpreter");
        assert_ne!(kind, PT_DYNAMIC, "has a dynamic section");
        if kind == 1 {
            loads += 1;
        }
    }
    assert!(loads >= 2, "expected separate code and data segments");
    // The installer budget is 192 KiB for the gzipped initrd; the raw
    // binary staying well under that keeps the budget honest early.
    assert!(elf.len() < 512 * 1024, "firmware is {} bytes", elf.len());
}

#[test]
fn i15_firmware_runs_without_libc() {
    let path = build_firmware();
    let out = Command::new(&path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("[ze-install] ze-installer "), "{err}");
}
