//! RANSAC/MLESAC (the paper's Figure 1): the sample generator.

pub mod sampling;
