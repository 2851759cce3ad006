//! Where `wiberg pose train` keeps its checkpoints, for every program that loads a trained
//! model: `<out>/checkpoint.json` names the latest complete `<out>/checkpoints/step-<N>/`.

use crate::error::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// Name of the pointer file in a training output directory.
pub const POINTER_FILE: &str = "checkpoint.json";
/// Name of the state file in a checkpoint directory.
pub const STATE_FILE: &str = "train_state.json";
/// The folder of the checkpoint directories in a training output directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";

/// `<out>/checkpoint.json`: names the latest complete checkpoint directory. It is replaced
/// atomically only after that directory has been written, synced and renamed into place, so
/// a kill at any moment leaves it naming a complete checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointPointer {
    /// The directory, relative to `<out>`: `checkpoints/step-<N>` (8 digits).
    pub latest: String,
    /// Optimiser steps taken at that checkpoint.
    pub step: usize,
    /// Epoch of the next batch at that checkpoint.
    pub epoch: usize,
}

/// The latest complete checkpoint of the training output `out`, from its `checkpoint.json`
/// (`None` when there is none). Directories the pointer does not name (a checkpoint being
/// written when the process was killed) are ignored.
pub fn latest_checkpoint(out: &Path) -> Result<Option<PathBuf>> {
    let path = out.join(POINTER_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let ptr: CheckpointPointer = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let valid = ptr
        .latest
        .strip_prefix("checkpoints/step-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    ensure!(valid, "{}: `latest` is {:?}, expected checkpoints/step-<N>", path.display(), ptr.latest);
    let dir = out.join(&ptr.latest);
    ensure!(dir.is_dir(), "{} names {}, which does not exist", path.display(), dir.display());
    Ok(Some(dir))
}

/// `dir` itself, or, when `dir` is a `pose train` output directory (it holds
/// `checkpoint.json`), its latest checkpoint.
pub fn resolve_checkpoint_dir(dir: &Path) -> Result<PathBuf> {
    Ok(latest_checkpoint(dir)?.unwrap_or_else(|| dir.to_path_buf()))
}
