//! Helpers shared by the experiments: atomic file writes, progress bars, thread pools, the
//! figures' font check.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The directory `path` lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The file name of `path` as text (an error when it has none).
fn file_name_of(path: &Path) -> Result<String> {
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    Ok(name.to_string_lossy().into_owned())
}

/// The one temporary-name pattern of every atomic write: `.<name>.tmp<pid>[.<ext>]` beside the
/// target `<name>` (hidden, tagged with the writing process's id, keeping the extension so
/// writers that choose the format by extension, plotters' PNG encoder, still work). Used for
/// files ([`atomic_write`], [`atomic_write_with`]) and for directories written as a unit (a
/// pose checkpoint). [`remove_stale_temporaries`] recognises exactly this pattern.
pub(crate) fn temporary_path(path: &Path) -> Result<PathBuf> {
    let name = file_name_of(path)?;
    Ok(parent_dir(path).join(temporary_name(&name, std::process::id())))
}

fn temporary_name(name: &str, pid: u32) -> String {
    let ext = Path::new(name).extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    format!(".{name}.tmp{pid}{ext}")
}

/// The process id in a file name of the pattern of [`temporary_path`], `None` for any other
/// name (so a result file that merely contains `.tmp` is never taken for a temporary).
fn temporary_pid(file_name: &str) -> Option<u32> {
    let body = file_name.strip_prefix('.')?;
    body.match_indices(".tmp").find_map(|(at, _)| {
        let name = &body[..at];
        let after = &body[at + 4..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let pid: u32 = after[..digits].parse().ok()?;
        (!name.is_empty() && temporary_name(name, pid) == file_name).then_some(pid)
    })
}

/// Whether `file_name` follows the pattern of [`temporary_path`].
pub(crate) fn is_temporary_name(file_name: &str) -> bool {
    temporary_pid(file_name).is_some()
}

/// Writes `path` and syncs it, without the temporary file and rename: for files inside a
/// temporary directory that is itself renamed into place once complete.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", path.display()))
}

/// Syncs a directory, which persists the renames and removals in it (best effort: not every
/// platform can sync a directory).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (see
/// `temporary_path`), fsync, then rename, so a crash or kill leaves either the old file or the
/// new one, never a torn one. A kill can leave the temporary file behind:
/// [`lock_out_dir`] tidies it away.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| std::fs::write(tmp, bytes).with_context(|| format!("writing {}", tmp.display())))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising JSON")?;
    atomic_write(path, text.as_bytes())
}

/// A progress bar in the house style (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

/// Runs `f` inside a rayon pool with `threads` threads (0 = all cores).
pub(crate) fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("building the thread pool")?;
    Ok(pool.install(f))
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux only;
/// `None` elsewhere). Clock ticks are taken as 100 per second, the Linux `USER_HZ`. The
/// experiments report it beside wall time, which on a shared machine says little.
pub(crate) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Writes `path` atomically through a writer that only takes a path (an image encoder, say):
/// `write` writes the temporary file of [`temporary_path`] (same directory, same extension),
/// which is then fsynced and renamed over `path`, and the directory synced. On error the
/// temporary file is removed.
pub(crate) fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = file_name_of(path)?;
    let tmp = temporary_path(path)?;
    let result = write(&tmp).and_then(|()| {
        let f = std::fs::File::open(&tmp).with_context(|| format!("opening {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))
    });
    let result = result.and_then(|()| {
        fault::reached("after-temp-write", &name);
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir);
    fault::reached("after-rename", &name);
    Ok(())
}

/// Whether `path` is named like a temporary of [`temporary_path`] whose writer is gone, so that
/// nothing will ever rename it into place: no process with its id exists (or only a zombie),
/// or the process with that id started after the temporary was last modified (the id was
/// reused). Where `/proc` is not available the writer cannot be checked and the temporary is
/// kept.
pub(crate) fn is_stale_temporary(path: &Path) -> bool {
    let Some(pid) = path.file_name().and_then(|n| temporary_pid(&n.to_string_lossy())) else { return false };
    let modified = std::fs::symlink_metadata(path).and_then(|m| m.modified()).ok();
    !writer_may_be_alive(pid, modified)
}

/// See [`is_stale_temporary`].
fn writer_may_be_alive(pid: u32, modified: Option<SystemTime>) -> bool {
    if !Path::new("/proc/self/stat").exists() {
        return true;
    }
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    // The fields after the parenthesised command name start with field 3, the state; field 22
    // is the start time in clock ticks after boot (100 per second, the Linux `USER_HZ`).
    let Some((_, rest)) = stat.rsplit_once(')') else { return true };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return false;
    }
    let started = fields
        .get(19)
        .and_then(|t| t.parse::<u64>().ok())
        .zip(boot_time())
        .map(|(ticks, boot)| boot + Duration::from_millis(ticks.saturating_mul(10)));
    match (started, modified) {
        // The boot time is in whole seconds: allow for that.
        (Some(started), Some(modified)) => started <= modified + Duration::from_secs(2),
        _ => true,
    }
}

/// The boot time, from `/proc/stat` (Linux).
fn boot_time() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Removes the temporaries in `dir` that killed processes left behind (files, or directories
/// written as a unit, named as by [`temporary_path`] and stale as [`is_stale_temporary`]
/// says), for every file a command writes there; the temporaries of a live process are kept.
/// Every command calls it on its `--out` when it starts, through [`lock_out_dir`], once it
/// holds the directory's lock. Returns how many were removed.
/// Temporaries are never read: a resume trusts only what was renamed into place.
pub(crate) fn remove_stale_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if is_stale_temporary(&path) && remove_path(&path).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir);
    }
    removed
}

