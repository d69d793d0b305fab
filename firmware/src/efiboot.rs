//! The UEFI boot entry for the installed disk (checklist H3), sans-IO:
//! the bytes of a `Boot####` load option and the new `BootOrder`.
//!
//! A load option (UEFI 2.10 §3.1.3, `EFI_LOAD_OPTION`):
//!
//! ```text
//! u32 Attributes          LOAD_OPTION_ACTIVE (1)
//! u16 FilePathListLength  bytes of the device path below
//! u16 Description[]       UCS-2, NUL-terminated: "ze appliance (<disk>)"
//! device path             HD(1,GPT,<guid>,<start>,<size>)/\EFI\BOOT\BOOTX64.EFI/End
//! u8  OptionalData[]      "ze-installer": the mark of the installer's own entries
//! ```
//!
//! The device path (§10.3): a Hard Drive media node (type 4, subtype 1,
//! 42 bytes: partition number, start LBA, size in LBAs, the partition's
//! unique GUID as stored in the GPT, MBR type 2 = GPT, signature type 2 =
//! GUID), a File Path media node (type 4, subtype 4: the loader's path in
//! UCS-2, NUL-terminated), and the End node (0x7f, 0xff). A firmware
//! matches the HD node against every disk's partitions, so the entry
//! survives the disk moving to another port.
//!
//! efivarfs files are the 4-byte variable attributes
//! (NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS = 7) followed by
//! the data; `BootOrder` is an array of u16 option numbers.
//!
//! Where the entry goes in `BootOrder`: first for an ISO install; for an
//! HTTP install right after the network entry that booted the installer
//! (`BootCurrent`) when it is among the network entries already first,
//! else right after those (device paths with a MAC, IPv4, IPv6 or URI
//! messaging node), so a fleet's network boot stays in charge and the
//! disk comes next: when the server gives an installed machine's firmware
//! no bootfile, its PXE boot fails at once and the disk boots, without
//! the other network entries (PXE over IPv6, HTTP boot) timing out first. Earlier
//! entries the installer made (its mark in the optional data) are
//! removed and left out of the order; the rest keep their order.

use crate::gpt::Partition;
use heapless::Vec;

/// The EFI global variable vendor GUID, as efivarfs spells it.
pub const GLOBAL: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// Where efivarfs is mounted.
pub const EFIVARS: &str = "/sys/firmware/efi/efivars";
/// Present when the kernel was booted by UEFI.
pub const EFI_SYSFS: &str = "/sys/firmware/efi";
/// NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS.
pub const ATTRIBUTES: u32 = 0x7;
/// `LOAD_OPTION_ACTIVE`.
pub const LOAD_OPTION_ACTIVE: u32 = 0x1;
/// The removable-media loader every appliance image's ESP carries.
pub const LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";
/// The optional data that marks the installer's own entries.
pub const MARK: &[u8] = b"ze-installer";
/// The largest load option built or read.
pub const MAX_OPTION: usize = 1024;
/// The most `BootOrder` entries handled.
pub const MAX_ORDER: usize = 64;
/// The largest efivarfs file read for `BootOrder`.
pub const MAX_ORDER_FILE: usize = 4 + 2 * MAX_ORDER;

/// An option number list.
pub type Order = Vec<u16, MAX_ORDER>;

/// Why a load option could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

fn push(out: &mut Vec<u8, MAX_OPTION>, bytes: &[u8]) -> Result<(), TooLong> {
    out.extend_from_slice(bytes).map_err(|_| TooLong)
}

fn push_ucs2(out: &mut Vec<u8, MAX_OPTION>, text: &str) -> Result<(), TooLong> {
    for unit in text.encode_utf16().chain(core::iter::once(0)) {
        push(out, &unit.to_le_bytes())?;
    }
    Ok(())
}

