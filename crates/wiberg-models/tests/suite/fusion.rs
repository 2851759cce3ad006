//! Tracker fusion: the VOT reader (round trip, malformed files, a missing result file, the
//! image size from the first image) and the losses' gradients against finite differences.
//! (The `wiberg fusion` command's own tests are the CLI's.)

use std::path::Path;
use wiberg::{ArgminLayer, Damping, LbfgsConfig, Minimizer};
use wiberg_models::fusion::model::{build_frames, loss_and_grad, LossKind, ParamLayout};
use wiberg_models::fusion::vot::{read_dataset, result_path, Dataset};

use crate::common::{small_dataset, write_image, write_vot};

#[test]
fn reader_round_trips_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_dataset(9, 3, 60.0, 1);
    write_vot(dir.path(), &data);
    let (back, report) = read_dataset(dir.path()).unwrap();
    assert!(report.skipped_trackers.is_empty() && report.sequences_without_size.is_empty());
    assert_eq!(back, data);
    // Some trackers report rotated boxes, some axis-aligned ones; both kinds survive.
    let text = std::fs::read_to_string(result_path(dir.path(), &data.trackers[0], &data.sequences[0].name)).unwrap();
    assert_eq!(text.lines().next(), Some("1"));
}

fn write_small(dir: &Path) -> Dataset {
    let data = small_dataset(4, 2, 50.0, 2);
    write_vot(dir, &data);
    data
}

#[test]
fn malformed_result_line_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_small(dir.path());
    let path = result_path(dir.path(), &data.trackers[1], &data.sequences[1].name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[6] = "12.5,13,abc,4";
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains(&format!("{}_001.txt:7", data.sequences[1].name)), "{err}");
    assert!(err.contains("`abc`"), "{err}");

    lines[6] = "12.5,13,4";
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains(":7") && err.contains("expected 4 or 8 numbers, found 3"), "{err}");

    lines[6] = "7";
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains(":7") && err.contains("unknown VOT code 7"), "{err}");

    lines[6] = "0";
    lines.truncate(10);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains("10 lines") && err.contains("frames"), "{err}");
}

#[test]
fn malformed_ground_truth_and_meta_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_small(dir.path());
    let gt = dir.path().join("sequences").join(&data.sequences[0].name).join("groundtruth.txt");
    let text = std::fs::read_to_string(&gt).unwrap();
    std::fs::write(&gt, text.replacen('\n', "\n1,2,3,4,5\n", 1)).unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains("groundtruth.txt:2") && err.contains("found 5"), "{err}");
    std::fs::write(&gt, text).unwrap();
    let meta = dir.path().join("sequences").join(&data.sequences[0].name).join("meta.txt");
    std::fs::write(&meta, "width=640\nheight=-3\n").unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains("meta.txt:2") && err.contains("positive"), "{err}");
}

#[test]
fn missing_result_file_drops_the_tracker_on_that_sequence_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_small(dir.path());
    let missing = result_path(dir.path(), &data.trackers[2], &data.sequences[1].name);
    std::fs::remove_file(&missing).unwrap();
    let (back, report) = read_dataset(dir.path()).unwrap();
    // The tracker keeps its other sequence.
    assert_eq!(back.trackers, data.trackers);
    assert_eq!(back.results[2][0], data.results[2][0]);
    assert_eq!(back.results[2][1], None);
    assert!(report.skipped_trackers.is_empty());
    assert_eq!(report.missing_results.len(), 1);
    let m = &report.missing_results[0];
    assert_eq!((m.tracker.as_str(), m.sequence.as_str()), (data.trackers[2].as_str(), data.sequences[1].name.as_str()));
    assert_eq!(m.file, missing.display().to_string());
    assert!(m.reason.contains("missing") && m.reason.contains("no box"), "{}", m.reason);

    // The model sees no box of that tracker on that sequence, and its boxes on the other.
    let layout = ParamLayout { trackers: data.trackers.len(), bins: 4 };
    let frames = build_frames(&back, &layout).unwrap();
    let has_box = |seq: usize| frames.iter().filter(|f| f.seq == seq).any(|f| f.trackers.contains(&2));
    assert!(has_box(0));
    assert!(!has_box(1));
    // The other trackers' frames are those of the complete data set.
    let full = build_frames(&data, &layout).unwrap();
    assert_eq!(frames.len(), full.len());
    for (a, b) in frames.iter().zip(&full).filter(|(f, _)| f.seq == 0) {
        assert_eq!(a.trackers, b.trackers);
    }

    // Written back, the missing file stays missing.
    let copy = tempfile::tempdir().unwrap();
    write_vot(copy.path(), &back);
    assert!(!result_path(copy.path(), &data.trackers[2], &data.sequences[1].name).exists());
    assert_eq!(read_dataset(copy.path()).unwrap().0, back);
}

