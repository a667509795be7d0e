//! The noise mechanisms, all from OpenDP (its default features: samples come from OpenSSL's
//! CSPRNG, floats are handled by its discretized mechanisms; the `floating-point`/`untrusted`
//! features are never enabled). This module only chooses their parameters from a sensitivity and
//! a share of the budget, and reports what OpenDP's own privacy maps certify.
//!
//! - [`gaussian_vector`]: Gaussian mechanism under zCDP for a vector with a known L2 sensitivity
//!   (the centroid). `σ = Δ₂ / sqrt(2ρ)`, so `ρ = Δ₂² / (2σ²)`.
//! - [`laplace_threshold`]: discrete Laplace noise on integer counts keyed by strings that are not
//!   known in advance (labels), releasing only keys whose noisy count clears a threshold chosen so
//!   that a key held by few tenants appears with probability at most δ. Pure ε for the counts.
//! - [`gaussian_threshold`]: the same with discrete Gaussian noise (zCDP), for lessons.
//!
//! The sampler cannot be seeded (it is OpenSSL's CSPRNG); the statistical tests bound their
//! false-failure probability instead.

use std::collections::{BTreeMap, HashMap};

use opendp::core::{Measure, Measurement};
use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_gaussian_threshold, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{AbsoluteDistance, L0PInfDistance, L2Distance};
use serde::Serialize;
use utoipa::ToSchema;

/// A mechanism could not be built or run with these parameters.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("privacy mechanism: {0}")]
pub struct MechanismError(pub String);

fn opendp_err(e: opendp::error::Error) -> MechanismError {
    MechanismError(format!(
        "{:?}: {}",
        e.variant,
        e.message.unwrap_or_default()
    ))
}

fn check_positive(what: &str, v: f64) -> Result<(), MechanismError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(MechanismError(format!(
            "{what} must be a positive number, got {v}"
        )));
    }
    Ok(())
}

/// A vector released with Gaussian noise.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NoisyVector {
    pub values: Vec<f64>,
    /// Standard deviation of the noise on each coordinate.
    pub sigma: f64,
    pub l2_sensitivity: f64,
    /// ρ certified by OpenDP's privacy map for `l2_sensitivity` (at most the ρ asked for).
    pub rho: f64,
}

/// Adds N(0, σ²) to each coordinate of `values`, with `σ = l2_sensitivity / sqrt(2ρ)`.
pub fn gaussian_vector(
    values: &[f64],
    l2_sensitivity: f64,
    rho: f64,
) -> Result<NoisyVector, MechanismError> {
    check_positive("l2 sensitivity", l2_sensitivity)?;
    check_positive("rho", rho)?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(MechanismError("values must be finite".into()));
    }
    let mut sigma = l2_sensitivity / (2.0 * rho).sqrt();
    // OpenDP rounds the scale onto its grid; widen σ by a hair until its map certifies ≤ ρ.
    for _ in 0..8 {
        let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
            VectorDomain::new(AtomDomain::<f64>::new_non_nan()).with_size(values.len()),
            L2Distance::<f64>::default(),
            sigma,
            None,
        )
        .map_err(opendp_err)?;
        let certified = m.map(&l2_sensitivity).map_err(opendp_err)?;
        if certified <= rho {
            let values = m.invoke(&values.to_vec()).map_err(opendp_err)?;
            return Ok(NoisyVector {
                values,
                sigma,
                l2_sensitivity,
                rho: certified,
            });
        }
        sigma *= 1.0 + 1e-9;
    }
    Err(MechanismError(format!(
        "could not calibrate the Gaussian mechanism to ρ = {rho}"
    )))
}

/// How much one tenant can change a map of counts: at most `l0` keys change, by at most `linf`
/// each, and by at most `lp` in total (L1 for Laplace, L2 for Gaussian).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct MapSensitivity {
    pub l0: u32,
    pub lp: f64,
    pub linf: f64,
}

