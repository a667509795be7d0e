//! `POST /v1/federated/sessions/{session_id}/aggregate`: the initiator's release.
//!
//! One transaction, in the initiator's tenant transaction: the session goes `active →
//! aggregating`; the members' contributions and ledgers are read (ledgers locked, in tenant
//! order, so that concurrent sessions charge a tenant one after the other); members whose budget
//! cannot pay the session's charge (or who became strict, withdrew, or raised their privacy level)
//! are excluded with the reason; with enough left, `mnemo_core::federated::insight::release` runs
//! and `mnemo_fed_settle` charges every contributor (checking the budget again in the database),
//! writes the insight, the reputations and memberships, and deletes the contributions; otherwise
//! the session fails with its reason. Then the audit row, and the commit.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use mnemo_core::federated::accounting::{Budget, Charge, Ledger, SessionPlan, Split};
use mnemo_core::federated::aggregate::Bounds;
use mnemo_core::federated::insight::{release, Insight, LabelNoise, ReleaseConfig, ReleaseError};
use mnemo_core::federated::lessons::LabelBounds;
use mnemo_core::federated::lifecycle::{transition, FailureReason, SessionEvent};
use mnemo_core::federated::reputation::{agreement, Reputation, ReputationParams, SessionRecord};
use mnemo_core::{Permission, PrivacyLevel, Resource, SessionStatus, EMBEDDING_DIM};
use mnemo_store::federated::contributions::{self, Contributor, MemberInput, Settlement};
use mnemo_store::federated::sessions::{self, Session};
use mnemo_store::TenantTx;

use super::sessions::{illegal, not_initiator, session_out, SessionOut};
use super::{level_rank, require_federating, SessionRule};
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::ops::{run, Op};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(aggregate_session))
}

/// What the aggregation did. It names no tenant: excluded members see their own reason in their
/// membership of the session.
#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateOutcome {
    /// completed or failed.
    pub status: String,
    pub failure_reason: Option<String>,
    /// Contributors in the release.
    pub participants: usize,
    /// Members left out (budget, isolation, withdrawal, privacy level).
    pub excluded: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AggregateOut {
    pub outcome: AggregateOutcome,
    pub session: SessionOut,
}

#[utoipa::path(post, path = "/v1/federated/sessions/{session_id}/aggregate", tag = "federated",
    params(("session_id" = String, Path)),
    responses((status = 200, description = "released (completed) or failed with the reason", body = AggregateOut),
              (status = 403, description = "not the initiator", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the session is not active, or its deadline passed", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn aggregate_session(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(session_id): ApiPath<String>,
) -> ApiResult<Json<AggregateOut>> {
    let op = Op::new(
        "federated.session.aggregate",
        Resource::Federated,
        Permission::Write,
        session_id.clone(),
    );
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                let s = sessions::lock(tx, &session_id).await?;
                if s.initiator_tenant_id != tx.tenant_id() {
                    return Err(not_initiator("aggregate"));
                }
                let next =
                    transition(s.status()?, SessionEvent::BeginAggregation).map_err(illegal)?;
                if s.deadline <= Utc::now() {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "session_deadline_passed",
                        format!(
                            "the session's deadline ({}) has passed",
                            s.deadline.to_rfc3339()
                        ),
                    ));
                }
                sessions::set_status(tx, s.id, next.status).await?;
                let outcome = aggregate_and_release(tx, &s).await?;
                let session = session_out(tx, &session_id).await?;
                Ok(AggregateOut { outcome, session })
            })
        })
        .await?,
    ))
}

/// Why a member is left out of the release, if it is.
fn exclusion(
    m: &MemberInput,
    level: PrivacyLevel,
    charge: Option<Charge>,
) -> Option<(String, bool)> {
    if !m.federates {
        return Some((
            "isolation_strict: the tenant is no longer allowed to federate (strict or deactivated)"
                .to_owned(),
            false,
        ));
    }
    if !m.participant_active {
        return Some((
            "withdrawn: the tenant withdrew from federated learning".to_owned(),
            false,
        ));
    }
    match m.participant_level.parse::<PrivacyLevel>() {
        Ok(own) if level_rank(level) >= level_rank(own) => {}
        _ => {
            return Some((
                format!(
                "privacy_level: the tenant now asks for {}, stronger than this session's {level}",
                m.participant_level
            ),
                false,
            ))
        }
    }
    let charge = charge?;
    let budget = Budget {
        epsilon: m.budget_epsilon,
        delta: m.budget_delta,
    };
    let ledger = Ledger {
        rho: m.rho_spent,
        delta: m.delta_spent,
    };
    budget
        .charge(&ledger, &charge)
        .err()
        .map(|e| (format!("budget_exhausted: {e}"), true))
}

fn reputation_of(m: &MemberInput, p: &ReputationParams) -> Reputation {
    Reputation::from_parts(
        m.agreement_ema,
        u32::try_from(m.sessions_completed).unwrap_or(0),
        u32::try_from(m.sessions_abandoned).unwrap_or(0),
        p,
    )
}