#[test]
fn a_tracker_without_any_result_file_is_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_small(dir.path());
    for seq in &data.sequences {
        std::fs::remove_file(result_path(dir.path(), &data.trackers[1], &seq.name)).unwrap();
    }
    let (back, report) = read_dataset(dir.path()).unwrap();
    assert!(!back.trackers.contains(&data.trackers[1]));
    assert_eq!(back.trackers.len(), data.trackers.len() - 1);
    assert_eq!(report.skipped_trackers.len(), 1);
    assert_eq!(report.skipped_trackers[0].tracker, data.trackers[1]);
    assert!(report.skipped_trackers[0].reason.contains("no result file for any"), "{:?}", report.skipped_trackers);
    assert!(report.missing_results.is_empty(), "a tracker left out is not also listed per sequence");
}

/// Without `meta.txt` the image size is read from the header of the sequence's first image
/// (JPEG or PNG, in `color/` or in the sequence folder); with neither the sequence is listed
/// as without size; an unreadable first image is an error naming it.
#[test]
fn image_size_comes_from_the_first_image_without_meta_txt() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_dataset(3, 4, 30.0, 12);
    write_vot(dir.path(), &data);
    let name = |s: usize| data.sequences[s].name.clone();
    let seq_dir = |s: usize| dir.path().join("sequences").join(name(s));
    for s in 0..3 {
        std::fs::remove_file(seq_dir(s).join("meta.txt")).unwrap();
    }
    // Only the first image by name counts; other files are ignored.
    write_image(&seq_dir(0).join("color/00000002.jpg"), (10, 12));
    write_image(&seq_dir(0).join("color/00000001.jpg"), (64, 48));
    std::fs::write(seq_dir(0).join("color/00000000.txt"), "not an image").unwrap();
    write_image(&seq_dir(1).join("00000001.png"), (33, 21));
    // Sequence 3 keeps its meta.txt, which wins over an image.
    write_image(&seq_dir(3).join("color/00000001.png"), (5, 5));
    let (back, report) = read_dataset(dir.path()).unwrap();
    assert_eq!(back.sequences[0].image_size, Some([64.0, 48.0]));
    assert_eq!(back.sequences[1].image_size, Some([33.0, 21.0]));
    assert_eq!(back.sequences[2].image_size, None);
    assert_eq!(back.sequences[3].image_size, data.sequences[3].image_size);
    assert_eq!(report.sizes_from_images, [name(0), name(1)]);
    assert_eq!(report.sequences_without_size, [name(2)]);

    let broken = seq_dir(2).join("color/00000001.jpg");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    std::fs::write(&broken, b"not a JPEG at all").unwrap();
    let err = format!("{:#}", read_dataset(dir.path()).unwrap_err());
    assert!(err.contains(&broken.display().to_string()) && err.contains("meta.txt"), "{err}");
}

/// The layer of the finite-difference checks: implicit derivative, L-BFGS run to a gradient
/// of 1e-12 and the polish step, so that the forward map is smooth enough to difference.
fn converged_implicit_layer() -> ArgminLayer {
    ArgminLayer {
        minimizer: Minimizer::Lbfgs(LbfgsConfig { grad_tol: 1e-12, ..Default::default() }),
        polish: true,
        damping: Damping::Implicit,
        ..Default::default()
    }
}

