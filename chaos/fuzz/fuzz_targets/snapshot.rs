#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| quorumsign::testkit::fuzz::snapshot(data));
