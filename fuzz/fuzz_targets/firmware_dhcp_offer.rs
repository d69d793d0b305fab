//! Fuzz the installer's dhcp_offer parser (see `ze_installer::fuzzing::dhcp_offer`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ze_installer::fuzzing::dhcp_offer(data));
