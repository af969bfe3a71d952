#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("req_pull"), |data: &[u8]| {
    xiuhua_fuzz::req_pull(data);
});
