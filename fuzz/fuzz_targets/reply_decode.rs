#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("reply_decode"), |data: &[u8]| {
    xiuhua_fuzz::reply_decode(data);
});
