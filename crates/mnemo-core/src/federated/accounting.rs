//! Privacy accounting in zero-concentrated DP (zCDP), with the tenant as the privacy unit.
//!
//! Every release of a session is δ-approximate ρ-zCDP for each participating tenant (Bun &
//! Steinke 2016, "Concentrated Differential Privacy", Def. 8.1): the Gaussian mechanisms are ρ-zCDP
//! exactly, a pure ε-DP mechanism is ε²/2-zCDP (their Prop. 1.4), and an (ε, δ)-DP threshold
//! mechanism is δ-approximately ε²/2-zCDP (the same proposition applied to the pure part of the
//! (ε, δ) decomposition `M(x) = (1−δ)·A(x) + δ·E(x)` with A ε-DP, Kairouz–Oh–Viswanath 2015;
//! OpenDP has no combinator for this cast, so it is written here). Approximate zCDP composes by
//! adding both ρ and δ, so a tenant's ledger is two sums: [`Ledger::rho`] and [`Ledger::delta`].
//!
//! Budgets are stated as (ε, δ): a ledger fits the budget when the sums convert to at most ε at
//! the budget's δ, using the standard conversion (Bun–Steinke Prop. 1.3)
//! `ε = ρ + 2·sqrt(ρ·ln(1/δ'))` with `δ' = δ − ledger.delta` left for the conversion. The
//! conversion is deliberately the simple closed form (PostgreSQL can recompute it; a tighter one,
//! like OpenDP's `make_zCDP_to_approxDP`, only ever gives a smaller ε — see the test
//! `simple_conversion_is_never_tighter_than_opendps`).
//!
//! # How one session's (ε, δ) is spent
//! A session asks for (ε_s, δ_s). [`SessionPlan::new`] splits δ_s into
//! - `δ_conv = 0.8·δ_s` for converting the session's ρ into ε_s (its statement to participants),
//! - `δ_counts = 0.1·δ_s` for the label-count threshold mechanism,
//! - `δ_lessons = 0.1·δ_s` for the lesson threshold mechanism,
//!
//! and then gives the session `ρ_s = rho_for(ε_s, δ_conv)` (the largest ρ whose ε at δ_conv is at
//! most ε_s), split by [`Split`] (default ½ centroid, ¼ label counts, ¼ lessons). Only the two
//! threshold δs are additive in the tenant's ledger; δ_conv is not charged, because the tenant's
//! ledger converts its own total ρ once, at the tenant's δ. By composition the session is
//! (ε_s, δ_s)-DP and each participant is charged `(ρ_s, δ_counts + δ_lessons)`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Invalid;

/// `ε` of ρ-zCDP at `delta` (Bun–Steinke 2016, Prop. 1.3): `ρ + 2·sqrt(ρ·ln(1/δ))`.
pub fn epsilon_of(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if !(delta > 0.0 && delta < 1.0) {
        return f64::INFINITY;
    }
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The largest ρ whose [`epsilon_of`] at `delta` is at most `epsilon`:
/// `(sqrt(ln(1/δ) + ε) − sqrt(ln(1/δ)))²`, nudged down by one part in 10¹² so that rounding can
/// never make the round trip exceed `epsilon`.
pub fn rho_for(epsilon: f64, delta: f64) -> f64 {
    if !(epsilon > 0.0 && delta > 0.0 && delta < 1.0) {
        return 0.0;
    }
    let l = (1.0 / delta).ln();
    let root = (l + epsilon).sqrt() - l.sqrt();
    root * root * (1.0 - 1e-12)
}

/// A total privacy budget, per tenant: at most `epsilon` at `delta` over all its releases.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    pub epsilon: f64,
    pub delta: f64,
}

impl Default for Budget {
    /// ε = 10 at δ = 1e-6 (the default).
    fn default() -> Self {
        Self {
            epsilon: 10.0,
            delta: 1e-6,
        }
    }
}

fn check_epsilon(field: &str, epsilon: f64, max: f64) -> Result<(), Invalid> {
    if !(epsilon > 0.0 && epsilon <= max) {
        return Err(Invalid::new(
            field,
            format!("epsilon must be greater than 0 and at most {max}"),
        ));
    }
    Ok(())
}

fn check_delta(field: &str, delta: f64, max: f64) -> Result<(), Invalid> {
    if !(delta > 0.0 && delta <= max) {
        return Err(Invalid::new(
            field,
            format!("delta must be greater than 0 and at most {max:e}"),
        ));
    }
    Ok(())
}

