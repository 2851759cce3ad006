//! Helpers shared by the crate's unit tests and (included by path) its integration tests.

use std::path::{Path, PathBuf};

/// The Tome et al. parameter directory, or `None` (with a note) when absent outside CI.
pub(crate) fn tome_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WIBERG_TOME2018_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tome2018"));
    if dir.join("avg_cameras__cams.npy").exists() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the Tome et al. 2018 parameters are not at {}", dir.display());
    }
    eprintln!("note: {} not found; set WIBERG_TOME2018_DIR to run this test", dir.display());
    None
}
