//! `wiberg fusion train` on a data set with a missing result file. (The VOT reader and the
//! losses' gradients are tested in `wiberg-models`; training through the crate's own
//! functions in `src/fusion/tests.rs`.)

use wiberg_models::fusion::vot::result_path;

use crate::common::{small_dataset, write_image, write_vot};

/// `fusion train` on a data set with one missing result file: the warning names tracker,
/// sequence and file, `training.json` lists it, the tracker's row notes its missing frames and
/// everything is finite. The sequences have no meta.txt: one has an image, whose header gives
/// its size; the two others are warned about once.
#[test]
fn fusion_train_reports_a_missing_result_file() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = small_dataset(5, 3, 40.0, 9);
    write_vot(&data_dir, &data);
    let (tracker, seq) = (&data.trackers[0], &data.sequences[2].name);
    let missing = result_path(&data_dir, tracker, seq);
    std::fs::remove_file(&missing).unwrap();
    // Two sequences without meta.txt or images, one with a JPEG only.
    for seq in &data.sequences {
        std::fs::remove_file(data_dir.join("sequences").join(&seq.name).join("meta.txt")).unwrap();
    }
    write_image(&data_dir.join("sequences").join(seq).join("color/00000001.jpg"), (640, 360));
    let out = dir.path().join("run");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wiberg"))
        .args(["fusion", "train", "--data"])
        .arg(&data_dir)
        .arg("--out")
        .arg(&out)
        .args(["--epochs", "1", "--batch", "32", "--no-implicit", "--threads", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let warning = stderr.lines().find(|l| l.contains("no result file")).unwrap_or_else(|| panic!("{stderr}"));
    for part in [tracker.as_str(), seq.as_str(), &missing.display().to_string()] {
        assert!(warning.contains(part), "`{part}` not in: {warning}");
    }
    let training: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    let listed = &training["read"]["missing_results"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["tracker"], tracker.as_str());
    assert_eq!(listed[0]["sequence"], seq.as_str());
    assert_eq!(listed[0]["file"], missing.display().to_string());
    assert!(training["read"]["skipped_trackers"].as_array().is_some_and(Vec::is_empty));
    assert_eq!(training["read"]["sizes_from_images"], serde_json::json!([seq]));
    let without: Vec<&str> = data.sequences[..2].iter().map(|s| s.name.as_str()).collect();
    assert_eq!(training["read"]["sequences_without_size"], serde_json::json!(without));
    // One warning for the sequences without a size, saying how many.
    let size_warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("neither meta.txt nor an image")).collect();
    assert_eq!(size_warnings.len(), 1, "{stderr}");
    assert!(size_warnings[0].contains("2 sequences"), "{stderr}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("table.json")).unwrap()).unwrap();
    let split = std::fs::read_to_string(out.join("split_frames_seed0.txt")).unwrap();
    let test_frames = split.lines().filter(|l| l.starts_with(&format!("{seq} ")) && l.ends_with(" test")).count();
    assert!(test_frames > 0);
    let rows = table["rows"].as_array().unwrap();
    // Five trackers: all of them have a row.
    assert_eq!(rows.iter().filter(|r| r["method"].as_str().unwrap().starts_with("single tracker")).count(), 5);
    for row in rows {
        assert!(row["mean_iou"].as_f64().is_some_and(f64::is_finite), "{row}");
        let (method, note) = (row["method"].as_str().unwrap(), row["note"].as_str().unwrap());
        if method.starts_with("single tracker") && method.ends_with(&format!(": {tracker}")) {
            assert_eq!(note, format!("no result file for {test_frames} test frames (IoU 0 there)"));
        } else {
            assert!(!note.contains("no result file"), "{row}");
        }
    }
}
