//! `wiberg ransac` as a command: train (or resume) with checkpoints and a progress bar, then
//! print the tables and write the CSV, summary and figures. The training itself
//! ([`super::training`]) knows nothing of files, reports or plots.

use anyhow::Result;
use std::time::{Duration, Instant};

use super::args::TrainArgs;
use super::training::{fresh_trajectories, train_from, Training};
use super::{checkpoint, plots, report};
use crate::common::process_cpu_seconds;

/// `wiberg ransac`: trains (or resumes), prints the tables, writes the CSV, summary and
/// figures, then removes the state file.
pub(crate) fn run(args: TrainArgs) -> Result<()> {
    let config = args.config()?;
    // Held until the run ends. Temporaries of writes that a kill interrupted (state, results,
    // figures) are never read: once the lock is held they are just tidied away.
    let _lock = crate::common::lock_out_dir(&args.out)?;
    let state_path = args.out.join(checkpoint::STATE_FILE);
    let threads = if args.threads == 0 { rayon::current_num_threads() } else { args.threads };
    let resumed = if args.resume { Some(checkpoint::load(&state_path, &config)?) } else { None };
    if resumed.is_none() && state_path.exists() {
        println!("Note: {} of an interrupted run will be replaced (--resume continues it).", state_path.display());
    }
    report::print_intro(&config, threads, &args.out);
    let (trajectories, done, wall_before, cpu_before_resume) = match resumed {
        Some(c) => {
            println!("Resuming from iteration {} of {} ({}).\n", c.done, config.iterations, state_path.display());
            (c.trajectories, c.done, c.wall_seconds, c.cpu_seconds)
        }
        None => (fresh_trajectories(&config)?, 0, 0.0, Some(0.0)),
    };
    let total = (config.iterations * config.runs * config.methods.len()) as u64;
    let progress = crate::common::progress_bar(total, "ransac");
    progress.set_position((done * trajectories.len()) as u64);
    let started = Instant::now();
    let cpu_started = process_cpu_seconds();
    let segment_cpu = move || cpu_started.zip(process_cpu_seconds()).map(|(a, b)| b - a);
    let mut sink = checkpoint::Writer::new(
        state_path.clone(),
        &config,
        args.checkpoint_interval(),
        (wall_before, cpu_before_resume),
        started,
        &segment_cpu,
        &progress,
    );
    let trajectories = crate::common::with_threads(args.threads, || {
        let mut printer = report::BlockPrinter::new(&config);
        printer.resume_at(done);
        train_from(&config, trajectories, done, &progress, |t, d| progress.suspend(|| printer.print(t, d)), &mut sink)
    })??;
    // The last write in flight is part of the training's cost.
    sink.finish();
    let wall = Duration::from_secs_f64(wall_before) + started.elapsed();
    let cpu_seconds = cpu_before_resume.zip(segment_cpu()).map(|(a, b)| a + b);
    progress.finish_and_clear();
    let (checkpoints, checkpoint_seconds, checkpoint_bytes) = (sink.written, sink.seconds, sink.last_bytes);
    let training = Training { config, trajectories, wall, threads, cpu_seconds };
    let summary = report::summarize(&training);
    report::print_final(&training, &summary);
    if checkpoints > 0 {
        println!(
            "Checkpoints: {checkpoints} written to {}, training waited {checkpoint_seconds:.3} s for them (the last {:.1} MB).",
            state_path.display(),
            checkpoint_bytes as f64 / 1e6
        );
    }
    let csv_path = args.out.join("iterations.csv");
    report::write_csv(&training, &csv_path)?;
    let mut files = vec![csv_path];
    let figures = if args.no_plots {
        Vec::new()
    } else {
        match plots::draw_all(&training, &args.out) {
            Ok(paths) => paths,
            Err(err) => {
                eprintln!("warning: figures not drawn: {err:#}");
                Vec::new()
            }
        }
    };
    files.extend(figures);
    let summary_path = args.out.join("summary.json");
    report::write_summary(&training, &summary, &summary_path)?;
    files.push(summary_path);
    // Every result is on disk: the state has served its purpose.
    match std::fs::remove_file(&state_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("warning: could not remove {}: {e}", state_path.display()),
    }
    println!();
    println!("Wrote:");
    for f in &files {
        println!("  {}", f.display());
    }
    Ok(())
}
