//! Pose parameters (npy, HDF5, init, save), data reading, the block-arrow solve on real
//! systems, the damped derivative and reconstructions. The data sets are sampled as
//! `wiberg pose generate --joints h36m` samples them (`common::generate_pose`).

use std::path::Path;
use wiberg::damped::DampedFactor;
use wiberg_models::pose::data::{self, Frame2d};
use wiberg_models::pose::metrics::Metric;
use wiberg_models::pose::model::{self, PoseModel, Variant, Workspace, NA, NX, N_ROWS};
use wiberg_models::pose::params::{self, ParamSource, PoseParams, G, GROUPS, N_PARAMS};

use crate::common;
use common::{generate_pose, tome_dir};

fn checkpoint(dir: &Path, robust: bool) -> PoseParams {
    PoseParams::load(&ParamSource::Checkpoint(dir.to_path_buf()), robust).unwrap()
}

/// A few generated frames (deterministic).
fn generated_frames(dir: &Path, frames: usize, seed: u64) -> (tempfile::TempDir, Vec<data::Sequence>) {
    let out = tempfile::tempdir().unwrap();
    generate_pose(dir, out.path(), frames, seed);
    let seqs = data::load_dir(&out.path().join("testing")).unwrap();
    (out, seqs)
}

#[test]
fn h5_and_npy_loads_are_identical() {
    let Some(dir) = tome_dir() else { return };
    let h5 = dir.join("h5");
    for robust in [false, true] {
        let a = checkpoint(&dir, robust);
        let b = PoseParams::load(&ParamSource::Checkpoint(h5.clone()), robust).unwrap();
        assert_eq!(a.values, b.values, "checkpoint values differ (robust {robust})");
        assert_eq!(a.avg_cameras, b.avg_cameras);
        assert_eq!(a.epoch, 6);
        assert_eq!(b.epoch, 6);
    }
    let a = PoseParams::load(&ParamSource::Init(dir.clone()), false).unwrap();
    let b = PoseParams::load(&ParamSource::Init(h5.clone()), false).unwrap();
    assert_eq!(a.values, b.values, "init values differ between npy and h5");
    // The authors' repository layout: HumanPose/data/*.h5 and HumanPose/results/trained_model.h5.
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("data")).unwrap();
    std::fs::create_dir_all(repo.path().join("results")).unwrap();
    for (f, sub) in [("model_parameters.h5", "data"), ("avg_cameras.h5", "data"), ("trained_model.h5", "results")] {
        std::fs::copy(h5.join(f), repo.path().join(sub).join(f)).unwrap();
    }
    let c = PoseParams::load(&ParamSource::Checkpoint(repo.path().to_path_buf()), true).unwrap();
    assert_eq!(c.values, checkpoint(&dir, true).values);
    let d = PoseParams::load(&ParamSource::Init(repo.path().to_path_buf()), false).unwrap();
    assert_eq!(d.values, a.values);
}

#[test]
fn checkpoint_has_the_documented_values_and_quirks() {
    let Some(dir) = tome_dir() else { return };
    let plain = checkpoint(&dir, false);
    assert_eq!(plain.values.len(), N_PARAMS);
    // Released behaviour: robust parameters start at 1 even with a checkpoint.
    assert_eq!(plain.group(G::HlParams), &[1.0, 1.0, 1.0]);
    assert_eq!(plain.group(G::IrReg), &[1.0, 1.0, 1.0]);
    let robust = checkpoint(&dir, true);
    assert!((robust.group(G::HlParams)[0] - 4.66).abs() < 0.01, "{:?}", robust.group(G::HlParams));
    assert!((robust.group(G::IrReg)[2] - 3.60).abs() < 0.01, "{:?}", robust.group(G::IrReg));
    assert!((plain.group(G::ScalingCoefficient)[0] - 0.9895).abs() < 1e-3);
    assert!((plain.group(G::Lambda0)[0] - 35.0).abs() < 0.1);
    // From scratch: lambda_0 = 1 and lambda_scale = 10 (the swapped initialiser).
    let init = PoseParams::load(&ParamSource::Init(dir.clone()), false).unwrap();
    assert_eq!(init.group(G::Lambda0), &[1.0, 1.0, 1.0]);
    assert_eq!(init.group(G::LambdaScale), &[10.0, 10.0, 10.0]);
    assert_eq!(init.group(G::ScalingCoefficient), &[0.97]);
    // The non-trainable *_rec datasets hold exactly the init values of mean_pose / base_vectors.
    let rec: ndarray::ArrayD<f64> = ndarray_npy::read_npy(dir.join("trained_model__mean_pose_rec.npy")).unwrap();
    let rec: Vec<f64> = rec.iter().copied().collect();
    for (a, b) in rec.iter().zip(init.group(G::MeanPose)) {
        assert!((a - b).abs() <= 1e-15 * a.abs().max(1.0), "{a} vs {b}");
    }
    // Diagonal init of sigma_variance, row 0 zero.
    let s = init.group(G::SigmaVariance);
    assert_eq!(s[0], 0.0);
    assert!(s[1] == 0.0 && s[29 + 1] > 0.0);
}

