//! Fuzz the installer's http_head parser (see `ze_installer::fuzzing::http_head`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ze_installer::fuzzing::http_head(data));
