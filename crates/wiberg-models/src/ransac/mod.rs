//! RANSAC/MLESAC (the paper's Figure 1): the sample generator, and one sample's solve.

pub mod sampling;
pub mod solve;
