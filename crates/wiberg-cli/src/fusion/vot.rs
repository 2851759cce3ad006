//! The VOT data set format: the reader and its types are the models crate's
//! ([`wiberg_models::fusion::vot`]); the CLI adds the crash-safe writer of generated sets.

use wiberg_models::fusion::vot::{write_dataset_with, Dataset};

use anyhow::Result;
use std::path::Path;

/// Writes a data set in the VOT layout under `root`; the lists that name everything else are
/// written last and atomically ([`crate::common::atomic_write`]).
pub(crate) fn write_dataset(root: &Path, data: &Dataset) -> Result<()> {
    Ok(write_dataset_with(root, data, crate::common::atomic_write)?)
}