/// Name of the lock file in an output directory (see [`lock_out_dir`]). Not a temporary: it
/// stays between runs, and a leftover one blocks nothing, because the lock on it is released
/// by the system when its process ends, however it ends.
pub(crate) const LOCK_FILE: &str = ".wiberg.lock";

/// An output directory's lock, held while this value lives (see [`lock_out_dir`]).
#[must_use = "the lock is released when this value is dropped"]
#[derive(Debug)]
pub(crate) struct OutDirLock {
    _file: std::fs::File,
}

/// Claims the output directory `dir` of a command for the whole run: creates it, takes an
/// exclusive advisory lock on its [`LOCK_FILE`] (so that two processes never write the same
/// files at once: the second stops at once with an error naming the directory), and only then
/// removes the temporaries that killed processes left there (`remove_stale_temporaries`),
/// which no live process can be writing any more. Every command that writes to an `--out`
/// calls it first and keeps the returned value until it is done.
///
/// Where the file system cannot lock files, a warning says so and the run goes on unguarded.
pub(crate) fn lock_out_dir(dir: &Path) -> Result<OutDirLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating output directory {}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            // The holder's process id, for the error of a second process (best effort: the
            // lock, not this text, is what excludes it).
            let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id()));
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<u32>().ok());
            anyhow::bail!(
                "another wiberg process{} is writing to {} (it holds {}); wait for it to finish or choose another \
                 --out",
                holder.map_or(String::new(), |pid| format!(" (pid {pid})")),
                dir.display(),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            eprintln!(
                "warning: cannot lock {} ({e}); another process writing to {} at the same time would not be detected",
                path.display(),
                dir.display()
            );
        }
    }
    remove_stale_temporaries(dir);
    Ok(OutDirLock { _file: file })
}

