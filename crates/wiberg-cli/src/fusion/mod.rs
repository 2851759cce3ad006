//! Experiment module (in progress).

/// Arguments of `wiberg fusion`.
#[derive(Debug, clap::Args)]
pub struct FusionArgs {}

/// Runs `wiberg fusion`.
pub fn run(_args: FusionArgs) -> anyhow::Result<()> {
    anyhow::bail!("`wiberg fusion` is not implemented yet")
}
