//! `wiberg ransac`: the paper's 1-D RANSAC/MLESAC experiment (Figure 1).
//!
//! A sample is 110 numbers, 10 inliers around an unknown centre and 100 uniform outliers. The
//! estimate is `t* = argmin_t E(t; sigma)`, `E = sum_i -exp(-(x_i - t)^2 / sigma^2)`, found from
//! the lowest-energy point by L-BFGS and a damped Newton polish. The width `sigma` is learned
//! by minimising `(t* - mean(inliers))^2` through the derivative `dt*/dsigma`, side by side
//! for three dampings of that derivative: implicit, trust-region (the paper) and guarded.
//!
//! `wiberg ransac` trains (see [`TrainArgs`]); `wiberg ransac solve` inspects one sample
//! (see [`SolveArgs`]).

mod args;
mod checkpoint;
mod command;
mod plots;
mod report;
mod solve;
#[cfg(test)]
mod tests;
mod training;

pub(crate) use args::TrainArgs;
pub(crate) use solve::SolveArgs;

use clap::Subcommand;

/// Arguments of `wiberg ransac`: training by default, or a subcommand.
#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Without a subcommand, trains sigma with the implicit, trust-region and guarded derivatives on the \
                  same samples, prints a row per method every 500 iterations and a final table, and writes \
                  iterations.csv, summary.json, figure1.png and energy.png to --out.\n\
                  Examples:\n  wiberg ransac\n  wiberg ransac --runs 5 --optimizer sgd --forward reference\n  \
                  wiberg ransac solve --points pts.txt --sigma 3 --damping implicit"
)]
pub(crate) struct RansacArgs {
    /// Inspect one sample instead of training.
    #[command(subcommand)]
    pub(crate) command: Option<RansacCommand>,
    /// Training options (used when no subcommand is given).
    #[command(flatten)]
    pub(crate) train: TrainArgs,
}

/// Subcommands of `wiberg ransac`.
#[derive(Debug, Subcommand)]
pub(crate) enum RansacCommand {
    /// Solve one sample read from a file and print t*, dt*/dsigma and the solver report as JSON.
    Solve(SolveArgs),
}

/// Runs `wiberg ransac`.
pub(crate) fn run(args: RansacArgs) -> anyhow::Result<()> {
    match args.command {
        Some(RansacCommand::Solve(s)) => solve::run(s),
        None => command::run(args.train),
    }
}
