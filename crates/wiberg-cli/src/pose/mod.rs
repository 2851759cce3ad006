//! Experiment module (in progress).

/// Arguments of `wiberg pose`.
#[derive(Debug, clap::Args)]
pub struct PoseArgs {}

/// Runs `wiberg pose`.
pub fn run(_args: PoseArgs) -> anyhow::Result<()> {
    anyhow::bail!("`wiberg pose` is not implemented yet")
}
