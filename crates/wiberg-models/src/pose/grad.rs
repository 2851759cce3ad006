//! The analytic gradient of the training loss of one frame (metric 2: MPJPE after the oracle scale
//! `l(GT)`) with respect to all 6,662 parameters, through the per-(model, rotation) minimisers
//! (trust-region derivative of the final solve with its IRLS weights held fixed, spec §1.7), the
//! scores, the two soft-mins and the output normalisation.
//!
//! Every (model, rotation) system is `A x = b` row by row with weights `W_r`. With `v = dL/dx`
//! and `u = -(A^T W A + lambda I)^-1 v`, the solve contributes `u . d_p (A^T W (A x - b))`, i.e.
//! per row the adjoints `a_r: W_r [(a_r . u) x + e_r u]`, `b_r: -W_r (a_r . u)`,
//! `W_r: e_r (a_r . u)` (`e_r = a_r . x - b_r`); the score adds `dS/de_r` times `(x, -1)`.
//! The robust 2-D rows get these from the library's `RobustRows::row_gradient` (the score's
//! `dS/de_r` passed as the direct residual term); the rows of the fixed part (3-D and
//! regulariser) are chained here. The row adjoints are then mapped onto the parameters the
//! rows are built from.

// Index loops over cameras, joints and axes mirror the maths of the spec; iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

use super::data::{Frame2d, Pose3d};
use super::metrics::centre;
use super::model::{
    limb_scale, normalise, NormFrame, PoseModel, RotationSolve, Variant, Workspace, NA, NQ, NX, N_ROT, SCALE_TREE,
    SIGMA_2D,
};
use super::params::{
    offset, PoseParams, E_SCALE, G, MU_SCALE, N_BASIS, N_CAMERAS, N_JOINTS, N_MODELS, N_PARAMS, N_PCA, SIGMA_SCALE,
};
use std::cell::Cell;
use wiberg::damped::BlockArrowFactor;
use wiberg::{Damping, WibergError};

thread_local! {
    /// The factors of the forward pass's final solves (index `m * N_ROT + ti`), kept for the
    /// backward solves: per thread, so that they are allocated once and not per frame
    /// (callers may build a workspace per frame).
    static KEPT_FACTORS: Cell<Vec<BlockArrowFactor<3>>> = const { Cell::new(Vec::new()) };
}

/// `model` with every solve damped by `lambda` instead (same parameters).
///
/// Errors: `lambda` not finite.
pub fn with_damping(model: &PoseModel, lambda: f64) -> wiberg::Result<PoseModel> {
    let mut out = model.clone();
    let shift = lambda - model.damping;
    for mc in out.models.iter_mut() {
        for r in 0..NA {
            mc.naa_plain[r][r] += shift;
            mc.naa_irls[r][r] += shift;
        }
        mc.set_fixed_parts(lambda)?;
    }
    out.damping = lambda;
    Ok(out)
}

/// The training loss of one frame: metric 2 (mm) of the model output `rec` against `gt`.
pub fn frame_loss(rec: &Pose3d, gt: &Pose3d) -> f64 {
    super::metrics::frame_error(super::metrics::Metric::Mpjpe, rec, gt)
}

/// `grad l(P)` for the limb scale of `p` (`l` given).
fn limb_scale_grad(p: &Pose3d, l: f64) -> Pose3d {
    let mut g = [[0.0; 3]; N_JOINTS];
    for &(a, b) in SCALE_TREE.iter() {
        for d in 0..3 {
            let v = (p[a][d] - p[b][d]) / l;
            g[a][d] += v;
            g[b][d] -= v;
        }
    }
    g
}

/// VJP of `y = p / l(p)`: returns `dL/dp` given `dL/dy`.
fn normalise_vjp(p: &Pose3d, l: f64, gy: &Pose3d) -> Pose3d {
    let gl = limb_scale_grad(p, l);
    let dot: f64 = (0..N_JOINTS).map(|j| (0..3).map(|d| gy[j][d] * p[j][d]).sum::<f64>()).sum();
    let mut out = [[0.0; 3]; N_JOINTS];
    for j in 0..N_JOINTS {
        for d in 0..3 {
            out[j][d] = gy[j][d] / l - gl[j][d] * dot / (l * l);
        }
    }
    out
}

/// `|v| + 1e-7` squared (the Huber score's square) and its derivative (TF's `sign(0) = 0`).
fn sq_and_grad(v: f64) -> (f64, f64) {
    let s = if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    };
    let a = v.abs() + 1e-7;
    (a * a, 2.0 * a * s)
}

