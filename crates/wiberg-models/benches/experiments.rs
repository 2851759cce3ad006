//! The experiments' hot paths that live in this crate: one Tome et al. pose frame (100
//! rotations x 3 models of damped 80-unknown IRLS solves; its reconstruction, and its training
//! loss with the gradient over the 6,662 parameters) and tracker fusion on synthetic VOT-format
//! frames (forward + backward of both corners, per frame).
//!
//! `cargo bench -p wiberg-models --bench experiments`. The pose benches read the Tome et al.
//! parameters from `$WIBERG_TOME2018_DIR` or `../shared/data/tome2018` and are left out, with a
//! note, where they are not.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use wiberg::Damping;
use wiberg_models::fusion::generate::{generate, GenerateConfig};
use wiberg_models::fusion::model::{build_frames, layer_with, loss_and_grad, LossKind, ParamLayout};
use wiberg_models::pose::generate::{frame, ActionStyle, Detector, Generator};
use wiberg_models::pose::grad::frame_loss_and_grad;
use wiberg_models::pose::model::{PoseModel, Variant, Workspace};
use wiberg_models::pose::params::PoseParams;

#[allow(dead_code)] // the tests' `tome_dir`
#[path = "../tests/support/tome_dir.rs"]
mod tome;

fn pose(c: &mut Criterion) {
    let Some(dir) = tome::find_tome_dir() else {
        eprintln!("note: the Tome et al. parameters are not there; set WIBERG_TOME2018_DIR to run the pose benches");
        return;
    };
    let params = PoseParams::load_checkpoint(&dir, true).expect("the checkpoint's parameters");
    let generator = Generator::load(&dir).expect("the generator's models");
    let style = ActionStyle { mix: [0.4, 0.3, 0.3], coef_scale: 1.0 };
    let detector = Detector { noise_px: 5.0, outlier_rate: 0.05, swap_rate: 0.0, sh_joints: true };
    let (gt, detections) = frame(&generator, &style, 1.0, &detector, &mut ChaCha8Rng::seed_from_u64(0));
    let mut ws = Workspace::default();
    for variant in [Variant::Huber, Variant::L2] {
        let model = PoseModel::new(&params, variant).expect("a model");
        c.bench_function(&format!("pose_reconstruct_{}", variant.name()), |b| {
            b.iter(|| model.reconstruct(black_box(&detections), &mut ws).expect("a reconstruction"))
        });
    }
    let model = PoseModel::new(&params, Variant::Huber).expect("a model");
    let damping = Damping::TrustRegion { lambda: 1e-3 };
    c.bench_function("pose_loss_and_grad_huber", |b| {
        b.iter(|| {
            frame_loss_and_grad(&model, &params, black_box(&detections), &gt, damping, &mut ws).expect("a gradient")
        })
    });
}

fn fusion(c: &mut Criterion) {
    // 4 sequences of about 60 frames, 72 trackers (VOT2018's count).
    let cfg = GenerateConfig { sequences: 4, trackers: 72, seed: 0, mean_frames: 60.0 };
    let (data, _) = generate(&cfg, || {});
    let layout = ParamLayout { trackers: 72, bins: 8 };
    let frames = build_frames(&data, &layout).expect("frames");
    let w = layout.initial(0.25);
    let layer = layer_with(Damping::TrustRegion { lambda: 0.1 });
    let mut i = 0;
    c.bench_function("fusion_frame_loss_and_grad", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            // A frame with no tracker box has no loss: an error, timed like the others.
            let _ = black_box(loss_and_grad(&frames[i], &w, &layer, LossKind::Corner));
        })
    });
}

criterion_group!(benches, pose, fusion);
criterion_main!(benches);
