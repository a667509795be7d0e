//! Combining the participants' centroids, and the L2 sensitivity of each rule.
//!
//! # Neighbouring relation
//! Two sessions are neighbours when they differ in **one tenant's whole contribution** (its
//! centroid, its size and its reputation), the number of participants `n` being the same and
//! public (participants see who joined). Every bound below is the largest L2 distance between
//! the rule's outputs on two such neighbours, after the same preprocessing of every contribution:
//! L2 clipping to `C` ([`clip_l2`]) and, for the robust rules, clamping each coordinate to
//! `[-c, c]` ([`clamp_coordinates`]; a clamped vector still has norm ≤ C).
//!
//! # Derivations (d = dimension, all vectors after preprocessing)
//! **Weighted mean** `μ = Σ wᵢxᵢ / Σ wᵢ`, weights clamped to `[w_min, w_max]`. Write the tenant
//! that changes as `j`, `B = Σ_{i≠j} wᵢ ≥ (n−1)·w_min` and `a = Σ_{i≠j} wᵢxᵢ / B` (‖a‖ ≤ C, a
//! convex combination). Then `μ = a + t(x_j − a)` with `t = w_j/(B + w_j) ≤ t_max =
//! w_max/((n−1)·w_min + w_max)`, and
//! `μ − μ' = t·x_j − t'·x'_j − (t − t')·a`, so
//! `‖μ − μ'‖ ≤ C(t + t' + |t − t'|) = 2C·max(t, t') ≤ 2C·t_max`.
//! With equal weights this is `2C/n`: the Gaussian mechanism on the clipped sum (sensitivity
//! `2C` under substitution) divided by the public `n`.
//!
//! **Coordinate-wise trimmed mean** (drop `k` values at each end of every coordinate, average the
//! `m = n − 2k` left; the median is `k = ⌊(n−1)/2⌋`). Changing one value from `x` to `x' > x`
//! moves every order statistic up by a non-negative amount and the amounts add up to `x' − x`
//! (the order statistics sum to the values' sum), so the kept sum moves by at most `|x' − x|`.
//! Per coordinate `|Δμ_k| ≤ |x_jk − x'_jk| / m`, hence `‖Δμ‖ ≤ ‖x_j − x'_j‖/m ≤ 2C/m`, and also
//! `≤ 2c·√d/m` from the clamp: `Δ₂ = min(2C, 2c√d)/m`.
//!
//! **Reputation-weighted trimmed mean** (trim `k` by count, then weight the `m` kept values by
//! reputation weights in `[w_min, w_max]`). Per coordinate the kept set changes by at most one
//! element (the non-`j` values keep their order), so the output is a weighted mean of `m`
//! values in which one (value, weight) pair is replaced; by the weighted-mean argument above in one
//! dimension, `|Δμ_k| ≤ 2·t_max·M_k` with `t_max = w_max/((m−1)·w_min + w_max)` and `M_k` the
//! largest `|value|` in coordinate `k` over the `n + 1` vectors involved. Then
//! `Σ_k M_k² ≤ Σ_vectors ‖x‖² ≤ (n+1)·C²` and `M_k ≤ c`, so
//! `Δ₂ = 2·t_max·min(C·√(n+1), c·√d)`. Weighting within a trimmed set costs noise: this is larger
//! than the plain trimmed mean's `2C/m`.
//!
//! # Robustness
//! With at most `f ≤ k` poisoned tenants, every kept value of a coordinate lies between the
//! smallest and largest honest value of that coordinate (at most `f` values can sit outside
//! that range on each side, and `k ≥ f` are dropped there), so the consensus and hybrid outputs
//! stay within the honest values' per-coordinate range whatever the poisoned values are.

use serde::Serialize;
use utoipa::ToSchema;

/// The neighbouring relation every sensitivity here is computed for.
pub const NEIGHBOURS: &str = "substitute one tenant's contribution; n public";

/// Scales `v` down to L2 norm `c` if it is longer.
pub fn clip_l2(v: &[f64], c: f64) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > c && norm > 0.0 {
        v.iter().map(|x| x * (c / norm)).collect()
    } else {
        v.to_vec()
    }
}

