//! Tome et al. 3-D pose: the parameters and their files, the pose data and npy/HDF5 decoding.

pub mod data;
pub mod h5;
pub mod npy;
pub mod params;