/// The forward state of one (model, rotation) kept for the backward pass.
struct Solved {
    x: [f64; NX],
    score: f64,
    weights: [[f64; N_JOINTS]; N_CAMERAS],
    reg_weight: f64,
    /// Unnormalised `-R Q` and its limb scale.
    y: Pose3d,
    l: f64,
}

/// The loss of one frame and its gradient with respect to all parameters (`N_PARAMS`, in the
/// flat order of [`PoseParams::values`]). `model` must be built from `params`; `damping` is
/// that of the backward solves.
pub fn frame_loss_and_grad(
    model: &PoseModel,
    params: &PoseParams,
    frame: &Frame2d,
    gt: &Pose3d,
    damping: Damping,
    ws: &mut Workspace,
) -> crate::Result<(f64, Vec<f64>)> {
    let nf = normalise(frame)?;
    Ok(normalised_loss_and_grad(model, params, &nf, gt, damping, ws)?)
}

/// [`frame_loss_and_grad`] on a normalised frame.
pub fn normalised_loss_and_grad(
    model: &PoseModel,
    params: &PoseParams,
    nf: &NormFrame,
    gt: &Pose3d,
    damping: Damping,
    ws: &mut Workspace,
) -> wiberg::Result<(f64, Vec<f64>)> {
    // Taken out of the thread's storage for the call (a call that fails just drops them).
    let mut kept = KEPT_FACTORS.take();
    let (loss, grad) = loss_impl(model, params, nf, gt, damping, ws, None, Some(&mut kept))?;
    KEPT_FACTORS.set(kept);
    Ok((loss, grad.unwrap_or_default()))
}

/// IRLS weights of one (model, rotation) solve, per camera and joint.
pub type PairWeights = [[f64; N_JOINTS]; N_CAMERAS];

/// The final IRLS weights of every (model, rotation) solve of a frame (index `m * N_ROT + ti`).
pub fn final_weights(model: &PoseModel, nf: &NormFrame, ws: &mut Workspace) -> wiberg::Result<Vec<PairWeights>> {
    let mut out = Vec::with_capacity(N_MODELS * N_ROT);
    for m in 0..N_MODELS {
        for ti in 0..N_ROT {
            model.solve_rotation(m, ti, nf, ws)?;
            out.push(ws.weights);
        }
    }
    Ok(out)
}

/// The loss of the forward pass in which every (model, rotation) minimiser is the single solve
/// with the given IRLS weights `frozen` (from [`final_weights`]) and the model's regulariser
/// weight. Its exact derivative is the gradient with the model's own (forward) damping.
pub fn frozen_weights_loss(
    model: &PoseModel,
    nf: &NormFrame,
    gt: &Pose3d,
    frozen: &[PairWeights],
    ws: &mut Workspace,
) -> wiberg::Result<f64> {
    if frozen.len() != N_MODELS * N_ROT {
        return Err(WibergError::DimensionMismatch {
            what: "frozen IRLS weight sets (models x rotations)".into(),
            expected: N_MODELS * N_ROT,
            got: frozen.len(),
        });
    }
    // The parameters are only read by the backward pass.
    let dummy = PoseParams { values: Vec::new(), avg_cameras: [[[0.0; 3]; 3]; N_CAMERAS], epoch: 0 };
    Ok(loss_impl(model, &dummy, nf, gt, model.forward_damping(), ws, Some(frozen), None)?.0)
}

