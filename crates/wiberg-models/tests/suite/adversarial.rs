//! Adversarial inputs to the file readers, called in-process: VOT ground truth, result and
//! meta files with NaN / infinities / huge values, wrong counts, empty and truncated files;
//! pose npy data and parameter files with non-finite values, wrong shapes and dtypes, and
//! truncated or lying headers. Each must end in a clear error naming the file (and line, index
//! or parameter), never a panic or a huge allocation. (The same inputs through the `wiberg`
//! binary, and its numeric arguments: the CLI's `adversarial_cli` tests.)

use crate::common;
use crate::common::{npy_bytes, pose_arrays, write_pose_dir};

use ndarray::{Array2, Array3, Array4, ArrayD, IxDyn};
use std::path::Path;
use wiberg_models::fusion::generate::{generate, GenerateConfig};
use wiberg_models::fusion::vot::{read_dataset, result_path, Dataset};
use wiberg_models::pose::data;
use wiberg_models::pose::params::PoseParams;

// ---------------------------------------------------------------- fusion

fn fusion_data(dir: &Path) -> Dataset {
    let data = generate(&GenerateConfig { sequences: 2, trackers: 3, seed: 5, mean_frames: 40.0 }, || {}).0;
    common::write_vot(dir, &data);
    data
}

/// Replaces line `line` (1-based) of `path` with `text`.
fn set_line(path: &Path, line: usize, text: &str) {
    let old = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = old.lines().collect();
    lines[line - 1] = text;
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn read_err(root: &Path) -> String {
    format!("{:#}", read_dataset(root).expect_err("malformed data set accepted"))
}

#[test]
fn vot_files_with_bad_values_name_file_and_line() {
    for (file, line, text, expect) in [
        ("gt", 3, "1,2,nan,4", vec!["groundtruth.txt:3", "non-finite"]),
        ("gt", 2, "1,2,inf,4", vec!["groundtruth.txt:2", "non-finite"]),
        ("gt", 2, "1e309,2,3,4", vec!["groundtruth.txt:2", "non-finite"]),
        ("gt", 4, "1e300,2,3,4", vec!["groundtruth.txt:4", "out of range"]),
        ("gt", 4, "1,2,3", vec!["groundtruth.txt:4", "expected 4 or 8 numbers, found 3"]),
        ("gt", 4, "1,2,3,4,5", vec!["groundtruth.txt:4", "found 5"]),
        ("gt", 5, "10,10,-4,5", vec!["groundtruth.txt:5", "negative width"]),
        ("gt", 5, "10,10,4,-5", vec!["groundtruth.txt:5", "negative width or height"]),
        ("gt", 1, "1,2,3,x", vec!["groundtruth.txt:1", "`x` is not a number"]),
        ("res", 3, "1,2,nan,4", vec!["_001.txt:3", "non-finite"]),
        ("res", 3, "-1e10,2,3,4", vec!["_001.txt:3", "out of range"]),
        ("res", 3, "1,2,3,4,5,6,7", vec!["_001.txt:3", "found 7"]),
        ("res", 3, "3", vec!["_001.txt:3", "unknown VOT code 3"]),
        ("res", 3, "nan", vec!["_001.txt:3", "non-finite"]),
        ("res", 3, "1,2,-3,4", vec!["_001.txt:3", "negative width"]),
        ("meta", 1, "width=nan", vec!["meta.txt:1", "positive number"]),
        ("meta", 1, "width=0", vec!["meta.txt:1", "positive number"]),
        ("meta", 2, "height=-360", vec!["meta.txt:2", "positive number"]),
        ("meta", 2, "height=1e300", vec!["meta.txt:2", "positive number"]),
        ("meta", 3, "frames=-1", vec!["meta.txt:3", "not a count"]),
        ("meta", 3, "frames=7", vec!["meta.txt", "says 7 frames"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let data = fusion_data(dir.path());
        let seq = &data.sequences[1].name;
        let path = match file {
            "gt" => dir.path().join("sequences").join(seq).join("groundtruth.txt"),
            "meta" => dir.path().join("sequences").join(seq).join("meta.txt"),
            _ => result_path(dir.path(), &data.trackers[2], seq),
        };
        set_line(&path, line, text);
        let err = read_err(dir.path());
        for e in expect {
            assert!(err.contains(e), "{file}:{line} `{text}`: expected `{e}` in: {err}");
        }
    }
}

#[test]
fn vot_empty_truncated_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = fusion_data(dir.path());
    let seq = data.sequences[0].name.clone();
    let gt = dir.path().join("sequences").join(&seq).join("groundtruth.txt");
    let res = result_path(dir.path(), &data.trackers[0], &seq);
    let gt_text = std::fs::read_to_string(&gt).unwrap();
    let res_text = std::fs::read_to_string(&res).unwrap();
    let frames = data.sequences[0].groundtruth.len();

    std::fs::write(&gt, "").unwrap();
    assert!(read_err(dir.path()).contains("no ground-truth regions"));
    std::fs::write(&gt, &gt_text[..gt_text.len() / 2]).unwrap(); // cut mid-line
    let err = read_err(dir.path());
    assert!(err.contains("groundtruth.txt:") || err.contains("says"), "{err}");
    std::fs::write(&gt, &gt_text).unwrap();

    std::fs::write(&res, "").unwrap();
    let err = read_err(dir.path());
    assert!(err.contains("0 lines") && err.contains(&format!("has {frames} frames")), "{err}");
    let cut: String = res_text.lines().take(frames - 3).map(|l| format!("{l}\n")).collect();
    std::fs::write(&res, cut).unwrap();
    assert!(read_err(dir.path()).contains(&format!("{} lines", frames - 3)));
    std::fs::write(&res, &res_text).unwrap();

    std::fs::write(dir.path().join("sequences/list.txt"), "\n\n").unwrap();
    assert!(read_err(dir.path()).contains("no sequences listed"));
    std::fs::write(dir.path().join("sequences/list.txt"), "no_such_sequence\n").unwrap();
    assert!(read_err(dir.path()).contains("no_such_sequence"));
    std::fs::write(dir.path().join("trackers.txt"), "").unwrap();
    std::fs::write(dir.path().join("sequences/list.txt"), format!("{seq}\n")).unwrap();
    assert!(read_err(dir.path()).contains("no tracker has results"));
}

// ---------------------------------------------------------------- pose (npy)

/// `load_dir` on a directory holding the sequence `Walk_1` made of `b2` and `b3`.
fn load_err(b2: &[u8], b3: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_pose_dir(dir.path(), "Walk_1", b2, b3);
    format!("{:#}", data::load_dir(dir.path()).expect_err("malformed pose data accepted"))
}

/// An npy header for `shape` and `descr`, followed by `data`.
fn raw_npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}").into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    out
}

