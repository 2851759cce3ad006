//! # wiberg-models
//!
//! The models and data formats of wiberg's three experiments, for any program (the `wiberg`
//! command-line tool, the Python package, the fuzz targets): no command-line parsing, progress
//! bars or plotting here, and typed errors ([`Error`]) that wrap the library's
//! [`wiberg::WibergError`].
//!
//! * [`pose`]: the Tome et al. (2018) parameters (checkpoint npy layout and the authors' HDF5),
//!   the Human3.6M-style npy pose data, with `.npy` decoding that does not trust the header.
//! * [`fusion`]: the VOT data set reader (ground truth, tracker results, image sizes), the
//!   region overlaps, the synthetic VOT2018-like data set and the fusion model (the per-frame
//!   corner energies, the forward pass, the training loss and its gradient).
//! * [`ransac`]: the RANSAC/MLESAC sample generator of the paper's Figure 1 and one sample's
//!   solve (forward pass and `dt*/dsigma`).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod error;
pub mod fusion;
pub mod pose;
pub mod ransac;
pub mod stats;

pub use error::{Error, Result};