#[test]
fn fixed_constants_match_the_ppca_file() {
    let Some(dir) = tome_dir() else { return };
    let sigma: ndarray::ArrayD<f64> = ndarray_npy::read_npy(dir.join("model_parameters__sigma_3.npy")).unwrap();
    for m in 0..3 {
        assert_eq!(model::SIGMA_2D[m], sigma[[m, 25]]);
    }
    // from_scratch itself refuses files whose means differ from MU_SCALE, E_SCALE, SIGMA_SCALE.
    assert!(PoseParams::from_scratch(&dir).is_ok());
}

#[test]
fn save_then_load_round_trips() {
    let Some(dir) = tome_dir() else { return };
    let p = checkpoint(&dir, true);
    let out = tempfile::tempdir().unwrap();
    p.save_with(out.path(), common::write_file).unwrap();
    let q = checkpoint(out.path(), true);
    assert_eq!(p.values, q.values);
    assert_eq!(p.avg_cameras, q.avg_cameras);
    assert_eq!(p.epoch, q.epoch);
    for g in GROUPS.iter() {
        assert!(out.path().join(format!("trained_model__{}.npy", g.name)).exists());
    }
}

#[test]
fn bad_parameter_directories_are_clear_errors() {
    let empty = tempfile::tempdir().unwrap();
    let err = PoseParams::load(&ParamSource::Checkpoint(empty.path().to_path_buf()), false).unwrap_err();
    assert!(format!("{err:#}").contains("no parameters found"), "{err:#}");
    let Some(dir) = tome_dir() else { return };
    // A checkpoint with a NaN is refused, naming the parameter.
    let mut p = checkpoint(&dir, true);
    p.group_mut(G::JointWeights)[5] = f64::NAN;
    let out = tempfile::tempdir().unwrap();
    p.save_with(out.path(), common::write_file).unwrap();
    let err = PoseParams::load(&ParamSource::Checkpoint(out.path().to_path_buf()), true).unwrap_err();
    assert!(format!("{err:#}").contains("joint_weights[0,5]"), "{err:#}");
}

fn write_npy(path: &Path, shape: &[usize], v: Vec<f64>) {
    let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v).unwrap();
    ndarray_npy::write_npy(path, &a).unwrap();
}

#[test]
fn npy_reader_shapes_and_error_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Empty directory.
    assert!(format!("{:#}", data::load_dir(d).unwrap_err()).contains("no `<name>__joint_2d.npy`"));
    // A good pair.
    let n = 3;
    write_npy(&d.join("Walking_1__joint_2d.npy"), &[n, 4, 17, 2], (0..n * 136).map(|i| i as f64).collect());
    write_npy(&d.join("Walking_1__joint_3d.npy"), &[n, 17, 3], (0..n * 51).map(|i| -(i as f64)).collect());
    let seqs = data::load_dir(d).unwrap();
    assert_eq!(seqs.len(), 1);
    assert_eq!(seqs[0].action, "Walking");
    assert_eq!(seqs[0].joint_2d.len(), 3);
    // Row-major layout: frame 1, camera 2, joint 5, y.
    assert_eq!(seqs[0].joint_2d[1][2][5][1], (136 + 2 * 34 + 5 * 2 + 1) as f64);
    assert_eq!(seqs[0].joint_3d[2][16][2], -((2 * 51 + 16 * 3 + 2) as f64));
    // Missing partner.
    write_npy(&d.join("Eating__joint_2d.npy"), &[n, 4, 17, 2], vec![0.0; n * 136]);
    let err = format!("{:#}", data::load_dir(d).unwrap_err());
    assert!(err.contains("missing file") && err.contains("Eating__joint_3d.npy"), "{err}");
    // Wrong shape.
    write_npy(&d.join("Eating__joint_3d.npy"), &[n, 16, 3], vec![0.0; n * 48]);
    let err = format!("{:#}", data::load_dir(d).unwrap_err());
    assert!(err.contains("shape") && err.contains("Eating__joint_3d.npy"), "{err}");
    // Frame-count mismatch.
    write_npy(&d.join("Eating__joint_3d.npy"), &[n + 1, 17, 3], vec![0.0; (n + 1) * 51]);
    assert!(format!("{:#}", data::load_dir(d).unwrap_err()).contains("frames"));
    // NaN, with its index.
    let mut v = vec![0.0; n * 51];
    v[51 + 4] = f64::NAN;
    write_npy(&d.join("Eating__joint_3d.npy"), &[n, 17, 3], v);
    let err = format!("{:#}", data::load_dir(d).unwrap_err());
    assert!(err.contains("non-finite") && err.contains("[1, 1, 1]"), "{err}");
    // Wrong dtype (int64) is an error too.
    let ints = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[n, 17, 3]), vec![0i64; n * 51]).unwrap();
    ndarray_npy::write_npy(d.join("Eating__joint_3d.npy"), &ints).unwrap();
    assert!(data::load_dir(d).is_err());
}

