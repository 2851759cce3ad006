//! The library's integration tests, one test crate with a module per area (one binary to
//! link instead of one per file: linking dominated the test command's time).

mod adversarial;
mod autodiff_rbf;
mod autodiff_scale;
mod block_arrow;
mod common;
mod damped_strategies;
mod derivatives;
mod gradcheck;
mod least_squares;
mod minimizers;
mod readme;
mod seed_scan;
mod stress;
