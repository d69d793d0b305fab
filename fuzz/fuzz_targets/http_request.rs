//! Fuzz target: see `ze::fuzzing::http_request` for the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ze::fuzzing::http_request(data));
