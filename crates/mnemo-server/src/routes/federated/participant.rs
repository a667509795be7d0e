//! `/v1/federated/participant`: the key's tenant registers for federated learning, reads its
//! standing (privacy level, reputation with its parts, budget spent and remaining), withdraws.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use mnemo_core::federated::reputation::{Reputation, ReputationParams};
use mnemo_core::{Invalid, Permission, PrivacyLevel, Resource};
use mnemo_store::federated::participants::{self, LedgerEntry, Participant};

use super::require_federating;
use crate::auth::TenantCtx;
use crate::error::ApiResult;
use crate::extract::ApiJson;
use crate::ops::{run, Op};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(
        register_participant,
        get_participant,
        withdraw_participant
    ))
}

/// Ledger rows shown with the participant.
const LEDGER_ROWS: i64 = 20;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParticipantInput {
    /// `basic` (exact aggregates without tenant ids: only with other `basic` tenants),
    /// `differential` (calibrated noise, charged to the budget) or `secure` (also redaction and a
    /// minimum number of tenants per lesson). A tenant joins sessions at its level or stronger.
    /// (Read as text and parsed, so that a body of the wrong shape, e.g. `[1]`, is a 422 rather
    /// than serde_json's "expected value" syntax error.)
    #[schema(value_type = PrivacyLevel)]
    pub privacy_level: String,
}

/// A privacy budget and what the ledger has spent of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetOut {
    /// Total ε over all releases, at `delta`.
    pub epsilon: f64,
    pub delta: f64,
    /// ε the ledger's sums convert to at the budget's δ (zCDP: ρ + 2·sqrt(ρ·ln(1/δ'))).
    pub spent_epsilon: f64,
    pub remaining_epsilon: f64,
    /// The ledger's sums: zCDP ρ, and the additive δ of the threshold mechanisms.
    pub rho_spent: f64,
    pub delta_spent: f64,
    /// ρ that can still be charged.
    pub remaining_rho: f64,
}

impl BudgetOut {
    pub fn of(p: &Participant) -> Self {
        let budget = p.budget();
        let ledger = p.ledger();
        let spent = budget.spent_epsilon(&ledger);
        let spent = if spent.is_finite() {
            spent
        } else {
            budget.epsilon
        };
        Self {
            epsilon: budget.epsilon,
            delta: budget.delta,
            spent_epsilon: spent,
            remaining_epsilon: (budget.epsilon - spent).max(0.0),
            rho_spent: ledger.rho,
            delta_spent: ledger.delta,
            remaining_rho: budget.remaining_rho(&ledger),
        }
    }
}

/// The tenant as a federated participant. Its reputation and budget are shown to it and to the
/// administrator only.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantOut {
    pub privacy_level: String,
    /// False after a withdrawal; registering again keeps the ledger and the reputation.
    pub is_active: bool,
    /// In [0, 1]: `agreement_weight · agreement_ema + (1 − agreement_weight) · completion_rate`,
    /// where agreement is the ReLU of the cosine between the tenant's contribution and the
    /// released aggregate of each session it completed.
    pub reputation: Reputation,
    pub reputation_params: ReputationParams,
    pub budget: BudgetOut,
    /// Releases the tenant contributed to.
    pub contributions: i32,
    /// The most recent charges, newest first.
    pub ledger: Vec<LedgerEntry>,
    pub joined_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
}

impl ParticipantOut {
    pub fn new(p: Participant, ledger: Vec<LedgerEntry>) -> Self {
        let params = ReputationParams::default();
        Self {
            reputation: p.reputation(&params),
            reputation_params: params,
            budget: BudgetOut::of(&p),
            contributions: p.contributions_count,
            ledger,
            privacy_level: p.privacy_level,
            is_active: p.is_active,
            joined_at: p.joined_at,
            last_active_at: p.last_active_at,
        }
    }
}

fn op(action: &'static str, permission: Permission) -> Op {
    Op::new(action, Resource::Federated, permission, "participant")
}

#[utoipa::path(post, path = "/v1/federated/participant", tag = "federated",
    request_body = ParticipantInput,
    responses((status = 200, description = "registered (or the registration updated: the ledger and the reputation stay)", body = ParticipantOut),
              (status = 403, description = "the tenant is strict", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn register_participant(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<ParticipantInput>,
) -> ApiResult<Json<ParticipantOut>> {
    let level: PrivacyLevel = input
        .privacy_level
        .parse()
        .map_err(|_| Invalid::new("privacy_level", "must be basic, differential or secure"))?;
    let op = op("federated.participant.register", Permission::Write);
    let out = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            let p = participants::register(tx, level).await?;
            let ledger = participants::ledger(tx, LEDGER_ROWS).await?;
            Ok(ParticipantOut::new(p, ledger))
        })
    })
    .await?;
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/federated/participant", tag = "federated",
    responses((status = 200, body = ParticipantOut),
              (status = 404, description = "not registered", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_participant(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> ApiResult<Json<ParticipantOut>> {
    let op = op("federated.participant.get", Permission::Read);
    let out = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            let p = participants::get(tx).await?;
            let ledger = participants::ledger(tx, LEDGER_ROWS).await?;
            Ok(ParticipantOut::new(p, ledger))
        })
    })
    .await?;
    Ok(Json(out))
}

#[utoipa::path(delete, path = "/v1/federated/participant", tag = "federated",
    responses((status = 200, description = "withdrawn (the ledger stays)", body = ParticipantOut),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "still a member of an open session", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn withdraw_participant(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> ApiResult<Json<ParticipantOut>> {
    let op = op("federated.participant.withdraw", Permission::Delete);
    let out = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            let p = participants::withdraw(tx).await?;
            let ledger = participants::ledger(tx, LEDGER_ROWS).await?;
            Ok(ParticipantOut::new(p, ledger))
        })
    })
    .await?;
    Ok(Json(out))
}