#[allow(clippy::too_many_arguments)]
fn loss_impl(
    model: &PoseModel,
    params: &PoseParams,
    nf: &NormFrame,
    gt: &Pose3d,
    damping: Damping,
    ws: &mut Workspace,
    frozen: Option<&[PairWeights]>,
    kept: Option<&mut Vec<BlockArrowFactor<3>>>,
) -> wiberg::Result<(f64, Option<Vec<f64>>)> {
    // The gradient is wanted when there is storage for the forward factors. A model's final
    // forward factors are kept (swapped out, not copied) when its backward solves would
    // re-assemble and refactorise exactly those matrices (same damping, same fixed part);
    // the backward then only solves with them.
    let want_grad = kept.is_some();
    let mut no_factors = Vec::new();
    let kept = kept.unwrap_or(&mut no_factors);
    let keep: [bool; N_MODELS] =
        std::array::from_fn(|m| want_grad && frozen.is_none() && model.kept_factor_serves(m, damping));
    if keep.iter().any(|k| *k) && kept.len() < N_MODELS * N_ROT {
        kept.resize_with(N_MODELS * N_ROT, || BlockArrowFactor::new(NA, N_JOINTS));
    }
    // ---------- forward, keeping every solve ----------
    let mut solved: Vec<Solved> = Vec::with_capacity(N_MODELS * N_ROT);
    for m in 0..N_MODELS {
        for ti in 0..N_ROT {
            let sol = match frozen {
                None => {
                    let sol = model.solve_rotation(m, ti, nf, ws)?;
                    if keep[m] {
                        ws.swap_factor(&mut kept[m * N_ROT + ti]);
                    }
                    sol
                }
                Some(fw) => {
                    ws.weights = fw[m * N_ROT + ti];
                    ws.reg_weight = if model.variant == Variant::Huber { model.models[m].kappa } else { 1.0 };
                    let x = model.solve_weighted(m, ti, nf, ws)?;
                    RotationSolve { x, score: model.score(m, ti, nf, &x) }
                }
            };
            let rot = &model.rotations[ti];
            let mut y = [[0.0; 3]; N_JOINTS];
            for j in 0..N_JOINTS {
                for d in 0..3 {
                    y[j][d] = -(0..3).map(|k| rot[d][k] * sol.x[NA + 3 * j + k]).sum::<f64>();
                }
            }
            let l = limb_scale(&y);
            solved.push(Solved { x: sol.x, score: sol.score, weights: ws.weights, reg_weight: ws.reg_weight, y, l });
        }
    }
    let idx = |m: usize, ti: usize| m * N_ROT + ti;
    let mut model_scores = [0.0; N_MODELS];
    let mut model_poses = [[[0.0; 3]; N_JOINTS]; N_MODELS];
    let mut best_rot = [0usize; N_MODELS];
    let mut rot_w = vec![0.0; N_MODELS * N_ROT];
    for m in 0..N_MODELS {
        let (best, min) = argmin((0..N_ROT).map(|ti| solved[idx(m, ti)].score));
        best_rot[m] = best;
        let alpha = model.models[m].alpha.abs();
        let mut den = 0.0;
        for ti in 0..N_ROT {
            let w = (-(solved[idx(m, ti)].score - min) * alpha * 5000.0).exp();
            rot_w[idx(m, ti)] = w;
            den += w;
        }
        for ti in 0..N_ROT {
            let s = &solved[idx(m, ti)];
            rot_w[idx(m, ti)] /= den;
            for j in 0..N_JOINTS {
                for d in 0..3 {
                    model_poses[m][j][d] += rot_w[idx(m, ti)] * s.y[j][d] / s.l;
                }
            }
        }
        model_scores[m] = min / 2.0;
    }
    let (best_model, ms_min) = argmin(model_scores.iter().copied());
    let mut z = [0.0; N_MODELS];
    let mut mw = [0.0; N_MODELS];
    for m in 0..N_MODELS {
        let mc = &model.models[m];
        z[m] = (model_scores[m] - ms_min) * mc.beta * 5000.0 + mc.gamma;
        mw[m] = (-z[m].abs()).exp();
    }
    let den: f64 = mw.iter().sum();
    let mut acc = [[0.0; 3]; N_JOINTS];
    for m in 0..N_MODELS {
        mw[m] /= den;
        for j in 0..N_JOINTS {
            for d in 0..3 {
                acc[j][d] += mw[m] * model_poses[m][j][d];
            }
        }
    }
    let l_acc = limb_scale(&acc);
    let mut out = [[0.0; 3]; N_JOINTS];
    for j in 0..N_JOINTS {
        for d in 0..3 {
            out[j][d] = model.magic * acc[j][d] / l_acc;
        }
    }
    if out.iter().flatten().any(|v| !v.is_finite()) {
        return Err(WibergError::NonFinite { what: format!("pose reconstruction (model scores {model_scores:?})") });
    }
    // ---------- loss ----------
    let truth = centre(gt);
    let s_gt = limb_scale(&truth);
    let mut loss = 0.0;
    let mut g_out = [[0.0; 3]; N_JOINTS];
    for j in 0..N_JOINTS {
        let diff: [f64; 3] = std::array::from_fn(|d| s_gt * out[j][d] - truth[j][d]);
        let n = (diff[0] * diff[0] + diff[1] * diff[1] + diff[2] * diff[2]).sqrt();
        loss += n / N_JOINTS as f64;
        if n > 0.0 {
            for d in 0..3 {
                g_out[j][d] = s_gt * diff[d] / (n * N_JOINTS as f64);
            }
        }
    }
    if !want_grad {
        return Ok((loss, None));
    }
    // ---------- backward: output, model soft-min, rotation soft-min ----------
    let mut grad = vec![0.0; N_PARAMS];
    let o_magic = offset(G::ScalingCoefficient);
    let mut g_unit = [[0.0; 3]; N_JOINTS];
    for j in 0..N_JOINTS {
        for d in 0..3 {
            grad[o_magic] += g_out[j][d] * acc[j][d] / l_acc;
            g_unit[j][d] = g_out[j][d] * model.magic;
        }
    }
    let g_acc = normalise_vjp(&acc, l_acc, &g_unit);
    let mut g_ms = [0.0; N_MODELS];
    let mut g_pm = [[[0.0; 3]; N_JOINTS]; N_MODELS];
    for m in 0..N_MODELS {
        let mc = &model.models[m];
        let mut g_logw = 0.0;
        for j in 0..N_JOINTS {
            for d in 0..3 {
                g_pm[m][j][d] = mw[m] * g_acc[j][d];
                g_logw += mw[m] * g_acc[j][d] * (model_poses[m][j][d] - acc[j][d]);
            }
        }
        let g_z = -sign(z[m]) * g_logw;
        grad[offset(G::ExpAdditiveModel) + m] += g_z;
        grad[offset(G::ExpWeightsModel) + m] += g_z * (model_scores[m] - ms_min) * 5000.0;
        g_ms[m] += g_z * mc.beta * 5000.0;
        g_ms[best_model] -= g_z * mc.beta * 5000.0;
    }
    // Per-solve adjoints: of the score, and of the unit pose's Q.
    let mut g_score = vec![0.0; N_MODELS * N_ROT];
    let mut g_q = vec![[0.0; NQ]; N_MODELS * N_ROT];
    for m in 0..N_MODELS {
        let alpha_raw = model.models[m].alpha;
        let alpha = alpha_raw.abs();
        let min = solved[idx(m, best_rot[m])].score;
        g_score[idx(m, best_rot[m])] += g_ms[m] / 2.0;
        for ti in 0..N_ROT {
            let k = idx(m, ti);
            let s = &solved[k];
            let w = rot_w[k];
            if w == 0.0 {
                continue;
            }
            let mut g_unit = [[0.0; 3]; N_JOINTS];
            let mut g_logw = 0.0;
            for j in 0..N_JOINTS {
                for d in 0..3 {
                    g_unit[j][d] = w * g_pm[m][j][d];
                    g_logw += w * g_pm[m][j][d] * (s.y[j][d] / s.l - model_poses[m][j][d]);
                }
            }
            // log w = -5000 |alpha| (S - min); the min cancels in the normalised average.
            g_score[k] += -5000.0 * alpha * g_logw;
            grad[offset(G::ExpWeights) + m] += -5000.0 * (s.score - min) * sign(alpha_raw) * g_logw;
            let g_y = normalise_vjp(&s.y, s.l, &g_unit);
            let rot = &model.rotations[ti];
            for j in 0..N_JOINTS {
                for kk in 0..3 {
                    g_q[k][3 * j + kk] = -(0..3).map(|d| rot[d][kk] * g_y[j][d]).sum::<f64>();
                }
            }
        }
    }
    // ---------- backward through each solve ----------
    // The backward matrices are stored with the backward damping's lambda on their diagonal
    // (as the forward ones are with the model's): the factorisation then adds nothing unless a
    // guarded shift must exceed it.
    let pre_shift = damping.lambda();
    let back = if pre_shift == model.damping { None } else { Some(with_damping(model, pre_shift)?) };
    let back_model = back.as_ref().unwrap_or(model);
    let mut g_basis = vec![[[0.0; NA]; NQ]; N_MODELS];
    let mut g_d = vec![[[0.0; NA]; NA]; N_MODELS];
    let mut g_t0 = [0.0; N_MODELS];
    let mut g_kappa = [0.0; N_MODELS];
    let mut g_d2 = [0.0; N_MODELS];
    let mut g_omega = [[0.0; 2 * N_JOINTS]; N_MODELS];
    let mut g_rho = [0.0; N_MODELS];
    let mut g_proj = vec![[[[0.0; 3]; 2]; N_CAMERAS]; N_ROT];
    let huber = model.variant == Variant::Huber;
    for m in 0..N_MODELS {
        let mc = &model.models[m];
        let d2 = mc.delta * mc.delta;
        for ti in 0..N_ROT {
            let k = idx(m, ti);
            let s = &solved[k];
            let sbar = g_score[k];
            if sbar == 0.0 && g_q[k].iter().all(|v| *v == 0.0) {
                continue;
            }
            let x = &s.x;
            // Residuals and dS/de per row.
            let mut e3 = [0.0; NQ];
            let mut de3 = [0.0; NQ];
            for q in 0..NQ {
                e3[q] = (0..NA).map(|c| mc.basis[q][c] * x[c]).sum::<f64>() - x[NA + q];
                de3[q] = if huber { sq_and_grad(e3[q]).1 / 2.0 } else { 2.0 * e3[q] };
            }
            let mut er = [0.0; NA];
            let mut der = [0.0; NA];
            for r in 0..NA {
                er[r] = (0..NA).map(|c| mc.d[r][c] * x[c]).sum::<f64>() - if r == 0 { mc.t0 } else { 0.0 };
                if huber {
                    let (sqv, dsq) = sq_and_grad(er[r]);
                    der[r] = mc.kappa * dsq / 2.0;
                    g_kappa[m] += sbar * sqv / 2.0;
                } else {
                    der[r] = 2.0 * er[r];
                }
            }
            let r2 = model.residuals_2d(m, ti, nf, x);
            let mut de2 = [[[0.0; 2]; N_JOINTS]; N_CAMERAS];
            for c in 0..N_CAMERAS {
                for j in 0..N_JOINTS {
                    if nf.vis[c][j] == 0.0 {
                        continue;
                    }
                    if huber {
                        let (s0, g0) = sq_and_grad(r2[c][j][0]);
                        let (s1, g1) = sq_and_grad(r2[c][j][1]);
                        let sv = s0 + s1 + 1e-6;
                        let root = (1.0 + sv / d2).sqrt();
                        let dh_ds = 0.5 / root;
                        de2[c][j] = [dh_ds * g0, dh_ds * g1];
                        g_d2[m] += sbar * (root - 1.0 - sv / (2.0 * d2 * root));
                    } else {
                        de2[c][j] = [2.0 * r2[c][j][0], 2.0 * r2[c][j][1]];
                    }
                }
            }
            // v = dL/dx: pose part plus sbar * dS/dx.
            let mut v = [0.0; NX];
            v[NA..].copy_from_slice(&g_q[k]);
            for q in 0..NQ {
                let f = sbar * de3[q];
                for c in 0..NA {
                    v[c] += f * mc.basis[q][c];
                }
                v[NA + q] -= f;
            }
            for r in 0..NA {
                let f = sbar * der[r];
                for c in 0..NA {
                    v[c] += f * mc.d[r][c];
                }
            }
            for c in 0..N_CAMERAS {
                for j in 0..N_JOINTS {
                    for ax in 0..2 {
                        let f = sbar * de2[c][j][ax];
                        if f == 0.0 {
                            continue;
                        }
                        let (u3, _) = model.row_2d(m, ti, nf, c, j, ax);
                        for d in 0..3 {
                            v[NA + 3 * j + d] += f * u3[d];
                        }
                    }
                }
            }
            // u = -(A^T W A + lambda I)^-1 v, with the final weights (the library's backward
            // solve of the structured problem; it leaves the 2-D rows in `ws.rows()`).
            ws.weights = s.weights;
            ws.reg_weight = s.reg_weight;
            let mut u_solve = v;
            if keep[m] {
                // `keep` implies the model's own damping: `back_model` is `model`.
                model.adjoint_kept(m, ti, nf, ws, &kept[k], &mut u_solve)?;
            } else {
                back_model.adjoint(m, ti, nf, ws, damping, &mut u_solve)?;
            }
            // The library's rows take `(N + s I)^-1 v` itself; the fixed part's rows below are
            // chained here with its negation.
            let mut u = u_solve;
            for val in u.iter_mut() {
                *val = -*val;
            }
            // 3-D rows (weight 1): a_r = (basis[q], -1 at q).
            for q in 0..NQ {
                let au = (0..NA).map(|c| mc.basis[q][c] * u[c]).sum::<f64>() - u[NA + q];
                let alpha_r = au + sbar * de3[q];
                let beta_r = e3[q];
                for c in 0..NA {
                    g_basis[m][q][c] += alpha_r * x[c] + beta_r * u[c];
                }
            }
            // Regulariser rows (weight reg_weight): a_r = D[r], b_0 = t0.
            let wr = s.reg_weight;
            for r in 0..NA {
                let au: f64 = (0..NA).map(|c| mc.d[r][c] * u[c]).sum();
                let alpha_r = wr * au + sbar * der[r];
                let beta_r = wr * er[r];
                for c in 0..NA {
                    g_d[m][r][c] += alpha_r * x[c] + beta_r * u[c];
                }
                if r == 0 {
                    g_t0[m] -= alpha_r;
                }
                if huber {
                    g_kappa[m] += er[r] * au;
                }
            }
            // 2-D rows: a_r = s P (at q_j), b_r = s w, s = omega rho vis; row `ax` of the
            // group of (c, j) in the library's rows (joint-major).
            let rows = ws.rows();
            for c in 0..N_CAMERAS {
                for j in 0..N_JOINTS {
                    if nf.vis[c][j] == 0.0 {
                        continue;
                    }
                    let w = s.weights[c][j];
                    let first_row = rows.group(j * N_CAMERAS + c).start;
                    for ax in 0..2 {
                        // dl/d(row coefficients) and dl/d(target) through the solve (weight
                        // frozen) and through the score's direct use of the residual.
                        let g = rows.row_gradient(first_row + ax, w, sbar * de2[c][j][ax], x, &u_solve, &mut [])?;
                        let p = &model.projections[ti][c][ax];
                        let scale = mc.omega[2 * j + ax] * mc.rho * nf.vis[c][j];
                        let mut g_s = g.target * nf.w[c][j][ax];
                        for d in 0..3 {
                            g_s += g.coeffs[d] * p[d];
                            g_proj[ti][c][ax][d] += scale * g.coeffs[d];
                        }
                        g_omega[m][2 * j + ax] += g_s * mc.rho * nf.vis[c][j];
                        g_rho[m] += g_s * mc.omega[2 * j + ax] * nf.vis[c][j];
                    }
                }
            }
        }
    }
    // ---------- map the row adjoints onto the parameters ----------
    let lambda0 = params.group(G::Lambda0);
    let sig = params.group(G::SigmaVariance);
    for m in 0..N_MODELS {
        for j in 0..N_JOINTS {
            for d in 0..3 {
                let q = 3 * j + d;
                grad[offset(G::MeanPose) + (m * 3 + d) * N_JOINTS + j] += MU_SCALE * g_basis[m][q][0];
                for i in 0..N_PCA {
                    grad[offset(G::BaseVectors) + ((m * N_PCA + i) * 3 + d) * N_JOINTS + j] +=
                        E_SCALE * g_basis[m][q][4 + i];
                }
            }
        }
        for r in 0..NA {
            for c in 0..NA {
                let i = (m * N_BASIS + r) * N_BASIS + c;
                grad[offset(G::SigmaVariance) + i] += lambda0[m] * SIGMA_SCALE * g_d[m][r][c];
                grad[offset(G::Lambda0) + m] += SIGMA_SCALE * sig[i] * g_d[m][r][c];
            }
        }
        grad[offset(G::ScaleRegularizer)] += -0.003 * g_t0[m];
        grad[offset(G::HlParams) + m] += 0.75 * g_kappa[m];
        grad[offset(G::IrReg) + m] += g_d2[m] * 2.0 * model.models[m].delta * 0.1;
        for i in 0..2 * N_JOINTS {
            grad[offset(G::JointWeights) + m * 2 * N_JOINTS + i] += g_omega[m][i];
        }
        grad[offset(G::LambdaScale) + m] += SIGMA_2D[m] * g_rho[m];
    }
    for (ti, gp) in g_proj.iter().enumerate() {
        let rot = &model.rotations[ti];
        for c in 0..N_CAMERAS {
            for a in 0..2 {
                for l in 0..3 {
                    let dp: f64 = (0..3).map(|d| gp[c][a][d] * rot[l][d]).sum();
                    grad[offset(G::Cameras) + (c * 3 + a) * 3 + l] += dp * params.avg_cameras[c][a][l];
                }
            }
        }
    }
    if grad.iter().any(|v| !v.is_finite()) {
        return Err(WibergError::NonFinite { what: format!("pose gradient (loss {loss})") });
    }
    Ok((loss, Some(grad)))
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn argmin(v: impl Iterator<Item = f64>) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (i, s) in v.enumerate() {
        if s < best.1 {
            best = (i, s);
        }
    }
    best
}
