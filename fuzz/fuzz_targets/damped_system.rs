//! libFuzzer target: see `wiberg_fuzz::check_damped_system` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wiberg_fuzz::check_damped_system(data);
});
