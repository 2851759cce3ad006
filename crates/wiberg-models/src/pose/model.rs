//! The Tome et al. 2018 pose energy as trained by Toso et al. 2019 (`wieberg.py`): input
//! normalisation, 80 unknowns per (model, rotation), three residual blocks, pseudo-Huber IRLS
//! (1 + 3 damped solves, lambda 1e-3) or the L2 variant (one undamped solve), the soft-min over
//! rotations and models, and the output pose. See `../shared/specs/pose-tome2018.md`.

// Index loops over cameras, joints and axes mirror the maths of the spec; iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

use super::data::{Frame2d, Pose3d};
use super::params::{PoseParams, E_SCALE, G, MU_SCALE, N_BASIS, N_CAMERAS, N_JOINTS, N_MODELS, N_PCA, SIGMA_SCALE};
use crate::error::{Error, Result};
use wiberg::damped::{BlockArrow, BlockArrowFactor, DampedFactor};
use wiberg::least_squares::{FixedQuadratic, PseudoHuber, RobustRows, StructuredIrls};
use wiberg::{Damping, WibergError};

/// Number of basis coefficients (the border of the block-arrow normal matrix).
pub const NA: usize = N_BASIS;
/// Number of free 3-D point coordinates (17 diagonal 3 x 3 blocks).
pub const NQ: usize = 3 * N_JOINTS;
/// Total unknowns `x = (a, q)`.
pub const NX: usize = NA + NQ;

/// The basis matrix `B` of one model (51 x 29): `basis[3j+d][b] = B_b[d, j]`.
pub type Basis = [[f64; NA]; NQ];

/// Number of sampled rotations about the vertical axis.
pub const N_ROT: usize = 100;
/// Damping of every solve of the Huber variant (`tf.matrix_solve_ls(.., l2_regularizer=0.001)`).
pub const DAMPING: f64 = 1e-3;
/// Number of IRLS re-weighted solves after the first one.
pub const IRLS_STEPS: usize = 3;
/// Joint that Stacked Hourglass never outputs (Neck/Nose): invisible in every view.
pub const HIDDEN_JOINT: usize = 9;
/// Number of rows of `A`: 51 3-D, 136 2-D, 29 regulariser.
pub const N_ROWS: usize = NQ + 2 * N_JOINTS * N_CAMERAS + NA;

/// The limb tree of the scale normalisation `l(P)` (16 joints; reproduced as in the code,
/// including the non-anatomical 10-11 and 8-13, and without joint 16).
pub const SCALE_TREE: [(usize, usize); 15] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (0, 4),
    (4, 5),
    (5, 6),
    (0, 7),
    (7, 8),
    (8, 9),
    (8, 10),
    (10, 11),
    (11, 12),
    (8, 13),
    (13, 14),
    (14, 15),
];

/// `sigma_3[:, 25]` of `model_parameters.h5`: the fixed weight of the 2-D term per model (the
/// model multiplies it by the trainable `lambda_scale`).
pub const SIGMA_2D: [f64; N_MODELS] = [0.057_112_142_429_036_14, 0.086_514_088_133_514_69, 0.051_448_031_844_017_17];

/// Which inner solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Variant {
    /// Pseudo-Huber IRLS: 1 + 3 damped solves (the released `wieberg.py`).
    Huber,
    /// One undamped least-squares solve, score |Ax - b|^2 (`wieberg_l2.py`, repaired).
    L2,
}

impl Variant {
    /// Every variant, in display order.
    pub const ALL: [Variant; 2] = [Variant::Huber, Variant::L2];

    /// `huber` or `l2` (as the command line and the run settings spell it).
    pub fn name(self) -> &'static str {
        match self {
            Variant::Huber => "huber",
            Variant::L2 => "l2",
        }
    }

    /// One line on what the variant solves.
    pub fn description(self) -> &'static str {
        match self {
            Variant::Huber => "Pseudo-Huber IRLS: 1 + 3 damped solves (the released `wieberg.py`)",
            Variant::L2 => "One undamped least-squares solve, score |Ax - b|^2 (`wieberg_l2.py`, repaired)",
        }
    }

    /// The variant named `name` (ASCII case ignored), `None` for any other string.
    pub fn parse(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(name))
    }
}

