#![no_main]

libfuzzer_sys::fuzz_target!(init: xiuhua_fuzz::init("repair_message"), |data: &[u8]| {
    xiuhua_fuzz::repair_message(data);
});
