//! The session state machine: `forming → active → aggregating → completed | failed`.
//!
//! The same rule is enforced twice: here, where the server decides what to do, and in PostgreSQL
//! (a trigger that allows exactly the status pairs of [`LEGAL_STATUS_CHANGES`]), so a request that
//! races another still cannot make an illegal change.

use serde::Serialize;
use utoipa::ToSchema;

use crate::SessionStatus;

/// What can happen to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEvent {
    /// Enough participants joined (`min_participants` reached).
    Activate,
    /// A participant left and the session fell below `min_participants` again.
    Deactivate,
    /// The initiator asked for the aggregate.
    BeginAggregation,
    /// The insight was released.
    Complete,
    /// Aggregation could not release anything (e.g. budget exclusions left too few tenants).
    Fail(FailureReason),
    /// The initiator cancelled the session.
    Cancel,
    /// The deadline passed (the background job's event).
    Expire,
}

impl SessionEvent {
    pub const ALL: &'static [SessionEvent] = &[
        SessionEvent::Activate,
        SessionEvent::Deactivate,
        SessionEvent::BeginAggregation,
        SessionEvent::Complete,
        SessionEvent::Fail(FailureReason::TooFewParticipants),
        SessionEvent::Fail(FailureReason::BudgetExhausted),
        SessionEvent::Fail(FailureReason::AggregationRefused),
        SessionEvent::Cancel,
        SessionEvent::Expire,
    ];
}

/// Why a session ended in `failed`; stored with the session and shown to its participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The initiator cancelled it.
    Cancelled,
    /// The deadline passed while the session was still forming.
    TooFewParticipants,
    /// The deadline passed while the session was active but nobody asked for the aggregate.
    DeadlinePassed,
    /// Excluding the tenants whose budget could not pay left too few participants.
    BudgetExhausted,
    /// The aggregation rule refused the inputs (e.g. `n > 2f` does not hold).
    AggregationRefused,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Cancelled => "cancelled",
            FailureReason::TooFewParticipants => "too_few_participants",
            FailureReason::DeadlinePassed => "deadline_passed",
            FailureReason::BudgetExhausted => "budget_exhausted",
            FailureReason::AggregationRefused => "aggregation_refused",
        }
    }
}

/// The state a legal event leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    pub status: SessionStatus,
    /// Set exactly when `status` is `failed`.
    pub reason: Option<FailureReason>,
}

/// An event that the session's current status does not allow (the API answers 409).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a session that is {from} cannot {event}")]
pub struct IllegalTransition {
    pub from: SessionStatus,
    pub event: &'static str,
}

impl SessionEvent {
    fn verb(self) -> &'static str {
        match self {
            SessionEvent::Activate => "become active",
            SessionEvent::Deactivate => "return to forming",
            SessionEvent::BeginAggregation => "start aggregating",
            SessionEvent::Complete => "complete",
            SessionEvent::Fail(_) => "fail",
            SessionEvent::Cancel => "be cancelled",
            SessionEvent::Expire => "expire",
        }
    }
}

/// Every status change the machine can make, as `(from, to)`: the table the database trigger
/// mirrors. Terminal states (`completed`, `failed`) have no way out.
pub const LEGAL_STATUS_CHANGES: &[(SessionStatus, SessionStatus)] = &[
    (SessionStatus::Forming, SessionStatus::Active),
    (SessionStatus::Forming, SessionStatus::Failed),
    (SessionStatus::Active, SessionStatus::Forming),
    (SessionStatus::Active, SessionStatus::Aggregating),
    (SessionStatus::Active, SessionStatus::Failed),
    (SessionStatus::Aggregating, SessionStatus::Completed),
    (SessionStatus::Aggregating, SessionStatus::Failed),
];