/// Central finite differences of the whole forward pass (seeds, L-BFGS, undamped Newton
/// polish) against the implicit derivative, for widths and weights, on real generated frames.
#[test]
fn fusion_loss_gradient_matches_finite_differences() {
    let data = small_dataset(10, 2, 60.0, 5);
    let layout = ParamLayout { trackers: 10, bins: 4 };
    let frames = build_frames(&data, &layout).unwrap();
    let layer = converged_implicit_layer();
    // Parameters away from the symmetric start: every tracker its own width and weights.
    let mut w = layout.initial(0.3);
    for (i, v) in w.iter_mut().enumerate() {
        *v *= 1.0 + 0.3 * ((i as f64) * 1.7).sin();
    }
    let loss = LossKind::Corner;
    let mut checked = 0;
    for frame in frames.iter().filter(|f| f.len() >= 6).step_by(7).take(4) {
        let (_, grad) = loss_and_grad(frame, &w, &layer, loss).unwrap();
        let mut params: Vec<usize> = Vec::new();
        for k in 0..frame.len() {
            let t = frame.trackers[k] as usize;
            params.push(layout.width(t));
            params.push(layout.weight(t, frame.bins[k] as usize));
        }
        params.sort();
        params.dedup();
        let scale = grad.iter().map(|g| g.abs()).fold(0.0, f64::max);
        for &j in &params {
            let h = 1e-6 * w[j];
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            let lp = loss_and_grad(frame, &wp, &layer, loss).unwrap().0;
            let lm = loss_and_grad(frame, &wm, &layer, loss).unwrap().0;
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - grad[j]).abs() <= 1e-5 * scale + 1e-9,
                "frame {} param {j}: analytic {} vs finite differences {fd}",
                frame.index,
                grad[j]
            );
            checked += 1;
        }
        // Parameters of trackers without a box in this frame get no gradient.
        let untouched = (0..w.len()).filter(|j| !params.contains(j));
        assert!(untouched.into_iter().all(|j| grad[j] == 0.0));
    }
    assert!(checked >= 20, "only {checked} parameters checked");
}

/// The IoU loss: its box-coordinate gradient is itself a central difference, so the check is
/// looser, but it catches sign and chaining errors through both corners' argmin layers.
#[test]
fn iou_loss_gradient_matches_finite_differences() {
    let data = small_dataset(10, 2, 60.0, 6);
    let layout = ParamLayout { trackers: 10, bins: 4 };
    let frames = build_frames(&data, &layout).unwrap();
    let layer = converged_implicit_layer();
    let mut w = layout.initial(0.3);
    for (i, v) in w.iter_mut().enumerate() {
        *v *= 1.0 + 0.3 * ((i as f64) * 1.3).cos();
    }
    let mut checked = 0;
    for frame in frames.iter().filter(|f| f.len() >= 6).step_by(11).take(4) {
        let (l, grad) = loss_and_grad(frame, &w, &layer, LossKind::Iou).unwrap();
        assert!((0.0..=1.0).contains(&l));
        let scale = grad.iter().map(|g| g.abs()).fold(0.0, f64::max);
        if scale == 0.0 {
            continue;
        }
        for j in (0..w.len()).filter(|&j| grad[j] != 0.0) {
            let h = 1e-5 * w[j];
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            let fd = (loss_and_grad(frame, &wp, &layer, LossKind::Iou).unwrap().0
                - loss_and_grad(frame, &wm, &layer, LossKind::Iou).unwrap().0)
                / (2.0 * h);
            assert!(
                (fd - grad[j]).abs() <= 1e-3 * scale + 1e-7,
                "frame {} param {j}: analytic {} vs finite differences {fd}",
                frame.index,
                grad[j]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} parameters checked");
}