/// Clamps every coordinate of `v` to `[-c, c]`.
pub fn clamp_coordinates(v: &[f64], c: f64) -> Vec<f64> {
    v.iter().map(|x| x.clamp(-c, c)).collect()
}

/// Bounds on the weights, so that the weighted rules keep a bounded sensitivity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct WeightBounds {
    pub min: f64,
    pub max: f64,
    /// A contribution of this many memories or more counts as full size.
    pub size_cap: u64,
}

impl Default for WeightBounds {
    /// Weights in [0.5, 1]: a ratio of 2 keeps the weighted mean's sensitivity within a factor
    /// of ~2 of the plain mean's for small sessions (see the module doc).
    fn default() -> Self {
        Self {
            min: 0.5,
            max: 1.0,
            size_cap: 20,
        }
    }
}

impl WeightBounds {
    /// `weighted`: size × reputation, scaled to `max` and clamped to `[min, max]`.
    pub fn size_and_reputation(&self, size: u64, reputation: f64) -> f64 {
        let size = (size as f64 / self.size_cap.max(1) as f64).min(1.0);
        self.clamp(self.max * size * reputation)
    }
    /// `hybrid`: reputation alone, scaled to `max` and clamped to `[min, max]`.
    pub fn reputation(&self, reputation: f64) -> f64 {
        self.clamp(self.max * reputation)
    }
    fn clamp(&self, w: f64) -> f64 {
        if w.is_nan() {
            return self.min;
        }
        w.clamp(self.min, self.max)
    }
    /// The largest share one of `n` weighted values can have: `max / ((n−1)·min + max)`.
    fn max_share(&self, n: usize) -> f64 {
        self.max / ((n.saturating_sub(1)) as f64 * self.min + self.max)
    }
}

/// How much is trimmed from each end of each coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trim {
    /// Drop `⌊β·n⌋` values at each end (β in [0, 0.5)).
    Fraction(f64),
    /// Keep the middle one (odd n) or two (even n).
    Median,
}

impl Trim {
    pub const DEFAULT_BETA: f64 = 0.2;

    fn per_side(self, n: usize) -> usize {
        match self {
            // The 1e-9 keeps β·n that is an integer in exact arithmetic (0.29·100) from
            // rounding down to the integer below.
            Trim::Fraction(beta) => (beta * n as f64 + 1e-9).floor() as usize,
            Trim::Median => n.saturating_sub(1) / 2,
        }
    }
}

/// The aggregation rule, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Rule {
    /// Mean weighted by contribution size × reputation.
    Weighted { weights: WeightBounds },
    /// Coordinate-wise trimmed mean or median, tolerating `byzantine` poisoned tenants.
    Consensus { trim: Trim, byzantine: usize },
    /// Reputation-weighted coordinate-wise trimmed mean.
    Hybrid {
        beta: f64,
        byzantine: usize,
        weights: WeightBounds,
    },
}

impl Rule {
    pub fn method(&self) -> crate::AggregationMethod {
        match self {
            Rule::Weighted { .. } => crate::AggregationMethod::Weighted,
            Rule::Consensus { .. } => crate::AggregationMethod::Consensus,
            Rule::Hybrid { .. } => crate::AggregationMethod::Hybrid,
        }
    }
}

/// Preprocessing bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Bounds {
    /// L2 clipping bound C. A centroid of unit embeddings has norm ≤ 1, so C = 1 never distorts.
    pub clip: f64,
    /// Per-coordinate clamp c for the robust rules. MiniLM centroid coordinates are rarely beyond
    /// ±0.25; the clamp bounds each coordinate's influence.
    pub coordinate: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            clip: 1.0,
            coordinate: 0.25,
        }
    }
}

/// One tenant's input to the aggregate.
#[derive(Debug, Clone, Copy)]
pub struct Participant<'a> {
    pub vector: &'a [f64],
    /// How many memories the centroid was computed from.
    pub size: u64,
    /// In [0, 1].
    pub reputation: f64,
}

