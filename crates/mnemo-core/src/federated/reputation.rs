//! A tenant's reputation in [0, 1]: how well its contributions agreed with what the sessions
//! released, and how often it saw sessions through.
//!
//! # What "the aggregate of the others" is, and why
//! Agreement is `max(0, cos(own contribution, reference))`. The reference must be the
//! **released** aggregate of the session (noisy under `differential`/`secure`), never a
//! leave-one-out aggregate recomputed from the other tenants' raw contributions: reputation is
//! shown to the tenant with its parts, so a reference computed from raw data would hand the
//! tenant a function of its peers' private contributions outside any privacy accounting. The
//! released value is public to the participants already, so using it is free post-processing.
//! For the robust rules the released aggregate is, by construction, barely moved by any single
//! tenant (see [`super::aggregate`]), so it stands for "the others" as intended: a poisoner still
//! disagrees with it.

use serde::Serialize;
use utoipa::ToSchema;

/// `max(0, cos(a, b))`; 0 when either vector is zero or they differ in length.
pub fn agreement(own: &[f64], reference: &[f64]) -> f64 {
    if own.len() != reference.len() {
        return 0.0;
    }
    let dot: f64 = own.iter().zip(reference).map(|(a, b)| a * b).sum();
    let na = own.iter().map(|a| a * a).sum::<f64>().sqrt();
    let nb = reference.iter().map(|b| b * b).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 || !dot.is_finite() {
        return 0.0;
    }
    (dot / (na * nb)).clamp(0.0, 1.0)
}

/// How a past session ended for the tenant, oldest first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionRecord {
    /// The tenant stayed to the release; `agreement` is `None` when it contributed nothing
    /// comparable (e.g. no memory matched the topic).
    Completed { agreement: Option<f64> },
    /// The tenant left a session it had joined before the session completed. (Being excluded
    /// for lack of budget is not abandoning: it is recorded as neither.)
    Abandoned,
}

/// Parameters of [`calculate_tenant_reputation`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct ReputationParams {
    /// Weight of the newest agreement in the moving average.
    pub alpha: f64,
    /// Where a newcomer starts (agreement average and completion rate alike).
    pub prior: f64,
    /// Share of agreement in the score; the rest is the completion rate.
    pub agreement_weight: f64,
}

impl Default for ReputationParams {
    fn default() -> Self {
        Self {
            alpha: 0.3,
            prior: 0.5,
            agreement_weight: 0.7,
        }
    }
}

/// A reputation and its parts (what the tenant and the admin are shown).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct Reputation {
    /// `agreement_weight · agreement_ema + (1 − agreement_weight) · completion_rate`, in [0, 1].
    pub score: f64,
    /// Exponential moving average of the agreements, starting at `prior`.
    pub agreement_ema: f64,
    /// `(completed + 2·prior) / (completed + abandoned + 2)`: a rate pulled towards the prior
    /// while there are few sessions.
    pub completion_rate: f64,
    pub completed: u32,
    pub abandoned: u32,
}

/// Reputation from a tenant's session history, oldest first. Pure and deterministic.
pub fn calculate_tenant_reputation(history: &[SessionRecord], p: &ReputationParams) -> Reputation {
    let alpha = p.alpha.clamp(0.0, 1.0);
    let prior = p.prior.clamp(0.0, 1.0);
    let w = p.agreement_weight.clamp(0.0, 1.0);
    let mut ema = prior;
    let (mut completed, mut abandoned) = (0u32, 0u32);
    for r in history {
        match r {
            SessionRecord::Completed { agreement } => {
                completed = completed.saturating_add(1);
                if let Some(a) = agreement {
                    let a = if a.is_finite() {
                        a.clamp(0.0, 1.0)
                    } else {
                        0.0
                    };
                    ema = (1.0 - alpha) * ema + alpha * a;
                }
            }
            SessionRecord::Abandoned => abandoned = abandoned.saturating_add(1),
        }
    }
    let completion_rate =
        (completed as f64 + 2.0 * prior) / (completed as f64 + abandoned as f64 + 2.0);
    let score = (w * ema + (1.0 - w) * completion_rate).clamp(0.0, 1.0);
    Reputation {
        score,
        agreement_ema: ema,
        completion_rate,
        completed,
        abandoned,
    }
}

impl Reputation {
    /// The reputation from its stored parts: the moving average and the session counts (what the
    /// service keeps per tenant instead of the whole history).
    pub fn from_parts(
        agreement_ema: f64,
        completed: u32,
        abandoned: u32,
        p: &ReputationParams,
    ) -> Self {
        let prior = p.prior.clamp(0.0, 1.0);
        let w = p.agreement_weight.clamp(0.0, 1.0);
        let ema = if agreement_ema.is_finite() {
            agreement_ema.clamp(0.0, 1.0)
        } else {
            prior
        };
        let completion_rate =
            (completed as f64 + 2.0 * prior) / (completed as f64 + abandoned as f64 + 2.0);
        Reputation {
            score: (w * ema + (1.0 - w) * completion_rate).clamp(0.0, 1.0),
            agreement_ema: ema,
            completion_rate,
            completed,
            abandoned,
        }
    }

