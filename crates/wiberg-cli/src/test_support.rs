//! Helpers shared by the crate's unit tests and (included by path) its integration tests.

// The workspace's one copy of the Tome et al. parameter lookup for tests.
#[path = "../../wiberg-models/tests/support/tome_dir.rs"]
mod tome;
pub(crate) use tome::tome_dir;

// The workspace's one copy of the tests' data fixtures (the unit tests use a few of them).
#[allow(dead_code)]
#[path = "../../wiberg-models/tests/support/fixtures.rs"]
mod fixtures;
#[allow(unused_imports)]
pub(crate) use fixtures::{npy_bytes, pose_arrays, small_dataset, write_image, write_pose_dir, write_vot};
