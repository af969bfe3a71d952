#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("ingest_change"), |data: &[u8]| {
    xiuhua_fuzz::ingest_change(data);
});