/// The device path `HD(<n>,GPT,<guid>,<start>,<size>)/<loader>/End`.
pub fn device_path(
    part: &Partition,
    loader: &str,
    out: &mut Vec<u8, MAX_OPTION>,
) -> Result<(), TooLong> {
    push(out, &[4, 1, 42, 0])?;
    push(out, &u32::from(part.number).to_le_bytes())?;
    push(out, &part.first_lba.to_le_bytes())?;
    push(out, &(part.last_lba - part.first_lba + 1).to_le_bytes())?;
    push(out, &part.guid)?;
    push(out, &[2, 2])?;
    let len = 4 + 2 * (loader.encode_utf16().count() + 1);
    let len = u16::try_from(len).map_err(|_| TooLong)?;
    push(out, &[4, 4])?;
    push(out, &len.to_le_bytes())?;
    push_ucs2(out, loader)?;
    push(out, &[0x7f, 0xff, 4, 0])
}

/// The whole efivarfs file of the installer's load option for `part`:
/// attributes, then the `EFI_LOAD_OPTION`.
pub fn load_option_file(
    description: &str,
    part: &Partition,
    loader: &str,
) -> Result<Vec<u8, MAX_OPTION>, TooLong> {
    let mut path = Vec::new();
    device_path(part, loader, &mut path)?;
    let mut out = Vec::new();
    push(&mut out, &ATTRIBUTES.to_le_bytes())?;
    push(&mut out, &LOAD_OPTION_ACTIVE.to_le_bytes())?;
    let path_len = u16::try_from(path.len()).map_err(|_| TooLong)?;
    push(&mut out, &path_len.to_le_bytes())?;
    push_ucs2(&mut out, description)?;
    push(&mut out, &path)?;
    push(&mut out, MARK)?;
    Ok(out)
}

/// A load option as read from an efivarfs file (attributes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOption<'a> {
    /// `EFI_LOAD_OPTION.Attributes`.
    pub attributes: u32,
    /// The description, UCS-2 little-endian without the NUL.
    pub description: &'a [u8],
    /// The device path list.
    pub path: &'a [u8],
    /// The optional data.
    pub optional: &'a [u8],
}

impl LoadOption<'_> {
    /// One of the installer's own entries.
    pub fn is_ours(&self) -> bool {
        self.optional == MARK
    }

    /// A network boot: the device path has a MAC, IPv4, IPv6 or URI
    /// messaging node (UEFI 2.10 §10.3.4: subtypes 11, 12, 13, 24).
    pub fn is_network(&self) -> bool {
        let mut rest = self.path;
        while rest.len() >= 4 {
            let (kind, sub) = (rest[0], rest[1]);
            let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
            if kind == 0x7f || len < 4 {
                break;
            }
            if kind == 3 && matches!(sub, 11 | 12 | 13 | 24) {
                return true;
            }
            rest = rest.get(len..).unwrap_or_default();
        }
        false
    }
}

/// Parse an efivarfs `Boot####` file; `None` when it is not one.
pub fn parse_option(file: &[u8]) -> Option<LoadOption<'_>> {
    let data = file.get(4..)?;
    let attributes = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    let path_len = usize::from(u16::from_le_bytes(data.get(4..6)?.try_into().ok()?));
    let rest = data.get(6..)?;
    let nul = rest.chunks_exact(2).position(|c| c == [0, 0])?;
    let description = rest.get(..2 * nul)?;
    let after = rest.get(2 * nul + 2..)?;
    let path = after.get(..path_len)?;
    let optional = after.get(path_len..)?;
    Some(LoadOption {
        attributes,
        description,
        path,
        optional,
    })
}

/// Parse an efivarfs `BootOrder` file.
pub fn parse_order(file: &[u8]) -> Order {
    file.get(4..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take(MAX_ORDER)
        .collect()
}

/// The efivarfs file of `order`.
pub fn order_file(order: &[u16]) -> Vec<u8, MAX_ORDER_FILE> {
    let mut out = Vec::new();
    let _ = out.extend_from_slice(&ATTRIBUTES.to_le_bytes());
    for n in order.iter().take(MAX_ORDER) {
        let _ = out.extend_from_slice(&n.to_le_bytes());
    }
    out
}

/// The option number of an efivarfs file name `Boot####-<global guid>`.
pub fn option_number(file_name: &str) -> Option<u16> {
    let rest = file_name.strip_prefix("Boot")?;
    let (hex, guid) = rest.split_at_checked(4)?;
    if guid.strip_prefix('-')? != GLOBAL || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(hex, 16).ok()
}

/// `Boot####` (upper-case hex, as the spec names them).
pub fn option_name(n: u16) -> heapless::String<8> {
    let mut s = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut s, format_args!("Boot{n:04X}"));
    s
}