/// The per-model constants derived from the parameters.
#[derive(Debug, Clone)]
pub struct ModelConsts {
    /// Basis matrix: `basis[3j+d][b] = B_b[d, j]`.
    pub basis: Box<Basis>,
    /// Regulariser matrix `D = lambda_0 * SIGMA_SCALE * sigma_variance`.
    pub d: [[f64; NA]; NA],
    /// Regulariser target row 0 (`-0.003 * scale_regularizer`; the others are 0).
    pub t0: f64,
    /// `B^T B`.
    pub btb: [[f64; NA]; NA],
    /// `D^T D`.
    pub dtd: [[f64; NA]; NA],
    /// `B^T B + D^T D + lambda I` (the a-block of the unweighted first solve).
    pub naa_plain: [[f64; NA]; NA],
    /// `B^T B + kappa D^T D + lambda I` (the a-block of the re-weighted solves).
    pub naa_irls: [[f64; NA]; NA],
    /// The unweighted rows of the first solve (3-D rows, regulariser with weight 1) as the
    /// library's fixed quadratic part, stored with the solves' damping on its diagonal: border
    /// `naa_plain`, coupling `-B`, blocks `(1 + lambda) I`, right-hand side `(D^T t, 0)`.
    pub first: FixedQuadratic<3>,
    /// The same for the re-weighted solves (regulariser weight `kappa`; shares `first`'s coupling).
    pub reweighted: FixedQuadratic<3>,
    /// The pseudo-Huber loss of the 2-D pairs, with the released code's smoothing: weight
    /// `(1 + (|r + 1e-7|^2 + 1e-6) / delta^2)^-1/2`.
    pub loss: PseudoHuber,
    /// `D^T t`.
    pub dtt: [f64; NA],
    /// Joint weights `omega` (index 2 joint + axis).
    pub omega: [f64; 2 * N_JOINTS],
    /// Weight of the 2-D term, `rho = SIGMA_2D * lambda_scale`.
    pub rho: f64,
    /// Pseudo-Huber width `delta = 0.1 ir_reg` (names swapped in the code).
    pub delta: f64,
    /// Regulariser weight `kappa = 0.75 hl_params` (names swapped in the code).
    pub kappa: f64,
    /// Rotation soft-min temperature `alpha`.
    pub alpha: f64,
    /// Model soft-min temperature `beta`.
    pub beta: f64,
    /// Model soft-min offset `gamma`.
    pub gamma: f64,
}

impl ModelConsts {
    /// Rebuilds [`ModelConsts::first`] and [`ModelConsts::reweighted`] from `basis`,
    /// `naa_plain`, `naa_irls` and `dtt`, for solves damped by `damping` (added to the blocks'
    /// diagonal here; the caller has added it to the `naa` blocks).
    pub fn set_fixed_parts(&mut self, damping: f64) -> wiberg::Result<()> {
        let mut first = FixedQuadratic::new(NA, N_JOINTS);
        for (row, b) in first.coupling_rows_mut().zip(self.basis.iter()) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v = -bv;
            }
        }
        let diag = 1.0 + damping;
        first.blocks_mut().fill([[diag, 0.0, 0.0], [0.0, diag, 0.0], [0.0, 0.0, diag]]);
        first.set_preshift(damping)?;
        // The re-weighted part shares the coupling (a clone keeps its identity).
        let mut reweighted = first.clone();
        first.border_mut().copy_from_slice(self.naa_plain.as_flattened());
        reweighted.border_mut().copy_from_slice(self.naa_irls.as_flattened());
        for ((r1, rk), v) in first.rhs_mut().iter_mut().zip(reweighted.rhs_mut().iter_mut()).zip(&self.dtt) {
            *r1 = *v;
            *rk = self.kappa * v;
        }
        self.first = first;
        self.reweighted = reweighted;
        Ok(())
    }
}

/// The model, ready to reconstruct frames.
#[derive(Debug, Clone)]
pub struct PoseModel {
    /// Per PPCA model.
    pub models: Vec<ModelConsts>,
    /// `R_theta` per sampled rotation.
    pub rotations: Vec<[[f64; 3]; 3]>,
    /// `Pi_c R_theta` (rows 0-1 of `(K_c . Rbar_c) R_theta`) per rotation and camera.
    pub projections: Vec<[[[f64; 3]; 2]; N_CAMERAS]>,
    /// Output scale (`scaling_coefficient`).
    pub magic: f64,
    /// Inner solver.
    pub variant: Variant,
    /// Damping of the solves (1e-3 for Huber, 0 for L2).
    pub damping: f64,
}

/// One frame's normalised detections.
#[derive(Debug, Clone)]
pub struct NormFrame {
    /// Normalised coordinates `w_hat[c][j][axis]`.
    pub w: [[[f64; 2]; N_JOINTS]; N_CAMERAS],
    /// Visibility `v[c][j]` (0 for joint 9, else 1).
    pub vis: [[f64; N_JOINTS]; N_CAMERAS],
}