#[test]
fn pose_npy_non_finite_wrong_shape_dtype_truncated() {
    let (d2, d3) = pose_arrays(3);
    let (b2, b3) = (npy_bytes(&d2), npy_bytes(&d3));
    // The good pair loads, and the values survive.
    let dir = tempfile::tempdir().unwrap();
    write_pose_dir(dir.path(), "Walk_1", &b2, &b3);
    let seqs = data::load_dir(dir.path()).unwrap();
    assert_eq!(seqs.len(), 1);
    assert_eq!((seqs[0].joint_2d.len(), seqs[0].action.as_str()), (3, "Walk"));
    assert_eq!(seqs[0].joint_2d[2][3][16], [d2[[2, 3, 16, 0]], d2[[2, 3, 16, 1]]]);

    for (bad, at) in [(f64::NAN, [1, 2, 5, 1]), (f64::INFINITY, [0, 0, 0, 0]), (f64::NEG_INFINITY, [2, 3, 16, 1])] {
        let mut d = d2.clone();
        d[at] = bad;
        let err = load_err(&npy_bytes(&d), &b3);
        assert!(
            err.contains("Walk_1__joint_2d.npy") && err.contains(&format!("non-finite value at index {at:?}")),
            "{err}"
        );
    }
    let mut d = d3.clone();
    d[[2, 16, 2]] = f64::NAN;
    assert!(load_err(&b2, &npy_bytes(&d)).contains("joint_3d.npy: non-finite value at index [2, 16, 2]"));

    // Wrong shapes.
    let err = load_err(&npy_bytes(&Array4::<f64>::zeros((3, 4, 17, 3))), &b3);
    assert!(err.contains("joint_2d.npy: shape [3, 4, 17, 3], expected (N, 4, 17, 2)"), "{err}");
    let err = load_err(&b2, &npy_bytes(&Array2::<f64>::zeros((3, 51))));
    assert!(err.contains("joint_3d.npy: shape [3, 51], expected (N, 17, 3)"), "{err}");
    let err = load_err(&b2, &npy_bytes(&ArrayD::<f64>::zeros(IxDyn(&[]))));
    assert!(err.contains("joint_3d.npy: shape []"), "{err}");
    let err = load_err(&b2, &npy_bytes(&pose_arrays(2).1));
    assert!(err.contains("has 3 frames but") && err.contains("has 2"), "{err}");
    let (e2, e3) = pose_arrays(0);
    let err = load_err(&npy_bytes(&e2), &npy_bytes(&e3));
    assert!(err.contains("no frames"), "{err}");

    // Wrong dtypes.
    let err = load_err(&npy_bytes(&d2.mapv(|v| v as f32)), &b3);
    assert!(err.contains("joint_2d.npy: dtype '<f4', expected '<f8' or '>f8'"), "{err}");
    let err = load_err(&b2, &npy_bytes(&d3.mapv(|v| v as i64)));
    assert!(err.contains("dtype '<i8', expected '<f8'"), "{err}");

    // Empty, not npy, truncated (header or data), extra bytes, a header claiming a huge shape
    // (must not try to allocate it).
    assert!(load_err(&[], &b3).contains("joint_2d.npy: not an npy file"));
    assert!(load_err(b"x,y\n1,2\n", &b3).contains("not an npy file"));
    let err = load_err(&b2[..40], &b3);
    assert!(err.contains("joint_2d.npy: truncated") && err.contains("header"), "{err}");
    let err = load_err(&b2[..b2.len() - 5], &b3);
    assert!(err.contains("joint_2d.npy: truncated") && err.contains("shape [3, 4, 17, 2]"), "{err}");
    assert!(err.contains("3259 bytes follow"), "{err}");
    let mut extra = b2.clone();
    extra.extend_from_slice(&[0; 8]);
    assert!(load_err(&extra, &b3).contains("extra bytes"));
    let huge = raw_npy("<f8", "(1000000000000000, 4, 17, 2)", &[0; 64]);
    let err = load_err(&huge, &b3);
    assert!(err.contains("truncated") && err.contains("1000000000000000"), "{err}");
    let overflow = raw_npy("<f8", "(18446744073709551615, 4, 17, 2)", &[]);
    assert!(load_err(&overflow, &b3).contains("too large"));
    let garbage = raw_npy("<f8", "(3, 4, 17, 2", &[0; 8]);
    assert!(load_err(&garbage, &b3).contains("bad npy header"));
    // Big-endian float64 is float64: accepted, values decoded.
    let be = raw_npy(">f8", "(3, 4, 17, 2)", &d2.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>());
    let dir = tempfile::tempdir().unwrap();
    write_pose_dir(dir.path(), "Walk_1", &be, &b3);
    assert_eq!(data::load_dir(dir.path()).unwrap()[0].joint_2d[2][3][16][0], d2[[2, 3, 16, 0]]);

    // A directory with no sequences, or a 3-D file without its 2-D partner.
    let dir = tempfile::tempdir().unwrap();
    assert!(format!("{:#}", data::load_dir(dir.path()).unwrap_err()).contains("no `<name>__joint_2d.npy`"));
    std::fs::write(dir.path().join("Sit_1__joint_3d.npy"), &b3).unwrap();
    assert!(format!("{:#}", data::load_dir(dir.path()).unwrap_err()).contains("no matching Sit_1__joint_2d.npy"));
}

