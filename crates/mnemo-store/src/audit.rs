//! The audit trail: one row per tenant request, written in the request's own transaction.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Result, TenantTx};

#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
    /// success, denied, not_found, invalid, conflict or error.
    pub outcome: &'a str,
    pub status_code: u16,
    pub request_id: Option<&'a str>,
    pub details: Value,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: Uuid,
    pub api_key_id: Option<Uuid>,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Json<Value>,
    pub created_at: DateTime<Utc>,
}

pub async fn record(tx: &mut TenantTx, e: AuditEntry<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, api_key_id, action, resource_type, resource_id, outcome,
                                status_code, request_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tx.tenant_id())
    .bind(tx.scope().key_id())
    .bind(e.action)
    .bind(e.resource_type)
    .bind(e.resource_id)
    .bind(e.outcome)
    .bind(i32::from(e.status_code))
    .bind(e.request_id)
    .bind(Json(e.details))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub request_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The tenant's own audit rows, newest first, after the cursor `(created_at, id)`.
pub async fn list(
    tx: &mut TenantTx,
    f: &AuditFilter,
    cursor: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<AuditRecord>> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, api_key_id, actor, action, resource_type, resource_id, outcome, status_code,
                request_id, details, created_at
         FROM audit_log WHERE tenant_id = ",
    );
    qb.push_bind(tx.tenant_id());
    if let Some(a) = &f.action {
        qb.push(" AND action = ").push_bind(a.clone());
    }
    if let Some(o) = &f.outcome {
        qb.push(" AND outcome = ").push_bind(o.clone());
    }
    if let Some(r) = &f.request_id {
        qb.push(" AND request_id = ").push_bind(r.clone());
    }
    if let Some(t) = f.since {
        qb.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        qb.push(" AND created_at < ").push_bind(t);
    }
    if let Some((t, id)) = cursor {
        qb.push(" AND (created_at, id) < (")
            .push_bind(t)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
}