/// Normalises each view: subtract the mean of the visible joints, divide by
/// `h_c = (min y - max y) / 2` over the visible joints (negative: both axes flip).
pub fn normalise(frame: &Frame2d) -> Result<NormFrame> {
    let mut out = NormFrame { w: [[[0.0; 2]; N_JOINTS]; N_CAMERAS], vis: [[1.0; N_JOINTS]; N_CAMERAS] };
    for c in 0..N_CAMERAS {
        out.vis[c][HIDDEN_JOINT] = 0.0;
        let mut mean = [0.0; 2];
        let mut ymin = f64::INFINITY;
        let mut ymax = f64::NEG_INFINITY;
        let mut n = 0.0;
        for j in (0..N_JOINTS).filter(|&j| j != HIDDEN_JOINT) {
            let p = frame[c][j];
            if !(p[0].is_finite() && p[1].is_finite()) {
                return Err(Error::Invalid(format!("camera {c} joint {j}: non-finite detection")));
            }
            mean[0] += p[0];
            mean[1] += p[1];
            n += 1.0;
        }
        mean[0] /= n;
        mean[1] /= n;
        for j in (0..N_JOINTS).filter(|&j| j != HIDDEN_JOINT) {
            let y = frame[c][j][1] - mean[1];
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
        let h = ymin / 2.0 - ymax / 2.0;
        if h == 0.0 {
            return Err(Error::Invalid(format!(
                "camera {c}: all visible joints share one image row; cannot normalise the view"
            )));
        }
        for j in 0..N_JOINTS {
            // Joint 9 is normalised too (as in the code); its rows have zero weight.
            out.w[c][j] = [(frame[c][j][0] - mean[0]) / h, (frame[c][j][1] - mean[1]) / h];
        }
    }
    Ok(out)
}

/// `R_theta = [[sin, cos, 0], [-cos, sin, 0], [0, 0, 1]]` (the transposed `upgrade_r`).
pub fn rotation(theta: f64) -> [[f64; 3]; 3] {
    let (s, c) = theta.sin_cos();
    [[s, c, 0.0], [-c, s, 0.0], [0.0, 0.0, 1.0]]
}

/// `l(P) = sqrt(sum over SCALE_TREE of |P_a - P_b|^2)`.
pub fn limb_scale(p: &Pose3d) -> f64 {
    SCALE_TREE.iter().map(|&(a, b)| (0..3).map(|d| (p[a][d] - p[b][d]).powi(2)).sum::<f64>()).sum::<f64>().sqrt()
}

/// Per-thread scratch space of the solves, and the state of the last one (for the backward pass).
///
/// Each (model, rotation) problem is the library's structured robust least squares
/// ([`wiberg::least_squares::structured`]): unknowns `x = (a, q)`, `a` in R^29 (basis
/// coefficients, the border), `q` in R^51 (17 free 3-D points, one 3 x 3 diagonal block each).
/// The 3-D rows (`B a - q`, weight 1) and the regulariser rows (`D a - t`, weight 1 then
/// `kappa`) form the fixed quadratic part, the same for every rotation and frame
/// ([`ModelConsts::first`], [`ModelConsts::reweighted`]); the 2-D rows are the robust rows, the
/// two axes of one (camera, joint) a group with a pseudo-Huber weight, each touching only its
/// joint's block `q_j`. So the normal matrix is block-arrow:
///
/// ```text
///     [ Naa   -B^T ]        Naa = B^T B + w_reg D^T D       (29 x 29, the border)
/// N = [            ]        -B  = the coupling rows (51 x 29)
///     [ -B    Qblk ]        Qblk = blockdiag(Q_0 .. Q_16), Q_j 3 x 3
/// ```
///
/// stored with the forward damping already on its diagonal and factorised by the library's
/// [`BlockArrowFactor`] (blocks eliminated first, then the 29 x 29 Schur complement).
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The library's solver: matrix, factor, solution and group weights of the last solve.
    irls: StructuredIrls<3>,
    /// The robust (2-D) rows of the last problem, groups `(camera, joint)` camera-major.
    rows: RobustRows<3>,
    /// IRLS weights (per camera and joint) of the last solve.
    pub weights: [[f64; N_JOINTS]; N_CAMERAS],
    /// Regulariser row weight of the last solve (1 or kappa).
    pub reg_weight: f64,
}

impl Default for Workspace {
    fn default() -> Self {
        Workspace {
            irls: StructuredIrls::new(NA, N_JOINTS),
            rows: RobustRows::new(NA, N_JOINTS),
            weights: [[0.0; N_JOINTS]; N_CAMERAS],
            reg_weight: 0.0,
        }
    }
}

impl Workspace {
    /// `N + s0 I` of the last solve (`s0` the damping of the model that built it).
    pub fn normal(&self) -> &BlockArrow<3> {
        self.irls.normal()
    }

    /// Right-hand side `A^T W b` of the last solve.
    pub fn rhs(&self) -> &[f64] {
        self.irls.rhs()
    }

    /// Factorisation of the last solve's damped `N` (or of the last backward system); after
    /// [`Workspace::swap_factor`], whatever was swapped in, until the next solve.
    pub fn factor(&self) -> &BlockArrowFactor<3> {
        self.irls.factor()
    }

    /// Exchanges the last solve's factorisation with `kept`, without copying it (see
    /// [`StructuredIrls::swap_factor`]): keeps it for [`PoseModel::adjoint_kept`].
    /// [`Workspace::factor`] then holds `kept`'s previous content until the next solve.
    pub fn swap_factor(&mut self, kept: &mut BlockArrowFactor<3>) {
        self.irls.swap_factor(kept);
    }