/// Counts released through a threshold: only keys whose noisy count reached `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NoisyCounts {
    pub counts: BTreeMap<String, i64>,
    /// Laplace scale `b` (standard deviation `b·√2`) or Gaussian σ, per `mechanism`.
    pub scale: f64,
    pub threshold: i64,
    /// `"discrete_laplace"` or `"discrete_gaussian"`.
    pub mechanism: &'static str,
    /// Certified pure ε (Laplace) or ρ (Gaussian) of the counts.
    pub epsilon_or_rho: f64,
    /// Certified δ: the chance that a key only one neighbour has is released.
    pub delta: f64,
}

fn to_input(counts: &BTreeMap<String, u64>) -> Result<HashMap<String, i64>, MechanismError> {
    counts
        .iter()
        .map(|(k, v)| {
            i64::try_from(*v)
                .map(|v| (k.clone(), v))
                .map_err(|_| MechanismError("count too large".into()))
        })
        .collect()
}

/// The smallest threshold `t ≥ lo` with `delta_at(t) ≤ target`, by doubling then bisection
/// (the δ of a threshold mechanism decreases as the threshold grows).
fn smallest_threshold(
    lo: i64,
    target: f64,
    mut delta_at: impl FnMut(i64) -> Result<f64, MechanismError>,
) -> Result<i64, MechanismError> {
    let mut hi = lo.max(1);
    while delta_at(hi)? > target {
        if hi > 1 << 40 {
            return Err(MechanismError(format!(
                "no threshold reaches δ = {target:e}"
            )));
        }
        hi *= 2;
    }
    let mut lo = lo.max(1);
    if delta_at(lo)? <= target {
        return Ok(lo);
    }
    // delta_at(lo) > target >= delta_at(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if delta_at(mid)? <= target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

type CountsDomain = MapDomain<AtomDomain<String>, AtomDomain<i64>>;
type CountsMetric<const P: usize> = L0PInfDistance<P, AbsoluteDistance<f64>>;
type CountsMeasurement<const P: usize, MO> =
    Measurement<CountsDomain, CountsMetric<P>, MO, HashMap<String, i64>>;

fn counts_space<const P: usize>() -> (CountsDomain, CountsMetric<P>) {
    (
        MapDomain::new(
            AtomDomain::<String>::default(),
            AtomDomain::<i64>::default(),
        ),
        L0PInfDistance(AbsoluteDistance::<f64>::default()),
    )
}

struct Calibrated<const P: usize, MO: Measure> {
    measurement: CountsMeasurement<P, MO>,
    scale: f64,
    threshold: i64,
    /// (ε or ρ, δ) certified by OpenDP's map.
    certified: (f64, f64),
}

/// A threshold measurement whose certified loss is at most `budget` and whose δ is at most
/// `delta`: the scale is widened by a hair until OpenDP's map certifies ≤ `budget` (its rational
/// rounding of the scale can land a few ulps above), then the smallest threshold with δ ≤ `delta`
/// is taken. Returns the measurement, the scale, the threshold and the certified (loss, δ).
fn calibrate_threshold<const P: usize, MO>(
    mut scale: f64,
    budget: f64,
    delta: f64,
    sensitivity: MapSensitivity,
    build: impl Fn(f64, i64) -> Result<CountsMeasurement<P, MO>, MechanismError>,
) -> Result<Calibrated<P, MO>, MechanismError>
where
    MO: Measure<Distance = (f64, f64)>,
{
    let d_in = (sensitivity.l0, sensitivity.lp, sensitivity.linf);
    let lo = sensitivity.linf.ceil() as i64;
    for _ in 0..8 {
        let threshold = smallest_threshold(lo, delta, |t| {
            Ok(build(scale, t)?.map(&d_in).map_err(opendp_err)?.1)
        })?;
        let m = build(scale, threshold)?;
        let certified = m.map(&d_in).map_err(opendp_err)?;
        if certified.0 <= budget {
            return Ok(Calibrated {
                measurement: m,
                scale,
                threshold,
                certified,
            });
        }
        scale *= 1.0 + 1e-9;
    }
    Err(MechanismError(format!(
        "could not calibrate the threshold mechanism to {budget}"
    )))
}

/// Discrete Laplace noise of scale `l1 / ε` on each count, then only counts at or above the
/// smallest threshold whose δ (from OpenDP's map) is at most `delta`.
pub fn laplace_threshold(
    counts: &BTreeMap<String, u64>,
    sensitivity: MapSensitivity,
    epsilon: f64,
    delta: f64,
) -> Result<NoisyCounts, MechanismError> {
    check_positive("epsilon", epsilon)?;
    check_positive("delta", delta)?;
    check_positive("l1 sensitivity", sensitivity.lp)?;
    let build = |scale: f64, threshold: i64| {
        let (domain, metric) = counts_space::<1>();
        make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
            domain, metric, scale, threshold, None,
        )
        .map_err(opendp_err)
    };
    let c = calibrate_threshold(sensitivity.lp / epsilon, epsilon, delta, sensitivity, build)?;
    let released = c
        .measurement
        .invoke(&to_input(counts)?)
        .map_err(opendp_err)?;
    Ok(NoisyCounts {
        counts: released.into_iter().collect(),
        scale: c.scale,
        threshold: c.threshold,
        mechanism: "discrete_laplace",
        epsilon_or_rho: c.certified.0,
        delta: c.certified.1,
    })
}

