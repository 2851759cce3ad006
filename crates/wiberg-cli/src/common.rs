//! Helpers shared by the experiments: atomic file writes, progress bars, thread pools.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, then
/// rename, so a crash or kill leaves either the old file or the new one, never a torn one.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Persist the rename itself; not all platforms allow syncing a directory.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("serialising JSON")?;
    atomic_write(path, text.as_bytes())
}

/// A progress bar in the house style (hidden when stderr is not a terminal).
pub fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template("{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} ({eta})")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

/// Runs `f` inside a rayon pool with `threads` threads (0 = all cores).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("building the thread pool")?;
    Ok(pool.install(f))
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (Linux only;
/// `None` elsewhere). Clock ticks are taken as 100 per second, the Linux `USER_HZ`. The
/// experiments report it beside wall time, which on a shared machine says little.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The temporary name [`atomic_write`] and [`atomic_write_with`] use beside `path`: hidden,
/// tagged with the process id, keeping the extension (`.name.tmp<pid>.ext`) so writers that
/// choose the format by extension (plotters' PNG encoder) still work.
fn temporary_path(path: &Path) -> Result<std::path::PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    Ok(dir.join(format!(".{}.tmp{}{ext}", name.to_string_lossy(), std::process::id())))
}

/// Writes `path` atomically through a writer that only takes a path (an image encoder, say):
/// `write` writes a temporary file in the same directory (same extension), which is then
/// fsynced and renamed over `path`. On error the temporary file is removed.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    let tmp = temporary_path(path)?;
    let result = write(&tmp).and_then(|()| {
        let f = std::fs::File::open(&tmp).with_context(|| format!("opening {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes the temporary files that [`atomic_write`] / [`atomic_write_with`] left beside
/// `path` when a process was killed mid-write (`.name.tmp<pid>*`), except this process's own.
/// Returns how many were removed. They are never read: a resume only trusts `path` itself.
pub fn remove_stale_temporaries(path: &Path) -> usize {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else { return 0 };
    let prefix = format!(".{}.tmp", name.to_string_lossy());
    let own = format!("{prefix}{}", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().to_string();
        let Some(rest) = file.strip_prefix(&prefix) else { continue };
        let is_temporary = rest.starts_with(|c: char| c.is_ascii_digit());
        if is_temporary && !file.starts_with(&own) && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The median of the finite values of `values`, `None` when there is none (NaN and
/// infinities are dropped first, so one bad value cannot poison it).
pub fn median_finite(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

/// Bit-exact JSON for `f64` (`#[serde(with = "exact_f64")]`): the IEEE-754 bits as 16 hex
/// digits, so NaN, infinities, -0 and the last bit survive a checkpoint (serde_json's default
/// float parser is not guaranteed to round-trip every value).
pub mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises the bits of `x`.
    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", x.to_bits()))
    }

    /// Reads the bits written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// One value from its 16 hex digits.
    pub fn parse(text: &str) -> Result<f64, String> {
        if text.len() != 16 {
            return Err(format!("expected 16 hex digits of an f64, got `{text}`"));
        }
        u64::from_str_radix(text, 16).map(f64::from_bits).map_err(|e| format!("`{text}`: {e}"))
    }
}

/// Bit-exact JSON for `Vec<f64>` (`#[serde(with = "exact_f64_vec")]`): one string of 16 hex
/// digits per value, concatenated (compact for long columns of a checkpoint).
pub mod exact_f64_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises the bits of every value.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
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
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
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
pub fn to_exact_json<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> Result<serde_json::Value> {
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
pub fn from_exact_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
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
pub fn json_differences(stored: &serde_json::Value, current: &serde_json::Value) -> Vec<String> {
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
pub fn read_resume_state(path: &Path) -> Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn stale_temporaries_are_removed_but_not_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        for name in [".state.json.tmp123", ".state.json.tmp45.json", "state.json", ".state.json.tmpx", "other"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&p), 2);
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, [".state.json.tmpx", "other", "state.json"]);
    }

    #[test]
    fn median_finite_has_an_explicit_empty_case() {
        assert_eq!(median_finite([3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_finite([4.0, 1.0, f64::INFINITY, 2.0, 3.0]), Some(2.5));
        assert_eq!(median_finite([f64::NAN]), None);
        assert_eq!(median_finite(Vec::new()), None);
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
