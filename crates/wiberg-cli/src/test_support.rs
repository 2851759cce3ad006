//! Helpers shared by the crate's unit tests and (included by path) its integration tests.

// The workspace's one copy of the Tome et al. parameter lookup for tests.
#[path = "../../wiberg-models/tests/support/tome_dir.rs"]
mod tome;
pub(crate) use tome::tome_dir;