/// Discrete Gaussian noise of σ = `l2 / sqrt(2ρ)` on each count, then the threshold as in
/// [`laplace_threshold`].
pub fn gaussian_threshold(
    counts: &BTreeMap<String, u64>,
    sensitivity: MapSensitivity,
    rho: f64,
    delta: f64,
) -> Result<NoisyCounts, MechanismError> {
    check_positive("rho", rho)?;
    check_positive("delta", delta)?;
    check_positive("l2 sensitivity", sensitivity.lp)?;
    let build = |scale: f64, threshold: i64| {
        let (domain, metric) = counts_space::<2>();
        make_gaussian_threshold::<_, _, Approximate<ZeroConcentratedDivergence>>(
            domain, metric, scale, threshold, None,
        )
        .map_err(opendp_err)
    };
    let sigma = sensitivity.lp / (2.0 * rho).sqrt();
    let c = calibrate_threshold(sigma, rho, delta, sensitivity, build)?;
    let released = c
        .measurement
        .invoke(&to_input(counts)?)
        .map_err(opendp_err)?;
    Ok(NoisyCounts {
        counts: released.into_iter().collect(),
        scale: c.scale,
        threshold: c.threshold,
        mechanism: "discrete_gaussian",
        epsilon_or_rho: c.certified.0,
        delta: c.certified.1,
    })
}

#[cfg(test)]
mod tests {
    //! The sampler is OpenSSL's CSPRNG and cannot be seeded, so each statistical test fixes its
    //! acceptance region from a bound whose false-failure probability is at most 1e-6 (stated in
    //! the test): such a test fails spuriously about once in a million runs, never in practice.
    use super::*;

    /// Total false-failure probability allowed per test.
    const FAIL: f64 = 1e-6;

    /// Dvoretzky–Kiefer–Wolfowitz with Massart's constant: P(sup|F_n − F| > t) ≤ 2·exp(−2nt²),
    /// for any distribution (continuous or not). The t that makes this `fail`.
    fn dkw_bound(n: usize, fail: f64) -> f64 {
        ((2.0 / fail).ln() / (2.0 * n as f64)).sqrt()
    }

    /// sup over the sample points of |F_n − F|, checking both sides of each jump.
    fn ks_statistic(
        samples: &mut [f64],
        cdf: impl Fn(f64) -> f64,
        cdf_below: impl Fn(f64) -> f64,
    ) -> f64 {
        samples.sort_by(f64::total_cmp);
        let n = samples.len() as f64;
        let mut worst: f64 = 0.0;
        let mut i = 0;
        while i < samples.len() {
            let x = samples[i];
            let mut j = i;
            while j < samples.len() && samples[j] == x {
                j += 1;
            }
            worst = worst
                .max((j as f64 / n - cdf(x)).abs())
                .max((i as f64 / n - cdf_below(x)).abs());
            i = j;
        }
        worst
    }

