//! `.npy` decoding that does not trust the header: sizes are checked before anything is
//! allocated, dtypes are named in errors. Used by the pose data and the model parameters.

use crate::error::{bail, ensure, Context};
use crate::Result;
use ndarray::ArrayD;

/// Checks `.npy` bytes without trusting the header: the header and the data it declares
/// (`elem_size` bytes per value) must fit in `bytes` exactly, checked *before* anything is
/// allocated (ndarray-npy allocates the declared size first, so a 100-byte file declaring
/// 10^15 values would abort the process). With `want_descr`, the dtype descriptor must be one
/// of those (as numpy writes them, quoted: `"'<f8'"`). Returns the descriptor and the shape.
/// Errors start with `what` (the file name).
pub fn check_npy(
    bytes: &[u8],
    elem_size: usize,
    want_descr: Option<&[&str]>,
    what: &str,
) -> Result<(String, Vec<usize>)> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(MAGIC),
        "{what}: not an npy file (no \\x93NUMPY magic at the start; {} bytes in all)",
        bytes.len()
    );
    let major = bytes[6];
    let len_bytes = if major == 1 { 2 } else { 4 };
    ensure!(bytes.len() >= 8 + len_bytes, "{what}: truncated npy header ({} bytes)", bytes.len());
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    ensure!(
        header_len <= bytes.len() - 8 - len_bytes,
        "{what}: truncated: the npy (version {major}) header claims {header_len} bytes but the file has {}",
        bytes.len()
    );
    let mut rest = bytes;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut rest)
        .map_err(|e| crate::Error::Invalid(format!("{what}: bad npy header: {e}")))?;
    let descr = header.type_descriptor.to_string();
    if let Some(want) = want_descr {
        ensure!(
            want.contains(&descr.as_str()),
            "{what}: dtype {descr}, expected {}",
            want.iter().map(|d| format!("'{}'", d.trim_matches('\''))).collect::<Vec<_>>().join(" or ")
        );
    }
    // ndarray also refuses (by panicking inside ndarray-npy) a shape whose non-zero
    // dimensions multiply past isize::MAX, even when another dimension is 0.
    let product = |skip_zeros: bool| {
        header
            .shape
            .iter()
            .filter(|&&d| !(skip_zeros && d == 0))
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(elem_size))
            .filter(|&bytes| bytes <= isize::MAX as usize)
    };
    let (Some(need), Some(_)) = (product(false), product(true)) else {
        bail!("{what}: npy shape {:?} is too large", header.shape)
    };
    ensure!(
        rest.len() == need,
        "{what}: {}: the header declares shape {:?} ({need} bytes of data) but {} bytes follow",
        if rest.len() < need { "truncated" } else { "extra bytes" },
        header.shape,
        rest.len()
    );
    Ok((descr, header.shape))
}

/// Decodes `.npy` bytes of element type `A` (`elem_size` bytes each) after [`check_npy`].
pub fn parse_npy<A: ndarray_npy::ReadableElement>(bytes: &[u8], elem_size: usize, what: &str) -> Result<ArrayD<A>> {
    check_npy(bytes, elem_size, None, what)?;
    <ArrayD<A> as ndarray_npy::ReadNpyExt>::read_npy(bytes).with_context(|| format!("{what}: reading npy data"))
}

/// Decodes float64 `.npy` bytes (either byte order); another dtype is an error naming it.
pub fn parse_npy_f64(bytes: &[u8], what: &str) -> Result<ArrayD<f64>> {
    check_npy(bytes, 8, Some(&["'<f8'", "'>f8'"]), what)?;
    <ArrayD<f64> as ndarray_npy::ReadNpyExt>::read_npy(bytes).with_context(|| format!("{what}: reading npy data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_with_header(dict: &str) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x02\x00".to_vec();
        out.extend_from_slice(&(dict.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.push(b'\n');
        out
    }

    #[test]
    fn deeply_nested_headers_are_errors_not_stack_overflows() {
        for depth in [100, 10_000, 1_000_000] {
            let dict = format!(
                "{{'descr': '<f8', 'fortran_order': False, 'shape': {}0{}, }}",
                "(".repeat(depth),
                ")".repeat(depth)
            );
            let err = parse_npy_f64(&npy_with_header(&dict), "deep.npy").unwrap_err().to_string();
            assert!(err.contains("deep.npy"), "{err}");
        }
    }

    #[test]
    fn empty_array_with_huge_dimensions_is_an_error_not_a_panic() {
        // Found by the pose_npy fuzz target: 0 values, but 2^62 x 4 overflows ndarray's size check.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }";
        let err = parse_npy_f64(&npy_with_header(dict), "z.npy").unwrap_err().to_string();
        assert!(err.contains("z.npy: npy shape [0, 4611686018427387904, 4] is too large"), "{err}");
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 17, 3), }";
        assert_eq!(parse_npy_f64(&npy_with_header(dict), "z.npy").unwrap().shape(), &[0, 17, 3]);
    }
}
