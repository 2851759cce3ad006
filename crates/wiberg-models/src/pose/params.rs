//! `PoseParams`: the 6,662 trainable scalars of the Tome et al. 2018 model as trained by Toso et
//! al. 2019, as one flat vector with named groups; loading (npy checkpoint, from-scratch init,
//! the authors' HDF5 files) and saving in the checkpoint layout.

use super::h5;
use crate::error::{bail, ensure, Context};
use crate::Result;
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

/// Number of PPCA models (the released code only works with 3).
pub const N_MODELS: usize = 3;
/// Number of joints.
pub const N_JOINTS: usize = 17;
/// Number of cameras.
pub const N_CAMERAS: usize = 4;
/// Number of PCA basis vectors per model.
pub const N_PCA: usize = 25;
/// Number of basis shapes per model: mean, 3 translations, 25 PCA bases.
pub const N_BASIS: usize = 29;

/// `mean(|mu_3|)` of `model_parameters.h5`: the model uses `mu = MU_SCALE * mean_pose`.
pub const MU_SCALE: f64 = 154.835_290_815_324_56;
/// `mean(|e_3|)`: the model uses `e = E_SCALE * base_vectors`.
pub const E_SCALE: f64 = 0.094_608_891_081_737_31;
/// `mean(|diag stack|)` of the initial regulariser: `D = lambda_0 * SIGMA_SCALE * sigma_variance`.
pub const SIGMA_SCALE: f64 = 4.028_946_166_416_21e-4;

/// One named group of the flat parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// Dataset name in the checkpoint (`trained_model__<name>.npy` / `trained_model.h5`).
    pub name: &'static str,
    /// Shape as stored in the checkpoint (empty for a scalar).
    pub shape: &'static [usize],
}

impl Group {
    /// Number of scalars in the group.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True if the group holds no scalars (never, for the groups below).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The trainable groups in flat-vector order.
pub const GROUPS: [Group; 14] = [
    Group { name: "mean_pose", shape: &[N_MODELS, 3, N_JOINTS] },
    Group { name: "base_vectors", shape: &[N_MODELS, N_PCA, 3, N_JOINTS] },
    Group { name: "sigma_variance", shape: &[N_MODELS, N_BASIS, N_BASIS] },
    Group { name: "joint_weights", shape: &[N_MODELS, 2 * N_JOINTS] },
    Group { name: "cameras", shape: &[N_CAMERAS, 3, 3] },
    Group { name: "scaling_coefficient", shape: &[] },
    Group { name: "scale_regularizer", shape: &[] },
    Group { name: "lambda_0", shape: &[N_MODELS, 1] },
    Group { name: "lambda_scale", shape: &[N_MODELS, 1] },
    Group { name: "exp_weights", shape: &[N_MODELS, 1] },
    Group { name: "exp_weights_model", shape: &[N_MODELS, 1] },
    Group { name: "exp_additive_model", shape: &[N_MODELS, 1] },
    Group { name: "hl_params", shape: &[N_MODELS] },
    Group { name: "ir_reg", shape: &[N_MODELS] },
];

/// Total number of trainable scalars (6,662).
pub const N_PARAMS: usize = 6662;

/// Index of a group in [`GROUPS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum G {
    MeanPose = 0,
    BaseVectors,
    SigmaVariance,
    JointWeights,
    Cameras,
    ScalingCoefficient,
    ScaleRegularizer,
    Lambda0,
    LambdaScale,
    ExpWeights,
    ExpWeightsModel,
    ExpAdditiveModel,
    HlParams,
    IrReg,
}

/// Offset of group `g` in the flat vector.
pub const fn offset(g: G) -> usize {
    let mut off = 0;
    let mut i = 0;
    while i < g as usize {
        let mut n = 1;
        let mut k = 0;
        while k < GROUPS[i].shape.len() {
            n *= GROUPS[i].shape[k];
            k += 1;
        }
        off += n;
        i += 1;
    }
    off
}

