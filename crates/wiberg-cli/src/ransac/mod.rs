//! Experiment module (in progress).

/// Arguments of `wiberg ransac`.
#[derive(Debug, clap::Args)]
pub struct RansacArgs {}

/// Runs `wiberg ransac`.
pub fn run(_args: RansacArgs) -> anyhow::Result<()> {
    anyhow::bail!("`wiberg ransac` is not implemented yet")
}