    /// The robust rows of the last problem filled (see [`Workspace`]; group
    /// `j * N_CAMERAS + c` holds camera `c`, joint `j`).
    pub fn rows(&self) -> &RobustRows<3> {
        &self.rows
    }

    /// Copies the library's group weights (group `j * N_CAMERAS + c`) into `weights`.
    fn take_weights(&mut self) {
        let w = self.irls.weights();
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                self.weights[c][j] = w[j * N_CAMERAS + c];
            }
        }
    }

    /// `weights` in the library's group order (group `j * N_CAMERAS + c`).
    fn group_weights(&self) -> [f64; N_JOINTS * N_CAMERAS] {
        let mut out = [0.0; N_JOINTS * N_CAMERAS];
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                out[j * N_CAMERAS + c] = self.weights[c][j];
            }
        }
        out
    }
}

/// The result of one (model, rotation) solve.
#[derive(Debug, Clone, Copy)]
pub struct RotationSolve {
    /// Final unknowns `(a, q)`.
    pub x: [f64; NX],
    /// Score `S_{m, theta}`.
    pub score: f64,
}

/// A frame's reconstruction.
#[derive(Debug, Clone)]
pub struct Reconstruction {
    /// Output pose `magic * P / l(P)` (joint, xyz), unit limb scale times `magic`.
    pub pose: Pose3d,
    /// Per-model score `S_m = min_theta S / 2`.
    pub model_scores: [f64; N_MODELS],
    /// Per-model soft-min pose (normalised).
    pub model_poses: [Pose3d; N_MODELS],
    /// Index of the best rotation per model.
    pub best_rotation: [usize; N_MODELS],
}

fn mat_t_mat(a: &[[f64; NA]; NA]) -> [[f64; NA]; NA] {
    let mut out = [[0.0; NA]; NA];
    for r in 0..NA {
        for c in 0..NA {
            out[r][c] = (0..NA).map(|k| a[k][r] * a[k][c]).sum();
        }
    }
    out
}

impl PoseModel {
    /// Builds the model from parameters.
    pub fn new(params: &PoseParams, variant: Variant) -> Result<Self> {
        params.check_finite()?;
        let damping = match variant {
            Variant::Huber => DAMPING,
            Variant::L2 => 0.0,
        };
        let mu = params.group(G::MeanPose);
        let e = params.group(G::BaseVectors);
        let sig = params.group(G::SigmaVariance);
        let mut models = Vec::with_capacity(N_MODELS);
        for m in 0..N_MODELS {
            let mut basis = Box::new([[0.0; NA]; NQ]);
            for j in 0..N_JOINTS {
                for d in 0..3 {
                    let row = &mut basis[3 * j + d];
                    row[0] = MU_SCALE * mu[(m * 3 + d) * N_JOINTS + j];
                    row[1 + d] = 1.0;
                    for k in 0..N_PCA {
                        row[4 + k] = E_SCALE * e[((m * N_PCA + k) * 3 + d) * N_JOINTS + j];
                    }
                }
            }
            let lambda0 = params.group(G::Lambda0)[m];
            let mut d = [[0.0; NA]; NA];
            for r in 0..NA {
                for c in 0..NA {
                    d[r][c] = lambda0 * SIGMA_SCALE * sig[(m * N_BASIS + r) * N_BASIS + c];
                }
            }
            let t0 = -0.003 * params.group(G::ScaleRegularizer)[0];
            let kappa = 0.75 * params.group(G::HlParams)[m];
            let delta = 0.1 * params.group(G::IrReg)[m];
            if delta == 0.0 {
                return Err(Error::Invalid(format!("ir_reg[{m}] is 0: the pseudo-Huber width would be 0")));
            }
            let dtd = mat_t_mat(&d);
            let loss = PseudoHuber::new(delta)?.with_smoothing(1e-7, 1e-6)?;
            let mut naa_plain = [[0.0; NA]; NA];
            let mut naa_irls = [[0.0; NA]; NA];
            let mut btb = [[0.0; NA]; NA];
            for r in 0..NA {
                for c in 0..NA {
                    btb[r][c] = basis.iter().map(|row| row[r] * row[c]).sum();
                    naa_plain[r][c] = btb[r][c] + dtd[r][c];
                    naa_irls[r][c] = btb[r][c] + kappa * dtd[r][c];
                }
                naa_plain[r][r] += damping;
                naa_irls[r][r] += damping;
            }
            let mut dtt = [0.0; NA];
            for (c, v) in dtt.iter_mut().enumerate() {
                *v = d[0][c] * t0;
            }
            let mut omega = [0.0; 2 * N_JOINTS];
            omega.copy_from_slice(&params.group(G::JointWeights)[m * 2 * N_JOINTS..(m + 1) * 2 * N_JOINTS]);
            let mut mc = ModelConsts {
                basis,
                btb,
                dtd,
                d,
                t0,
                naa_plain,
                naa_irls,
                first: FixedQuadratic::new(NA, N_JOINTS),
                reweighted: FixedQuadratic::new(NA, N_JOINTS),
                loss,
                dtt,
                omega,
                rho: SIGMA_2D[m] * params.group(G::LambdaScale)[m],
                delta,
                kappa,
                alpha: params.group(G::ExpWeights)[m],
                beta: params.group(G::ExpWeightsModel)[m],
                gamma: params.group(G::ExpAdditiveModel)[m],
            };
            mc.set_fixed_parts(damping)?;
            models.push(mc);
        }
        let k = params.group(G::Cameras);
        let mut rotations = Vec::with_capacity(N_ROT);
        let mut projections = Vec::with_capacity(N_ROT);
        for i in 0..N_ROT {
            let rot = rotation(2.0 * std::f64::consts::PI * i as f64 / N_ROT as f64);
            let mut p = [[[0.0; 3]; 2]; N_CAMERAS];
            for c in 0..N_CAMERAS {
                for a in 0..2 {
                    for d in 0..3 {
                        p[c][a][d] =
                            (0..3).map(|l| k[(c * 3 + a) * 3 + l] * params.avg_cameras[c][a][l] * rot[l][d]).sum();
                    }
                }
            }
            rotations.push(rot);
            projections.push(p);
        }
        Ok(PoseModel {
            models,
            rotations,
            projections,
            magic: params.group(G::ScalingCoefficient)[0],
            variant,
            damping,
        })
    }