impl Budget {
    /// Largest total ε an administrator may grant (larger values promise nothing meaningful).
    pub const MAX_EPSILON: f64 = 100.0;
    /// Largest δ: δ must be far below 1/(number of tenants) to mean anything.
    pub const MAX_DELTA: f64 = 1e-3;

    pub fn parse(epsilon: f64, delta: f64) -> Result<Self, Invalid> {
        check_epsilon("epsilon", epsilon, Self::MAX_EPSILON)?;
        check_delta("delta", delta, Self::MAX_DELTA)?;
        Ok(Self { epsilon, delta })
    }

    /// ε spent by `ledger`, at this budget's δ (infinite once the additive δ used it all up).
    pub fn spent_epsilon(&self, ledger: &Ledger) -> f64 {
        if ledger.rho <= 0.0 && ledger.delta <= 0.0 {
            return 0.0;
        }
        let left = self.delta - ledger.delta;
        if left <= 0.0 {
            return f64::INFINITY;
        }
        epsilon_of(ledger.rho, left)
    }

    /// ρ that can still be charged (with no further additive δ).
    pub fn remaining_rho(&self, ledger: &Ledger) -> f64 {
        let left = self.delta - ledger.delta;
        (rho_for(self.epsilon, left) - ledger.rho).max(0.0)
    }

    /// Whether `charge` fits on top of `ledger`; the same check [`Budget::charge`] makes.
    pub fn can_charge(&self, ledger: &Ledger, charge: &Charge) -> bool {
        self.charge(ledger, charge).is_ok()
    }

    /// The ledger after `charge`, or why it would not fit. Pure: the caller stores the result in
    /// the same transaction as the release it pays for.
    pub fn charge(&self, ledger: &Ledger, charge: &Charge) -> Result<Ledger, BudgetExceeded> {
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        if !(valid(charge.rho) && valid(charge.delta)) {
            // A charge can never refund budget, and a non-number never fits.
            return Err(BudgetExceeded {
                budget_epsilon: self.epsilon,
                budget_delta: self.delta,
                spent_epsilon: self.spent_epsilon(ledger),
                epsilon_after: f64::INFINITY,
            });
        }
        let after = Ledger {
            rho: ledger.rho + charge.rho,
            delta: ledger.delta + charge.delta,
        };
        let epsilon_after = self.spent_epsilon(&after);
        if epsilon_after <= self.epsilon {
            Ok(after)
        } else {
            Err(BudgetExceeded {
                budget_epsilon: self.epsilon,
                budget_delta: self.delta,
                spent_epsilon: self.spent_epsilon(ledger),
                epsilon_after,
            })
        }
    }
}

/// What a tenant has spent: sums of ρ and of the additive δ of its releases.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Ledger {
    pub rho: f64,
    pub delta: f64,
}

/// What one release costs each contributing tenant.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, ToSchema)]
pub struct Charge {
    pub rho: f64,
    pub delta: f64,
}

/// A charge that does not fit: the tenant is excluded from the session with this as the reason.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error, Serialize)]
#[error(
    "privacy budget exceeded: ε would reach {epsilon_after:.4} of {budget_epsilon} at δ = {budget_delta:e} (spent so far: {spent_epsilon:.4})"
)]
pub struct BudgetExceeded {
    pub budget_epsilon: f64,
    pub budget_delta: f64,
    pub spent_epsilon: f64,
    pub epsilon_after: f64,
}

/// How a session's ρ is shared between its three releases. Fractions, summing to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Split {
    pub centroid: f64,
    pub counts: f64,
    pub lessons: f64,
}

impl Default for Split {
    /// The centroid gets half: it is the release with the most dimensions (384) and the one the
    /// insight is mostly about; label counts and lessons share the other half.
    fn default() -> Self {
        Self {
            centroid: 0.5,
            counts: 0.25,
            lessons: 0.25,
        }
    }
}

impl Split {
    pub fn parse(centroid: f64, counts: f64, lessons: f64) -> Result<Self, Invalid> {
        let parts = [centroid, counts, lessons];
        if parts.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
            return Err(Invalid::new(
                "split",
                "fractions must be non-negative numbers",
            ));
        }
        if (parts.iter().sum::<f64>() - 1.0).abs() > 1e-9 {
            return Err(Invalid::new("split", "fractions must sum to 1"));
        }
        Ok(Self {
            centroid,
            counts,
            lessons,
        })
    }
}

