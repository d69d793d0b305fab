//! The installer's ISO 9660 reader over arbitrary volumes
//! (`ze_installer::iso9660`): open, look up the paths the installer reads,
//! read what is found. Seeds: corpus/iso9660/ (xorriso-made volumes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ze_installer::iso9660::fuzz_volume(data);
});
