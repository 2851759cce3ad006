//! libFuzzer target: see `wiberg_fuzz::check_vot_dataset` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wiberg_fuzz::check_vot_dataset(data);
});
