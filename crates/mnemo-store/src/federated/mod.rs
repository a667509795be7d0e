//! Federated learning's state (migration `0006_federated.sql`): participants and their privacy
//! ledgers, sessions of a project, memberships, contributions, insights.
//!
//! - [`participants`]: a tenant's registration, reputation parts and ledger sums.
//! - [`sessions`]: sessions of the tenant's project, memberships, insights, the deadline job.
//! - [`contributions`]: a contribution computed from the tenant's own memories, and the
//!   aggregation's privileged steps (reading a session's contributions, settling its release).
//!
//! Everything a tenant does here runs in its [`TenantTx`] under Row Level Security; the steps that
//! cross tenants (counting a session's members, reading its contributions, charging every
//! contributor's ledger) call the migration's SECURITY DEFINER functions, which take the tenant
//! from the session, never from an argument.

pub mod contributions;
pub mod participants;
pub mod sessions;

use mnemo_core::federated::accounting::Budget;
use mnemo_core::IsolationLevel;
use sqlx::FromRow;
use uuid::Uuid;

use crate::{Result, StoreError, TenantTx};

/// The current tenant as federation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub isolation: IsolationLevel,
    pub project: Uuid,
    pub budget: Budget,
}

impl Standing {
    /// Whether the tenant may take part in federated learning and sharing (not `strict`).
    pub fn federates(&self) -> bool {
        self.isolation != IsolationLevel::Strict
    }
}

/// The tenant's isolation level, project and privacy budget (its own `tenants` row).
pub async fn standing(tx: &mut TenantTx) -> Result<Standing> {
    #[derive(FromRow)]
    struct Row {
        isolation_level: String,
        project_id: Uuid,
        privacy_budget_epsilon: f64,
        privacy_budget_delta: f64,
    }
    let row: Row = sqlx::query_as(
        "SELECT isolation_level::text AS isolation_level, project_id, privacy_budget_epsilon,
                privacy_budget_delta
         FROM tenants WHERE id = $1",
    )
    .bind(tx.tenant_id())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("tenant"))?;
    Ok(Standing {
        isolation: row
            .isolation_level
            .parse()
            .map_err(|e: mnemo_core::Invalid| StoreError::Invalid { message: e.message })?,
        project: row.project_id,
        budget: Budget {
            epsilon: row.privacy_budget_epsilon,
            delta: row.privacy_budget_delta,
        },
    })
}

/// Another tenant of the current tenant's project, found by its public id.
#[derive(Debug, Clone, FromRow)]
pub struct ProjectTenant {
    pub id: Uuid,
    pub isolation_level: String,
    pub is_active: bool,
}

impl ProjectTenant {
    pub fn is_strict(&self) -> bool {
        self.isolation_level == IsolationLevel::Strict.as_str()
    }
}

/// The tenant of the current tenant's project with this public id; `None` for an unknown one
/// and for one of another project alike.
pub async fn project_tenant(tx: &mut TenantTx, key: &str) -> Result<Option<ProjectTenant>> {
    Ok(sqlx::query_as("SELECT * FROM mnemo_project_tenant($1)")
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?)
}