fn first_frame(seqs: &[data::Sequence]) -> Frame2d {
    seqs[0].joint_2d[0]
}

#[test]
fn block_arrow_solve_equals_dense_solve_on_real_systems() {
    let Some(dir) = tome_dir() else { return };
    let (_tmp, seqs) = generated_frames(&dir, 2, 3);
    let nf = model::normalise(&first_frame(&seqs)).unwrap();
    for (p, variant) in
        [(checkpoint(&dir, false), Variant::Huber), (PoseParams::from_scratch(&dir).unwrap(), Variant::L2)]
    {
        let model = PoseModel::new(&p, variant).unwrap();
        let mut ws = Workspace::default();
        for (m, ti) in [(0, 0), (1, 37), (2, 99)] {
            let sol = model.solve_rotation(m, ti, &nf, &mut ws).unwrap();
            // Same equations (stored with the damping on the diagonal), dense Cholesky on 80 x 80.
            let rhs = nalgebra::DVector::from_column_slice(ws.rhs());
            let dense = ws.normal().to_dense().cholesky().unwrap().solve(&rhs);
            // And from scratch: (A^T W A + lambda I) x = A^T W b with the dense A.
            let (a, b) = model.dense_system(m, ti, &nf);
            let w = model.row_weights(&ws);
            let mut n = nalgebra::DMatrix::<f64>::zeros(NX, NX);
            let mut rhs = nalgebra::DVector::<f64>::zeros(NX);
            for r in 0..N_ROWS {
                for i in 0..NX {
                    rhs[i] += a[r * NX + i] * w[r] * b[r];
                    for k in 0..NX {
                        n[(i, k)] += a[r * NX + i] * w[r] * a[r * NX + k];
                    }
                }
            }
            for i in 0..NX {
                n[(i, i)] += model.damping;
            }
            let x_ref = n.cholesky().unwrap().solve(&rhs);
            let scale = x_ref.iter().fold(0.0f64, |s, v| s.max(v.abs()));
            for i in 0..NX {
                assert!(
                    (sol.x[i] - dense[i]).abs() <= 1e-9 * scale,
                    "{variant:?} m{m} t{ti} x[{i}]: {} vs {}",
                    sol.x[i],
                    dense[i]
                );
                assert!(
                    (sol.x[i] - x_ref[i]).abs() <= 1e-7 * scale,
                    "{variant:?} m{m} t{ti} x[{i}]: {} vs {}",
                    sol.x[i],
                    x_ref[i]
                );
            }
            assert!(sol.score.is_finite());
        }
    }
}

/// Solves the final IRLS system of (m, ti) again with the row weights held fixed, for
/// parameters `p`.
fn fixed_weight_solve(p: &PoseParams, m: usize, ti: usize, nf: &model::NormFrame, ws0: &Workspace) -> [f64; NX] {
    let model = PoseModel::new(p, Variant::Huber).unwrap();
    let mut ws = ws0.clone();
    model.solve_weighted(m, ti, nf, &mut ws).unwrap()
}