    /// erf with |error| < 1.2e-7 (Numerical Recipes' erfc, Chebyshev fit): far below the DKW
    /// bounds used here.
    fn erf(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let r = t
            * (-z * z - 1.26551223
                + t * (1.00002368
                    + t * (0.37409196
                        + t * (0.09678418
                            + t * (-0.18628806
                                + t * (0.27886807
                                    + t * (-1.13520398
                                        + t * (1.48851587
                                            + t * (-0.82215223 + t * 0.17087277)))))))))
                .exp();
        if x >= 0.0 {
            1.0 - r
        } else {
            r - 1.0
        }
    }

    fn normal_cdf(x: f64, sigma: f64) -> f64 {
        0.5 * (1.0 + erf(x / (sigma * std::f64::consts::SQRT_2)))
    }

    /// Laurent & Massart (2000), Lemma 1: for S ~ χ²_n and x > 0,
    /// P(S − n ≥ 2√(nx) + 2x) ≤ e^{−x} and P(n − S ≥ 2√(nx)) ≤ e^{−x}.
    /// With x = ln(2/fail) the two-sided region fails with probability ≤ fail.
    fn chi2_region(n: usize, fail: f64) -> (f64, f64) {
        let (n, x) = (n as f64, (2.0 / fail).ln());
        (n - 2.0 * (n * x).sqrt(), n + 2.0 * (n * x).sqrt() + 2.0 * x)
    }

    #[test]
    fn gaussian_vector_noise_has_the_stated_sigma() {
        let n = 50_000;
        let (rho, sens) = (0.5, 2.0);
        let started = std::time::Instant::now();
        let out = gaussian_vector(&vec![0.0; n], sens, rho).unwrap();
        eprintln!("{n} Gaussian samples in {:?}", started.elapsed());
        assert!((out.sigma - 2.0).abs() < 1e-6, "σ = Δ/√(2ρ) = 2");
        assert!(out.rho <= rho);
        // Variance: Σx²/σ² ~ χ²_n (known mean 0). Region from Laurent–Massart, P(fail) ≤ FAIL/2.
        let s: f64 = out.values.iter().map(|x| (x / out.sigma).powi(2)).sum();
        let (lo, hi) = chi2_region(n, FAIL / 2.0);
        assert!((lo..=hi).contains(&s), "Σx²/σ² = {s} not in [{lo}, {hi}]");
        // Shape: DKW/KS against N(0, σ²), P(fail) ≤ FAIL/2.
        let mut v = out.values;
        let d = ks_statistic(&mut v, |x| normal_cdf(x, 2.0), |x| normal_cdf(x, 2.0));
        let t = dkw_bound(n, FAIL / 2.0);
        assert!(d <= t, "KS distance {d} > {t}");
    }

    #[test]
    fn gaussian_vector_adds_noise_to_the_values_given() {
        let out = gaussian_vector(&[1e6; 2_000], 1.0, 2.0).unwrap();
        let mean = out.values.iter().sum::<f64>() / 2_000.0;
        // σ = 0.5, so the mean of 2 000 draws is within 0.5·5.5/√2000 ≈ 0.062 of 1e6 except with
        // probability < 1e-7 (Gaussian tail at 5.5 standard errors, two-sided).
        assert!((mean - 1e6).abs() < 0.062, "{mean}");
    }

    fn counts(n: usize, value: u64) -> BTreeMap<String, u64> {
        (0..n).map(|i| (format!("k{i}"), value)).collect()
    }

    fn noise_of(released: &BTreeMap<String, i64>, value: u64) -> Vec<f64> {
        released
            .values()
            .map(|v| (*v - value as i64) as f64)
            .collect()
    }

