//! Gradient check of `wiberg pose` training: the analytic gradient of the metric-2 loss of one
//! frame against central finite differences of the forward pass, for a sample of parameters of
//! every group.

use std::path::{Path, PathBuf};
use wiberg_cli::pose::data;
use wiberg_cli::pose::generate::{self, Generator};
use wiberg_cli::pose::grad::{self, Damping};
use wiberg_cli::pose::model::{PoseModel, Variant, Workspace};
use wiberg_cli::pose::params::{offset, ParamSource, PoseParams, G, GROUPS};

/// The Tome et al. parameter directory, or `None` (with a note) when absent outside CI.
fn tome_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WIBERG_TOME2018_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tome2018"));
    if dir.join("avg_cameras__cams.npy").exists() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the Tome et al. 2018 parameters are not at {}", dir.display());
    }
    eprintln!("note: {} not found; set WIBERG_TOME2018_DIR to run this test", dir.display());
    None
}

const ALL_GROUPS: [G; 14] = [
    G::MeanPose,
    G::BaseVectors,
    G::SigmaVariance,
    G::JointWeights,
    G::Cameras,
    G::ScalingCoefficient,
    G::ScaleRegularizer,
    G::Lambda0,
    G::LambdaScale,
    G::ExpWeights,
    G::ExpWeightsModel,
    G::ExpAdditiveModel,
    G::HlParams,
    G::IrReg,
];

/// Indices to check: per group the largest |gradient| plus two spread entries.
fn sample(grad: &[f64]) -> Vec<usize> {
    let mut out = Vec::new();
    for g in ALL_GROUPS {
        let o = offset(g);
        let n = GROUPS[g as usize].len();
        let best = (o..o + n).max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs())).unwrap();
        for i in [best, o + n / 3, o + n - 1] {
            if !out.contains(&i) {
                out.push(i);
            }
        }
    }
    out
}

#[test]
fn l2_gradient_matches_central_differences() {
    let Some(dir) = tome_dir() else { return };
    let params = PoseParams::load(&ParamSource::Checkpoint(dir.clone()), true).unwrap();
    let gen = Generator::load(&dir).unwrap();
    let out = tempfile::tempdir().unwrap();
    generate::generate(&gen, out.path(), 1, 7, 1.0, false).unwrap();
    let seqs = data::load_dir(&out.path().join("testing")).unwrap();
    let (frame, gt) = (seqs[0].joint_2d[0], seqs[0].joint_3d[0]);
    let mut ws = Workspace::default();
    let model = PoseModel::new(&params, Variant::L2).unwrap();
    let lambda = grad::backward_lambda(Damping::Implicit, 0.0);
    let (loss, g) = grad::frame_loss_and_grad(&model, &params, &frame, &gt, lambda, &mut ws).unwrap();
    let rec = model.reconstruct(&frame, &mut ws).unwrap();
    assert!((loss - grad::frame_loss(&rec.pose, &gt)).abs() < 1e-9 * loss.max(1.0), "loss {loss}");
    let f = |p: &PoseParams, ws: &mut Workspace| {
        let m = PoseModel::new(p, Variant::L2).unwrap();
        grad::frame_loss(&m.reconstruct(&frame, ws).unwrap().pose, &gt)
    };
    let mut worst = 0.0f64;
    for i in sample(&g) {
        let h = 1e-6 * params.values[i].abs().max(1e-2);
        let mut p = params.clone();
        p.values[i] += h;
        let up = f(&p, &mut ws);
        p.values[i] -= 2.0 * h;
        let down = f(&p, &mut ws);
        let fd = (up - down) / (2.0 * h);
        let err = (fd - g[i]).abs() / (fd.abs().max(g[i].abs()) + 1e-3);
        eprintln!("{:32} analytic {:+.6e} fd {:+.6e} rel {:.2e}", PoseParams::name_of(i).unwrap(), g[i], fd, err);
        worst = worst.max(err);
    }
    assert!(worst < 1e-4, "worst relative error {worst:.3e}");
}
