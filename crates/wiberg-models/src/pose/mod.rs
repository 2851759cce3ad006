//! Tome et al. 3-D pose: the parameters and their files, the pose data and npy/HDF5 decoding,
//! the energy and its forward pass ([`model`], each damped solve by the library's block-arrow
//! factor), the analytic gradient of the training loss ([`grad`]), the error metrics
//! ([`metrics`]), the synthetic data's sampling ([`generate`]) and where `pose train` keeps its
//! checkpoints ([`checkpoint`]).

pub mod checkpoint;
pub mod data;
pub mod generate;
pub mod grad;
pub mod h5;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod params;
