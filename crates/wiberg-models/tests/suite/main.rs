//! The models crate's integration tests, one test crate with a module per area (one binary to
//! link instead of one per file: linking dominated the test command's time).

mod adversarial;
mod common;
mod fusion;
mod pose;
mod pose_grad;
mod ransac;
