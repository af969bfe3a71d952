#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("req_refresh"), |data: &[u8]| {
    xiuhua_fuzz::req_refresh(data);
});