/// The privacy parameters of one session's release, derived from its (ε, δ); see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct SessionPlan {
    /// The session's promise: the whole release is (ε, δ)-DP for each participant.
    pub epsilon: f64,
    pub delta: f64,
    /// Total ρ of the session (= what each participant's ledger is charged).
    pub rho: f64,
    /// δ spent converting `rho` to `epsilon`; not charged to the ledgers.
    pub delta_conversion: f64,
    /// ρ of the Gaussian mechanism on the centroid.
    pub centroid_rho: f64,
    /// Pure ε of the discrete Laplace counts (its ρ is ε²/2).
    pub counts_epsilon: f64,
    /// δ of the label-count threshold.
    pub counts_delta: f64,
    /// ρ of the Gaussian threshold mechanism on the lessons.
    pub lessons_rho: f64,
    /// δ of the lesson threshold.
    pub lessons_delta: f64,
}

impl SessionPlan {
    /// Largest ε a single session may ask for.
    pub const MAX_EPSILON: f64 = 10.0;
    /// Largest δ a single session may ask for.
    pub const MAX_DELTA: f64 = 1e-5;
    /// The session δ when the request gives none.
    pub const DEFAULT_DELTA: f64 = 1e-8;

    pub fn new(epsilon: f64, delta: f64, split: Split) -> Result<Self, Invalid> {
        check_epsilon("epsilon", epsilon, Self::MAX_EPSILON)?;
        check_delta("delta", delta, Self::MAX_DELTA)?;
        let delta_conversion = 0.8 * delta;
        let counts_delta = 0.1 * delta;
        let lessons_delta = 0.1 * delta;
        let rho = rho_for(epsilon, delta_conversion);
        Ok(Self {
            epsilon,
            delta,
            rho,
            delta_conversion,
            centroid_rho: rho * split.centroid,
            counts_epsilon: (2.0 * rho * split.counts).sqrt(),
            counts_delta,
            lessons_rho: rho * split.lessons,
            lessons_delta,
        })
    }