/// The session (locked, aggregating) released or failed; see the module docs.
async fn aggregate_and_release(tx: &mut TenantTx, s: &Session) -> ApiResult<AggregateOutcome> {
    let level = s.level()?;
    let method = s.method()?;
    let rule: SessionRule = serde_json::from_value(s.rule.0.clone())
        .map_err(|e| ApiError::internal(format!("stored session rule unreadable: {e}")))?;
    let plan = match level {
        PrivacyLevel::Basic => None,
        _ => Some(SessionPlan::new(
            s.privacy_epsilon,
            s.privacy_delta,
            Split::default(),
        )?),
    };
    // The database charges what was stored at creation; the plan computes the same numbers.
    let charge = s
        .plan_rho
        .zip(s.plan_delta)
        .map(|(rho, delta)| Charge { rho, delta });
    let params = ReputationParams::default();

    let inputs = contributions::aggregation_inputs(tx, s.id).await?;
    let mut included: Vec<&MemberInput> = Vec::new();
    let mut excluded: Vec<(uuid::Uuid, String)> = Vec::new();
    let mut for_budget = false;
    for m in &inputs {
        match exclusion(m, level, charge) {
            Some((reason, budget)) => {
                for_budget |= budget;
                excluded.push((m.member, reason));
            }
            None => included.push(m),
        }
    }
    let fail = |reason: FailureReason| -> ApiResult<()> {
        transition(SessionStatus::Aggregating, SessionEvent::Fail(reason)).map_err(illegal)?;
        Ok(())
    };
    if (included.len() as i64) < i64::from(s.min_participants) {
        let reason = if for_budget {
            FailureReason::BudgetExhausted
        } else {
            FailureReason::TooFewParticipants
        };
        fail(reason)?;
        sessions::fail(tx, s.id, reason.as_str(), &excluded).await?;
        return Ok(failed(reason, 0, excluded.len()));
    }

    let contributions: Vec<_> = included
        .iter()
        .map(|m| m.contribution(reputation_of(m, &params).score))
        .collect();
    let redactor = rule.redaction().compile()?;
    let cfg = ReleaseConfig {
        level,
        rule: rule.rule(method),
        bounds: Bounds::default(),
        labels: LabelBounds::default(),
        label_noise: LabelNoise::Laplace,
        lessons: rule.lesson_bounds(),
        plan,
        redactor: Some(redactor),
    };
    let insight = match release(&contributions, &cfg) {
        Ok(insight) => insight,
        Err(ReleaseError::Aggregate(e)) => {
            tracing::info!(session = %s.session_id, error = %e, "aggregation refused its inputs");
            fail(FailureReason::AggregationRefused)?;
            sessions::fail(
                tx,
                s.id,
                FailureReason::AggregationRefused.as_str(),
                &excluded,
            )
            .await?;
            return Ok(failed(FailureReason::AggregationRefused, 0, excluded.len()));
        }
        Err(e) => return Err(ApiError::internal(format!("the release failed: {e}"))),
    };

    let contributors: Vec<Contributor> = included
        .iter()
        .zip(&contributions)
        .map(|(m, c)| {
            let a = agreement(&c.centroid, &insight.centroid);
            let after = reputation_of(m, &params)
                .record(SessionRecord::Completed { agreement: Some(a) }, &params);
            Contributor {
                member: m.member,
                agreement: a,
                agreement_ema: after.agreement_ema,
                reputation: after.score,
            }
        })
        .collect();
    let (noise_scale, expected_error, sensitivity) = match &insight.privacy {
        Some(p) => (
            p.centroid.sigma,
            p.centroid.sigma * (EMBEDDING_DIM as f64).sqrt(),
            serde_json::to_value(&p.centroid.sensitivity).ok(),
        ),
        None => (0.0, 0.0, None),
    };
    transition(SessionStatus::Aggregating, SessionEvent::Complete).map_err(illegal)?;
    let n = contributors.len();
    let n_excluded = excluded.len();
    contributions::settle(
        tx,
        s.id,
        Settlement {
            insight: content(&insight, expected_error),
            confidence: insight.confidence,
            noise_scale,
            expected_error,
            sensitivity,
            contributors,
            excluded,
        },
    )
    .await?;
    Ok(AggregateOutcome {
        status: SessionStatus::Completed.as_str().to_owned(),
        failure_reason: None,
        participants: n,
        excluded: n_excluded,
    })
}

fn failed(reason: FailureReason, participants: usize, excluded: usize) -> AggregateOutcome {
    AggregateOutcome {
        status: SessionStatus::Failed.as_str().to_owned(),
        failure_reason: Some(reason.as_str().to_owned()),
        participants,
        excluded,
    }
}

/// The insight as stored and read: mnemo_core's `Insight` with the expected error of the
/// centroid and a plain statement of what the noise leaves of it.
fn content(insight: &Insight, expected_error: f64) -> Value {
    let mut v = serde_json::to_value(insight).unwrap_or(Value::Null);
    let note = match &insight.privacy {
        None => "basic: the exact aggregate of the contributions, without noise or guarantee \
                 beyond leaving tenant ids out"
            .to_owned(),
        Some(p) => format!(
            "Gaussian noise of σ = {:.4} per coordinate: the released centroid is expected to be \
             off by σ·√{EMBEDDING_DIM} ≈ {expected_error:.3} in L2, while a centroid of unit \
             embeddings has norm at most 1. {} The noise shrinks as 1/n (n = {} here); \
             docs/federated.md says how many participants a useful release needs.",
            p.centroid.sigma,
            if expected_error >= 0.5 {
                "At this size the centroid is essentially noise."
            } else {
                "The centroid keeps most of its direction."
            },
            insight.participants
        ),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("expected_error".into(), json!(expected_error));
        o.insert("note".into(), json!(note));
    }
    v
}
