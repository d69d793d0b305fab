//! Checks shared by the firmware's flow tests.
#![allow(dead_code)]

use ze_hal::{PowerAction, fake::FakeOs};
use ze_installer::{
    bmap::MAX_BMAP,
    install::{HEAD_LEN, IO_CHUNK},
    run::{self, Buffers},
};

/// Boot the installer on `os` with buffers from the heap, as PID 1 has
/// them on its stack.
pub fn boot(os: &mut FakeOs) -> PowerAction {
    let mut head: Box<[u8; HEAD_LEN]> = vec![0u8; HEAD_LEN].try_into().unwrap();
    let mut io: Box<[u8; IO_CHUNK]> = vec![0u8; IO_CHUNK].try_into().unwrap();
    let mut bmap: Box<[u8; MAX_BMAP]> = vec![0u8; MAX_BMAP].try_into().unwrap();
    let mut bufs = Buffers {
        head: &mut head,
        io: &mut io,
        bmap: &mut bmap,
    };
    run::boot(os, &mut bufs)
}

/// The write order every install must keep on `/dev/vda`, from the fake
/// OS's event log: the first MiB is zeroed before anything else, the rest
/// of the image follows, and the real first MiB is written last and
/// synced. Returns the indexes of the last write past the head and of the
/// final head write, for the caller's own checks around them.
pub fn assert_head_written_last(ev: &[String]) -> (usize, usize) {
    let offset = |e: &str| -> Option<usize> {
        e.strip_prefix("write /dev/vda ")?
            .split('+')
            .next()?
            .parse()
            .ok()
    };
    let first_tail = ev
        .iter()
        .position(|e| offset(e).is_some_and(|o| o >= HEAD_LEN))
        .unwrap();
    let last_tail = ev
        .iter()
        .rposition(|e| offset(e).is_some_and(|o| o >= HEAD_LEN))
        .unwrap();
    let heads: Vec<usize> = ev
        .iter()
        .enumerate()
        .filter(|(_, e)| e.starts_with("write /dev/vda 0+"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        heads[0] < first_tail,
        "the first MiB is zeroed before anything else"
    );
    let head = *heads.last().unwrap();
    assert_eq!(ev[head], format!("write /dev/vda 0+{HEAD_LEN}"));
    assert!(last_tail < head, "the first MiB is written last");
    assert_eq!(ev[head + 1], "sync /dev/vda");
    (last_tail, head)
}

/// A GPT image of `len` bytes (a multiple of 4 KiB, at least 5 MiB) the
/// way an appliance image looks to the installer: a protective MBR and a
/// valid GUID partition table in the first MiB with partitions 1 and 4
/// (4 at 3 MiB..4 MiB), and data separated by holes of zeros — among them
/// single zero blocks inside data — so that its block map has several
/// ranges. `seed` varies the bytes.
pub fn gpt_image(len: usize, seed: u64) -> Vec<u8> {
    const MIB: usize = 1 << 20;
    assert!(len >= 5 * MIB && len.is_multiple_of(4096));
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x as u8) | 1
    };
    let mut v = vec![0u8; len];
    // Data: the first 64 KiB, 1 MiB..1.5 MiB with a zero block inside,
    // 2.25 MiB..2.5 MiB, /perm at 3 MiB..3.25 MiB, the last 8 KiB.
    for r in [
        0..64 * 1024,
        MIB..MIB + 64 * 1024,
        MIB + 68 * 1024..MIB + MIB / 2,
        2 * MIB + MIB / 4..2 * MIB + MIB / 2,
        3 * MIB..3 * MIB + MIB / 4,
        len - 8192..len,
    ] {
        for b in &mut v[r] {
            *b = rnd();
        }
    }
    v[..8].copy_from_slice(b"GPTHEAD!");
    // The table: header at LBA 1, 128 entries of 128 bytes at LBA 2.
    v[512..512 + 8192 * 2].fill(0);
    let entries = 1024;
    let mut put = |i: usize, first: u64, last: u64, tag: u8| {
        let e = entries + i * 128;
        v[e..e + 16].fill(0x11);
        v[e + 16..e + 32].fill(tag);
        v[e + 32..e + 40].copy_from_slice(&first.to_le_bytes());
        v[e + 40..e + 48].copy_from_slice(&last.to_le_bytes());
    };
    put(0, 2048, 4095, 0xa1);
    put(3, 6144, 8191, 0xa4);
    let ecrc = crc32(&v[entries..entries + 128 * 128]);
    let h = 512;
    v[h..h + 8].copy_from_slice(b"EFI PART");
    v[h + 8..h + 12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    v[h + 12..h + 16].copy_from_slice(&92u32.to_le_bytes());
    v[h + 24..h + 32].copy_from_slice(&1u64.to_le_bytes());
    v[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
    v[h + 80..h + 84].copy_from_slice(&128u32.to_le_bytes());
    v[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
    v[h + 88..h + 92].copy_from_slice(&ecrc.to_le_bytes());
    let hcrc = crc32(&v[h..h + 92]);
    v[h + 16..h + 20].copy_from_slice(&hcrc.to_le_bytes());
    v
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The block map of `image` in 4 KiB blocks: every block that is not all
/// zeros, adjacent ones merged, each range with its sha256.
pub fn bmap_of(image: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    use ze_installer::bmap::{self, Range};
    let blocks = image.len().div_ceil(4096);
    let used = |b: usize| {
        image[b * 4096..((b + 1) * 4096).min(image.len())]
            .iter()
            .any(|&x| x != 0)
    };
    let mut ranges = Vec::new();
    let mut b = 0;
    while b < blocks {
        if !used(b) {
            b += 1;
            continue;
        }
        let first = b;
        while b < blocks && used(b) {
            b += 1;
        }
        let bytes = &image[first * 4096..(b * 4096).min(image.len())];
        ranges.push(Range {
            first: first as u64,
            last: (b - 1) as u64,
            sha256: Sha256::digest(bytes).into(),
        });
    }
    let mut text = String::new();
    bmap::write(&mut text, image.len() as u64, 4096, ranges.iter().copied()).unwrap();
    let mut bytes = text.into_bytes();
    assert!(bmap::seal(&mut bytes));
    bytes
}

/// The `patterns` appear in `text` in this order (the console lines of an
/// install); panics naming the first one missing.
pub fn in_order(text: &str, patterns: &[&str]) {
    let mut at = 0;
    for p in patterns {
        match text[at..].find(p) {
            Some(i) => at += i + p.len(),
            None => panic!("console lacks {p:?} after byte {at}:\n{text}"),
        }
    }
}

/// The efivarfs path of the global variable `name`.
pub fn efivar(name: &str) -> String {
    format!(
        "{}/{name}-{}",
        ze_installer::efiboot::EFIVARS,
        ze_installer::efiboot::GLOBAL
    )
}

fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(|u| u.to_le_bytes())
        .collect()
}

/// An efivarfs `Boot####` file with `description` and the device path
/// `path` (its End node included).
pub fn boot_option(description: &str, path: &[u8]) -> Vec<u8> {
    let mut f = vec![7, 0, 0, 0, 1, 0, 0, 0];
    f.extend_from_slice(&(path.len() as u16).to_le_bytes());
    f.extend_from_slice(&ucs2(description));
    f.extend_from_slice(path);
    f
}

/// OVMF's PXE entry: PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,0x1)/IPv4(...).
pub fn pxe_option() -> Vec<u8> {
    let mut path = vec![
        2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0, 1, 1, 6, 0, 0, 2,
    ];
    path.extend_from_slice(&[3, 11, 37, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    path.extend_from_slice(&[0; 26]);
    path.push(1);
    path.extend_from_slice(&[3, 12, 27, 0]);
    path.extend_from_slice(&[0; 23]);
    path.extend_from_slice(&[0x7f, 0xff, 4, 0]);
    boot_option("UEFI PXEv4 (MAC:525400123456)", &path)
}

/// OVMF's entry for a whole disk or CD: PciRoot(0x0)/Pci(0x3,0x0).
pub fn device_option(description: &str) -> Vec<u8> {
    let path = [
        2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0, 1, 1, 6, 0, 0, 3, 0x7f, 0xff, 4, 0,
    ];
    boot_option(description, &path)
}

/// A UEFI machine: `/sys/firmware/efi` and, in efivarfs, `BootOrder` with
/// `order` and the `Boot####` variables `options`.
pub fn uefi(os: &mut FakeOs, order: &[u16], options: &[(u16, Vec<u8>)]) {
    os.sys_file("/sys/firmware/efi/fw_platform_size", "64\n");
    let mut file = vec![7, 0, 0, 0];
    for n in order {
        file.extend_from_slice(&n.to_le_bytes());
    }
    os.sys_bytes(&efivar("BootOrder"), &file);
    for (n, data) in options {
        os.sys_bytes(&efivar(&format!("Boot{n:04X}")), data);
    }
}

/// `BootOrder` as the installer left it.
pub fn boot_order(os: &FakeOs) -> Vec<u16> {
    let file = os.st().efivars[&efivar("BootOrder")].clone();
    file[4..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}
