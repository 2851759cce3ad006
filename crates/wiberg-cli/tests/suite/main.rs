//! The command-line tool's integration tests, one test crate with a module per area (one
//! binary to link instead of one per file: linking dominated the test command's time).

mod adversarial_cli;
mod cli_pipe;
mod common;
mod crash_safety;
mod fusion;
mod pose;
mod pose_train;
mod ransac;
