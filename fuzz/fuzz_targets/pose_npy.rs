//! libFuzzer target: see `wiberg_fuzz::check_pose_npy` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wiberg_fuzz::check_pose_npy(data);
});
