//! Gradient check of the pose model's training loss: the analytic gradient of the metric-2 loss
//! of one frame against central finite differences of the forward pass, for a sample of
//! parameters of every group.

use std::path::Path;
use wiberg::Damping;
use wiberg_models::pose::data;
use wiberg_models::pose::grad;
use wiberg_models::pose::model::{normalise, PoseModel, Variant, Workspace};
use wiberg_models::pose::params::{group_at, offset, ParamSource, PoseParams, G, GROUPS};

use crate::common;
use common::{generate_pose, tome_dir};

/// Indices to check: per group the largest |gradient| plus two spread entries.
fn sample(grad: &[f64]) -> Vec<usize> {
    let mut out = Vec::new();
    for g in (0..GROUPS.len()).map(group_at) {
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

/// One generated frame and its ground truth.
fn one_frame(dir: &Path) -> (data::Frame2d, data::Pose3d) {
    let out = tempfile::tempdir().unwrap();
    generate_pose(dir, out.path(), 1, 7);
    let seqs = data::load_dir(&out.path().join("testing")).unwrap();
    (seqs[0].joint_2d[0], seqs[0].joint_3d[0])
}

/// The checkpoint with softened soft-mins, so that every model and many rotations contribute
/// (with the trained values one model and one rotation take nearly all the weight).
fn softened(params: &PoseParams) -> PoseParams {
    let mut p = params.clone();
    p.group_mut(G::ExpWeights).copy_from_slice(&[2e-3, -3e-3, 4e-3]);
    p.group_mut(G::ExpWeightsModel).copy_from_slice(&[1e-3, 2e-3, 1.5e-3]);
    p.group_mut(G::ExpAdditiveModel).copy_from_slice(&[0.3, -0.6, 0.9]);
    p
}

/// Central differences of `f` at the sampled indices against `g`. Each entry must agree to a
/// relative 1e-4 plus the rounding noise of the difference quotient (`1e3 eps |f| / h`).
/// Returns the number of failures and of entries with a non-negligible gradient.
fn compare(params: &PoseParams, g: &[f64], mut f: impl FnMut(&PoseParams) -> f64) -> (usize, usize) {
    let base = f(params).abs();
    let mut failures = 0;
    let mut nonzero = 0;
    for i in sample(g) {
        let h = 1e-6 * params.values[i].abs().max(1e-2);
        let mut p = params.clone();
        p.values[i] += h;
        let up = f(&p);
        p.values[i] -= 2.0 * h;
        let down = f(&p);
        let fd = (up - down) / (2.0 * h);
        let tol = 1e-4 * fd.abs().max(g[i].abs()) + 1e3 * f64::EPSILON * base / h;
        let ok = (fd - g[i]).abs() <= tol;
        eprintln!(
            "{:32} analytic {:+.6e} fd {:+.6e} tol {:.1e} {}",
            PoseParams::name_of(i).unwrap(),
            g[i],
            fd,
            tol,
            if ok { "ok" } else { "FAIL" }
        );
        failures += usize::from(!ok);
        if g[i].abs() > 1e-10 {
            nonzero += 1;
        }
    }
    (failures, nonzero)
}

/// L2 variant (one undamped solve per rotation), implicit derivative: exact against the forward.
fn check_l2(params: &PoseParams, frame: &data::Frame2d, gt: &data::Pose3d) -> usize {
    let mut ws = Workspace::default();
    let model = PoseModel::new(params, Variant::L2).unwrap();
    let (loss, g) = grad::frame_loss_and_grad(&model, params, frame, gt, Damping::Implicit, &mut ws).unwrap();
    let rec = model.reconstruct(frame, &mut ws).unwrap();
    assert!((loss - grad::frame_loss(&rec.pose, gt)).abs() < 1e-9 * loss.max(1.0), "loss {loss}");
    let (failures, nonzero) = compare(params, &g, |p| {
        let m = PoseModel::new(p, Variant::L2).unwrap();
        grad::frame_loss(&m.reconstruct(frame, &mut ws).unwrap().pose, gt)
    });
    assert_eq!(failures, 0, "sampled entries disagree with central differences");
    nonzero
}

#[test]
fn l2_gradient_matches_central_differences() {
    let Some(dir) = tome_dir() else { return };
    let params = PoseParams::load(&ParamSource::Checkpoint(dir.clone()), true).unwrap();
    let (frame, gt) = one_frame(&dir);
    check_l2(&params, &frame, &gt);
    // Softened soft-mins: the gradient reaches every model; all groups but hl/ir (unused by L2)
    // and the never-read entries must be non-zero somewhere in the sample.
    let nonzero = check_l2(&softened(&params), &frame, &gt);
    assert!(nonzero >= 25, "only {nonzero} sampled entries have a gradient");
}

/// Huber variant: the gradient with the trust-region lambda equal to the solves' damping is the
/// exact derivative of the forward pass with the final IRLS weights frozen.
#[test]
fn huber_gradient_matches_frozen_weight_differences() {
    let Some(dir) = tome_dir() else { return };
    let params = softened(&PoseParams::load(&ParamSource::Checkpoint(dir.clone()), true).unwrap());
    let (frame, gt) = one_frame(&dir);
    let nf = normalise(&frame).unwrap();
    let mut ws = Workspace::default();
    let model = PoseModel::new(&params, Variant::Huber).unwrap();
    let frozen = grad::final_weights(&model, &nf, &mut ws).unwrap();
    let damping = Damping::TrustRegion { lambda: model.damping };
    let (loss, g) = grad::normalised_loss_and_grad(&model, &params, &nf, &gt, damping, &mut ws).unwrap();
    let frozen_loss = grad::frozen_weights_loss(&model, &nf, &gt, &frozen, &mut ws).unwrap();
    assert!((loss - frozen_loss).abs() < 1e-9 * loss.max(1.0), "loss {loss} vs frozen {frozen_loss}");
    let (failures, nonzero) = compare(&params, &g, |p| {
        let m = PoseModel::new(p, Variant::Huber).unwrap();
        grad::frozen_weights_loss(&m, &nf, &gt, &frozen, &mut ws).unwrap()
    });
    assert_eq!(failures, 0, "sampled entries disagree with central differences");
    assert!(nonzero >= 28, "only {nonzero} sampled entries have a gradient");
    // The implicit derivative (lambda 0) differs from the damped one, but only slightly.
    let (_, g0) = grad::normalised_loss_and_grad(&model, &params, &nf, &gt, Damping::Implicit, &mut ws).unwrap();
    let diff: f64 = g.iter().zip(&g0).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
    let norm: f64 = g.iter().map(|a| a * a).sum::<f64>().sqrt();
    assert!(diff > 0.0 && diff < 0.5 * norm, "implicit vs trust-region gradient: |diff| {diff} |g| {norm}");
    // Guarded damping: every final IRLS Hessian of the Huber energy is positive definite, so
    // its guarded shift is lambda and the gradient is the trust-region one (checked above
    // against the frozen-weight differences), bit for bit.
    let guarded = Damping::Guarded { lambda: model.damping };
    let (loss_g, gg) = grad::normalised_loss_and_grad(&model, &params, &nf, &gt, guarded, &mut ws).unwrap();
    assert_eq!(loss_g.to_bits(), loss.to_bits());
    assert!(g.iter().zip(&gg).all(|(a, b)| a.to_bits() == b.to_bits()), "guarded gradient differs");
    // With a guarded lambda of its own it is the trust-region gradient of that lambda.
    let lambda = 3.0 * model.damping;
    let (_, g_tr) =
        grad::normalised_loss_and_grad(&model, &params, &nf, &gt, Damping::TrustRegion { lambda }, &mut ws).unwrap();
    let (_, g_gu) =
        grad::normalised_loss_and_grad(&model, &params, &nf, &gt, Damping::Guarded { lambda }, &mut ws).unwrap();
    assert!(g_tr.iter().zip(&g_gu).all(|(a, b)| a.to_bits() == b.to_bits()), "guarded gradient differs");
    assert!(g_tr != g, "another lambda must give another gradient");
}