    /// The reputation after one more session: the same as [`calculate_tenant_reputation`] over the
    /// history extended by `record` (a property test holds them equal), without the history.
    pub fn record(&self, record: SessionRecord, p: &ReputationParams) -> Self {
        let alpha = p.alpha.clamp(0.0, 1.0);
        match record {
            SessionRecord::Completed { agreement } => {
                let ema = match agreement {
                    Some(a) => {
                        let a = if a.is_finite() {
                            a.clamp(0.0, 1.0)
                        } else {
                            0.0
                        };
                        (1.0 - alpha) * self.agreement_ema + alpha * a
                    }
                    None => self.agreement_ema,
                };
                Self::from_parts(ema, self.completed.saturating_add(1), self.abandoned, p)
            }
            SessionRecord::Abandoned => Self::from_parts(
                self.agreement_ema,
                self.completed,
                self.abandoned.saturating_add(1),
                p,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agreement_is_relu_of_cosine() {
        assert!((agreement(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-12);
        assert_eq!(agreement(&[1.0, 0.0], &[-1.0, 0.0]), 0.0);
        assert!((agreement(&[1.0, 1.0], &[1.0, 0.0]) - 0.5f64.sqrt()).abs() < 1e-12);
        assert_eq!(agreement(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(agreement(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn a_newcomer_has_the_prior() {
        let r = calculate_tenant_reputation(&[], &ReputationParams::default());
        assert_eq!(r.score, 0.5);
        assert_eq!((r.completed, r.abandoned), (0, 0));
    }

    #[test]
    fn agreeing_and_finishing_raises_reputation_and_poisoning_lowers_it() {
        let p = ReputationParams::default();
        let good = vec![
            SessionRecord::Completed {
                agreement: Some(0.9)
            };
            10
        ];
        let bad = vec![
            SessionRecord::Completed {
                agreement: Some(0.0)
            };
            10
        ];
        let g = calculate_tenant_reputation(&good, &p);
        let b = calculate_tenant_reputation(&bad, &p);
        assert!(g.score > 0.8, "{g:?}");
        assert!(b.score < 0.35, "{b:?}");
    }

    #[test]
    fn abandoning_sessions_lowers_the_completion_part() {
        let p = ReputationParams::default();
        let r = calculate_tenant_reputation(&[SessionRecord::Abandoned; 4], &p);
        assert!((r.completion_rate - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.agreement_ema, 0.5);
        assert!(r.score < 0.5);
    }

    #[test]
    fn recent_agreement_weighs_more_than_old() {
        let p = ReputationParams::default();
        let c = |a| SessionRecord::Completed { agreement: Some(a) };
        let recovering = calculate_tenant_reputation(&[c(0.0), c(0.0), c(1.0), c(1.0)], &p);
        let declining = calculate_tenant_reputation(&[c(1.0), c(1.0), c(0.0), c(0.0)], &p);
        assert!(recovering.score > declining.score);
    }

    fn history() -> impl Strategy<Value = Vec<SessionRecord>> {
        proptest::collection::vec(
            prop_oneof![
                Just(SessionRecord::Abandoned),
                proptest::option::of(-5.0f64..5.0)
                    .prop_map(|agreement| SessionRecord::Completed { agreement }),
            ],
            0..50,
        )
    }

    proptest! {
        #[test]
        fn recording_one_session_at_a_time_equals_the_whole_history(
            hist in history(), alpha in 0.0f64..1.0, prior in 0.0f64..1.0, w in 0.0f64..1.0,
        ) {
            let p = ReputationParams { alpha, prior, agreement_weight: w };
            let batch = calculate_tenant_reputation(&hist, &p);
            let mut step = calculate_tenant_reputation(&[], &p);
            for r in &hist {
                // Through the stored parts, as the service keeps them between sessions.
                step = Reputation::from_parts(step.agreement_ema, step.completed, step.abandoned, &p)
                    .record(*r, &p);
            }
            prop_assert!((batch.score - step.score).abs() < 1e-12, "{batch:?} vs {step:?}");
            prop_assert!((batch.agreement_ema - step.agreement_ema).abs() < 1e-12);
            prop_assert_eq!((batch.completed, batch.abandoned), (step.completed, step.abandoned));
        }

        #[test]
        fn reputation_stays_in_unit_interval(
            hist in proptest::collection::vec(
                prop_oneof![
                    Just(SessionRecord::Abandoned),
                    proptest::option::of(-5.0f64..5.0).prop_map(|agreement| SessionRecord::Completed { agreement }),
                ],
                0..50,
            ),
            alpha in -1.0f64..2.0, prior in -1.0f64..2.0, w in -1.0f64..2.0,
        ) {
            let r = calculate_tenant_reputation(&hist, &ReputationParams { alpha, prior, agreement_weight: w });
            prop_assert!((0.0..=1.0).contains(&r.score));
            prop_assert!((0.0..=1.0).contains(&r.agreement_ema));
            prop_assert!((0.0..=1.0).contains(&r.completion_rate));
        }
    }
}
