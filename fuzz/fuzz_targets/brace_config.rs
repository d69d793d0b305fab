//! Fuzz target: see `ze::fuzzing::brace_config` for the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ze::fuzzing::brace_config(data));