/// Removes a file, or a directory with its contents.
pub(crate) fn remove_path(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// Test-only fault injection for the crash-safety tests; the variables below are not meant to
/// be set in normal use.
///
/// Every atomic write ([`atomic_write`], `atomic_write_with`, a pose checkpoint directory)
/// passes two named points: `after-temp-write:<file name>` (the temporary is complete and
/// synced, not yet renamed; stopping here leaves the temporary behind, as a kill at the worst
/// moment does) and `after-rename:<file name>` (the new file is in place).
///
/// - `WIBERG_FAULT_AT=<point>[:<n>]`: the process exits at once with status [`crate::common::fault::EXIT_CODE`], as
///   if killed, the n-th time (default the first) it reaches `<point>`; no destructor, no
///   cleanup runs.
/// - `WIBERG_FAULT_LIST=<file>`: the process appends `<point>:<n>` to `<file>` for every point
///   it passes, so a test can enumerate the points of a run and then stop a run at each.
///
/// The environment is read once; without these variables a point costs one check of an
/// initialised `OnceLock`.
pub(crate) mod fault {
    use std::collections::HashMap;
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock, PoisonError};

    /// The exit status of a process stopped at `WIBERG_FAULT_AT`.
    pub(crate) const EXIT_CODE: i32 = 86;

    struct Config {
        at: Option<(String, usize)>,
        list: Option<PathBuf>,
        counts: Mutex<HashMap<String, usize>>,
    }

    fn config() -> Option<&'static Config> {
        static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let at = std::env::var("WIBERG_FAULT_AT").ok().filter(|s| !s.is_empty()).map(|s| parse_at(&s));
                let list = std::env::var_os("WIBERG_FAULT_LIST").filter(|s| !s.is_empty()).map(PathBuf::from);
                (at.is_some() || list.is_some()).then(|| Config { at, list, counts: Mutex::default() })
            })
            .as_ref()
    }

    /// `<kind>:<name>[:<n>]` as the point and n (1 when not given).
    fn parse_at(text: &str) -> (String, usize) {
        match text.rsplit_once(':') {
            Some((point, n)) if point.contains(':') => match n.parse() {
                Ok(n) => (point.to_string(), n),
                Err(_) => (text.to_string(), 1),
            },
            _ => (text.to_string(), 1),
        }
    }

    /// The point `<kind>:<name>` is reached (see the module documentation).
    pub(crate) fn reached(kind: &str, name: &str) {
        let Some(config) = config() else { return };
        let point = format!("{kind}:{name}");
        let mut counts = config.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(point.clone()).or_insert(0);
        *n += 1;
        if let Some(list) = &config.list {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(list)
                .and_then(|mut f| writeln!(f, "{point}:{n}"));
            if let Err(e) = appended {
                eprintln!("warning: WIBERG_FAULT_LIST {}: {e}", list.display());
            }
        }
        if config.at.as_ref().is_some_and(|(p, k)| *p == point && k == n) {
            std::process::exit(EXIT_CODE);
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_count_is_optional_and_names_may_hold_dots() {
            assert_eq!(super::parse_at("after-rename:table.json"), ("after-rename:table.json".into(), 1));
            assert_eq!(super::parse_at("after-temp-write:a.json:3"), ("after-temp-write:a.json".into(), 3));
            assert_eq!(super::parse_at("after-rename:x:y"), ("after-rename:x:y".into(), 1));
        }
    }
}

/// Fails with a clear message when no font can be loaded (plotters needs one for any text).
pub(crate) fn check_fonts() -> Result<()> {
    use plotters::style::{FontDesc, IntoFont};
    let font: FontDesc = ("sans-serif", 20.0).into_font();
    font.box_size("Ag").map(|_| ()).map_err(|e| {
        anyhow::anyhow!(
            "no usable TrueType font for the figures ({e:?}); `fc-list` should list one, e.g. install fonts-dejavu-core"
        )
    })
}

/// A number for people to read: plain decimals between 1e-4 and 1e7 (and for 0, NaN and the
/// infinities), scientific notation outside, where `{}` would print hundreds of digits.
pub(crate) fn readable_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-4..1e7).contains(&x.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Bit-exact JSON for `f64` (`#[serde(with = "exact_f64")]`): the IEEE-754 bits as 16 hex
/// digits, so NaN, infinities, -0 and the last bit survive a checkpoint (serde_json's default
/// float parser is not guaranteed to round-trip every value).
pub(crate) mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises the bits of `x`.
    pub(crate) fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", x.to_bits()))
    }

    /// Reads the bits written by [`serialize`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// One value from its 16 hex digits.
    pub(crate) fn parse(text: &str) -> Result<f64, String> {
        if text.len() != 16 {
            return Err(format!("expected 16 hex digits of an f64, got `{text}`"));
        }
        u64::from_str_radix(text, 16).map(f64::from_bits).map_err(|e| format!("`{text}`: {e}"))
    }
}