    /// The 2-D row coefficients of camera `c`, joint `j`, axis `a`: the row is `u . Q_j - b`,
    /// `u = s P`, `b = s w` with `s = omega rho vis`.
    #[inline]
    pub fn row_2d(&self, m: usize, ti: usize, nf: &NormFrame, c: usize, j: usize, a: usize) -> ([f64; 3], f64) {
        let mc = &self.models[m];
        let s = mc.omega[2 * j + a] * mc.rho * nf.vis[c][j];
        let p = &self.projections[ti][c][a];
        ([s * p[0], s * p[1], s * p[2]], s * nf.w[c][j][a])
    }

    /// The damping of the forward solves as the library names it: trust-region with the
    /// model's `lambda` (Huber), none (L2).
    pub fn forward_damping(&self) -> Damping {
        if self.damping == 0.0 {
            Damping::Implicit
        } else {
            Damping::TrustRegion { lambda: self.damping }
        }
    }

    /// Fills `rows` with the 2-D rows of model `m`, rotation `ti`: one group per (camera,
    /// joint), joint-major (group `j * N_CAMERAS + c`, so that a joint's rows are consecutive
    /// and the library accumulates its block in registers), holding the joint's two axes when
    /// it is visible (an invisible joint's group is empty: its rows are zero).
    fn fill_rows(&self, m: usize, ti: usize, nf: &NormFrame, rows: &mut RobustRows<3>) -> wiberg::Result<()> {
        rows.clear();
        for j in 0..N_JOINTS {
            for c in 0..N_CAMERAS {
                if nf.vis[c][j] != 0.0 {
                    for a in 0..2 {
                        let (u, b) = self.row_2d(m, ti, nf, c, j, a);
                        rows.push_block_row(j, u, b)?;
                    }
                }
                rows.end_group();
            }
        }
        Ok(())
    }

    /// The fixed part of model `m` for regulariser weight `reg_weight` (1 or kappa).
    fn fixed_part(&self, m: usize, reg_weight: f64) -> wiberg::Result<&FixedQuadratic<3>> {
        let mc = &self.models[m];
        if reg_weight == 1.0 {
            Ok(&mc.first)
        } else if reg_weight == mc.kappa {
            Ok(&mc.reweighted)
        } else {
            Err(WibergError::InvalidArgument(format!(
                "pose regulariser weight {reg_weight}: only 1 and kappa = {} have fixed parts",
                mc.kappa
            )))
        }
    }

