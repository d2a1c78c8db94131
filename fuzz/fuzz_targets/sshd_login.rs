#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| hopward::testing::fuzz::sshd_login(data));
