//! Stable-Rust stand-in for `cargo fuzz run`: feeds random byte strings (and mutations of the
//! libFuzzer corpus, when present) to the same checks as the libFuzzer targets, catches panics,
//! and reports slow inputs.
//!
//! ```text
//! cargo run --release --no-default-features --example stable_driver -- <target|all> <executions> [seed]
//! ```
//!
//! A failing input is written to `artifacts/<target>/crash-<n>` and replays with
//! `cargo fuzz run <target> artifacts/<target>/crash-<n>` or with this driver's `replay` mode:
//! `... --example stable_driver -- replay <target> <file>`.
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 9] = [
    ("rbf_layer", wiberg_fuzz::check_rbf_layer),
    ("autodiff_layer", wiberg_fuzz::check_autodiff_layer),
    ("least_squares", wiberg_fuzz::check_least_squares),
    ("damped_system", wiberg_fuzz::check_damped_system),
    ("optimizers", wiberg_fuzz::check_optimizers),
    ("ransac_points", wiberg_fuzz::check_ransac_points),
    ("vot_text", wiberg_fuzz::check_vot_text),
    ("vot_dataset", wiberg_fuzz::check_vot_dataset),
    ("pose_npy", wiberg_fuzz::check_pose_npy),
];

/// SplitMix64: a tiny, dependency-free generator (reproducible for a seed).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(|e| e.ok()).filter_map(|e| std::fs::read(e.path()).ok()).collect()
}

fn input(rng: &mut SplitMix, corpus: &[Vec<u8>], buf: &mut Vec<u8>) {
    buf.clear();
    if !corpus.is_empty() && rng.next().is_multiple_of(2) {
        // Mutate a corpus entry: flip a few bytes.
        buf.extend_from_slice(&corpus[(rng.next() % corpus.len() as u64) as usize]);
        let flips = 1 + rng.next() % 8;
        for _ in 0..flips {
            if buf.is_empty() {
                break;
            }
            let i = (rng.next() % buf.len() as u64) as usize;
            buf[i] = rng.next() as u8;
        }
    } else {
        let len = (rng.next() % 512) as usize;
        buf.extend((0..len).map(|_| rng.next() as u8));
    }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The panic message with digits removed: groups crashes by kind.
fn crash_kind(info: &panic::PanicHookInfo<'_>) -> String {
    let msg = info
        .payload()
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    let loc = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
    let short: String = msg.chars().take_while(|c| *c != ':').take(50).collect();
    format!("{loc}: {short}")
}

fn run(name: &str, check: Check, executions: u64, seed: u64) -> bool {
    let mut kinds: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    let corpus = load_corpus(name);
    let mut rng = SplitMix(seed ^ name.len() as u64);
    let mut buf = Vec::new();
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut crashes = 0u64;
    for i in 0..executions {
        input(&mut rng, &corpus, &mut buf);
        let t = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&buf)));
        let dt = t.elapsed();
        slowest = slowest.max(dt);
        if dt > Duration::from_secs(1) {
            eprintln!("{name}: slow input #{i} ({dt:?})");
            save(name, "slow", i, &buf);
        }
        if outcome.is_err() {
            crashes += 1;
            let kind = LAST_PANIC.with(|p| p.borrow().clone());
            let entry = kinds.entry(kind).or_insert((0, i));
            entry.0 += 1;
            if entry.0 == 1 {
                save(name, "crash", i, &buf);
            }
        }
    }
    println!(
        "{name}: {executions} executions in {:.1} s, {crashes} crashes, slowest input {:.3} ms, corpus seeds {}",
        start.elapsed().as_secs_f64(),
        slowest.as_secs_f64() * 1e3,
        corpus.len()
    );
    for (kind, (count, first)) in &kinds {
        println!("  {count:>7} x {kind} (first: artifacts/{name}/crash-{first})");
    }
    crashes == 0
}

fn save(name: &str, kind: &str, i: u64, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts").join(name);
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{kind}-{i}")), data);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("replay") {
        let (Some(target), Some(file)) = (args.get(1), args.get(2)) else {
            eprintln!("usage: stable_driver replay <target> <file>");
            std::process::exit(2);
        };
        let Some((_, check)) = TARGETS.iter().find(|(n, _)| n == target) else {
            eprintln!("unknown target {target}");
            std::process::exit(2);
        };
        match std::fs::read(file) {
            Ok(data) => check(&data),
            Err(err) => {
                eprintln!("cannot read {file}: {err}");
                std::process::exit(2);
            }
        }
        println!("{target}: {file} passes");
        return;
    }
    panic::set_hook(Box::new(|info| {
        let kind = crash_kind(info);
        LAST_PANIC.with(|p| *p.borrow_mut() = kind);
    }));
    let which = args.first().cloned().unwrap_or_else(|| "all".into());
    let executions: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut ok = true;
    let mut matched = false;
    for (name, check) in TARGETS {
        if which == "all" || which == name {
            matched = true;
            ok &= run(name, check, executions, seed);
        }
    }
    if !matched {
        eprintln!("unknown target {which}; one of: all, {}", TARGETS.map(|t| t.0).join(", "));
        std::process::exit(2);
    }
    if !ok {
        std::process::exit(1);
    }
}