/// The fixed (not trainable) inputs: the average camera rotations, and, when known, the PPCA
/// file values the non-trainable `*_rec` datasets hold.
#[derive(Debug, Clone)]
pub struct PoseParams {
    /// All trainable scalars, groups in [`GROUPS`] order, each group row-major (C order).
    pub values: Vec<f64>,
    /// `avg_cameras`: world-to-camera rotations R_c (row-major 3x3 each), not trainable.
    pub avg_cameras: [[[f64; 3]; 3]; N_CAMERAS],
    /// Training epoch stored with the checkpoint (0 for a from-scratch init).
    pub epoch: i64,
}

/// Where parameters come from.
#[derive(Debug, Clone)]
pub enum ParamSource {
    /// A checkpoint directory (`trained_model__*.npy` + `avg_cameras__cams.npy`, or the authors'
    /// `trained_model.h5` + `avg_cameras.h5`).
    Checkpoint(PathBuf),
    /// From scratch, from the PPCA files in this directory (`model_parameters__*_3.npy` or
    /// `model_parameters.h5`, plus the cameras).
    Init(PathBuf),
}

impl PoseParams {
    /// The slice of group `g`.
    pub fn group(&self, g: G) -> &[f64] {
        let o = offset(g);
        &self.values[o..o + GROUPS[g as usize].len()]
    }

    /// The mutable slice of group `g`.
    pub fn group_mut(&mut self, g: G) -> &mut [f64] {
        let o = offset(g);
        let n = GROUPS[g as usize].len();
        &mut self.values[o..o + n]
    }

    /// Name of flat index `i` as `group[i0,i1,..]`.
    pub fn name_of(i: usize) -> Option<String> {
        let mut off = 0;
        for grp in GROUPS.iter() {
            let n = grp.len();
            if i < off + n {
                let mut rem = i - off;
                let mut idx = vec![0; grp.shape.len()];
                for (k, &d) in grp.shape.iter().enumerate().rev() {
                    idx[k] = rem % d;
                    rem /= d;
                }
                let idx: Vec<String> = idx.iter().map(|v| v.to_string()).collect();
                return Some(format!("{}[{}]", grp.name, idx.join(",")));
            }
            off += n;
        }
        None
    }

    /// Loads parameters from `source`. With `load_robust` false the robust-loss parameters
    /// `hl_params` and `ir_reg` start at 1, as in the released code, even with a checkpoint.
    pub fn load(source: &ParamSource, load_robust: bool) -> Result<Self> {
        match source {
            ParamSource::Checkpoint(dir) => Self::load_checkpoint(dir, load_robust),
            ParamSource::Init(dir) => Self::from_scratch(dir),
        }
    }

    /// Loads a checkpoint directory (npy layout, or the authors' HDF5 files).
    pub fn load_checkpoint(dir: &Path, load_robust: bool) -> Result<Self> {
        let store = Store::detect(dir)?;
        let mut values = vec![0.0; N_PARAMS];
        for (gi, grp) in GROUPS.iter().enumerate() {
            let o = offset(group_at(gi));
            if !load_robust && (grp.name == "hl_params" || grp.name == "ir_reg") {
                values[o..o + grp.len()].fill(1.0);
                continue;
            }
            let arr = store.read_f64(Kind::Checkpoint, grp.name)?;
            check_shape(&arr, grp.shape, &store.describe(Kind::Checkpoint, grp.name))?;
            values[o..o + grp.len()].copy_from_slice(&flat(&arr));
        }
        let epoch = store.read_epoch()?;
        let avg_cameras = store.read_cameras()?;
        let p = PoseParams { values, avg_cameras, epoch };
        p.check_finite()?;
        Ok(p)
    }