/// The one transition rule.
///
/// Aggregating cannot be cancelled or expire: the release and the budget charge happen in one
/// transaction that ends in `completed` or `failed`, so a session is only seen `aggregating` by a
/// request racing that transaction, and it must not undo a charge already made.
pub fn transition(from: SessionStatus, event: SessionEvent) -> Result<Next, IllegalTransition> {
    use SessionEvent as E;
    use SessionStatus as S;
    let ok = |status| {
        Ok(Next {
            status,
            reason: None,
        })
    };
    let fail = |reason| {
        Ok(Next {
            status: S::Failed,
            reason: Some(reason),
        })
    };
    match (from, event) {
        (S::Forming, E::Activate) => ok(S::Active),
        (S::Forming, E::Cancel) => fail(FailureReason::Cancelled),
        (S::Forming, E::Expire) => fail(FailureReason::TooFewParticipants),
        (S::Active, E::Deactivate) => ok(S::Forming),
        (S::Active, E::BeginAggregation) => ok(S::Aggregating),
        (S::Active, E::Cancel) => fail(FailureReason::Cancelled),
        (S::Active, E::Expire) => fail(FailureReason::DeadlinePassed),
        (S::Aggregating, E::Complete) => ok(S::Completed),
        (S::Aggregating, E::Fail(reason)) => fail(reason),
        _ => Err(IllegalTransition {
            from,
            event: event.verb(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_pairs() -> impl Iterator<Item = (SessionStatus, SessionEvent)> {
        SessionStatus::ALL
            .iter()
            .flat_map(|s| SessionEvent::ALL.iter().map(move |e| (*s, *e)))
    }

    #[test]
    fn the_happy_path_reaches_completed() {
        let mut s = SessionStatus::Forming;
        for e in [
            SessionEvent::Activate,
            SessionEvent::BeginAggregation,
            SessionEvent::Complete,
        ] {
            s = transition(s, e).unwrap().status;
        }
        assert_eq!(s, SessionStatus::Completed);
    }

    #[test]
    fn exactly_the_listed_transitions_are_legal() {
        use SessionEvent as E;
        use SessionStatus as S;
        let legal: &[(S, E, S)] = &[
            (S::Forming, E::Activate, S::Active),
            (S::Forming, E::Cancel, S::Failed),
            (S::Forming, E::Expire, S::Failed),
            (S::Active, E::Deactivate, S::Forming),
            (S::Active, E::BeginAggregation, S::Aggregating),
            (S::Active, E::Cancel, S::Failed),
            (S::Active, E::Expire, S::Failed),
            (S::Aggregating, E::Complete, S::Completed),
            (
                S::Aggregating,
                E::Fail(FailureReason::TooFewParticipants),
                S::Failed,
            ),
            (
                S::Aggregating,
                E::Fail(FailureReason::BudgetExhausted),
                S::Failed,
            ),
            (
                S::Aggregating,
                E::Fail(FailureReason::AggregationRefused),
                S::Failed,
            ),
        ];
        let mut n_legal = 0;
        for (from, event) in all_pairs() {
            let expected = legal
                .iter()
                .find(|(f, e, _)| *f == from && *e == event)
                .map(|(_, _, to)| *to);
            match (transition(from, event), expected) {
                (Ok(next), Some(to)) => {
                    assert_eq!(next.status, to, "{from} + {event:?}");
                    n_legal += 1;
                }
                (Err(e), None) => assert_eq!(e.from, from),
                (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(n_legal, legal.len());
    }

    #[test]
    fn terminal_states_accept_no_event() {
        for from in [SessionStatus::Completed, SessionStatus::Failed] {
            for e in SessionEvent::ALL {
                assert!(transition(from, *e).is_err(), "{from} + {e:?}");
            }
        }
    }

    #[test]
    fn aggregating_cannot_be_cancelled_or_expire() {
        assert!(transition(SessionStatus::Aggregating, SessionEvent::Cancel).is_err());
        assert!(transition(SessionStatus::Aggregating, SessionEvent::Expire).is_err());
    }

    #[test]
    fn deadline_expiry_fails_with_the_reason_of_the_state_it_caught() {
        let forming = transition(SessionStatus::Forming, SessionEvent::Expire).unwrap();
        assert_eq!(forming.reason, Some(FailureReason::TooFewParticipants));
        let active = transition(SessionStatus::Active, SessionEvent::Expire).unwrap();
        assert_eq!(active.reason, Some(FailureReason::DeadlinePassed));
    }

    #[test]
    fn a_reason_is_given_exactly_when_the_session_fails() {
        for (from, event) in all_pairs() {
            if let Ok(next) = transition(from, event) {
                assert_eq!(
                    next.reason.is_some(),
                    next.status == SessionStatus::Failed,
                    "{from} + {event:?}"
                );
            }
        }
    }

    #[test]
    fn the_status_table_for_sql_is_exactly_what_transition_can_do() {
        let mut seen: Vec<(SessionStatus, SessionStatus)> = all_pairs()
            .filter_map(|(from, e)| transition(from, e).ok().map(|n| (from, n.status)))
            .collect();
        seen.sort_by_key(|(a, b)| (a.as_str(), b.as_str()));
        seen.dedup();
        let mut table = LEGAL_STATUS_CHANGES.to_vec();
        table.sort_by_key(|(a, b)| (a.as_str(), b.as_str()));
        assert_eq!(seen, table);
    }

    #[test]
    fn illegal_transition_message_names_state_and_event() {
        let e = transition(SessionStatus::Completed, SessionEvent::Cancel).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a session that is completed cannot be cancelled"
        );
    }
}
