//! Fuzz the installer's cmdline parser (see `ze_installer::fuzzing::cmdline`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ze_installer::fuzzing::cmdline(data));
