//! The `wiberg` command-line tool as a library: the paper's three experiments, each a module
//! with its own `Args` (clap) and `run`, so integration tests can drive them in-process.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod common;
pub mod fusion;
pub mod pose;
pub mod ransac;

use clap::{Parser, Subcommand};

/// wiberg: learn continuous energy functions by differentiating through their minimisers.
#[derive(Debug, Parser)]
#[command(name = "wiberg", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