    /// The 2-D residuals `r[c][j] = (x, y)` at `x`.
    pub fn residuals_2d(
        &self,
        m: usize,
        ti: usize,
        nf: &NormFrame,
        x: &[f64; NX],
    ) -> [[[f64; 2]; N_JOINTS]; N_CAMERAS] {
        let mut r = [[[0.0; 2]; N_JOINTS]; N_CAMERAS];
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                let q = &x[NA + 3 * j..NA + 3 * j + 3];
                for a in 0..2 {
                    let (u, b) = self.row_2d(m, ti, nf, c, j, a);
                    r[c][j][a] = u[0] * q[0] + u[1] * q[1] + u[2] * q[2] - b;
                }
            }
        }
        r
    }

    /// The score of `x`: the pseudo-Huber energy (Huber) or `|Ax - b|^2` (L2).
    pub fn score(&self, m: usize, ti: usize, nf: &NormFrame, x: &[f64; NX]) -> f64 {
        let mc = &self.models[m];
        let a = &x[..NA];
        // 3-D rows: r = B a - q.
        let mut r3 = [0.0; NQ];
        for (rk, row) in r3.iter_mut().zip(mc.basis.iter()) {
            *rk = row.iter().zip(a).map(|(b, ab)| b * ab).sum();
        }
        let mut reg = [0.0; NA];
        for (r, row) in mc.d.iter().enumerate() {
            reg[r] = row.iter().zip(a).map(|(d, ab)| d * ab).sum::<f64>() - if r == 0 { mc.t0 } else { 0.0 };
        }
        let r2 = self.residuals_2d(m, ti, nf, x);
        match self.variant {
            Variant::Huber => {
                let sq = |v: f64| (v.abs() + 1e-7).powi(2);
                let e3: f64 = (0..NQ).map(|k| sq(r3[k] - x[NA + k])).sum::<f64>() / 2.0;
                let ereg: f64 = mc.kappa * reg.iter().map(|v| sq(*v)).sum::<f64>() / 2.0;
                let d2 = mc.delta * mc.delta;
                let mut e2 = 0.0;
                for rc in r2.iter() {
                    for rj in rc.iter() {
                        let s = sq(rj[0]) + sq(rj[1]) + 1e-6;
                        e2 += d2 * ((1.0 + s / d2).sqrt() - 1.0);
                    }
                }
                e3 + e2 + ereg
            }
            Variant::L2 => {
                let e3: f64 = (0..NQ).map(|k| (r3[k] - x[NA + k]).powi(2)).sum();
                let e2: f64 = r2.iter().flatten().flatten().map(|v| v * v).sum();
                e3 + e2 + reg.iter().map(|v| v * v).sum::<f64>()
            }
        }
    }

    /// One damped solve with the row weights currently in `ws` (`weights`, `reg_weight`):
    /// `x = (A^T W A + lambda I)^-1 A^T W b`. The factorisation stays in `ws`.
    pub fn solve_weighted(&self, m: usize, ti: usize, nf: &NormFrame, ws: &mut Workspace) -> wiberg::Result<[f64; NX]> {
        self.fill_rows(m, ti, nf, &mut ws.rows)?;
        let fixed = self.fixed_part(m, ws.reg_weight)?;
        let weights = ws.group_weights();
        let y = ws.irls.solve_with_weights(fixed, &ws.rows, &weights, self.forward_damping())?;
        let mut x = [0.0; NX];
        x.copy_from_slice(y);
        Ok(x)
    }

    /// The backward solve of model `m`, rotation `ti` with the row weights in `ws`: overwrites
    /// `v` with `(A^T W A + s I)^-1 v`, `s` chosen by `damping` (the matrix is stored with this
    /// model's damping on its diagonal: nothing is added when the shift equals it). On return
    /// `ws.rows()` holds the problem's 2-D rows.
    pub fn adjoint(
        &self,
        m: usize,
        ti: usize,
        nf: &NormFrame,
        ws: &mut Workspace,
        damping: Damping,
        v: &mut [f64; NX],
    ) -> wiberg::Result<()> {
        self.fill_rows(m, ti, nf, &mut ws.rows)?;
        let fixed = self.fixed_part(m, ws.reg_weight)?;
        let weights = ws.group_weights();
        ws.irls.adjoint(fixed, &ws.rows, &weights, damping, v)
    }

    /// The backward solve of [`PoseModel::adjoint`] with `kept`, the factor of the last solve
    /// of [`PoseModel::solve_rotation`] of model `m`, rotation `ti` (kept by
    /// [`Workspace::swap_factor`], with the row weights that solve left in `ws`): the same
    /// result bit for bit when [`PoseModel::kept_factor_serves`] holds, without re-assembling
    /// and refactorising. On return `ws.rows()` holds the problem's 2-D rows.
    pub fn adjoint_kept(
        &self,
        m: usize,
        ti: usize,
        nf: &NormFrame,
        ws: &mut Workspace,
        kept: &BlockArrowFactor<3>,
        v: &mut [f64; NX],
    ) -> wiberg::Result<()> {
        self.fill_rows(m, ti, nf, &mut ws.rows)?;
        kept.solve_in_place(v)
    }

    /// Whether the factor of model `m`'s last [`PoseModel::solve_rotation`] solve is the one
    /// [`PoseModel::adjoint`] with `damping` and the weights that solve leaves in the workspace
    /// would build: the same damping and the same fixed part (so [`PoseModel::adjoint_kept`]
    /// may replace it).
    pub fn kept_factor_serves(&self, m: usize, damping: Damping) -> bool {
        let mc = &self.models[m];
        let (reweights, reg_weight) = self.irls_plan(m);
        let last = if reweights > 0 { &mc.reweighted } else { &mc.first };
        damping == self.forward_damping() && self.fixed_part(m, reg_weight).is_ok_and(|f| std::ptr::eq(f, last))
    }

    /// The IRLS of model `m`: the number of reweights and the regulariser weight recorded.
    fn irls_plan(&self, m: usize) -> (usize, f64) {
        match self.variant {
            Variant::Huber => (IRLS_STEPS, self.models[m].kappa),
            Variant::L2 => (0, 1.0),
        }
    }

    /// Solves model `m` at rotation index `ti`: the IRLS (or the single L2 solve), by the
    /// library's [`StructuredIrls`]. On return `ws` holds the final solve's equations,
    /// factorisation and weights.
    pub fn solve_rotation(
        &self,
        m: usize,
        ti: usize,
        nf: &NormFrame,
        ws: &mut Workspace,
    ) -> wiberg::Result<RotationSolve> {
        let mc = &self.models[m];
        self.fill_rows(m, ti, nf, &mut ws.rows)?;
        let (reweights, reg_weight) = self.irls_plan(m);
        let y = ws.irls.solve(&mc.first, &mc.reweighted, &ws.rows, &mc.loss, reweights, self.forward_damping())?;
        let mut x = [0.0; NX];
        x.copy_from_slice(y);
        ws.take_weights();
        ws.reg_weight = reg_weight;
        let score = self.score(m, ti, nf, &x);
        Ok(RotationSolve { x, score })
    }

    /// The normalised pose of one rotation's solution: `P = -R_theta Q / l(R_theta Q)`.
    pub fn rotation_pose(&self, ti: usize, x: &[f64; NX]) -> Pose3d {
        let rot = &self.rotations[ti];
        let mut p = [[0.0; 3]; N_JOINTS];
        for (j, pj) in p.iter_mut().enumerate() {
            for (d, v) in pj.iter_mut().enumerate() {
                *v = -(0..3).map(|l| rot[d][l] * x[NA + 3 * j + l]).sum::<f64>();
            }
        }
        let l = limb_scale(&p);
        for pj in p.iter_mut() {
            for v in pj.iter_mut() {
                *v /= l;
            }
        }
        p
    }

    /// Reconstructs one frame of detections.
    pub fn reconstruct(&self, frame: &Frame2d, ws: &mut Workspace) -> Result<Reconstruction> {
        let nf = normalise(frame)?;
        Ok(self.reconstruct_normalised(&nf, ws)?)
    }

    /// Reconstructs one normalised frame.
    pub fn reconstruct_normalised(&self, nf: &NormFrame, ws: &mut Workspace) -> wiberg::Result<Reconstruction> {
        let mut model_scores = [0.0; N_MODELS];
        let mut model_poses = [[[0.0; 3]; N_JOINTS]; N_MODELS];
        let mut best_rotation = [0; N_MODELS];
        let mut scores = [0.0; N_ROT];
        let mut poses = vec![[[0.0; 3]; N_JOINTS]; N_ROT];
        for m in 0..N_MODELS {
            for ti in 0..N_ROT {
                let sol = self.solve_rotation(m, ti, nf, ws)?;
                scores[ti] = sol.score;
                poses[ti] = self.rotation_pose(ti, &sol.x);
            }
            let (best, min) = argmin(&scores);
            best_rotation[m] = best;
            let alpha = self.models[m].alpha.abs();
            let mut acc = [[0.0; 3]; N_JOINTS];
            let mut den = 0.0;
            for ti in 0..N_ROT {
                let w = (-(scores[ti] - min) * alpha * 5000.0).exp();
                den += w;
                add_scaled(&mut acc, &poses[ti], w);
            }
            scale(&mut acc, 1.0 / den);
            model_poses[m] = acc;
            model_scores[m] = min / 2.0;
        }
        let (_, min) = argmin(&model_scores);
        let mut acc = [[0.0; 3]; N_JOINTS];
        let mut den = 0.0;
        for m in 0..N_MODELS {
            let mc = &self.models[m];
            let w = (-((model_scores[m] - min) * mc.beta * 5000.0 + mc.gamma).abs()).exp();
            den += w;
            add_scaled(&mut acc, &model_poses[m], w);
        }
        scale(&mut acc, 1.0 / den);
        let l = limb_scale(&acc);
        scale(&mut acc, self.magic / l);
        if acc.iter().flatten().any(|v| !v.is_finite()) {
            return Err(WibergError::NonFinite {
                what: format!("pose reconstruction (model scores {model_scores:?})"),
            });
        }
        Ok(Reconstruction { pose: acc, model_scores, model_poses, best_rotation })
    }

    /// The dense system of model `m`, rotation `ti`: `A` (216 x 80, row-major) and `b`, rows
    /// ordered 3-D (joint-major xyz), 2-D (camera, joint, axis), regulariser. Row weights of the
    /// IRLS are not applied.
    pub fn dense_system(&self, m: usize, ti: usize, nf: &NormFrame) -> (Vec<f64>, Vec<f64>) {
        let mc = &self.models[m];
        let mut a = vec![0.0; N_ROWS * NX];
        let mut b = vec![0.0; N_ROWS];
        for k in 0..NQ {
            for bb in 0..NA {
                a[k * NX + bb] = mc.basis[k][bb];
            }
            a[k * NX + NA + k] = -1.0;
        }
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                for ax in 0..2 {
                    let row = NQ + (c * N_JOINTS + j) * 2 + ax;
                    let (u, bv) = self.row_2d(m, ti, nf, c, j, ax);
                    for d in 0..3 {
                        a[row * NX + NA + 3 * j + d] = u[d];
                    }
                    b[row] = bv;
                }
            }
        }
        for r in 0..NA {
            let row = NQ + 2 * N_JOINTS * N_CAMERAS + r;
            for c in 0..NA {
                a[row * NX + c] = mc.d[r][c];
            }
        }
        b[NQ + 2 * N_JOINTS * N_CAMERAS] = mc.t0;
        (a, b)
    }

    /// Row weights of `A` matching `ws`'s last solve (1 on 3-D rows, IRLS weights on both axes
    /// of each 2-D pair, the regulariser weight on the last 29 rows).
    pub fn row_weights(&self, ws: &Workspace) -> Vec<f64> {
        let mut w = vec![1.0; N_ROWS];
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                for ax in 0..2 {
                    w[NQ + (c * N_JOINTS + j) * 2 + ax] = ws.weights[c][j];
                }
            }
        }
        for v in w[NQ + 2 * N_JOINTS * N_CAMERAS..].iter_mut() {
            *v = ws.reg_weight;
        }
        w
    }
}

