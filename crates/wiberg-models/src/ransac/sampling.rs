//! Drawing RANSAC samples: 10 Gaussian inliers and 100 uniform outliers on a line.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Inliers per sample.
pub const INLIERS: usize = 10;
/// Outliers per sample.
pub const OUTLIERS: usize = 100;
/// Standard deviation of the inliers.
pub const INLIER_STD: f64 = 4.0;

/// How a sample is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// The paper: centre `m ~ U[-40, 40]`, 10 inliers `N(m, 4^2)`, 100 outliers `U[-40, 40]`.
    Paper,
    /// The authors' code: 10 inliers `N(2, 4^2)`, 100 outliers `U[-60, 20]`.
    Reference,
}

impl Protocol {
    /// Both protocols.
    pub const ALL: [Protocol; 2] = [Protocol::Paper, Protocol::Reference];

    /// `paper` or `reference` (as serialised and as the command line spells it).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Paper => "paper",
            Protocol::Reference => "reference",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = crate::Error;

    /// ```
    /// use wiberg_models::ransac::sampling::Protocol;
    /// assert_eq!("paper".parse::<Protocol>().unwrap(), Protocol::Paper);
    /// assert!("papr".parse::<Protocol>().unwrap_err().to_string().contains("paper, reference"));
    /// ```
    fn from_str(s: &str) -> crate::Result<Self> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| crate::Error::Invalid(format!("unknown protocol `{s}` (expected one of: paper, reference)")))
    }
}

/// One sample: the points (inliers first) and the target `mean(inliers)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// All 110 points; the first [`INLIERS`] are the inliers.
    pub points: Vec<f64>,
    /// The mean of the inliers drawn (the regression target).
    pub target: f64,
}

impl Sample {
    /// The inliers.
    pub fn inliers(&self) -> &[f64] {
        &self.points[..INLIERS]
    }

    /// The outliers.
    pub fn outliers(&self) -> &[f64] {
        &self.points[INLIERS..]
    }
}

/// The random generator of run `run` under `seed`: one ChaCha8 stream per run, so runs are
/// independent and every method of a run sees the identical sample sequence.
pub fn run_rng(seed: u64, run: usize) -> ChaCha8Rng {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(run as u64);
    rng
}

/// Draws one sample.
pub fn draw(protocol: Protocol, rng: &mut ChaCha8Rng) -> Sample {
    let (centre, (lo, hi)) = match protocol {
        Protocol::Paper => (rng.random_range(-40.0..40.0), (-40.0, 40.0)),
        Protocol::Reference => (2.0, (-60.0, 20.0)),
    };
    let mut points = Vec::with_capacity(INLIERS + OUTLIERS);
    points.extend((0..INLIERS).map(|_| {
        let z: f64 = StandardNormal.sample(rng);
        centre + INLIER_STD * z
    }));
    let target = points.iter().sum::<f64>() / INLIERS as f64;
    points.extend((0..OUTLIERS).map(|_| rng.random_range(lo..hi)));
    Sample { points, target }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_samples_have_inliers_around_a_centre_in_range() {
        let mut rng = run_rng(3, 0);
        for _ in 0..200 {
            let s = draw(Protocol::Paper, &mut rng);
            assert_eq!(s.points.len(), 110);
            assert!(s.outliers().iter().all(|x| (-40.0..40.0).contains(x)));
            assert!(s.target.abs() < 40.0 + 4.0 * 4.0);
        }
        let mut rng = run_rng(3, 0);
        let mean: f64 = (0..2000).map(|_| draw(Protocol::Reference, &mut rng).target).sum::<f64>() / 2000.0;
        assert!((mean - 2.0).abs() < 0.2, "{mean}");
    }

    #[test]
    fn runs_are_independent_and_reproducible() {
        let a = draw(Protocol::Paper, &mut run_rng(5, 0));
        let b = draw(Protocol::Paper, &mut run_rng(5, 0));
        let c = draw(Protocol::Paper, &mut run_rng(5, 1));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