    /// The from-scratch initialisation of the released code, including its quirks: lambda_0 = 1
    /// and lambda_scale = 10 (the initialiser's list swaps them), exp_additive_model = 1 + 1e-7,
    /// scaling_coefficient 0.97, and `sigma_variance = diag(0, 1e-5, 1e-5, 1e-5, sigma[:25])` /
    /// mean|.| of that stack.
    pub fn from_scratch(dir: &Path) -> Result<Self> {
        let store = Store::detect(dir)?;
        let mu = store.read_f64(Kind::Ppca, "mu_3")?;
        check_shape(&mu, &[N_MODELS, 3, N_JOINTS], &store.describe(Kind::Ppca, "mu_3"))?;
        let e = store.read_f64(Kind::Ppca, "e_3")?;
        check_shape(&e, &[N_MODELS, N_PCA, 3, N_JOINTS], &store.describe(Kind::Ppca, "e_3"))?;
        let sigma = store.read_f64(Kind::Ppca, "sigma_3")?;
        check_shape(&sigma, &[N_MODELS, N_PCA + 1], &store.describe(Kind::Ppca, "sigma_3"))?;
        let (mu, e, sigma) = (flat(&mu), flat(&e), flat(&sigma));
        let mod_mu = mean_abs(&mu);
        let mod_e = mean_abs(&e);
        // The initial regulariser stack, then normalised by its own mean |.| (over all 3x29x29).
        let mut lam = vec![0.0; N_MODELS * N_BASIS * N_BASIS];
        for m in 0..N_MODELS {
            let mut diag = [0.0; N_BASIS];
            diag[1..4].fill(1e-5);
            for k in 0..N_PCA {
                diag[4 + k] = sigma[m * (N_PCA + 1) + k];
            }
            for (b, d) in diag.iter().enumerate() {
                lam[m * N_BASIS * N_BASIS + b * N_BASIS + b] = *d;
            }
        }
        let mod_lambda = mean_abs(&lam);
        let mut p = PoseParams { values: vec![0.0; N_PARAMS], avg_cameras: store.read_cameras()?, epoch: 0 };
        for (dst, v) in p.group_mut(G::MeanPose).iter_mut().zip(&mu) {
            *dst = v / mod_mu;
        }
        for (dst, v) in p.group_mut(G::BaseVectors).iter_mut().zip(&e) {
            *dst = v / mod_e;
        }
        for (dst, v) in p.group_mut(G::SigmaVariance).iter_mut().zip(&lam) {
            *dst = v / mod_lambda;
        }
        p.group_mut(G::JointWeights).fill(1.0);
        p.group_mut(G::Cameras).fill(1.0);
        p.group_mut(G::ScalingCoefficient).fill(0.97);
        p.group_mut(G::ScaleRegularizer).fill(1.0);
        // Quirk: `initialization_params` returns [.., lambda_scale, lambda_0, ..] into the slots
        // of lambda_0 and lambda_scale, so lambda_0 starts at 1 and lambda_scale at 10.
        p.group_mut(G::Lambda0).fill(1.0);
        p.group_mut(G::LambdaScale).fill(10.0);
        p.group_mut(G::ExpWeights).fill(1.0);
        p.group_mut(G::ExpWeightsModel).fill(1.0);
        p.group_mut(G::ExpAdditiveModel).fill(1.0 + 1e-7);
        p.group_mut(G::HlParams).fill(1.0);
        p.group_mut(G::IrReg).fill(1.0);
        // The model multiplies by the fixed constants, not by these file means; they agree to
        // the last bits with the files shipped by the authors. A different PPCA file would
        // need a different constant: refuse rather than silently rescale.
        for (what, got, want) in
            [("mean|mu_3|", mod_mu, MU_SCALE), ("mean|e_3|", mod_e, E_SCALE), ("mean|lambda|", mod_lambda, SIGMA_SCALE)]
        {
            ensure!(
                ((got - want) / want).abs() < 1e-12,
                "{}: {what} = {got:e} differs from the constant {want:e} the model is built with",
                dir.display()
            );
        }
        p.check_finite()?;
        Ok(p)
    }

