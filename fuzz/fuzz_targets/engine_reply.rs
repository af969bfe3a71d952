#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("engine_reply"), |data: &[u8]| {
    xiuhua_fuzz::engine_reply(data);
});
