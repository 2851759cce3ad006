//! `wiberg fusion train` through the crate's own functions: learning helps on held-out frames,
//! training does not depend on the thread count, and a saved training state continues bit for
//! bit. (The VOT reader, the loss gradients and the command as a child process are tested in
//! `tests/suite/`.)

use anyhow::Result;
use indicatif::ProgressBar;
use wiberg::{ArgminLayer, Damping};
use wiberg_models::fusion::model::{build_frames, layer_with, Frame, LossKind, ParamLayout};

use super::train::{train_from, SplitKind, TrainConfig, TrainOutcome, TrainState};
use super::vot::write_dataset;
use super::{run_train, TrainArgs, TrainReport};
use crate::common::OptimizerKind;
use crate::test_support::small_dataset;

/// Trains the parameters from `init` on `frames[train]` with the given layer (its damping is the
/// derivative being tested). Frames without trackers must not be in `train`.
fn train(
    frames: &[Frame],
    train_idx: &[usize],
    layout: &ParamLayout,
    init: Vec<f64>,
    layer: &ArgminLayer,
    cfg: &TrainConfig,
    pb: &ProgressBar,
) -> Result<TrainOutcome> {
    let state = TrainState::new(train_idx, init, cfg)?;
    let state = train_from(frames, layout, state, layer, cfg, pb, 0, &mut |_| Ok(()))?;
    Ok(state.into_outcome())
}

#[test]
fn trained_fusion_beats_median_fusion_on_held_out_frames() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    write_dataset(&data_dir, &small_dataset(72, 6, 150.0, 11)).unwrap();
    let mut args = TrainArgs::new(data_dir, dir.path().join("run"));
    args.epochs = 4;
    args.batch = 64;
    args.no_implicit = true;
    args.threads = 2;
    let report = run_train(&args).unwrap();
    let row = |name: &str| report.table.rows.iter().find(|r| r.method.starts_with(name)).unwrap().mean_iou;
    let (median, ours) = (row("median fusion"), row("trust-region fusion"));
    assert!(ours > median + 0.005, "trained {ours} vs median {median}");
    assert!(report.trust_region.converged());
    for f in [
        "table.csv",
        "table.json",
        "table.txt",
        "training.json",
        "params_ours.json",
        "figure2.png",
        "split_frames_seed0.txt",
    ] {
        assert!(dir.path().join("run").join(f).exists(), "{f} missing");
    }
    let split = std::fs::read_to_string(dir.path().join("run/split_frames_seed0.txt")).unwrap();
    assert!(split.lines().any(|l| l.ends_with(" train")) && split.lines().any(|l| l.ends_with(" test")));
}

#[test]
fn training_is_identical_for_one_and_two_threads() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    write_dataset(&data_dir, &small_dataset(12, 2, 80.0, 4)).unwrap();
    let run = |threads: usize| {
        let mut args = TrainArgs::new(data_dir.clone(), dir.path().join(format!("run{threads}")));
        args.epochs = 2;
        args.batch = 32;
        args.split = SplitKind::Sequences;
        args.threads = threads;
        run_train(&args).unwrap()
    };
    let (a, b) = (run(1), run(2));
    assert_eq!(a.trust_region.params, b.trust_region.params);
    assert_eq!(a.implicit.as_ref().map(|o| &o.params), b.implicit.as_ref().map(|o| &o.params));
    let iou = |r: &TrainReport| r.table.rows.iter().map(|x| x.mean_iou).collect::<Vec<_>>();
    assert_eq!(iou(&a), iou(&b));
}

/// A state saved mid-epoch or at an epoch end, read back from its JSON, continues to exactly
/// the parameters and log of an uninterrupted training.
#[test]
fn a_saved_training_state_continues_bit_identically() {
    let data = small_dataset(12, 2, 80.0, 8);
    let layout = ParamLayout { trackers: 12, bins: 4 };
    let frames = build_frames(&data, &layout).unwrap();
    let train_idx: Vec<usize> =
        (0..frames.len()).filter(|&i| i % 2 == 0 && !frames[i].is_empty() && frames[i].gt_size() >= 1.0).collect();
    let cfg =
        TrainConfig { epochs: 3, batch: 8, lr: 0.02, optimizer: OptimizerKind::Adam, loss: LossKind::Corner, seed: 3 };
    let layer = layer_with(Damping::TrustRegion { lambda: 0.1 });
    let pb = ProgressBar::hidden();
    let init = layout.initial(0.25);
    let full = train(&frames, &train_idx, &layout, init.clone(), &layer, &cfg, &pb).unwrap();
    let mut saved = Vec::new();
    let state = TrainState::new(&train_idx, init, &cfg).unwrap();
    train_from(&frames, &layout, state, &layer, &cfg, &pb, 3, &mut |s| {
        saved.push((s.epoch, s.next_batch, serde_json::to_string(&s.save()?)?));
        Ok(())
    })
    .unwrap();
    let batches = train_idx.len().div_ceil(cfg.batch);
    assert_eq!(saved.len(), cfg.epochs * (1 + (batches - 1) / 3), "checkpoints every 3 batches and at epoch ends");
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mid_epoch = saved.iter().find(|(e, b, _)| *e == 2 && *b > 0).unwrap();
    let epoch_end = saved.iter().find(|(e, b, _)| *e == 2 && *b == 0).unwrap();
    for (_, _, text) in [mid_epoch, epoch_end] {
        let state = TrainState::restore(serde_json::from_str(text).unwrap(), &train_idx, &layout, &cfg).unwrap();
        let done = train_from(&frames, &layout, state, &layer, &cfg, &pb, 0, &mut |_| Ok(())).unwrap().into_outcome();
        assert_eq!(bits(&done.params), bits(&full.params));
        let losses = |o: &TrainOutcome| o.epochs.iter().map(|e| e.loss.to_bits()).collect::<Vec<_>>();
        assert_eq!(losses(&done), losses(&full));
        assert_eq!(done.diverged, full.diverged);
    }
    // A state from other training frames is refused.
    let err =
        TrainState::restore(serde_json::from_str(&mid_epoch.2).unwrap(), &train_idx[1..], &layout, &cfg).err().unwrap();
    assert!(format!("{err:#}").contains("permutation"), "{err:#}");
}