    /// Fails on NaN or infinite values, naming the first offending scalar.
    pub fn check_finite(&self) -> Result<()> {
        if let Some(i) = self.values.iter().position(|v| !v.is_finite()) {
            bail!("parameter {} is not finite ({})", Self::name_of(i).unwrap_or_default(), self.values[i]);
        }
        for (c, cam) in self.avg_cameras.iter().enumerate() {
            ensure!(cam.iter().flatten().all(|v| v.is_finite()), "avg_cameras[{c}] is not finite");
        }
        Ok(())
    }

    /// Saves in the checkpoint layout: `trained_model__<name>.npy` for every group,
    /// `trained_model__epoch.npy` (int64) and `avg_cameras__cams.npy`, every file written by
    /// `write(path, bytes)` (the caller chooses how: atomically, or into a temporary directory
    /// that a checkpoint renames into place as a whole).
    pub fn save_with<E>(&self, dir: &Path, write: impl Fn(&Path, &[u8]) -> std::result::Result<(), E>) -> Result<()>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        use ndarray_npy::WriteNpyExt;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (gi, grp) in GROUPS.iter().enumerate() {
            let arr = ArrayD::from_shape_vec(IxDyn(grp.shape), self.group(group_at(gi)).to_vec())
                .context("shaping a parameter group")?;
            let mut bytes = Vec::new();
            arr.write_npy(&mut bytes).with_context(|| format!("encoding {}", grp.name))?;
            write(&dir.join(format!("trained_model__{}.npy", grp.name)), &bytes)
                .context("writing a parameter group")?;
        }
        let mut bytes = Vec::new();
        ndarray::arr0(self.epoch).write_npy(&mut bytes).context("encoding epoch")?;
        write(&dir.join("trained_model__epoch.npy"), &bytes).context("writing the epoch")?;
        let cams: Vec<f64> = self.avg_cameras.iter().flatten().flatten().copied().collect();
        let arr = ArrayD::from_shape_vec(IxDyn(&[N_CAMERAS, 3, 3]), cams).context("shaping cameras")?;
        let mut bytes = Vec::new();
        arr.write_npy(&mut bytes).context("encoding avg_cameras")?;
        write(&dir.join("avg_cameras__cams.npy"), &bytes).context("writing the cameras")?;
        Ok(())
    }
}