#[test]
fn damped_solve_derivative_matches_finite_differences() {
    let Some(dir) = tome_dir() else { return };
    let (_tmp, seqs) = generated_frames(&dir, 2, 5);
    let nf = model::normalise(&first_frame(&seqs)).unwrap();
    let p = checkpoint(&dir, true);
    let model = PoseModel::new(&p, Variant::Huber).unwrap();
    let (m, ti) = (1, 23);
    let mut ws = Workspace::default();
    let sol = model.solve_rotation(m, ti, &nf, &mut ws).unwrap();
    let x = sol.x;
    let w = model.row_weights(&ws);
    let (a, b) = model.dense_system(m, ti, &nf);
    // Parameters from several groups (each enters A or b of model m).
    let probes = [
        (G::JointWeights, 34 + 2 * 3),
        (G::LambdaScale, 1),
        (G::Lambda0, 1),
        (G::SigmaVariance, 841 + 29 * 6 + 6),
        (G::SigmaVariance, 841 + 29 * 5 + 7),
        (G::Cameras, 9 + 3 + 1),
        (G::MeanPose, 51 + 17 + 4),
        (G::BaseVectors, 25 * 51 + 3 * 51 + 20),
        (G::ScaleRegularizer, 0),
    ];
    for (g, i) in probes {
        let idx = params::offset(g) + i;
        let h = 1e-3 * p.values[idx].abs().max(1.0);
        let perturbed = |s: f64| {
            let mut q = p.clone();
            q.values[idx] += s * h;
            q
        };
        // dA/dp, db/dp by central differences of the assembly (A and b are linear or smooth in p).
        let (ap, bp) = PoseModel::new(&perturbed(1.0), Variant::Huber).unwrap().dense_system(m, ti, &nf);
        let (am, bm) = PoseModel::new(&perturbed(-1.0), Variant::Huber).unwrap().dense_system(m, ti, &nf);
        // d(grad)/dp at fixed x and W: dA^T W (A x - b) + A^T W (dA x - db).
        let mut dgrad = [0.0; NX];
        for r in 0..N_ROWS {
            let row = &a[r * NX..(r + 1) * NX];
            let res: f64 = row.iter().zip(&x).map(|(u, v)| u * v).sum::<f64>() - b[r];
            let da: Vec<f64> = (0..NX).map(|k| (ap[r * NX + k] - am[r * NX + k]) / (2.0 * h)).collect();
            let db = (bp[r] - bm[r]) / (2.0 * h);
            let dres: f64 = da.iter().zip(&x).map(|(u, v)| u * v).sum::<f64>() - db;
            for k in 0..NX {
                dgrad[k] += w[r] * (da[k] * res + row[k] * dres);
            }
        }
        // The trust-region derivative with the forward pass's own factorisation.
        let mut dx = dgrad;
        ws.factor().solve_in_place(&mut dx).unwrap();
        for v in dx.iter_mut() {
            *v = -*v;
        }
        // Finite differences of the whole fixed-weight damped solve.
        let xp = fixed_weight_solve(&perturbed(1.0), m, ti, &nf, &ws);
        let xm = fixed_weight_solve(&perturbed(-1.0), m, ti, &nf, &ws);
        let scale = dx.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        assert!(scale > 0.0, "{:?}: zero derivative", g);
        // Rounding floor of the central difference: about eps |x| / h.
        let x_scale = x.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        let floor = 1e-13 * x_scale / h;
        assert!(floor < 1e-2 * scale, "{g:?}: finite differences too noisy for this probe");
        for k in 0..NX {
            let fd = (xp[k] - xm[k]) / (2.0 * h);
            assert!(
                (fd - dx[k]).abs() <= 1e-4 * scale + floor,
                "{:?}[{i}] x[{k}]: fd {fd} vs analytic {} (scale {scale}, floor {floor})",
                g,
                dx[k]
            );
        }
    }
    // Joint 9's weights never enter the system: zero derivative.
    let idx = params::offset(G::JointWeights) + 34 + 18;
    let mut q = p.clone();
    q.values[idx] += 0.5;
    assert_eq!(fixed_weight_solve(&q, m, ti, &nf, &ws), fixed_weight_solve(&p, m, ti, &nf, &ws));
    let _ = NA;
}

#[test]
fn checkpoint_and_init_reconstruct_finite_poses() {
    let Some(dir) = tome_dir() else { return };
    let (_tmp, seqs) = generated_frames(&dir, 2, 7);
    let frame = first_frame(&seqs);
    for source in [ParamSource::Checkpoint(dir.clone()), ParamSource::Init(dir.clone())] {
        let p = PoseParams::load(&source, false).unwrap();
        for variant in [Variant::Huber, Variant::L2] {
            let model = PoseModel::new(&p, variant).unwrap();
            let rec = model.reconstruct(&frame, &mut Workspace::default()).unwrap();
            assert!(rec.pose.iter().flatten().all(|v| v.is_finite()));
            assert!(rec.model_scores.iter().all(|v| v.is_finite()));
            // Output scale: l(P) = magic.
            let l = model::limb_scale(&rec.pose);
            assert!((l - model.magic).abs() < 1e-9, "{l} vs {}", model.magic);
            let err = wiberg_models::pose::metrics::frame_error(Metric::Mpjpe, &rec.pose, &seqs[0].joint_3d[0]);
            assert!(err.is_finite() && err < 400.0, "{source:?} {variant:?}: {err} mm");
        }
    }
}
