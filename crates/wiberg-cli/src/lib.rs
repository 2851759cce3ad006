//! The `wiberg` command-line tool as a library for its binary: [`Cli`], the parsed command line
//! (`Cli::parse()` or `Cli::try_parse_from(...)`, from [`clap::Parser`]), and [`run`]. The
//! paper's three experiments are private modules, each with its own arguments (clap) and
//! `run`; their tests are unit tests inside the crate, and the integration tests drive the
//! binary.
#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![forbid(unsafe_code)]

mod common;
mod fusion;
mod pose;
mod ransac;
#[cfg(test)]
mod test_support;

use clap::{Parser, Subcommand};

/// wiberg: learn continuous energy functions by differentiating through their minimisers.
#[derive(Debug, Parser)]
#[command(name = "wiberg", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Experiment 1: learn the RBF width of a 1-D MLESAC energy (the paper's Figure 1).
    Ransac(ransac::RansacArgs),
    /// Experiment 2: learned fusion of tracker boxes on VOT-format data (Table 1).
    Fusion(fusion::FusionArgs),
    /// Experiment 3: the Tome et al. multi-camera 3D pose energy (Table 2).
    Pose(pose::PoseArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ransac(a) => ransac::run(a),
        Command::Fusion(a) => fusion::run(a),
        Command::Pose(a) => pose::run(a),
    }
}