    /// What each participant's ledger is charged.
    pub fn charge(&self) -> Charge {
        Charge {
            rho: self.rho,
            delta: self.counts_delta + self.lessons_delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_budget_is_epsilon_10_at_delta_1e_minus_6() {
        let b = Budget::default();
        assert_eq!((b.epsilon, b.delta), (10.0, 1e-6));
        // ρ of the whole budget: (sqrt(ln 1e6 + 10) − sqrt(ln 1e6))² ≈ 1.3530.
        let rho = rho_for(b.epsilon, b.delta);
        assert!((rho - 1.3530).abs() < 1e-3, "{rho}");
    }

    proptest! {
        #[test]
        fn rho_for_inverts_epsilon_of(eps in 1e-3f64..50.0, log_delta in -12f64..-3.0) {
            let delta = 10f64.powf(log_delta);
            let rho = rho_for(eps, delta);
            let back = epsilon_of(rho, delta);
            prop_assert!(back <= eps, "{back} > {eps}");
            prop_assert!(back >= eps * (1.0 - 1e-9), "{back} ≪ {eps}");
        }

        #[test]
        fn zcdp_composition_adds_rho(a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let budget = Budget::parse(100.0, 1e-6).unwrap();
            let l = budget
                .charge(&Ledger::default(), &Charge { rho: a, delta: 0.0 })
                .and_then(|l| budget.charge(&l, &Charge { rho: b, delta: 0.0 }))
                .unwrap();
            prop_assert!((l.rho - (a + b)).abs() < 1e-12);
        }
    }

    #[test]
    fn simple_conversion_is_never_tighter_than_opendps() {
        use opendp::combinators::make_zCDP_to_approxDP;
        use opendp::domains::{AtomDomain, VectorDomain};
        use opendp::measurements::make_gaussian;
        use opendp::measures::ZeroConcentratedDivergence;
        use opendp::metrics::L2Distance;
        for scale in [0.5, 1.0, 3.0, 10.0] {
            let m = make_gaussian::<_, _, ZeroConcentratedDivergence>(
                VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
                L2Distance::<f64>::default(),
                scale,
                None,
            )
            .unwrap();
            let rho = m.map(&1.0).unwrap();
            let profile = make_zCDP_to_approxDP(m).unwrap().map(&1.0).unwrap();
            for delta in [1e-9, 1e-6, 1e-3] {
                let tight = profile.epsilon(delta).unwrap();
                let ours = epsilon_of(rho, delta);
                assert!(ours >= tight, "ρ={rho} δ={delta}: {ours} < {tight}");
            }
        }
    }

    #[test]
    fn a_charge_that_fits_exactly_is_accepted_and_one_more_is_refused() {
        let budget = Budget::default();
        let full = Charge {
            rho: rho_for(budget.epsilon, budget.delta),
            delta: 0.0,
        };
        let ledger = budget.charge(&Ledger::default(), &full).unwrap();
        assert!(budget.spent_epsilon(&ledger) <= 10.0);
        let tiny = Charge {
            rho: 1e-6,
            delta: 0.0,
        };
        assert!(!budget.can_charge(&ledger, &tiny));
        let err = budget.charge(&ledger, &tiny).unwrap_err();
        assert!(err.epsilon_after > 10.0);
    }

    #[test]
    fn sessions_are_charged_until_the_budget_is_exhausted() {
        let budget = Budget::default();
        let plan = SessionPlan::new(1.0, SessionPlan::DEFAULT_DELTA, Split::default()).unwrap();
        let mut ledger = Ledger::default();
        let mut sessions = 0;
        while let Ok(next) = budget.charge(&ledger, &plan.charge()) {
            ledger = next;
            sessions += 1;
            assert!(sessions < 10_000, "the budget never ran out");
        }
        // zCDP composes far better than summing ε: about a hundred ε = 1 sessions fit into
        // ε = 10 (ρ_s ≈ 0.01306 at δ_conv = 8e-9; ρ of the budget ≈ 1.353 at δ = 1e-6, a little
        // less as the thresholds' additive δ (2e-9 per session) eats into that δ).
        assert!((90..=110).contains(&sessions), "{sessions}");
        assert!(budget.spent_epsilon(&ledger) <= budget.epsilon);
        assert!(budget.remaining_rho(&ledger) < plan.rho);
    }

    #[test]
    fn negative_or_nan_charges_are_refused() {
        let budget = Budget::default();
        let ledger = Ledger {
            rho: 0.5,
            delta: 0.0,
        };
        for bad in [-0.1, f64::NAN, f64::INFINITY] {
            assert!(!budget.can_charge(
                &ledger,
                &Charge {
                    rho: bad,
                    delta: 0.0
                }
            ));
            assert!(!budget.can_charge(
                &ledger,
                &Charge {
                    rho: 0.0,
                    delta: bad
                }
            ));
        }
    }

    #[test]
    fn additive_delta_counts_against_the_budget_delta() {
        let budget = Budget::default();
        let eats_all_delta = Charge {
            rho: 0.0,
            delta: budget.delta,
        };
        assert!(!budget.can_charge(&Ledger::default(), &eats_all_delta));
        let ledger = Ledger {
            rho: 0.1,
            delta: 0.5e-6,
        };
        // With half of δ used by thresholds, the conversion runs at δ' = 0.5e-6.
        assert_eq!(budget.spent_epsilon(&ledger), epsilon_of(0.1, 0.5e-6));
    }

    #[test]
    fn session_plan_composes_to_the_requested_epsilon_and_delta() {
        let plan = SessionPlan::new(2.0, 1e-7, Split::default()).unwrap();
        let rho_counts = plan.counts_epsilon.powi(2) / 2.0;
        let total_rho = plan.centroid_rho + rho_counts + plan.lessons_rho;
        assert!((total_rho - plan.rho).abs() < 1e-12);
        assert!(epsilon_of(total_rho, plan.delta_conversion) <= 2.0);
        let total_delta = plan.delta_conversion + plan.counts_delta + plan.lessons_delta;
        assert!((total_delta - 1e-7).abs() < 1e-20);
        assert_eq!(plan.charge().delta, plan.counts_delta + plan.lessons_delta);
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        assert!(Budget::parse(0.0, 1e-6).is_err());
        assert!(Budget::parse(f64::NAN, 1e-6).is_err());
        assert!(Budget::parse(10.0, 0.0).is_err());
        assert!(Budget::parse(10.0, 0.5).is_err());
        assert!(SessionPlan::new(11.0, 1e-8, Split::default()).is_err());
        assert!(SessionPlan::new(1.0, 1e-2, Split::default()).is_err());
        assert!(Split::parse(0.5, 0.5, 0.5).is_err());
        assert!(Split::parse(1.0, 0.0, 0.0).is_ok());
    }
}