/// Bit-exact JSON for `Vec<f64>` (`#[serde(with = "exact_f64_vec")]`): one string of 16 hex
/// digits per value, concatenated (compact for long columns of a checkpoint).
pub(crate) mod exact_f64_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises the bits of every value.
    pub(crate) fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        // By hand rather than `format!`: checkpoints write millions of these.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = Vec::with_capacity(16 * v.len());
        for x in v {
            let bits = x.to_bits();
            text.extend((0..16).rev().map(|i| HEX[((bits >> (4 * i)) & 0xf) as usize]));
        }
        s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }

    /// Reads the values written by [`serialize`].
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 16 != 0 || !text.is_ascii() {
            return Err(serde::de::Error::custom(format!(
                "a column of f64 bits has {} characters, not a multiple of 16",
                text.len()
            )));
        }
        (0..text.len() / 16)
            .map(|i| super::exact_f64::parse(&text[16 * i..16 * i + 16]))
            .collect::<Result<Vec<f64>, String>>()
            .map_err(serde::de::Error::custom)
    }
}

/// Serialises any value to JSON with every floating-point number replaced by
/// `{"f64": "<16 hex digits>"}`, for types whose fields are private (the optimisers): read
/// back with [`from_exact_json`], the value is bit-identical. serde_json writes NaN and
/// infinities as `null`, which `T` then fails to read: such a value is refused here, at
/// writing time, rather than making a checkpoint that cannot be resumed.
pub(crate) fn to_exact_json<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<serde_json::Value> {
    use serde_json::Value;
    fn encode(v: Value) -> Result<Value> {
        Ok(match v {
            Value::Number(n) if n.is_f64() => {
                let x = n.as_f64().context("a JSON number that is not an f64")?;
                let mut m = serde_json::Map::new();
                m.insert("f64".into(), Value::String(format!("{:016x}", x.to_bits())));
                Value::Object(m)
            }
            Value::Array(a) => Value::Array(a.into_iter().map(encode).collect::<Result<_>>()?),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| Ok((k, encode(v)?))).collect::<Result<_>>()?),
            other => other,
        })
    }
    let encoded = encode(serde_json::to_value(value).context("serialising to JSON")?)?;
    from_exact_json::<T>(encoded.clone()).context("the value does not survive JSON (a NaN or infinity in it?)")?;
    Ok(encoded)
}

/// Reads a value written by [`to_exact_json`].
pub(crate) fn from_exact_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    use serde_json::Value;
    fn decode(v: Value) -> Result<Value> {
        Ok(match v {
            Value::Object(o) if o.len() == 1 && o.get("f64").is_some_and(Value::is_string) => {
                let text = o.get("f64").and_then(Value::as_str).unwrap_or_default();
                let x = exact_f64::parse(text).map_err(anyhow::Error::msg)?;
                Value::Number(serde_json::Number::from_f64(x).with_context(|| format!("{x} is not finite"))?)
            }
            Value::Array(a) => Value::Array(a.into_iter().map(decode).collect::<Result<_>>()?),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| Ok((k, decode(v)?))).collect::<Result<_>>()?),
            other => other,
        })
    }
    serde_json::from_value(decode(value)?).context("reading an exact-JSON value")
}

/// The top-level settings in which two JSON objects (written by [`to_exact_json`]) differ, as
/// `name stored (state) vs current (now)` with `_` shown as `-` (like the flags): for the
/// error of a resume whose arguments do not match the interrupted run.
pub(crate) fn json_differences(stored: &serde_json::Value, current: &serde_json::Value) -> Vec<String> {
    let show = |v: Option<&serde_json::Value>| match v {
        None => "(absent)".to_string(),
        Some(v) => from_exact_json::<serde_json::Value>(v.clone()).map_or_else(|_| v.to_string(), |v| v.to_string()),
    };
    let (Some(a), Some(b)) = (stored.as_object(), current.as_object()) else {
        return vec!["the stored settings are not a JSON object".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{} {} (state) vs {} (now)", k.replace('_', "-"), show(a.get(k)), show(b.get(k))))
        .collect()
}

/// Reads a training state file for `--resume`; a missing file is an error that says why it may
/// be missing and what to do (shared by `wiberg ransac` and `wiberg fusion train`).
pub(crate) fn read_resume_state(path: &Path) -> Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "--resume: no training state {} (the run finished, which removes it, or never reached its first \
             checkpoint, or --out differs); run without --resume to start afresh",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("--resume: reading {}", path.display())),
    }
}