/// The L2 sensitivity of the rule actually used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Sensitivity {
    pub l2: f64,
    pub neighbours: &'static str,
    /// The formula with this session's numbers, for the insight to state.
    pub derivation: String,
}

/// A noiseless aggregate and its sensitivity. Never released as is under `differential`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Aggregate {
    pub value: Vec<f64>,
    pub n: usize,
    /// Values dropped at each end of each coordinate (0 for `weighted`).
    pub trimmed_per_side: usize,
    pub sensitivity: Sensitivity,
}

/// Why a rule refused its inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregateError {
    #[error("no participants")]
    Empty,
    #[error("contributions have different dimensions ({0} and {1})")]
    DimensionMismatch(usize, usize),
    #[error("contribution values must be finite")]
    NotFinite,
    #[error(
        "{n} participants cannot tolerate {byzantine} poisoned ones: the rule needs n > 2f and trims {trimmed} per side"
    )]
    ByzantineBound {
        n: usize,
        byzantine: usize,
        trimmed: usize,
    },
    #[error("invalid parameter: {0}")]
    Parameter(&'static str),
}

fn check_params(rule: &Rule, bounds: &Bounds) -> Result<(), AggregateError> {
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(bounds.clip) || !positive(bounds.coordinate) {
        return Err(AggregateError::Parameter(
            "clip and coordinate bounds must be positive",
        ));
    }
    let weights_ok = |w: &WeightBounds| positive(w.min) && positive(w.max) && w.min <= w.max;
    let beta_ok = |b: f64| (0.0..0.5).contains(&b);
    match rule {
        Rule::Weighted { weights } if !weights_ok(weights) => {
            Err(AggregateError::Parameter("weights need 0 < min ≤ max"))
        }
        Rule::Consensus {
            trim: Trim::Fraction(b),
            ..
        } if !beta_ok(*b) => Err(AggregateError::Parameter("β must be in [0, 0.5)")),
        Rule::Hybrid { beta, weights, .. } if !beta_ok(*beta) || !weights_ok(weights) => Err(
            AggregateError::Parameter("β must be in [0, 0.5) and weights need 0 < min ≤ max"),
        ),
        _ => Ok(()),
    }
}

