//! libFuzzer target: see `wiberg_fuzz::check_least_squares` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wiberg_fuzz::check_least_squares(data);
});
