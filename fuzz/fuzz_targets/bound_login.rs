#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopward::fuzzing::bound_login(data));