    #[test]
    fn laplace_threshold_noise_is_discrete_laplace_of_the_stated_scale() {
        let (n, big) = (20_000, 1_000_000_000u64);
        let sens = MapSensitivity {
            l0: 4,
            lp: 4.0,
            linf: 1.0,
        };
        let out = laplace_threshold(&counts(n, big), sens, 1.0, 1e-9).unwrap();
        assert_eq!(out.scale, 4.0);
        assert!(out.epsilon_or_rho <= 1.0 && out.delta <= 1e-9);
        // Every key is 1e9 above the threshold: none is dropped (P(drop) ≈ 0).
        assert_eq!(out.counts.len(), n);
        // P(X = x) = (1−p)/(1+p)·p^|x| with p = e^{−1/b}; CDF in closed form.
        let p = (-1.0 / out.scale).exp();
        let cdf = move |x: f64| {
            if x >= 0.0 {
                1.0 - p.powf(x + 1.0) / (1.0 + p)
            } else {
                p.powf(-x) / (1.0 + p)
            }
        };
        let mut samples = noise_of(&out.counts, big);
        let d = ks_statistic(&mut samples, cdf, move |x| cdf(x - 1.0));
        let t = dkw_bound(n, FAIL);
        assert!(d <= t, "KS distance {d} > {t}");
    }

    #[test]
    fn gaussian_threshold_noise_is_discrete_gaussian_of_the_stated_sigma() {
        let (n, big) = (20_000, 1_000_000_000u64);
        let sens = MapSensitivity {
            l0: 4,
            lp: 2.0,
            linf: 1.0,
        };
        let out = gaussian_threshold(&counts(n, big), sens, 0.5, 1e-9).unwrap();
        assert!((out.scale - 2.0).abs() < 1e-6);
        assert_eq!(out.counts.len(), n);
        // Discrete Gaussian: P(X = x) ∝ exp(−x²/(2σ²)) on the integers; CDF by summation.
        let sigma = out.scale;
        let support: Vec<f64> = (-60..=60)
            .map(|x| (-(x as f64).powi(2) / (2.0 * sigma * sigma)).exp())
            .collect();
        let z: f64 = support.iter().sum();
        let cdf = move |x: f64| {
            let upto = (x.floor() as i64 + 60).clamp(-1, 120);
            support[..(upto + 1) as usize].iter().sum::<f64>() / z
        };
        let cdf2 = cdf.clone();
        let mut samples = noise_of(&out.counts, big);
        let d = ks_statistic(&mut samples, cdf, move |x| cdf2(x - 1.0));
        let t = dkw_bound(n, FAIL);
        assert!(d <= t, "KS distance {d} > {t}");
    }

    #[test]
    fn a_key_below_the_threshold_is_never_released_and_one_far_above_always_is() {
        let sens = MapSensitivity {
            l0: 2,
            lp: 2.0,
            linf: 1.0,
        };
        let mut c = BTreeMap::new();
        c.insert("rare".to_string(), 1u64);
        c.insert("common".to_string(), 100_000u64);
        let out = laplace_threshold(&c, sens, 1.0, 1e-9).unwrap();
        // δ ≤ 1e-9 means a count-1 key clears the threshold with probability ≤ 1e-9.
        assert!(out.threshold > 10, "threshold {}", out.threshold);
        assert!(!out.counts.contains_key("rare"));
        assert!(out.counts.contains_key("common"));
    }

    #[test]
    fn the_threshold_is_the_smallest_that_reaches_delta() {
        let sens = MapSensitivity {
            l0: 2,
            lp: 2.0,
            linf: 1.0,
        };
        let out = laplace_threshold(&BTreeMap::new(), sens, 1.0, 1e-6).unwrap();
        let d_in = (2u32, 2.0, 1.0);
        let below = make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
            counts_space::<1>().0,
            counts_space::<1>().1,
            out.scale,
            out.threshold - 1,
            None,
        )
        .unwrap();
        assert!(below.map(&d_in).unwrap().1 > 1e-6);
        assert!(out.delta <= 1e-6);
    }

    #[test]
    fn bad_parameters_are_refused_not_panicked_on() {
        assert!(gaussian_vector(&[0.0], 0.0, 1.0).is_err());
        assert!(gaussian_vector(&[0.0], 1.0, f64::NAN).is_err());
        assert!(gaussian_vector(&[f64::INFINITY], 1.0, 1.0).is_err());
        let sens = MapSensitivity {
            l0: 1,
            lp: 1.0,
            linf: 1.0,
        };
        assert!(laplace_threshold(&BTreeMap::new(), sens, -1.0, 1e-9).is_err());
        assert!(gaussian_threshold(&BTreeMap::new(), sens, 1.0, 0.0).is_err());
    }
}
