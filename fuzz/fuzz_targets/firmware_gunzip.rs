//! The gzip decoder of ISO installs (`ze_installer::gunzip`) over
//! arbitrary bytes: see `ze_installer::fuzzing::gunzip`. Seeds:
//! corpus/firmware_gunzip/ (gzip(1) output, several members, header
//! fields, truncated and padded streams).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ze_installer::fuzzing::gunzip(data);
});
