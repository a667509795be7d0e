//! A tenant's registration as a federated participant (`federated_participants`), with its
//! reputation parts and the running sums of its privacy ledger.

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

use mnemo_core::federated::accounting::{Budget, Ledger};
use mnemo_core::federated::reputation::{Reputation, ReputationParams};
use mnemo_core::PrivacyLevel;

use crate::{Result, Store, StoreError, TenantTx};

/// The participant row, with the tenant's budget.
#[derive(Debug, Clone, FromRow)]
pub struct Participant {
    pub privacy_level: String,
    pub is_active: bool,
    pub reputation_score: f64,
    pub agreement_ema: f64,
    pub sessions_completed: i32,
    pub sessions_abandoned: i32,
    pub contributions_count: i32,
    pub rho_spent: f64,
    pub delta_spent: f64,
    pub joined_at: DateTime<Utc>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub budget_epsilon: f64,
    pub budget_delta: f64,
}

impl Participant {
    pub fn level(&self) -> Result<PrivacyLevel> {
        self.privacy_level
            .parse()
            .map_err(|e: mnemo_core::Invalid| StoreError::Invalid { message: e.message })
    }

    pub fn ledger(&self) -> Ledger {
        Ledger {
            rho: self.rho_spent,
            delta: self.delta_spent,
        }
    }

    pub fn budget(&self) -> Budget {
        Budget {
            epsilon: self.budget_epsilon,
            delta: self.budget_delta,
        }
    }

    pub fn reputation(&self, p: &ReputationParams) -> Reputation {
        Reputation::from_parts(
            self.agreement_ema,
            u32::try_from(self.sessions_completed).unwrap_or(0),
            u32::try_from(self.sessions_abandoned).unwrap_or(0),
            p,
        )
    }
}

const SELECT: &str =
    "SELECT p.privacy_level::text AS privacy_level, p.is_active, p.reputation_score,
        p.agreement_ema, p.sessions_completed, p.sessions_abandoned, p.contributions_count,
        p.rho_spent, p.delta_spent, p.joined_at, p.last_active_at,
        t.privacy_budget_epsilon AS budget_epsilon, t.privacy_budget_delta AS budget_delta
    FROM federated_participants p JOIN tenants t ON t.id = p.tenant_id
    WHERE p.tenant_id = $1";

/// The current tenant's participant row; `NotFound("participant")` before it registered.
pub async fn get(tx: &mut TenantTx) -> Result<Participant> {
    sqlx::query_as(SELECT)
        .bind(tx.tenant_id())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("participant"))
}

/// The row locked for this transaction (a registration change or a leave).
async fn lock(tx: &mut TenantTx) -> Result<Option<Participant>> {
    Ok(sqlx::query_as(&format!("{SELECT} FOR UPDATE OF p"))
        .bind(tx.tenant_id())
        .fetch_optional(&mut **tx)
        .await?)
}

/// Registers the current tenant (or re-activates it, with a new level). A re-registration keeps
/// the ledger and the reputation.
pub async fn register(tx: &mut TenantTx, level: PrivacyLevel) -> Result<Participant> {
    let created = sqlx::query(
        "INSERT INTO federated_participants (tenant_id, privacy_level)
         VALUES ($1, $2::privacy_level) ON CONFLICT (tenant_id) DO NOTHING",
    )
    .bind(tx.tenant_id())
    .bind(level.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !created {
        sqlx::query(
            "UPDATE federated_participants SET privacy_level = $2::privacy_level, is_active = true
             WHERE tenant_id = $1",
        )
        .bind(tx.tenant_id())
        .bind(level.as_str())
        .execute(&mut **tx)
        .await?;
    }
    get(tx).await
}

/// Withdraws the current tenant (`is_active = false`); its ledger and reputation stay, so
/// registering again never resets a budget. Refused with `Conflict("participant_in_sessions")`
/// while it is a member of a forming or active session.
pub async fn withdraw(tx: &mut TenantTx) -> Result<Participant> {
    lock(tx).await?.ok_or(StoreError::NotFound("participant"))?;
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT s.session_id FROM federated_memberships m
         JOIN federated_sessions s ON s.id = m.session_id
         WHERE m.tenant_id = $1 AND m.status = 'joined' AND s.status IN ('forming', 'active')
         ORDER BY s.session_id LIMIT 10",
    )
    .bind(tx.tenant_id())
    .fetch_all(&mut **tx)
    .await?;
    if !open.is_empty() {
        return Err(StoreError::Conflict {
            constraint: format!("participant_in_sessions: {}", open.join(", ")),
        });
    }
    sqlx::query(
        "UPDATE federated_participants SET is_active = false, last_active_at = now() WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id())
    .execute(&mut **tx)
    .await?;
    get(tx).await
}

/// Books one abandoned session on the current tenant's reputation (it left a session it had
/// joined).
pub async fn record_abandoned(tx: &mut TenantTx, p: &ReputationParams) -> Result<()> {
    let Some(row) = lock(tx).await? else {
        return Ok(());
    };
    let after = row.reputation(p).record(
        mnemo_core::federated::reputation::SessionRecord::Abandoned,
        p,
    );
    sqlx::query(
        "UPDATE federated_participants SET sessions_abandoned = $2, reputation_score = $3,
                last_active_at = now()
         WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id())
    .bind(i32::try_from(after.abandoned).unwrap_or(i32::MAX))
    .bind(after.score)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One release that charged the tenant.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    pub session_id: String,
    pub rho: f64,
    pub delta: f64,
    /// The session's (ε, δ).
    pub session_epsilon: f64,
    pub session_delta: f64,
    /// ε the tenant had spent after this release, at its budget's δ.
    pub epsilon_spent_after: f64,
    pub created_at: DateTime<Utc>,
}

/// The tenant's most recent ledger rows, newest first.
pub async fn ledger(tx: &mut TenantTx, limit: i64) -> Result<Vec<LedgerEntry>> {
    Ok(sqlx::query_as(
        "SELECT session_key AS session_id, rho, delta, session_epsilon, session_delta,
                epsilon_spent_after, created_at
         FROM federated_privacy_ledger WHERE tenant_id = $1
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(tx.tenant_id())
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

impl Store {
    /// A tenant's participant row and its most recent ledger rows, as the administrator sees
    /// them (`None` if it never registered).
    pub async fn federated_participant(
        &self,
        tenant_key: &str,
        ledger_rows: i64,
    ) -> Result<Option<(Participant, Vec<LedgerEntry>)>> {
        let tenant: Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE tenant_id = $1")
            .bind(tenant_key)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound("tenant"))?;
        let Some(p) = sqlx::query_as(SELECT)
            .bind(tenant)
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let ledger = sqlx::query_as(
            "SELECT session_key AS session_id, rho, delta, session_epsilon, session_delta,
                    epsilon_spent_after, created_at
             FROM federated_privacy_ledger WHERE tenant_id = $1
             ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(tenant)
        .bind(ledger_rows)
        .fetch_all(self.pool())
        .await?;
        Ok(Some((p, ledger)))
    }
}
