//! Iteratively reweighted least squares for pseudo-Huber residuals (see
//! [`crate::least_squares`]).