fn argmin(v: &[f64]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (i, &s) in v.iter().enumerate() {
        if s < best.1 {
            best = (i, s);
        }
    }
    best
}

fn add_scaled(acc: &mut Pose3d, p: &Pose3d, w: f64) {
    for (a, b) in acc.iter_mut().zip(p) {
        for d in 0..3 {
            a[d] += w * b[d];
        }
    }
}

fn scale(acc: &mut Pose3d, s: f64) {
    for a in acc.iter_mut() {
        for v in a.iter_mut() {
            *v *= s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_centres_flips_and_gives_height_two() {
        let mut frame = [[[0.0; 2]; N_JOINTS]; N_CAMERAS];
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                frame[c][j] = [100.0 + 7.0 * j as f64 + c as f64, 300.0 + 20.0 * j as f64];
            }
            // Joint 9 is ignored by the mean and the height, whatever its value.
            frame[c][HIDDEN_JOINT] = [0.0, 0.0];
        }
        let nf = normalise(&frame).unwrap();
        for c in 0..N_CAMERAS {
            let vis: Vec<usize> = (0..N_JOINTS).filter(|&j| j != HIDDEN_JOINT).collect();
            let mean_x: f64 = vis.iter().map(|&j| nf.w[c][j][0]).sum::<f64>() / vis.len() as f64;
            let ys: Vec<f64> = vis.iter().map(|&j| nf.w[c][j][1]).collect();
            let (lo, hi) = ys.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| (a.min(y), b.max(y)));
            assert!(mean_x.abs() < 1e-12);
            assert!((hi - lo - 2.0).abs() < 1e-12, "height {}", hi - lo);
            // Both axes flip: the joint lowest in the image (largest pixel y) gets the smallest y.
            assert!(nf.w[c][16][1] < nf.w[c][0][1]);
            assert!(nf.w[c][16][0] < nf.w[c][0][0]);
            assert_eq!(nf.vis[c][HIDDEN_JOINT], 0.0);
        }
        // A degenerate view is an error, not a NaN.
        let flat = [[[5.0, 5.0]; N_JOINTS]; N_CAMERAS];
        assert!(normalise(&flat).is_err());
    }

    #[test]
    fn sampled_rotations_are_rotations_about_z() {
        for i in 0..N_ROT {
            let r = rotation(2.0 * std::f64::consts::PI * i as f64 / N_ROT as f64);
            for a in 0..3 {
                for b in 0..3 {
                    let dot: f64 = (0..3).map(|k| r[a][k] * r[b][k]).sum();
                    assert!((dot - f64::from(u8::from(a == b))).abs() < 1e-12);
                }
            }
            assert_eq!(r[2], [0.0, 0.0, 1.0]);
            // det = sin^2 + cos^2 = 1
            let det = r[0][0] * r[1][1] - r[0][1] * r[1][0];
            assert!((det - 1.0).abs() < 1e-12);
        }
        // theta = 0: R = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]].
        let r0 = rotation(0.0);
        assert_eq!(r0[0], [0.0, 1.0, 0.0]);
        assert_eq!(r0[1], [-1.0, 0.0, 0.0]);
    }

    #[test]
    fn limb_scale_uses_the_16_joint_tree() {
        let mut p = [[0.0; 3]; N_JOINTS];
        // Moving joint 16 (not in the tree) changes nothing; moving joint 15 does.
        p[16] = [100.0, 0.0, 0.0];
        assert_eq!(limb_scale(&p), 0.0);
        p[15] = [3.0, 4.0, 0.0];
        assert!((limb_scale(&p) - 5.0).abs() < 1e-12);
    }
}