/// The lowest option number not in `used`.
pub fn free_number(used: &[u16]) -> Option<u16> {
    (0..=u16::MAX).find(|n| !used.contains(n))
}

/// Where the installed disk's entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// First (ISO installs: the media is out, the disk boots next).
    First,
    /// After the leading network entry `current` (the one that booted
    /// the installer), else after the network entries already at the
    /// front (HTTP installs).
    AfterNetwork { current: Option<u16> },
}

/// The new `BootOrder`: `new` placed per `place` in `old`, without the
/// `stale` entries (the installer's earlier ones) or `new` itself.
/// `network` says whether an entry boots from the network.
pub fn new_order(
    old: &[u16],
    new: u16,
    stale: &[u16],
    place: Place,
    network: &dyn Fn(u16) -> bool,
) -> Order {
    let kept = old
        .iter()
        .copied()
        .filter(|n| *n != new && !stale.contains(n));
    let mut out = Order::new();
    let mut placed = false;
    let mut leading = true;
    for n in kept {
        leading &= network(n);
        if !placed && (place == Place::First || !leading) {
            let _ = out.push(new);
            placed = true;
        }
        let _ = out.push(n);
        if !placed && leading && place == (Place::AfterNetwork { current: Some(n) }) {
            let _ = out.push(new);
            placed = true;
        }
    }
    if !placed {
        let _ = out.push(new);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition 1 of an appliance image: the ESP from LBA 2048, 64 MiB.
    fn esp() -> Partition {
        Partition {
            number: 1,
            block_size: 512,
            first_lba: 2048,
            last_lba: 2048 + 131_072 - 1,
            guid: [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b,
            ],
        }
    }

    fn ucs2(text: &str) -> std::vec::Vec<u8> {
        text.encode_utf16()
            .chain([0])
            .flat_map(|u| u.to_le_bytes())
            .collect()
    }

    #[test]
    fn h3_load_option_bytes() {
        let file = load_option_file("ze appliance (nvme0n1)", &esp(), LOADER).unwrap();
        let mut want = std::vec::Vec::new();
        want.extend_from_slice(&[7, 0, 0, 0]); // efivarfs attributes
        want.extend_from_slice(&[1, 0, 0, 0]); // LOAD_OPTION_ACTIVE
        // FilePathListLength: HD 42 + file 4 + 2 * (21 + 1) + end 4 = 94
        want.extend_from_slice(&[94, 0]);
        want.extend_from_slice(&ucs2("ze appliance (nvme0n1)"));
        want.extend_from_slice(&[4, 1, 42, 0]);
        want.extend_from_slice(&[1, 0, 0, 0]);
        want.extend_from_slice(&[0x00, 0x08, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0x00, 0x00, 0x02, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&esp().guid);
        want.extend_from_slice(&[2, 2]);
        want.extend_from_slice(&[4, 4, 48, 0]);
        want.extend_from_slice(&ucs2("\\EFI\\BOOT\\BOOTX64.EFI"));
        want.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        want.extend_from_slice(b"ze-installer");
        assert_eq!(&file[..], &want[..]);

        let opt = parse_option(&file).unwrap();
        assert_eq!(opt.attributes, LOAD_OPTION_ACTIVE);
        assert_eq!(opt.description, &ucs2("ze appliance (nvme0n1)")[..44]);
        assert_eq!(opt.path.len(), 94);
        assert!(opt.is_ours() && !opt.is_network());
    }

    /// `Boot0001` as OVMF writes it for its PXE entry:
    /// PciRoot(0x0)/Pci(0x2,0x0)/MAC(525400123456,0x1)/IPv4(0.0.0.0).
    fn ovmf_pxe() -> std::vec::Vec<u8> {
        let mut path = std::vec![2, 1, 12, 0, 0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0];
        path.extend_from_slice(&[1, 1, 6, 0, 0, 2]);
        path.extend_from_slice(&[3, 11, 37, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        path.extend_from_slice(&[0; 26]);
        path.push(1);
        path.extend_from_slice(&[3, 12, 27, 0]);
        path.extend_from_slice(&[0; 23]);
        path.extend_from_slice(&[0x7f, 0xff, 4, 0]);
        let mut f = std::vec![7, 0, 0, 0, 1, 0, 0, 0];
        f.extend_from_slice(&(path.len() as u16).to_le_bytes());
        f.extend_from_slice(&ucs2("UEFI PXEv4 (MAC:525400123456)"));
        f.extend_from_slice(&path);
        f
    }

    #[test]
    fn h3_network_entries_are_recognised() {
        let pxe = ovmf_pxe();
        let opt = parse_option(&pxe).unwrap();
        assert!(opt.is_network() && !opt.is_ours());
        assert!(opt.optional.is_empty());
        // Truncated or garbage files are no option.
        assert_eq!(parse_option(&pxe[..20]), None);
        assert_eq!(parse_option(&[7, 0, 0, 0, 1, 0]), None);
        assert_eq!(parse_option(&[]), None);
    }

    #[test]
    fn h3_boot_order_iso_first_http_after_the_network() {
        // 0001 PXE, 0002 HTTP boot, 0000 the CD, 0003 the shell, 0004 an
        // earlier ze entry (stale).
        let old = [1, 2, 0, 3, 4];
        let net = |n: u16| n == 1 || n == 2;
        assert_eq!(
            new_order(&old, 5, &[4], Place::First, &net),
            [5, 1, 2, 0, 3]
        );
        let after = |current| Place::AfterNetwork { current };
        assert_eq!(new_order(&old, 5, &[4], after(None), &net), [1, 2, 5, 0, 3]);
        // Right after the network entry that booted the installer.
        assert_eq!(
            new_order(&old, 5, &[4], after(Some(1)), &net),
            [1, 5, 2, 0, 3]
        );
        assert_eq!(
            new_order(&old, 5, &[4], after(Some(2)), &net),
            [1, 2, 5, 0, 3]
        );
        // A current entry that is not a leading network one changes nothing.
        assert_eq!(
            new_order(&old, 5, &[4], after(Some(3)), &net),
            [1, 2, 5, 0, 3]
        );
        // The network entries count only while they lead.
        assert_eq!(new_order(&[0, 1], 4, &[4], after(Some(1)), &net), [4, 0, 1]);
        // Only network entries, or nothing at all: last, or alone.
        assert_eq!(new_order(&[1, 2], 4, &[], after(None), &net), [1, 2, 4]);
        assert_eq!(new_order(&[], 0, &[], Place::First, &net), [0]);
        // Reusing a stale number does not repeat it.
        assert_eq!(new_order(&[4, 1], 4, &[4], Place::First, &net), [4, 1]);
    }

    #[test]
    fn h3_variable_names_and_files() {
        assert_eq!(
            option_number("Boot0004-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
            Some(4)
        );
        assert_eq!(
            option_number("Boot00A1-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
            Some(0xa1)
        );
        assert_eq!(
            option_number("BootOrder-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
            None
        );
        assert_eq!(
            option_number("BootNext-8be4df61-93ca-11d2-aa0d-00e098032b8c"),
            None
        );
        assert_eq!(
            option_number("Boot0004-00000000-0000-0000-0000-000000000000"),
            None
        );
        assert_eq!(option_number("Boot004"), None);
        assert_eq!(option_name(0xa1), "Boot00A1");
        assert_eq!(free_number(&[0, 1, 3]), Some(2));
        assert_eq!(parse_order(&[7, 0, 0, 0, 1, 0, 0, 0, 3, 0]), [1, 0, 3]);
        assert_eq!(parse_order(&[7, 0, 0, 0, 1]), []);
        assert_eq!(&order_file(&[5, 1])[..], &[7, 0, 0, 0, 5, 0, 1, 0]);
    }
}
