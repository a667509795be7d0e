//! Contextual memories of one tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::usage::{self, UsageDelta};
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

/// How a query reaches the GIN indexes of its text, tag and containment conditions under Row
/// Level Security (see [`MemoryFilter::indexed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Indexed {
    /// The conditions as written: their operators are LEAKPROOF (so the planner may use the GIN
    /// indexes), or there are none, or they match too much for an index to help.
    AsWritten,
    /// Also `m.id = ANY(ids)`: the few matching ids, found through the indexes by
    /// `mnemo_gin_candidates()`.
    Ids(Vec<Uuid>),
}

/// At most this many ids come back from `mnemo_gin_candidates()`; a broader match is filtered
/// row by row.
const MAX_CANDIDATES: i32 = 10_000;

impl MemoryFilter {
    fn has_indexed(&self, words: Option<&str>) -> bool {
        words.is_some()
            || self.contains.is_some()
            || self.tags_all.is_some()
            || self.tags_any.is_some()
    }

    /// Decides how the GIN-indexed conditions (and full-text `words`, joined for
    /// `websearch_to_tsquery`) reach their indexes. Where their operators are LEAKPROOF (see
    /// [`crate::Store::gin_direct`]) the planner sees to it. Otherwise Row Level Security would
    /// make them filters applied to every row of the tenant, so the matching ids are looked up
    /// first through the indexes by the SECURITY DEFINER `mnemo_gin_candidates()`, for the
    /// session's tenant only.
    pub(crate) async fn indexed(&self, tx: &mut TenantTx, words: Option<&str>) -> Result<Indexed> {
        if tx.gin_direct() || !self.has_indexed(words) {
            return Ok(Indexed::AsWritten);
        }
        let ids: Option<Vec<Uuid>> = sqlx::query_scalar(
            "SELECT mnemo_gin_candidates(websearch_to_tsquery('english', $1::text), $2::jsonb,
                                         $3::text[], $4::text[], $5)",
        )
        .bind(words)
        .bind(self.contains.clone().map(Json))
        .bind(self.tags_all.clone())
        .bind(self.tags_any.clone())
        .bind(MAX_CANDIDATES)
        .fetch_one(&mut **tx)
        .await?;
        Ok(ids.map_or(Indexed::AsWritten, Indexed::Ids))
    }

    /// Appends ` AND …` conditions on the alias `m` to a query that already has a WHERE.
    pub(crate) fn push_conditions(&self, qb: &mut QueryBuilder<'_, Postgres>, indexed: &Indexed) {
        self.push_with_text(qb, indexed, None);
    }

    /// As [`MemoryFilter::push_conditions`], with a full-text condition: the memory contains one
    /// of `words` (already joined for `websearch_to_tsquery`).
    pub(crate) fn push_with_text(
        &self,
        qb: &mut QueryBuilder<'_, Postgres>,
        indexed: &Indexed,
        words: Option<&str>,
    ) {
        qb.push(" AND (m.expires_at IS NULL OR m.expires_at > now())");
        if let Indexed::Ids(ids) = indexed {
            qb.push(" AND m.id = ANY(").push_bind(ids.clone()).push(")");
        }
        if let Some(w) = words {
            qb.push(" AND m.search_tsv @@ websearch_to_tsquery('english', ")
                .push_bind(w.to_owned())
                .push(")");
        }
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
    FROM ROWS FROM (jsonb_array_elements($2), unnest($3::vector[])) WITH ORDINALITY AS x(d, e, n)
    ORDER BY n";

/// A written memory with what it adds to the tenant's usage.
#[derive(FromRow)]
struct Written {
    #[sqlx(flatten)]
    memory: Memory,
    content_bytes: i32,
}

impl Written {
    fn usage(&self) -> UsageDelta {
        stored(self.content_bytes, self.memory.has_embedding)
    }
}

/// What one stored memory counts in its tenant's usage.
fn stored(content_bytes: i32, has_embedding: bool) -> UsageDelta {
    UsageDelta {
        memories: 1,
        content_bytes: i64::from(content_bytes),
        embedded: i64::from(has_embedding),
        ..Default::default()
    }
}

/// Inserts memories, all or nothing. Refuses with [`StoreError::Conflict`] when a `memory_id`
/// exists already, and with [`StoreError::Quota`] when the tenant's quota would be exceeded.
/// Returns the rows in the order of `batch`.
pub async fn create(tx: &mut TenantTx, batch: &[NewMemory]) -> Result<Vec<Memory>> {
    // Rows go in in memory_id order: two batches that share ids then take their locks in the same
    // order, so one waits for the other and conflicts, instead of each holding what the other
    // needs (a deadlock).
    let mut sorted: Vec<&NewMemory> = batch.iter().collect();
    sorted.sort_by(|a, b| a.memory_id.cmp(&b.memory_id));
    let ids: Vec<&str> = sorted.iter().map(|m| m.memory_id.as_str()).collect();
    let (mut taken, mut delta) = retire_expired(tx, &ids).await?;
    taken.truncate(10);
    if !taken.is_empty() {
        return Err(StoreError::Conflict {
            constraint: format!("memory_id exists: {}", taken.join(", ")),
        });
    }
    let docs = Value::Array(sorted.iter().map(|m| to_doc(m)).collect());
    let embeddings: Vec<Option<Vector>> = sorted
        .iter()
        .map(|m| m.embedding.clone().map(Vector::from))
        .collect();
    let rows: Vec<Written> = sqlx::query_as(&format!(
        "{INSERT_FROM_DOCS} RETURNING {}, m.content_bytes",
        columns(false)
    ))
    .bind(tx.tenant_id())
    .bind(Json(docs))
    .bind(embeddings)
    .fetch_all(&mut **tx)
    .await?;
    for row in &rows {
        delta += row.usage();
    }
    usage::charge(tx, delta).await?;
    let mut by_id: HashMap<String, Memory> = rows
        .into_iter()
        .map(|r| (r.memory.memory_id.clone(), r.memory))
        .collect();
    batch
        .iter()
        .map(|m| {
            by_id
                .remove(&m.memory_id)
                .ok_or(StoreError::NotFound("inserted memory"))
        })
        .collect()
}

/// Inserts or replaces the memory with this `memory_id`; returns it and whether it was created.
pub async fn upsert(tx: &mut TenantTx, m: &NewMemory) -> Result<(Memory, bool)> {
    let doc = Json(Value::Array(vec![to_doc(m)]));
    let embedding = m.embedding.clone().map(Vector::from);
    // A live memory with this id is what the upsert replaces, locked so its figures can leave the
    // counters; without one, an insert, unless a concurrent request inserted the id meanwhile: then
    // that memory is the one to replace.
    let mut delta = UsageDelta::default();
    for _ in 0..3 {
        delta += retire_expired(tx, &[m.memory_id.as_str()]).await?.1;
        let old: Option<(i32, bool)> = sqlx::query_as(
            "SELECT content_bytes, embedding IS NOT NULL FROM contextual_memories
             WHERE tenant_id = $1 AND memory_id = $2 AND (expires_at IS NULL OR expires_at > now())
             FOR UPDATE",
        )
        .bind(tx.tenant_id())
        .bind(&m.memory_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((bytes, embedded)) = old {
            let row: Written = sqlx::query_as(&format!(
                "UPDATE contextual_memories AS m SET
                    relevance_score = (d->>'relevance_score')::float8, content = d->'content',
                    tags = ARRAY(SELECT jsonb_array_elements_text(d->'tags')), metadata = d->'metadata',
                    embedding = $4, embedding_model = d->>'embedding_model',
                    expires_at = (d->>'expires_at')::timestamptz
                 FROM (SELECT $3::jsonb->0 AS d) AS x
                 WHERE m.tenant_id = $1 AND m.memory_id = $2
                 RETURNING {}, m.content_bytes",
                columns(false)
            ))
            .bind(tx.tenant_id())
            .bind(&m.memory_id)
            .bind(&doc)
            .bind(&embedding)
            .fetch_one(&mut **tx)
            .await?;
            delta += row.usage() - stored(bytes, embedded);
            usage::charge(tx, delta).await?;
            return Ok((row.memory, false));
        }
        let row: Option<Written> = sqlx::query_as(&format!(
            "{INSERT_FROM_DOCS} ON CONFLICT (tenant_id, memory_id) DO NOTHING
             RETURNING {}, m.content_bytes",
            columns(false)
        ))
        .bind(tx.tenant_id())
        .bind(&doc)
        .bind(vec![embedding.clone()])
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(row) = row {
            delta += row.usage();
            usage::charge(tx, delta).await?;
            return Ok((row.memory, true));
        }
    }
    Err(StoreError::Conflict {
        constraint: crate::CONCURRENT_WRITE.into(),
    })
}

/// An expired memory is gone for every read; before its id is used again it is retired as the
/// tenant's retention policy says (deleted, or moved to the archive: under 'retain' too, so the
/// retained memory is kept there while its id is free), see [`usage::release_expired`].
/// Returns the ids that are held by live (unexpired) memories, and what the retirement took off
/// the tenant's usage.
pub(crate) async fn retire_expired(
    tx: &mut TenantTx,
    memory_ids: &[&str],
) -> Result<(Vec<String>, UsageDelta)> {
    let existing: Vec<(String, bool)> = sqlx::query_as(
        "SELECT memory_id, coalesce(expires_at <= now(), false) FROM contextual_memories
         WHERE tenant_id = $1 AND memory_id = ANY($2) ORDER BY memory_id",
    )
    .bind(tx.tenant_id())
    .bind(memory_ids)
    .fetch_all(&mut **tx)
    .await?;
    let (expired, live): (Vec<_>, Vec<_>) = existing.into_iter().partition(|(_, expired)| *expired);
    let mut delta = UsageDelta::default();
    if !expired.is_empty() {
        let expired: Vec<&str> = expired.iter().map(|(id, _)| id.as_str()).collect();
        delta = usage::release_expired(tx, Some(&expired)).await?;
    }
    Ok((live.into_iter().map(|(id, _)| id).collect(), delta))
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

/// [`get`], recording the read (`access_count`, `last_accessed_at`; `updated_at` stays) for
/// retention by last access. A read that finds the row held by a writer skips the record rather
/// than wait for it.
pub async fn get_and_record(
    tx: &mut TenantTx,
    memory_id: &str,
    with_embedding: bool,
) -> Result<Memory> {
    let m = get(tx, memory_id, with_embedding).await?;
    sqlx::query(
        "UPDATE contextual_memories SET access_count = access_count + 1, last_accessed_at = now()
         WHERE tenant_id = $1 AND id = (SELECT id FROM contextual_memories
                                        WHERE tenant_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(tx.tenant_id())
    .bind(m.id)
    .execute(&mut **tx)
    .await?;
    Ok(m)
}

/// One page, newest first, after `cursor`.
pub async fn list(
    tx: &mut TenantTx,
    filter: &MemoryFilter,
    cursor: Option<Cursor>,
    limit: i64,
    with_embedding: bool,
) -> Result<Vec<Memory>> {
    let indexed = filter.indexed(tx, None).await?;
    let mut qb = QueryBuilder::new("");
    push_list_sql(&mut qb, tx, filter, &indexed, cursor, limit, with_embedding);
    Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
}

/// The plan PostgreSQL chooses for [`list`] (`EXPLAIN` text), so tests can prove which indexes
/// its filters use under Row Level Security.
pub async fn explain_list(tx: &mut TenantTx, filter: &MemoryFilter, limit: i64) -> Result<String> {
    let indexed = filter.indexed(tx, None).await?;
    let mut qb = QueryBuilder::new("EXPLAIN ");
    push_list_sql(&mut qb, tx, filter, &indexed, None, limit, false);
    let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
    Ok(lines.join("\n"))
}

fn push_list_sql(
    qb: &mut QueryBuilder<'_, Postgres>,
    tx: &TenantTx,
    filter: &MemoryFilter,
    indexed: &Indexed,
    cursor: Option<Cursor>,
    limit: i64,
    with_embedding: bool,
) {
    qb.push(format!(
        "SELECT {} FROM contextual_memories m WHERE m.tenant_id = ",
        columns(with_embedding)
    ));
    qb.push_bind(tx.tenant_id());
    filter.push_conditions(qb, indexed);
    if let Some(c) = cursor {
        qb.push(" AND (m.created_at, m.id) < (")
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    qb.push(" ORDER BY m.created_at DESC, m.id DESC LIMIT ")
        .push_bind(limit);
}

pub async fn update(tx: &mut TenantTx, memory_id: &str, p: MemoryPatch) -> Result<Memory> {
    // Locked first, so what leaves the counters is exactly what the update replaces.
    let (bytes, embedded): (i32, bool) = sqlx::query_as(
        "SELECT content_bytes, embedding IS NOT NULL FROM contextual_memories
         WHERE tenant_id = $1 AND memory_id = $2 AND (expires_at IS NULL OR expires_at > now())
         FOR UPDATE",
    )
    .bind(tx.tenant_id())
    .bind(memory_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))?;
    let row: Written = sqlx::query_as(&format!(
        "UPDATE contextual_memories m SET
            relevance_score = coalesce($3, relevance_score),
            content = coalesce($4, content),
            tags = coalesce($5, tags),
            metadata = coalesce($6, metadata),
            embedding = CASE WHEN $7 THEN $8 ELSE embedding END,
            embedding_model = CASE WHEN $9 THEN $10 ELSE embedding_model END,
            expires_at = CASE WHEN $11 THEN $12 ELSE expires_at END
         WHERE m.tenant_id = $1 AND m.memory_id = $2
         RETURNING {}, m.content_bytes",
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
    .fetch_one(&mut **tx)
    .await?;
    usage::charge(tx, row.usage() - stored(bytes, embedded)).await?;
    Ok(row.memory)
}

/// Deletes a memory and its relationships.
pub async fn delete(tx: &mut TenantTx, memory_id: &str) -> Result<()> {
    // Locked first: no relationship can be added to it while its edges are counted and deleted.
    let id: Uuid = sqlx::query_scalar(
        "SELECT id FROM contextual_memories
         WHERE tenant_id = $1 AND memory_id = $2 AND (expires_at IS NULL OR expires_at > now())
         FOR UPDATE",
    )
    .bind(tx.tenant_id())
    .bind(memory_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))?;
    let removed: Option<UsageDelta> = sqlx::query_as(
        "SELECT memories, content_bytes, embedded, relationships, relationship_bytes,
                0::bigint AS contexts, 0::bigint AS context_bytes
         FROM mnemo_remove_memories(ARRAY[$1::uuid], ARRAY[$2::uuid], ARRAY[false])",
    )
    .bind(tx.tenant_id())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    usage::charge(tx, -removed.unwrap_or_default()).await
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
    /// Bytes of relationship metadata.
    pub relationship_bytes: i64,
    /// Stored bytes of offloaded contexts.
    pub context_bytes: i64,
    /// What `max_storage_bytes` limits: `storage_bytes` plus relationship metadata and contexts.
    pub quota_bytes: i64,
}

/// The tenant's usage, from `get_tenant_memory_usage`.
pub async fn usage(tx: &mut TenantTx) -> Result<Usage> {
    Ok(sqlx::query_as("SELECT * FROM get_tenant_memory_usage($1)")
        .bind(tx.tenant_id())
        .fetch_one(&mut **tx)
        .await?)
}
