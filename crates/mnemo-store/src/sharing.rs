//! Sharing rules (`tenant_sharing_rules`): tenant A lets tenant B (or every tenant of A's project)
//! read A's memories that match the rule's conditions, anonymized by the rule's profile.
//!
//! A manages its own rules here under Row Level Security. What rules expose is read only through
//! `mnemo_shared_memories()` ([`shared_memories`]), a SECURITY DEFINER function that takes the
//! reader from the session (`app.tenant_id`), applies every rule's target, project, isolation,
//! activity and expiry at each call, and writes an audit row into each owner's trail.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use crate::memories::MemoryFilter;
use crate::{Result, StoreError, TenantTx};

#[derive(Debug, Clone, FromRow)]
pub struct Rule {
    pub id: Uuid,
    /// The target's public tenant id; `None`: every tenant of the project.
    pub target: Option<String>,
    pub resource_type: String,
    pub permissions: Vec<String>,
    pub conditions: Json<Value>,
    pub anonymization: Json<Value>,
    pub reveal_source: bool,
    pub is_active: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, mnemo_project_tenant_key(target_tenant_id) AS target, resource_type, permissions,
    conditions, anonymization, reveal_source, is_active, expires_at, created_at, updated_at";

/// A rule to create (values validated by the caller).
#[derive(Debug, Clone)]
pub struct NewRule {
    /// Internal id of the target (a tenant of the project), `None` for every tenant of it.
    pub target: Option<Uuid>,
    pub conditions: Value,
    pub anonymization: Value,
    pub reveal_source: bool,
    pub is_active: bool,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create(tx: &mut TenantTx, r: NewRule) -> Result<Rule> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO tenant_sharing_rules
            (tenant_id, target_tenant_id, resource_type, permissions, conditions, anonymization,
             reveal_source, is_active, expires_at)
         VALUES ($1, $2, 'memories', ARRAY['read'], $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(tx.tenant_id())
    .bind(r.target)
    .bind(Json(r.conditions))
    .bind(Json(r.anonymization))
    .bind(r.reveal_source)
    .bind(r.is_active)
    .bind(r.expires_at)
    .fetch_one(&mut **tx)
    .await?;
    get(tx, id).await
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Rule> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_sharing_rules WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("sharing rule"))
}

/// Position after the last rule of a page: oldest first.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

pub async fn list(tx: &mut TenantTx, cursor: Option<Cursor>, limit: i64) -> Result<Vec<Rule>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_sharing_rules
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
         ORDER BY created_at, id LIMIT $4"
    ))
    .bind(tx.tenant_id())
    .bind(cursor.map(|c| c.created_at))
    .bind(cursor.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn count(tx: &mut TenantTx) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tenant_sharing_rules WHERE tenant_id = $1")
            .bind(tx.tenant_id())
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// Changes to a rule; `None` leaves a field as it is, `Some(None)` clears `expires_at`.
#[derive(Debug, Clone, Default)]
pub struct RulePatch {
    pub conditions: Option<Value>,
    pub anonymization: Option<Value>,
    pub reveal_source: Option<bool>,
    pub is_active: Option<bool>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

pub async fn update(tx: &mut TenantTx, id: Uuid, p: RulePatch) -> Result<Rule> {
    let done = sqlx::query(
        "UPDATE tenant_sharing_rules SET
            conditions = coalesce($3, conditions),
            anonymization = coalesce($4, anonymization),
            reveal_source = coalesce($5, reveal_source),
            is_active = coalesce($6, is_active),
            expires_at = CASE WHEN $7 THEN $8 ELSE expires_at END
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tx.tenant_id())
    .bind(id)
    .bind(p.conditions.map(Json))
    .bind(p.anonymization.map(Json))
    .bind(p.reveal_source)
    .bind(p.is_active)
    .bind(p.expires_at.is_some())
    .bind(p.expires_at.flatten())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("sharing rule"));
    }
    get(tx, id).await
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let done = sqlx::query("DELETE FROM tenant_sharing_rules WHERE tenant_id = $1 AND id = $2")
        .bind(tx.tenant_id())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("sharing rule"));
    }
    Ok(())
}

/// A memory another tenant's rule exposes to the current tenant, as the owner stored it (the
/// caller applies the rule's `anonymization` before anything leaves the service).
#[derive(Debug, Clone, FromRow)]
pub struct SharedMemory {
    pub rule_id: Uuid,
    /// The owner's public tenant id, where the rule reveals it.
    pub source_tenant: Option<String>,
    /// Stands for the memory: a hash of the rule and the memory, never the owner's ids.
    pub handle: Uuid,
    pub content: Json<Value>,
    pub tags: Vec<String>,
    pub metadata: Json<Value>,
    pub relevance_score: f64,
    pub has_embedding: bool,
    pub embedding_model: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Cosine distance to the query vector, when the vector side found it.
    pub distance: Option<f64>,
    /// Text rank, when the text side found it.
    pub text_rank: Option<f64>,
    pub anonymization: Json<Value>,
}

/// What active sharing rules let the current tenant read for a search: the `k` nearest to
/// `vector` and the `k` best text matches of `query` (any of its words, as in
/// [`crate::search::text`]), with the search's filter. Each owner gets an audit row naming the
/// reader, in this transaction.
pub async fn shared_memories(
    tx: &mut TenantTx,
    vector: Option<&[f32]>,
    query: Option<&str>,
    k: i64,
    filter: &MemoryFilter,
    request_id: Option<&str>,
) -> Result<Vec<SharedMemory>> {
    Ok(sqlx::query_as(
        "SELECT * FROM mnemo_shared_memories($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(vector.map(|v| Vector::from(v.to_vec())))
    .bind(query.map(crate::search::any_word))
    .bind(i32::try_from(k).unwrap_or(i32::MAX))
    .bind(filter.contains.clone().map(Json))
    .bind(filter.tags_all.clone())
    .bind(filter.tags_any.clone())
    .bind(filter.min_relevance)
    .bind(filter.max_relevance)
    .bind(filter.created_after)
    .bind(filter.created_before)
    .bind(request_id)
    .fetch_all(&mut **tx)
    .await?)
}
