//! Fuzz the installer's block map parser (see `ze_installer::fuzzing::bmap`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ze_installer::fuzzing::bmap(data));
