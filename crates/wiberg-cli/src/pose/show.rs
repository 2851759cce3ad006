//! `wiberg pose show`: one frame as a PNG.

use anyhow::Result;
use std::path::PathBuf;

/// Arguments of `wiberg pose show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Global frame index (sequences in name order, frames concatenated).
    #[arg(long)]
    pub frame: usize,
    /// Parameters and solver.
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Output PNG.
    #[arg(long, default_value = "pose.png")]
    pub out: PathBuf,
}

/// Runs `wiberg pose show`.
pub fn run(_args: ShowArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
