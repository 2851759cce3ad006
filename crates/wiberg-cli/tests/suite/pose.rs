//! `wiberg pose generate`: the data set it writes (npy files, cameras, `index.json`) is
//! deterministic and well formed. (The pose model's and parameters' tests are in
//! `wiberg-models`; the evaluation's are the crate's own, `src/pose/tests/`.)

use wiberg_models::pose::data;

use crate::common::{generate_pose, tome_dir};

#[test]
fn generator_is_deterministic_and_well_formed() {
    let Some(dir) = tome_dir() else { return };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    generate_pose(&dir, a.path(), 7, 11);
    generate_pose(&dir, b.path(), 7, 11);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.path().join("index.json")).unwrap()).unwrap();
    let f = "testing/Greeting_1__joint_2d.npy";
    assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
    assert_eq!(index["testing"]["subjects"], serde_json::json!(["S9", "S11"]));
    assert_eq!(index["training"]["files"]["Walking"]["frames"], 7);
    let train = data::load_dir(&a.path().join("training")).unwrap();
    assert_eq!(train.len(), 30);
    let cam: ndarray::ArrayD<f64> = ndarray_npy::read_npy(a.path().join("training/Walking__camera.npy")).unwrap();
    assert_eq!(cam.shape(), &[7, 4, 3, 3]);
    for s in &train {
        for fr in &s.joint_2d {
            for view in fr {
                assert_eq!(view[9], [0.0, 0.0]);
                // Everything else lands in (or near) the 1000 x 1000 image.
                for (j, p) in view.iter().enumerate() {
                    if j != 9 {
                        assert!(p[0] > -200.0 && p[0] < 1200.0 && p[1] > -200.0 && p[1] < 1200.0, "{p:?}");
                    }
                }
            }
        }
        for pose in &s.joint_3d {
            assert!(pose[3][2].min(pose[6][2]).abs() < 1e-9, "feet at z = 0");
            // The PPCA mean pose is about 1.3 m tall (feet -785 mm, head +531 mm).
            assert!(pose[10][2] > 500.0, "head above 0.5 m: {}", pose[10][2]);
        }
    }
}
