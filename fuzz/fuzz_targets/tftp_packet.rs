//! Fuzz target: see `ze::fuzzing::tftp` for the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ze::fuzzing::tftp(data));