/// Combines the participants' vectors by `rule`, after clipping (and clamping for the robust
/// rules), and returns the noiseless result with its sensitivity.
pub fn aggregate(
    participants: &[Participant<'_>],
    rule: &Rule,
    bounds: &Bounds,
) -> Result<Aggregate, AggregateError> {
    check_params(rule, bounds)?;
    let first = participants.first().ok_or(AggregateError::Empty)?;
    let d = first.vector.len();
    if d == 0 {
        return Err(AggregateError::Parameter("vectors must not be empty"));
    }
    for p in participants {
        if p.vector.len() != d {
            return Err(AggregateError::DimensionMismatch(d, p.vector.len()));
        }
        if p.vector.iter().any(|x| !x.is_finite()) {
            return Err(AggregateError::NotFinite);
        }
    }
    let n = participants.len();
    let (c_big, c) = (bounds.clip, bounds.coordinate);
    let clipped = |robust: bool| -> Vec<Vec<f64>> {
        participants
            .iter()
            .map(|p| {
                let v = clip_l2(p.vector, c_big);
                if robust {
                    clamp_coordinates(&v, c)
                } else {
                    v
                }
            })
            .collect()
    };
    let trimmed_k = |trim: Trim, byzantine: usize| -> Result<usize, AggregateError> {
        let k = trim.per_side(n);
        if n <= 2 * byzantine || k < byzantine || n <= 2 * k {
            return Err(AggregateError::ByzantineBound {
                n,
                byzantine,
                trimmed: k,
            });
        }
        Ok(k)
    };
    match *rule {
        Rule::Weighted { weights } => {
            let xs = clipped(false);
            let ws: Vec<f64> = participants
                .iter()
                .map(|p| weights.size_and_reputation(p.size, p.reputation))
                .collect();
            let total: f64 = ws.iter().sum();
            let value = (0..d)
                .map(|k| xs.iter().zip(&ws).map(|(x, w)| w * x[k]).sum::<f64>() / total)
                .collect();
            let t_max = weights.max_share(n);
            let l2 = 2.0 * c_big * t_max;
            Ok(Aggregate {
                value,
                n,
                trimmed_per_side: 0,
                sensitivity: Sensitivity {
                    l2,
                    neighbours: NEIGHBOURS,
                    derivation: format!(
                        "weighted mean: 2·C·w_max/((n−1)·w_min + w_max) = 2·{c_big}·{}/({}·{} + {}) = {l2:.6}",
                        weights.max,
                        n - 1,
                        weights.min,
                        weights.max
                    ),
                },
            })
        }
        Rule::Consensus { trim, byzantine } => {
            let k = trimmed_k(trim, byzantine)?;
            let xs = clipped(true);
            let m = n - 2 * k;
            let mut column = Vec::with_capacity(n);
            let value = (0..d)
                .map(|j| {
                    column.clear();
                    column.extend(xs.iter().map(|x| x[j]));
                    column.sort_by(f64::total_cmp);
                    column[k..n - k].iter().sum::<f64>() / m as f64
                })
                .collect();
            let by_clip = 2.0 * c_big;
            let by_clamp = 2.0 * c * (d as f64).sqrt();
            let l2 = by_clip.min(by_clamp) / m as f64;
            Ok(Aggregate {
                value,
                n,
                trimmed_per_side: k,
                sensitivity: Sensitivity {
                    l2,
                    neighbours: NEIGHBOURS,
                    derivation: format!(
                        "coordinate-wise trimmed mean keeping m = n − 2k = {n} − 2·{k} = {m}: min(2·C, 2·c·√d)/m = min({by_clip}, {by_clamp:.4})/{m} = {l2:.6}"
                    ),
                },
            })
        }
        Rule::Hybrid {
            beta,
            byzantine,
            weights,
        } => {
            let k = trimmed_k(Trim::Fraction(beta), byzantine)?;
            let xs = clipped(true);
            let ws: Vec<f64> = participants
                .iter()
                .map(|p| weights.reputation(p.reputation))
                .collect();
            let m = n - 2 * k;
            let mut column: Vec<(f64, f64)> = Vec::with_capacity(n);
            let value = (0..d)
                .map(|j| {
                    column.clear();
                    column.extend(xs.iter().zip(&ws).map(|(x, w)| (x[j], *w)));
                    column.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let kept = &column[k..n - k];
                    let total: f64 = kept.iter().map(|(_, w)| w).sum();
                    kept.iter().map(|(v, w)| v * w).sum::<f64>() / total
                })
                .collect();
            let t_max = weights.max_share(m);
            let by_clip = c_big * ((n + 1) as f64).sqrt();
            let by_clamp = c * (d as f64).sqrt();
            let l2 = 2.0 * t_max * by_clip.min(by_clamp);
            Ok(Aggregate {
                value,
                n,
                trimmed_per_side: k,
                sensitivity: Sensitivity {
                    l2,
                    neighbours: NEIGHBOURS,
                    derivation: format!(
                        "reputation-weighted trimmed mean keeping m = {m}: 2·t_max·min(C·√(n+1), c·√d), t_max = w_max/((m−1)·w_min + w_max) = {t_max:.4}: 2·{t_max:.4}·min({by_clip:.4}, {by_clamp:.4}) = {l2:.6}"
                    ),
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parts(vs: &[Vec<f64>]) -> Vec<Participant<'_>> {
        vs.iter()
            .map(|v| Participant {
                vector: v,
                size: 20,
                reputation: 1.0,
            })
            .collect()
    }

    fn dist(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            .sqrt()
    }

    fn consensus(f: usize) -> Rule {
        Rule::Consensus {
            trim: Trim::Fraction(Trim::DEFAULT_BETA),
            byzantine: f,
        }
    }

    fn honest(d: usize) -> Vec<Vec<f64>> {
        (0..4)
            .map(|i| {
                (0..d)
                    .map(|k| 0.05 + 0.01 * i as f64 - 0.002 * k as f64)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn clip_l2_bounds_the_norm_and_keeps_short_vectors() {
        let v = clip_l2(&[3.0, 4.0], 1.0);
        assert!((v[0] - 0.6).abs() < 1e-12 && (v[1] - 0.8).abs() < 1e-12);
        assert_eq!(clip_l2(&[0.3, 0.4], 1.0), vec![0.3, 0.4]);
    }

    #[test]
    fn a_poisoned_tenant_moves_the_plain_mean_arbitrarily_but_not_the_consensus() {
        let d = 8;
        let honest = honest(d);
        let honest_mean: Vec<f64> = (0..d)
            .map(|k| honest.iter().map(|v| v[k]).sum::<f64>() / 4.0)
            .collect();
        // Stated bound: with f = 1 ≤ k = ⌊0.2·5⌋ = 1, each kept value of a coordinate lies within
        // the honest values' range, so the consensus is within the honest per-coordinate spread.
        let spread: Vec<f64> = (0..d)
            .map(|k| {
                let col = honest.iter().map(|v| v[k]);
                col.clone().fold(f64::MIN, f64::max) - col.fold(f64::MAX, f64::min)
            })
            .collect();
        let bound = spread.iter().map(|s| s * s).sum::<f64>().sqrt();
        for sign in [1e9, -1e9] {
            let mut all = honest.clone();
            all.push(vec![sign; d]);
            let raw_mean: Vec<f64> = (0..d)
                .map(|k| all.iter().map(|v| v[k]).sum::<f64>() / 5.0)
                .collect();
            assert!(
                dist(&raw_mean, &honest_mean) > 1e8,
                "plain mean moved by ~1e9/5"
            );

            let agg = aggregate(&parts(&all), &consensus(1), &Bounds::default()).unwrap();
            let moved = dist(&agg.value, &honest_mean);
            assert!(moved <= bound, "{moved} > {bound}");
        }
    }

    #[test]
    fn consensus_is_refused_unless_trimming_covers_the_stated_f() {
        let vs = honest(4);
        // 4 participants, β = 0.2 trims ⌊0.8⌋ = 0 per side: cannot tolerate f = 1.
        let err = aggregate(&parts(&vs), &consensus(1), &Bounds::default()).unwrap_err();
        assert!(matches!(err, AggregateError::ByzantineBound { n: 4, .. }));
        // The median tolerates f = 1 of 4 (n > 2f), but not f = 2.
        let median = |f| Rule::Consensus {
            trim: Trim::Median,
            byzantine: f,
        };
        assert!(aggregate(&parts(&vs), &median(1), &Bounds::default()).is_ok());
        assert!(aggregate(&parts(&vs), &median(2), &Bounds::default()).is_err());
    }

    #[test]
    fn sensitivities_match_their_formulas() {
        let vs: Vec<Vec<f64>> = (0..5).map(|i| vec![0.1 * i as f64; 384]).collect();
        let b = Bounds::default();
        let w = WeightBounds::default();
        let weighted = aggregate(&parts(&vs), &Rule::Weighted { weights: w }, &b).unwrap();
        assert!((weighted.sensitivity.l2 - 2.0 * 1.0 / (4.0 * 0.5 + 1.0)).abs() < 1e-12);
        let cons = aggregate(&parts(&vs), &consensus(1), &b).unwrap();
        assert!((cons.sensitivity.l2 - 2.0 / 3.0).abs() < 1e-12);
        let hybrid = Rule::Hybrid {
            beta: 0.2,
            byzantine: 1,
            weights: w,
        };
        let h = aggregate(&parts(&vs), &hybrid, &b).unwrap();
        let t_max = 1.0 / (2.0 * 0.5 + 1.0);
        assert!((h.sensitivity.l2 - 2.0 * t_max * 6f64.sqrt()).abs() < 1e-12);
    }

    /// Random neighbours: replace one tenant's contribution (vector, size, reputation) and check
    /// the rule moved by at most its stated sensitivity.
    fn neighbours_within_sensitivity(
        rule: Rule,
        seed_vs: Vec<Vec<f64>>,
        other: Vec<f64>,
        j: usize,
        size: u64,
        rep: f64,
    ) {
        let b = Bounds {
            clip: 1.0,
            coordinate: 0.3,
        };
        let n = seed_vs.len();
        let reps: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37) % 1.0).collect();
        let make = |vs: &[Vec<f64>], j_size: u64, j_rep: f64| -> Aggregate {
            let ps: Vec<Participant<'_>> = vs
                .iter()
                .enumerate()
                .map(|(i, v)| Participant {
                    vector: v,
                    size: if i == j { j_size } else { 3 + i as u64 * 7 },
                    reputation: if i == j { j_rep } else { reps[i] },
                })
                .collect();
            aggregate(&ps, &rule, &b).unwrap()
        };
        let a = make(&seed_vs, 5, 0.5);
        let mut changed = seed_vs.clone();
        changed[j % n] = other;
        let a2 = make(&changed, size, rep);
        let moved = dist(&a.value, &a2.value);
        assert!(
            moved <= a.sensitivity.l2 * (1.0 + 1e-9) + 1e-12,
            "{rule:?}: moved {moved} > {}",
            a.sensitivity.l2
        );
    }

    fn vecs(n: usize, d: usize) -> impl Strategy<Value = Vec<Vec<f64>>> {
        proptest::collection::vec(proptest::collection::vec(-2.0f64..2.0, d), n)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn weighted_mean_moves_at_most_its_sensitivity(
            vs in vecs(5, 6), other in proptest::collection::vec(-2.0f64..2.0, 6),
            j in 0usize..5, size in 0u64..50, rep in 0.0f64..1.0,
        ) {
            neighbours_within_sensitivity(Rule::Weighted { weights: WeightBounds::default() }, vs, other, j, size, rep);
        }

        #[test]
        fn trimmed_mean_moves_at_most_its_sensitivity(
            vs in vecs(7, 6), other in proptest::collection::vec(-2.0f64..2.0, 6),
            j in 0usize..7, size in 0u64..50, rep in 0.0f64..1.0,
        ) {
            neighbours_within_sensitivity(consensus(1), vs, other, j, size, rep);
        }

        #[test]
        fn median_moves_at_most_its_sensitivity(
            vs in vecs(6, 6), other in proptest::collection::vec(-2.0f64..2.0, 6),
            j in 0usize..6, size in 0u64..50, rep in 0.0f64..1.0,
        ) {
            neighbours_within_sensitivity(Rule::Consensus { trim: Trim::Median, byzantine: 2 }, vs, other, j, size, rep);
        }

        #[test]
        fn hybrid_moves_at_most_its_sensitivity(
            vs in vecs(6, 6), other in proptest::collection::vec(-2.0f64..2.0, 6),
            j in 0usize..6, size in 0u64..50, rep in 0.0f64..1.0,
        ) {
            let rule = Rule::Hybrid { beta: 0.2, byzantine: 1, weights: WeightBounds { min: 0.25, max: 1.0, size_cap: 20 } };
            neighbours_within_sensitivity(rule, vs, other, j, size, rep);
        }

        #[test]
        fn robust_rules_stay_within_the_honest_range(
            honest in vecs(4, 5), poison in proptest::collection::vec(-1e9f64..1e9, 5),
        ) {
            let b = Bounds { clip: 1.0, coordinate: 0.3 };
            let prep: Vec<Vec<f64>> = honest.iter().map(|v| clamp_coordinates(&clip_l2(v, 1.0), 0.3)).collect();
            let mut all = honest.clone();
            all.push(poison);
            let rules = [consensus(1), Rule::Hybrid { beta: 0.2, byzantine: 1, weights: WeightBounds::default() }];
            for rule in rules {
                let agg = aggregate(&parts(&all), &rule, &b).unwrap();
                for (k, v) in agg.value.iter().enumerate() {
                    let lo = prep.iter().map(|x| x[k]).fold(f64::MAX, f64::min);
                    let hi = prep.iter().map(|x| x[k]).fold(f64::MIN, f64::max);
                    prop_assert!(*v >= lo - 1e-12 && *v <= hi + 1e-12);
                }
            }
        }
    }
}
