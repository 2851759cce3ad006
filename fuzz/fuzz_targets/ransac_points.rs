//! libFuzzer target: see `wiberg_fuzz::check_ransac_points` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wiberg_fuzz::check_ransac_points(data);
});