/// The derivative of the inner minimiser, as the command line names it (`--methods` of `wiberg
/// ransac`, `--damping` of `wiberg fusion train` and `wiberg pose train`): each maps onto the
/// library's [`wiberg::Damping`] with the command's `lambda`, so the experiments spell and
/// serialise the derivatives the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum DampingMode {
    /// `lambda = 0` (Samuel & Tappen; eq. 6 of the paper).
    Implicit,
    /// `H + lambda I` (the paper's eq. 7).
    TrustRegion,
    /// `H + s I` with `s = lambda + max(0, -eig_min(H))`: bounded even at negative curvature.
    Guarded,
}

impl DampingMode {
    /// All methods, in display order.
    pub(crate) const ALL: [DampingMode; 3] = [DampingMode::Implicit, DampingMode::TrustRegion, DampingMode::Guarded];

    /// The library damping for this method with the given `lambda`.
    pub(crate) fn damping(self, lambda: f64) -> wiberg::Damping {
        match self {
            DampingMode::Implicit => wiberg::Damping::Implicit,
            DampingMode::TrustRegion => wiberg::Damping::TrustRegion { lambda },
            DampingMode::Guarded => wiberg::Damping::Guarded { lambda },
        }
    }

    /// `implicit`, `trust-region` or `guarded`.
    pub(crate) fn name(self) -> &'static str {
        self.damping(1.0).name()
    }
}

