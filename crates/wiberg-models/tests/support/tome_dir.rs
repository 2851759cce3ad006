//! Where the workspace's tests and benches find the Tome et al. 2018 parameters: one copy,
//! included by path by the models crate's tests and benches and by the CLI's tests.

use std::path::{Path, PathBuf};

/// `$WIBERG_TOME2018_DIR`, else `shared/data/tome2018` beside the repository.
fn candidate() -> PathBuf {
    // Every including crate sits at `crates/<name>`.
    std::env::var_os("WIBERG_TOME2018_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tome2018"))
}

/// The parameter directory, when the parameters are there.
pub(crate) fn find_tome_dir() -> Option<PathBuf> {
    let dir = candidate();
    dir.join("avg_cameras__cams.npy").exists().then_some(dir)
}

/// [`find_tome_dir`] for a test: `None`, with a note, when the parameters are absent; under
/// `CI=true` their absence fails the test instead, so that CI never skips the pose tests.
pub(crate) fn tome_dir() -> Option<PathBuf> {
    if let Some(dir) = find_tome_dir() {
        return Some(dir);
    }
    let dir = candidate();
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the Tome et al. 2018 parameters are not at {}", dir.display());
    }
    eprintln!("note: {} not found; set WIBERG_TOME2018_DIR to run this test", dir.display());
    None
}