/// The parameter files of `tome` copied into a temporary directory (`--init` layout).
fn copy_params(tome: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tome).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "npy") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

#[test]
fn pose_parameter_files_bad_values_and_truncation() {
    let Some(tome) = common::tome_dir() else { return };
    let cams = npy_bytes(&Array3::<f64>::from_elem((4, 3, 3), 1.0));
    // (file, bytes, expected message, whether the message names the file: values that parse
    // but are not finite are named by parameter instead).
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "avg_cameras__cams.npy",
            npy_bytes(&Array3::<f64>::from_elem((4, 3, 3), f64::NAN)),
            "avg_cameras[0] is not finite",
            false,
        ),
        ("avg_cameras__cams.npy", cams[..cams.len() - 1].to_vec(), "truncated", true),
        ("avg_cameras__cams.npy", npy_bytes(&Array2::<f64>::zeros((4, 9))), "shape [4, 9], expected [4, 3, 3]", true),
        ("avg_cameras__cams.npy", Vec::new(), "not an npy file", true),
        (
            "trained_model__lambda_0.npy",
            npy_bytes(&Array2::<f64>::from_elem((3, 1), f64::INFINITY)),
            "not finite",
            false,
        ),
        ("trained_model__lambda_0.npy", npy_bytes(&Array2::<f64>::from_elem((3, 2), 1.0)), "expected [3, 1]", true),
        ("trained_model__mean_pose.npy", raw_npy("<f8", "(1099511627776, 3, 17)", &[0; 16]), "truncated", true),
        ("trained_model__epoch.npy", b"\x93NUMPY\x01\x00\xff\xff".to_vec(), "truncated", true),
        ("trained_model__base_vectors.npy", npy_bytes(&Array2::<f32>::zeros((2, 2))), "dtype '<f4'", true),
    ];
    for (file, bytes, expect, names_file) in cases {
        let dir = copy_params(&tome);
        assert!(PoseParams::load_checkpoint(dir.path(), true).is_ok(), "the untouched copy loads");
        std::fs::write(dir.path().join(file), &bytes).unwrap();
        let err = format!("{:#}", PoseParams::load_checkpoint(dir.path(), true).expect_err(file));
        assert!(err.contains(expect), "{file}: expected `{expect}` in: {err}");
        assert!(!names_file || err.contains(file), "{file}: the error does not name the file: {err}");
    }
    // The from-scratch initialisation reads the PPCA files the same way.
    let dir = copy_params(&tome);
    let mu = dir.path().join("model_parameters__mu_3.npy");
    let bytes = std::fs::read(&mu).unwrap();
    std::fs::write(&mu, &bytes[..bytes.len() / 2]).unwrap();
    let err = format!("{:#}", PoseParams::from_scratch(dir.path()).unwrap_err());
    assert!(err.contains("model_parameters__mu_3.npy") && err.contains("truncated"), "{err}");
}
