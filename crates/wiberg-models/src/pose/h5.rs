//! Reading the authors' original HDF5 files (h5py output) with the pure-Rust `hdf5-reader`
//! crate: no HDF5 C library needed.

use crate::error::Context;
use crate::Result;
use hdf5_reader::Hdf5File;
use ndarray::ArrayD;
use std::path::Path;

/// Reads dataset `name` (at the file's root) of `path` as `f64`. Integer datasets (the
/// checkpoint's `epoch`) are converted.
pub fn read_f64(path: &Path, name: &str) -> Result<ArrayD<f64>> {
    let file = Hdf5File::open(path).with_context(|| format!("opening HDF5 file {}", path.display()))?;
    let ds = file.dataset(&format!("/{name}")).with_context(|| format!("{}: no dataset /{name}", path.display()))?;
    match ds.read_array::<f64>() {
        Ok(a) => Ok(a),
        Err(float_err) => {
            let a = ds
                .read_array::<i64>()
                .with_context(|| format!("{}:/{name}: not a float64 array ({float_err})", path.display()))?;
            Ok(a.mapv(|v| v as f64))
        }
    }
}

/// Names of the datasets at the root of `path`.
pub fn dataset_names(path: &Path) -> Result<Vec<String>> {
    let file = Hdf5File::open(path).with_context(|| format!("opening HDF5 file {}", path.display()))?;
    let root = file.root_group().with_context(|| format!("{}: reading the root group", path.display()))?;
    let (_, datasets) = root.member_names().with_context(|| format!("{}: listing the root group", path.display()))?;
    Ok(datasets)
}
