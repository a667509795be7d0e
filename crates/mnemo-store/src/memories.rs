//! Contextual memories of one tenant.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::{Result, StoreError, TenantTx};

/// Stored bytes of one embedding (384 float4), as `get_tenant_memory_usage` counts them.
pub const EMBEDDING_BYTES: i64 = 384 * 4;

#[derive(Debug, Clone, FromRow)]
pub struct Memory {
    pub id: Uuid,
    pub memory_id: String,
    pub relevance_score: f64,
    pub content: Json<Value>,
    pub tags: Vec<String>,
    pub metadata: Json<Value>,
    pub embedding: Option<Vector>,
    pub has_embedding: bool,
    pub embedding_model: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A memory to write. Values are already validated (see `mnemo_core`).
#[derive(Debug, Clone)]
pub struct NewMemory {
    pub memory_id: String,
    pub relevance_score: f64,
    pub content: Value,
    pub tags: Vec<String>,
    pub metadata: Value,
    pub embedding: Option<Vec<f32>>,
    pub embedding_model: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A partial update: `None` leaves a field as it is; for nullable fields `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct MemoryPatch {
    pub relevance_score: Option<f64>,
    pub content: Option<Value>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Value>,
    pub embedding: Option<Option<Vec<f32>>>,
    pub embedding_model: Option<Option<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

/// Filters shared by listing and search. Expired memories are always excluded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryFilter {
    /// JSONB containment: `content @> contains`.
    pub contains: Option<Value>,
    /// Every one of these tags.
    pub tags_all: Option<Vec<String>>,
    /// At least one of these tags.
    pub tags_any: Option<Vec<String>>,
    pub min_relevance: Option<f64>,
    pub max_relevance: Option<f64>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl MemoryFilter {
    /// Appends ` AND …` conditions on the alias `m` to a query that already has a WHERE.
    pub(crate) fn push_conditions(&self, qb: &mut QueryBuilder<'_, Postgres>) {
        qb.push(" AND (m.expires_at IS NULL OR m.expires_at > now())");
        if let Some(c) = &self.contains {
            qb.push(" AND m.content @> ").push_bind(Json(c.clone()));
        }
        if let Some(t) = &self.tags_all {
            qb.push(" AND m.tags @> ").push_bind(t.clone());
        }
        if let Some(t) = &self.tags_any {
            qb.push(" AND m.tags && ").push_bind(t.clone());
        }
        if let Some(v) = self.min_relevance {
            qb.push(" AND m.relevance_score >= ").push_bind(v);
        }
        if let Some(v) = self.max_relevance {
            qb.push(" AND m.relevance_score <= ").push_bind(v);
        }
        if let Some(t) = self.created_after {
            qb.push(" AND m.created_at >= ").push_bind(t);
        }
        if let Some(t) = self.created_before {
            qb.push(" AND m.created_at < ").push_bind(t);
        }
    }
}

/// Position after the last row of a page: memories are listed newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

pub(crate) fn columns(with_embedding: bool) -> &'static str {
    if with_embedding {
        "m.id, m.memory_id, m.relevance_score, m.content, m.tags, m.metadata, m.embedding, \
         m.embedding IS NOT NULL AS has_embedding, m.embedding_model, m.expires_at, m.created_at, m.updated_at"
    } else {
        "m.id, m.memory_id, m.relevance_score, m.content, m.tags, m.metadata, NULL::vector AS embedding, \
         m.embedding IS NOT NULL AS has_embedding, m.embedding_model, m.expires_at, m.created_at, m.updated_at"
    }
}

fn to_doc(m: &NewMemory) -> Value {
    json!({
        "memory_id": m.memory_id,
        "relevance_score": m.relevance_score,
        "content": m.content,
        "tags": m.tags,
        "metadata": m.metadata,
        "embedding_model": m.embedding_model,
        "expires_at": m.expires_at,
    })
}

const INSERT_FROM_DOCS: &str = "
    INSERT INTO contextual_memories AS m
        (tenant_id, memory_id, relevance_score, content, tags, metadata, embedding, embedding_model, expires_at)
    SELECT $1, d->>'memory_id', (d->>'relevance_score')::float8, d->'content',
           ARRAY(SELECT jsonb_array_elements_text(d->'tags')), d->'metadata', e,
           d->>'embedding_model', (d->>'expires_at')::timestamptz
    FROM ROWS FROM (jsonb_array_elements($2), unnest($3::vector[])) AS x(d, e)";

/// Inserts memories, all or nothing. Refuses with [`StoreError::Conflict`] when a `memory_id`
/// exists already, and with [`StoreError::Quota`] when the tenant's quota would be exceeded.
pub async fn create(tx: &mut TenantTx, batch: &[NewMemory]) -> Result<Vec<Memory>> {
    let ids: Vec<&str> = batch.iter().map(|m| m.memory_id.as_str()).collect();
    let mut taken = retire_expired(tx, &ids).await?;
    taken.truncate(10);
    if !taken.is_empty() {
        return Err(StoreError::Conflict {
            constraint: format!("memory_id exists: {}", taken.join(", ")),
        });
    }
    let docs = Value::Array(batch.iter().map(to_doc).collect());
    let embeddings: Vec<Option<Vector>> = batch
        .iter()
        .map(|m| m.embedding.clone().map(Vector::from))
        .collect();
    let rows: Vec<Memory> =
        sqlx::query_as(&format!("{INSERT_FROM_DOCS} RETURNING {}", columns(false)))
            .bind(tx.tenant_id())
            .bind(Json(docs))
            .bind(embeddings)
            .fetch_all(&mut **tx)
            .await?;
    enforce_quota(tx).await?;
    Ok(rows)
}

/// Inserts or replaces the memory with this `memory_id`; returns it and whether it was created.
pub async fn upsert(tx: &mut TenantTx, m: &NewMemory) -> Result<(Memory, bool)> {
    // A live memory with this id is what the upsert replaces.
    retire_expired(tx, &[m.memory_id.as_str()]).await?;
    #[derive(FromRow)]
    struct Row {
        #[sqlx(flatten)]
        memory: Memory,
        inserted: bool,
    }
    let row: Row = sqlx::query_as(&format!(
        "{INSERT_FROM_DOCS}
         ON CONFLICT (tenant_id, memory_id) DO UPDATE SET
            relevance_score = EXCLUDED.relevance_score, content = EXCLUDED.content,
            tags = EXCLUDED.tags, metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding,
            embedding_model = EXCLUDED.embedding_model, expires_at = EXCLUDED.expires_at
         RETURNING {}, (xmax = 0) AS inserted",
        columns(false)
    ))
    .bind(tx.tenant_id())
    .bind(Json(Value::Array(vec![to_doc(m)])))
    .bind(vec![m.embedding.clone().map(Vector::from)])
    .fetch_one(&mut **tx)
    .await?;
    enforce_quota(tx).await?;
    Ok((row.memory, row.inserted))
}

/// An expired memory is gone for every read; before its id is used again it is retired as the
/// tenant's retention policy says (deleted or archived; a 'retain' policy keeps it, and the id
/// stays taken).
/// Returns the ids that are held by live (unexpired) memories.
async fn retire_expired(tx: &mut TenantTx, memory_ids: &[&str]) -> Result<Vec<String>> {
    let existing: Vec<(String, bool)> = sqlx::query_as(
        "SELECT memory_id, coalesce(expires_at <= now(), false) FROM contextual_memories
         WHERE tenant_id = $1 AND memory_id = ANY($2)",
    )
    .bind(tx.tenant_id())
    .bind(memory_ids)
    .fetch_all(&mut **tx)
    .await?;
    let (expired, live): (Vec<_>, Vec<_>) = existing.into_iter().partition(|(_, expired)| *expired);
    if !expired.is_empty() {
        let expired: Vec<String> = expired.into_iter().map(|(id, _)| id).collect();
        sqlx::query("SELECT mnemo_retire_memories($1, $2)")
            .bind(tx.tenant_id())
            .bind(&expired)
            .execute(&mut **tx)
            .await?;
    }
    Ok(live.into_iter().map(|(id, _)| id).collect())
}

/// Checks, after a write and inside its transaction, that the tenant is within its quotas; the
/// caller's transaction rolls back on error, so nothing of an over-quota write remains. Writers of
/// a tenant with quotas are serialized by an advisory lock so two of them cannot both slip under.
async fn enforce_quota(tx: &mut TenantTx) -> Result<()> {
    let (max_memories, max_bytes): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT max_memories, max_storage_bytes FROM tenants WHERE id = $1")
            .bind(tx.tenant_id())
            .fetch_one(&mut **tx)
            .await?;
    if max_memories.is_none() && max_bytes.is_none() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
        .bind(tx.tenant_id())
        .execute(&mut **tx)
        .await?;
    let (count, bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(content_bytes), 0)::bigint + count(embedding) * $2
         FROM contextual_memories WHERE tenant_id = $1",
    )
    .bind(tx.tenant_id())
    .bind(EMBEDDING_BYTES)
    .fetch_one(&mut **tx)
    .await?;
    if let Some(max) = max_memories.filter(|max| count > *max) {
        return Err(StoreError::Quota(format!(
            "the tenant may hold at most {max} memories; this write would make {count}"
        )));
    }
    if let Some(max) = max_bytes.filter(|max| bytes > *max) {
        return Err(StoreError::Quota(format!(
            "the tenant may store at most {max} bytes; this write would make {bytes}"
        )));
    }
    Ok(())
}

pub async fn get(tx: &mut TenantTx, memory_id: &str, with_embedding: bool) -> Result<Memory> {
    sqlx::query_as(&format!(
        "SELECT {} FROM contextual_memories m
         WHERE m.tenant_id = $1 AND m.memory_id = $2 AND (m.expires_at IS NULL OR m.expires_at > now())",
        columns(with_embedding)
    ))
    .bind(tx.tenant_id())
    .bind(memory_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))
}

/// One page, newest first, after `cursor`.
pub async fn list(
    tx: &mut TenantTx,
    filter: &MemoryFilter,
    cursor: Option<Cursor>,
    limit: i64,
    with_embedding: bool,
) -> Result<Vec<Memory>> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT {} FROM contextual_memories m WHERE m.tenant_id = ",
        columns(with_embedding)
    ));
    qb.push_bind(tx.tenant_id());
    filter.push_conditions(&mut qb);
    if let Some(c) = cursor {
        qb.push(" AND (m.created_at, m.id) < (")
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    qb.push(" ORDER BY m.created_at DESC, m.id DESC LIMIT ")
        .push_bind(limit);
    Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
}

pub async fn update(tx: &mut TenantTx, memory_id: &str, p: MemoryPatch) -> Result<Memory> {
    let row: Memory = sqlx::query_as(&format!(
        "UPDATE contextual_memories m SET
            relevance_score = coalesce($3, relevance_score),
            content = coalesce($4, content),
            tags = coalesce($5, tags),
            metadata = coalesce($6, metadata),
            embedding = CASE WHEN $7 THEN $8 ELSE embedding END,
            embedding_model = CASE WHEN $9 THEN $10 ELSE embedding_model END,
            expires_at = CASE WHEN $11 THEN $12 ELSE expires_at END
         WHERE m.tenant_id = $1 AND m.memory_id = $2 AND (m.expires_at IS NULL OR m.expires_at > now())
         RETURNING {}",
        columns(false)
    ))
    .bind(tx.tenant_id())
    .bind(memory_id)
    .bind(p.relevance_score)
    .bind(p.content.map(Json))
    .bind(p.tags)
    .bind(p.metadata.map(Json))
    .bind(p.embedding.is_some())
    .bind(p.embedding.flatten().map(Vector::from))
    .bind(p.embedding_model.is_some())
    .bind(p.embedding_model.flatten())
    .bind(p.expires_at.is_some())
    .bind(p.expires_at.flatten())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))?;
    enforce_quota(tx).await?;
    Ok(row)
}

/// Deletes a memory (and, by cascade, its relationships).
pub async fn delete(tx: &mut TenantTx, memory_id: &str) -> Result<()> {
    let done = sqlx::query(
        "DELETE FROM contextual_memories m
         WHERE m.tenant_id = $1 AND m.memory_id = $2 AND (m.expires_at IS NULL OR m.expires_at > now())",
    )
    .bind(tx.tenant_id())
    .bind(memory_id)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("memory"));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Usage {
    pub total_memories: i64,
    pub active_memories: i64,
    pub expired_memories: i64,
    pub embedded_memories: i64,
    pub content_bytes: i64,
    pub embedding_bytes: i64,
    pub storage_bytes: i64,
    pub avg_relevance: Option<f64>,
    pub relationship_count: i64,
    pub offloaded_context_count: i64,
    pub max_memories: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    pub oldest_memory_at: Option<DateTime<Utc>>,
    pub newest_memory_at: Option<DateTime<Utc>>,
}

/// The tenant's usage, from `get_tenant_memory_usage`.
pub async fn usage(tx: &mut TenantTx) -> Result<Usage> {
    Ok(sqlx::query_as("SELECT * FROM get_tenant_memory_usage($1)")
        .bind(tx.tenant_id())
        .fetch_one(&mut **tx)
        .await?)
}
