//! `wiberg pose table`: rows and columns of the CSV, numbers equal to `pose eval` on the same
//! parameters (each run with the variant it was trained with), clear errors for bad `--runs`.

use std::collections::BTreeMap;
use std::path::Path;
use wiberg_models::pose::generate::{Generator, ACTIONS};
use wiberg_models::pose::metrics::Metric;
use wiberg_models::pose::model::Variant;

use crate::common::DampingMode;
use crate::pose::table::{self, TableArgs};
use crate::pose::train::{self, TrainArgs};
use crate::pose::{evaluate, generate, EvalArgs, ModelArgs};
use crate::test_support::tome_dir;

fn model_args(checkpoint: &Path, variant: Variant) -> ModelArgs {
    ModelArgs {
        checkpoint: Some(checkpoint.to_path_buf()),
        init: false,
        model_dir: None,
        load_robust_params: false,
        variant,
    }
}

/// Trains `batches` batches of 4 from the authors' checkpoint into `out`.
fn train_short(tome: &Path, data: &Path, out: &Path, variant: Variant, batches: usize) {
    train::run(TrainArgs {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        model: model_args(tome, variant),
        damping: DampingMode::Implicit,
        lambda: 1e-3,
        epochs: 1,
        batch: 4,
        lr: 0.05,
        every: 1,
        checkpoint_every: 100,
        max_batches: batches,
        seed: 1,
        threads: 2,
        resume: false,
    })
    .unwrap();
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(str::to_string).collect()).collect();
    (header, rows)
}

#[test]
fn table_rows_columns_and_numbers_match_pose_eval() {
    let Some(tome) = tome_dir() else { return };
    let gen = Generator::load(&tome).unwrap();
    let data = tempfile::tempdir().unwrap();
    generate::generate(&gen, data.path(), 1, 21, 1.0, false).unwrap();
    let run_l2 = tempfile::tempdir().unwrap();
    train_short(&tome, &data.path().join("training"), run_l2.path(), Variant::L2, 2);
    let out = tempfile::tempdir().unwrap();
    // `--data` is the generate root: its testing/ split is used.
    table::run(TableArgs {
        data: data.path().to_path_buf(),
        runs: format!("baseline=checkpoint, l2={}", run_l2.path().display()),
        variant_of: vec![],
        metric: Metric::Mpjpe,
        every: 1,
        model_dir: Some(tome.clone()),
        out: Some(out.path().to_path_buf()),
        threads: 2,
    })
    .unwrap();
    let (header, rows) = read_csv(&out.path().join("table.csv"));
    let mut want: Vec<String> = vec!["run".into(), "variant".into(), "damping".into()];
    want.extend(ACTIONS.iter().map(|a| a.to_string()));
    want.push("Avg".into());
    assert_eq!(header, want);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][..3], ["baseline", "huber", "-"]);
    assert_eq!(rows[1][..3], ["l2", "l2", "implicit"]);

    // The same numbers from `pose eval`'s evaluation: the authors' checkpoint with Huber, the
    // trained run (its --out directory = latest checkpoint, trained hl/ir) with L2.
    let test = data.path().join("testing");
    for (row, args) in rows.iter().zip([model_args(&tome, Variant::Huber), model_args(run_l2.path(), Variant::L2)]) {
        let res = evaluate(&args.model().unwrap(), &test, Metric::Mpjpe, 1, 1, false).unwrap();
        let got: BTreeMap<&str, f64> =
            header[3..].iter().map(String::as_str).zip(row[3..].iter().map(|v| v.parse().unwrap())).collect();
        for (action, err) in &res.per_action {
            assert_eq!(got[action.as_str()], *err, "{} {action}", row[0]);
        }
        assert_eq!(got["Avg"], res.mpjpe_mm, "{} Avg", row[0]);
    }
    let l2: f64 = rows[1].last().unwrap().parse().unwrap();
    let base: f64 = rows[0].last().unwrap().parse().unwrap();
    assert_ne!(l2, base, "the two runs give the same error");

    let md = std::fs::read_to_string(out.path().join("table.md")).unwrap();
    assert_eq!(md.lines().filter(|l| l.starts_with("| ")).count(), 3, "{md}");
    if crate::common::check_fonts().is_ok() {
        let png = std::fs::read(out.path().join("table.png")).unwrap();
        assert!(png.len() > 10_000 && png.starts_with(b"\x89PNG"), "table.png has {} bytes", png.len());
    }
    assert!(
        std::fs::read_dir(out.path()).unwrap().all(|e| {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            name == crate::common::LOCK_FILE || !name.starts_with('.')
        }),
        "temporary files left in --out"
    );

    // --variant-of overrides the stored variant.
    let specs = table::parse_runs(&format!("l2={}", run_l2.path().display()), &["l2=huber".into()], None).unwrap();
    assert_eq!(specs[0].variant, Variant::Huber);
    // `pose eval --checkpoint <train out>` reads the same checkpoint the table used.
    let eval_out = out.path().join("eval.json");
    crate::pose::run(crate::pose::PoseArgs {
        command: crate::pose::PoseCommand::Eval(EvalArgs {
            data: test.clone(),
            model: model_args(run_l2.path(), Variant::L2),
            metric: Metric::Mpjpe,
            every: 1,
            json: true,
            out: Some(eval_out.clone()),
            threads: 2,
        }),
    })
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(eval_out).unwrap()).unwrap();
    assert_eq!(json["mpjpe_mm"].as_f64().unwrap(), l2);
}

#[test]
fn bad_runs_specs_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let err = |runs: &str, variant_of: &[&str]| -> String {
        let v: Vec<String> = variant_of.iter().map(|s| s.to_string()).collect();
        match table::parse_runs(runs, &v, Some(dir.path())) {
            Ok(_) => panic!("{runs:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    };
    assert!(err("baseline", &[]).contains("has no `=`"));
    assert!(err(&format!("a={d},b"), &[]).contains("\"b\" has no `=`"));
    assert!(err("a=/no/such/dir", &[]).contains("/no/such/dir is not a directory"));
    assert!(err(&format!("a={d},a=checkpoint"), &[]).contains("\"a\" is used twice"));
    assert!(err(&format!("={d}"), &[]).contains("empty name"));
    assert!(err("a=", &[]).contains("empty directory"));
    assert!(err("", &[]).contains("--runs is empty"));
    assert!(err("a=checkpoint", &["b=l2"]).contains("no run of that name"));
    assert!(err("a=checkpoint", &["a=cubic"]).contains("unknown variant"));
    assert!(err("a=checkpoint", &["a"]).contains("expected NAME=huber"));
    match table::parse_runs("a=init", &[], None) {
        Ok(_) => panic!("init without a model dir was accepted"),
        Err(e) => assert!(format!("{e:#}").contains("--model-dir"), "{e:#}"),
    }
    // A directory that is no checkpoint fails when loaded, naming the run.
    let specs = table::parse_runs(&format!("empty={d}"), &[], None).unwrap();
    let e = table::build(&specs, dir.path(), Metric::Mpjpe, 1, 1).unwrap_err();
    assert!(format!("{e:#}").contains("run empty"), "{e:#}");
}