/// The outer optimiser, as the command line names it (`--optimizer` of `wiberg ransac` and
/// `wiberg fusion train`); each command builds the library's [`wiberg::optim::AnyOptimizer`]
/// from it with its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OptimizerKind {
    /// SGD with momentum.
    Sgd,
    /// Averaged SGD, PyTorch semantics.
    Asgd,
    /// Adam (PyTorch's defaults apart from the learning rate).
    Adam,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_numbers_are_short_at_any_magnitude() {
        assert_eq!(readable_number(0.02), "0.02");
        assert_eq!(readable_number(-250.5), "-250.5");
        assert_eq!(readable_number(0.0), "0");
        assert_eq!(readable_number(1e300), "1e300");
        assert_eq!(readable_number(-2.5e-9), "-2.5e-9");
        assert_eq!(readable_number(f64::INFINITY), "inf");
        assert!([1e308, 4.9e-324, 123456789.0].iter().all(|&x| readable_number(x).len() <= 12));
    }

    #[test]
    fn atomic_write_replaces_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_with_keeps_extension_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fig.png");
        atomic_write_with(&p, |tmp| {
            assert_eq!(tmp.extension().unwrap(), "png");
            std::fs::write(tmp, b"png").map_err(Into::into)
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"png");
        let err = atomic_write_with(&p, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            anyhow::bail!("encoder failed")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"png");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn temporaries_follow_one_pattern() {
        let pid = std::process::id();
        assert_eq!(temporary_path(Path::new("d/a.json")).unwrap(), Path::new(&format!("d/.a.json.tmp{pid}.json")));
        assert_eq!(
            temporary_path(Path::new("step-00000004")).unwrap(),
            Path::new(&format!("./.step-00000004.tmp{pid}"))
        );
        assert_eq!(temporary_pid(".a.json.tmp12.json"), Some(12));
        assert_eq!(temporary_pid(".step-00000004.tmp7"), Some(7));
        assert_eq!(temporary_pid(".x.tmp.json.tmp9.json"), Some(9));
        for other in ["a.json", ".a.json.tmp12", ".a.json.tmp12.png", ".a.json.tmpx.json", "a.json.tmp12.json", ".tmp3"]
        {
            assert_eq!(temporary_pid(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temporaries_are_removed_but_not_live_ones_or_other_files() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited (and been waited for): its id is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let own = std::process::id();
        let stale = [format!(".state.json.tmp{dead}.json"), format!(".figure.png.tmp{dead}.png")];
        let kept = [
            format!(".state.json.tmp{own}.json"),
            ".state.json.tmpx".to_string(),
            format!(".state.json.tmp{dead}"),
            "state.json".to_string(),
            "other.tmp3".to_string(),
        ];
        for name in stale.iter().chain(&kept) {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(format!(".step-00000002.tmp{dead}"))).unwrap();
        std::fs::write(dir.path().join(format!(".step-00000002.tmp{dead}/a.npy")), b"x").unwrap();
        if !Path::new("/proc/self/stat").exists() {
            // No way to tell a live writer from a dead one: nothing is removed.
            assert_eq!(remove_stale_temporaries(dir.path()), 0);
            return;
        }
        assert_eq!(remove_stale_temporaries(dir.path()), 3);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        let mut expected = kept.to_vec();
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_reused_process_id_does_not_keep_a_temporary() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // Our own id on a file modified long before this process started: an earlier process
        // that had the same id wrote it.
        let old = dir.path().join(format!(".a.json.tmp{}.json", std::process::id()));
        std::fs::write(&old, b"x").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(3 * 24 * 3600)).unwrap();
        let young = dir.path().join(".b.json.tmp1.json");
        std::fs::write(&young, b"x").unwrap();
        // pid 1 runs since boot, before `young` was written: it may be writing it.
        assert!(is_stale_temporary(&old) || boot_time().is_none());
        assert!(!is_stale_temporary(&young));
    }

    #[test]
    fn an_output_directory_is_locked_once_and_free_again_after_its_lock_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let lock = lock_out_dir(&out).unwrap();
        // A second open of the lock file is a second holder, even in the same process.
        let err = format!("{:#}", lock_out_dir(&out).unwrap_err());
        assert!(err.contains(&format!("another wiberg process (pid {}) is writing to", std::process::id())), "{err}");
        assert!(err.contains(&out.display().to_string()), "{err}");
        drop(lock);
        // The file stays and blocks nothing; it is not taken for a temporary.
        assert!(out.join(LOCK_FILE).exists());
        assert!(!is_temporary_name(LOCK_FILE) && !is_stale_temporary(&out.join(LOCK_FILE)));
        let _again = lock_out_dir(&out).unwrap();
    }

    #[test]
    fn the_lock_is_taken_before_stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!(".state.json.tmp{dead}.json"));
        std::fs::write(&stale, b"x").unwrap();
        let lock = lock_out_dir(dir.path()).unwrap();
        // A second claim fails on the lock and touches nothing.
        std::fs::write(&stale, b"x").unwrap();
        assert!(lock_out_dir(dir.path()).is_err());
        assert!(stale.exists());
        drop(lock);
        if Path::new("/proc/self/stat").exists() {
            let _lock = lock_out_dir(dir.path()).unwrap();
            assert!(!stale.exists());
        }
    }

    #[test]
    fn exact_json_round_trips_every_bit() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "exact_f64")]
            x: f64,
            #[serde(with = "exact_f64_vec")]
            v: Vec<f64>,
        }
        // Values whose shortest decimal form a best-effort parser may misread.
        let hard = [
            0.1 + 0.2,
            1.0 / 3.0,
            f64::MIN_POSITIVE / 3.0,
            f64::from_bits(0x4340_0000_0000_0001),
            -0.0,
            f64::from_bits(0x000f_ffff_ffff_ffff),
        ];
        let s = S { x: f64::NAN, v: hard.to_vec() };
        let back: S = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert!(back.x.is_nan());
        assert!(back.v.iter().zip(&hard).all(|(a, b)| a.to_bits() == b.to_bits()));

        let mut opt = wiberg::optim::Asgd::new(0.5, 5e-4, 0.75, 0.0).unwrap();
        let mut w = [1.0];
        for g in hard.iter().filter(|g| g.is_finite()) {
            wiberg::optim::Optimizer::step(&mut opt, &mut w, &[*g]).unwrap();
        }
        let json = serde_json::to_string(&to_exact_json(&opt).unwrap()).unwrap();
        let back: wiberg::optim::Asgd = from_exact_json(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(serde_json::to_string(&to_exact_json(&back).unwrap()).unwrap(), json);
        assert_eq!(back.eta().to_bits(), opt.eta().to_bits());
        let mut bad = wiberg::optim::Sgd::new(0.1, 0.0).unwrap();
        bad.lr = f64::INFINITY;
        assert!(to_exact_json(&bad).is_err());
    }
}
