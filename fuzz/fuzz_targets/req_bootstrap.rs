#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("req_bootstrap"), |data: &[u8]| {
    xiuhua_fuzz::req_bootstrap(data);
});