/// The group enum for index `i` of [`GROUPS`].
pub fn group_at(i: usize) -> G {
    const ALL: [G; 14] = [
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
    ALL[i.min(ALL.len() - 1)]
}

fn mean_abs(v: &[f64]) -> f64 {
    v.iter().map(|x| x.abs()).sum::<f64>() / v.len() as f64
}

fn flat(a: &ArrayD<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

fn check_shape(a: &ArrayD<f64>, want: &[usize], what: &str) -> Result<()> {
    ensure!(a.shape() == want, "{what}: shape {:?}, expected {:?}", a.shape(), want);
    Ok(())
}

#[derive(Clone, Copy)]
enum Kind {
    Checkpoint,
    Ppca,
    Cameras,
}

/// Where the arrays live: our npy layout in one directory, or the authors' HDF5 files (either
/// all in one directory, or the `HumanPose/` tree with `data/` and `results/`).
enum Store {
    Npy(PathBuf),
    H5 { checkpoint: PathBuf, ppca: PathBuf, cameras: PathBuf },
}

impl Store {
    fn detect(dir: &Path) -> Result<Self> {
        ensure!(dir.is_dir(), "{} is not a directory", dir.display());
        if dir.join("avg_cameras__cams.npy").exists() || dir.join("trained_model__mean_pose.npy").exists() {
            return Ok(Store::Npy(dir.to_path_buf()));
        }
        let candidates = [
            (dir.join("trained_model.h5"), dir.join("model_parameters.h5"), dir.join("avg_cameras.h5")),
            (
                dir.join("results/trained_model.h5"),
                dir.join("data/model_parameters.h5"),
                dir.join("data/avg_cameras.h5"),
            ),
            (dir.join("h5/trained_model.h5"), dir.join("h5/model_parameters.h5"), dir.join("h5/avg_cameras.h5")),
        ];
        for (c, p, cam) in candidates {
            if cam.exists() {
                return Ok(Store::H5 { checkpoint: c, ppca: p, cameras: cam });
            }
        }
        bail!(
            "{}: no parameters found (expected avg_cameras__cams.npy and trained_model__*.npy / \
             model_parameters__*.npy, or the authors' avg_cameras.h5, trained_model.h5, model_parameters.h5)",
            dir.display()
        )
    }

    fn describe(&self, kind: Kind, name: &str) -> String {
        match self {
            Store::Npy(d) => d.join(npy_name(kind, name)).display().to_string(),
            Store::H5 { checkpoint, ppca, cameras } => {
                let f = match kind {
                    Kind::Checkpoint => checkpoint,
                    Kind::Ppca => ppca,
                    Kind::Cameras => cameras,
                };
                format!("{}:/{name}", f.display())
            }
        }
    }

    fn read_f64(&self, kind: Kind, name: &str) -> Result<ArrayD<f64>> {
        match self {
            Store::Npy(d) => {
                let p = d.join(npy_name(kind, name));
                let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                super::npy::parse_npy_f64(&bytes, &p.display().to_string())
            }
            Store::H5 { checkpoint, ppca, cameras } => {
                let f = match kind {
                    Kind::Checkpoint => checkpoint,
                    Kind::Ppca => ppca,
                    Kind::Cameras => cameras,
                };
                h5::read_f64(f, name)
            }
        }
    }

    fn read_epoch(&self) -> Result<i64> {
        match self {
            Store::Npy(d) => {
                let p = d.join("trained_model__epoch.npy");
                if !p.exists() {
                    return Ok(0);
                }
                let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                let a = super::npy::parse_npy::<i64>(&bytes, 8, &p.display().to_string())?;
                a.iter().next().copied().with_context(|| format!("{}: empty epoch", p.display()))
            }
            Store::H5 { checkpoint, .. } => {
                // The authors' files may lack an epoch: count from 0 then.
                let Ok(a) = h5::read_f64(checkpoint, "epoch") else { return Ok(0) };
                Ok(a.iter().next().filter(|v| v.is_finite()).map(|v| *v as i64).unwrap_or(0))
            }
        }
    }

    fn read_cameras(&self) -> Result<[[[f64; 3]; 3]; N_CAMERAS]> {
        let a = self.read_f64(Kind::Cameras, "cams")?;
        check_shape(&a, &[N_CAMERAS, 3, 3], &self.describe(Kind::Cameras, "cams"))?;
        let v = flat(&a);
        let mut out = [[[0.0; 3]; 3]; N_CAMERAS];
        for c in 0..N_CAMERAS {
            for r in 0..3 {
                for k in 0..3 {
                    out[c][r][k] = v[c * 9 + r * 3 + k];
                }
            }
        }
        Ok(out)
    }
}

fn npy_name(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Checkpoint => format!("trained_model__{name}.npy"),
        Kind::Ppca => format!("model_parameters__{name}.npy"),
        Kind::Cameras => format!("avg_cameras__{name}.npy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_add_up_to_6662() {
        let total: usize = GROUPS.iter().map(|g| g.len()).sum();
        assert_eq!(total, N_PARAMS);
        assert_eq!(offset(G::IrReg) + 3, N_PARAMS);
        assert_eq!(offset(G::BaseVectors), 153);
        assert_eq!(PoseParams::name_of(0).as_deref(), Some("mean_pose[0,0,0]"));
        assert_eq!(PoseParams::name_of(N_PARAMS - 1).as_deref(), Some("ir_reg[2]"));
        assert_eq!(PoseParams::name_of(N_PARAMS), None);
        for i in 0..GROUPS.len() {
            assert_eq!(group_at(i) as usize, i);
        }
    }
}
