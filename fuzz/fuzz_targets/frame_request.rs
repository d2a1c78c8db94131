#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopward::fuzzing::frame_request(data));
