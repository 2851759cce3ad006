//! Tracker fusion (VOT): the data set reader and region overlaps, the synthetic VOT2018-like
//! data set, and the fusion model (per-frame corner energies, the forward pass through the
//! argmin layer, the training loss and its gradient).

pub mod generate;
pub mod iou;
pub mod model;
pub mod vot;
