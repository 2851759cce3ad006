//! (in progress)
/// placeholder
pub struct AutoDiff;
/// placeholder
pub trait DualEnergy {}
