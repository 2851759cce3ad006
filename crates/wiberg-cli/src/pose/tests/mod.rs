//! Tests of `wiberg pose` through the crate's own functions: evaluation, training with
//! checkpoints and resume, and the table. (The model crate's parts, read through generated
//! data, and the commands as child processes are tested in `tests/suite/`.)

mod eval;
mod table;
mod train;
