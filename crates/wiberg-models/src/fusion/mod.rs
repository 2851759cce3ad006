//! Tracker fusion (VOT): the data set reader and region overlaps.

pub mod iou;
pub mod vot;
