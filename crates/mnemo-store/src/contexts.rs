//! Offloaded contexts of one tenant and their chunks.
//!
//! A context row holds the client's `messages`/`text` JSON exactly as sent, compressed
//! (`compressed_content`, stored out of line without PostgreSQL's own compression), its summary and
//! the summary's embedding; its chunks (`context_chunks`) are the retrieval units, each with its
//! message range, character span, token count, text, embedding and full-text vector. A context and
//! its chunks are written in one transaction, with the tenant's usage counters
//! ([`crate::usage::charge`]): all or nothing.
//!
//! Chunk search follows memories' strategy ([`crate::search`]): exact for tenants with fewer than
//! the threshold of embedded chunks, their own HNSW index above it (iterative scan, a short answer
//! redone exactly). Expired contexts never appear in any read; [`crate::Store::clean_expired_contexts`]
//! removes them.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::memories::EMBEDDING_BYTES;
use crate::search::{self, Strategy};
use crate::usage::{self, UsageDelta};
use crate::{Result, Store, StoreError, TenantTx};

/// A context's row is live (not expired); for the alias `c`.
pub const LIVE: &str = "(c.expires_at IS NULL OR c.expires_at > now())";

/// The stored bytes of the context row `c`, chunks included, as quotas count them (migration
/// 0010; columns rather than the row, which Citus cannot pass to a function on a shard).
pub const BYTES: &str =
    "mnemo_context_bytes(c.compressed_content, c.summary, c.metadata, c.embedding, c.chunk_bytes)";

/// Chunks inserted per statement (each statement stays well within the statement timeout).
const CHUNKS_PER_INSERT: usize = 500;

/// At most this many ids come back from the GIN candidate functions; a broader match is filtered
/// row by row.
const MAX_CANDIDATES: i32 = 10_000;

/// Contexts one cleanup transaction handles at most.
pub const CLEANUP_BATCH: i32 = 1000;

/// One chunk to store.
#[derive(Debug, Clone)]
pub struct NewChunk {
    /// First and last message, inclusive.
    pub messages: [i32; 2],
    /// Character span: start in the first message's content, end (exclusive) in the last's.
    pub chars: [i32; 2],
    pub tokens: i32,
    pub text: String,
    pub embedding: Option<Vec<f32>>,
}

/// A context to store. Values are already validated (see `mnemo_core::context`).
#[derive(Debug, Clone)]
pub struct NewContext {
    pub context_id: String,
    pub session_id: Option<String>,
    /// `messages` or `text`.
    pub payload_kind: String,
    /// `o200k_base` or `cl100k_base`.
    pub tokenizer: String,
    pub relevance_score: f64,
    pub metadata: Value,
    pub expires_at: Option<DateTime<Utc>>,
    /// The stored bytes, as `compression_method` made them from `original_bytes` bytes of JSON.
    pub content: Vec<u8>,
    pub compression_method: String,
    pub original_bytes: i64,
    /// Tokens of the whole transcript.
    pub token_count: i64,
    pub message_count: i32,
    pub summary: Option<String>,
    pub summary_tokens: Option<i32>,
    /// `extractive` or `llm:<model>`.
    pub summary_method: Option<String>,
    /// The summary's embedding.
    pub embedding: Option<Vec<f32>>,
    pub embedding_model: Option<String>,
    /// In transcript order.
    pub chunks: Vec<NewChunk>,
}

/// PostgreSQL text cannot hold NUL: it is stored as U+FFFD, one character for one, so character
/// spans stay true.
fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

impl NewContext {
    /// Bytes of the chunks as quotas count them (`chunk_bytes`).
    fn chunk_bytes(&self) -> i64 {
        self.chunks
            .iter()
            .map(|c| {
                storable(&c.text).len() as i64
                    + if c.embedding.is_some() {
                        EMBEDDING_BYTES
                    } else {
                        0
                    }
            })
            .sum()
    }

    /// About what storing this context adds to the tenant's usage (metadata counted as compact
    /// JSON, which PostgreSQL renders a little longer): for the quota pre-check before the costly
    /// work. The write itself books the exact figure.
    pub fn estimated_bytes(&self) -> i64 {
        self.content.len() as i64
            + self.summary.as_ref().map_or(0, |s| s.len() as i64)
            + serde_json::to_vec(&self.metadata).map_or(0, |b| b.len() as i64)
            + if self.embedding.is_some() {
                EMBEDDING_BYTES
            } else {
                0
            }
            + self.chunk_bytes()
    }
}

/// A stored context, without its content.
#[derive(Debug, Clone, FromRow)]
pub struct Context {
    pub id: Uuid,
    pub context_id: String,
    pub session_id: Option<String>,
    pub payload_kind: String,
    pub tokenizer: String,
    pub relevance_score: f64,
    pub metadata: Json<Value>,
    pub summary: Option<String>,
    pub summary_method: Option<String>,
    pub original_token_count: Option<i32>,
    pub compressed_token_count: Option<i32>,
    pub original_size_bytes: Option<i64>,
    pub compressed_size_bytes: Option<i64>,
    pub compression_ratio: f64,
    pub compression_method: String,
    pub message_count: i32,
    pub chunk_count: i32,
    pub has_embedding: bool,
    pub embedding_model: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "c.id, c.context_id, c.session_id, c.payload_kind, c.tokenizer, \
    c.relevance_score, c.metadata, c.summary, c.summary_method, c.original_token_count, \
    c.compressed_token_count, c.original_size_bytes, c.compressed_size_bytes, c.compression_ratio, \
    c.compression_method, c.message_count, c.chunk_count, c.embedding IS NOT NULL AS has_embedding, \
    c.embedding_model, c.expires_at, c.created_at, c.updated_at";

/// A written context with what it counts in its tenant's usage.
#[derive(FromRow)]
struct Written {
    #[sqlx(flatten)]
    context: Context,
    bytes: i64,
}

impl Written {
    fn usage(&self) -> UsageDelta {
        UsageDelta {
            contexts: 1,
            context_bytes: self.bytes,
            ..Default::default()
        }
    }
}

/// The stored bytes of a context and how to restore them.
#[derive(Debug, Clone, FromRow)]
pub struct Content {
    #[sqlx(flatten)]
    pub context: Context,
    pub compressed_content: Option<Vec<u8>>,
}

/// Inserts a context with its chunks. Refuses with [`StoreError::Conflict`] when a live context
/// has this `context_id` (an expired one is removed first), and with [`StoreError::Quota`] when
/// the tenant's quota would be exceeded.
pub async fn create(tx: &mut TenantTx, c: &NewContext) -> Result<Context> {
    let mut delta = release_expired(tx, Some(&[c.context_id.as_str()][..])).await?;
    let row: Written = insert(tx, c, false).await?.ok_or(StoreError::Conflict {
        constraint: "offloaded_contexts_tenant_id_context_id_key".into(),
    })?;
    insert_chunks(tx, row.context.id, &c.chunks).await?;
    delta += row.usage();
    usage::charge(tx, delta).await?;
    Ok(row.context)
}

/// Inserts or replaces the context with this `context_id` (and all its chunks); returns it and
/// whether it was created. A replaced context keeps its `created_at`.
pub async fn upsert(tx: &mut TenantTx, c: &NewContext) -> Result<(Context, bool)> {
    let mut delta = UsageDelta::default();
    // A live context with this id is what the upsert replaces, locked so its figures can leave the
    // counters; without one, an insert, unless a concurrent request inserted the id meanwhile:
    // then that context is the one to replace.
    for _ in 0..3 {
        delta += release_expired(tx, Some(&[c.context_id.as_str()][..])).await?;
        let old: Option<(Uuid, i64)> = sqlx::query_as(&format!(
            "SELECT c.id, {BYTES} FROM offloaded_contexts c
             WHERE c.tenant_id = $1 AND c.context_id = $2 AND {LIVE}
             FOR UPDATE"
        ))
        .bind(tx.tenant_id())
        .bind(&c.context_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((id, old_bytes)) = old {
            sqlx::query(
                "DELETE FROM context_chunks WHERE tenant_id = $1 AND offloaded_context_id = $2",
            )
            .bind(tx.tenant_id())
            .bind(id)
            .execute(&mut **tx)
            .await?;
            let row = replace(tx, id, c).await?;
            insert_chunks(tx, id, &c.chunks).await?;
            delta += UsageDelta {
                context_bytes: row.bytes - old_bytes,
                ..Default::default()
            };
            usage::charge(tx, delta).await?;
            return Ok((row.context, false));
        }
        if let Some(row) = insert(tx, c, true).await? {
            insert_chunks(tx, row.context.id, &c.chunks).await?;
            delta += row.usage();
            usage::charge(tx, delta).await?;
            return Ok((row.context, true));
        }
    }
    Err(StoreError::Conflict {
        constraint: crate::CONCURRENT_WRITE.into(),
    })
}

/// The values of a context's row, bound in the order of `VALUE_COLUMNS`.
const VALUE_COLUMNS: &str = "context_id, session_id, payload_kind, tokenizer, relevance_score, \
    metadata, expires_at, compressed_content, compression_method, original_size_bytes, \
    compressed_size_bytes, compression_ratio, original_token_count, compressed_token_count, \
    message_count, chunk_count, chunk_bytes, summary, summary_method, embedding, embedding_model";

fn bind_values<'q>(
    q: sqlx::query::QueryAs<'q, Postgres, Written, sqlx::postgres::PgArguments>,
    c: &'q NewContext,
    chunk_bytes: i64,
) -> sqlx::query::QueryAs<'q, Postgres, Written, sqlx::postgres::PgArguments> {
    let stored = c.content.len() as i64;
    let ratio = if stored == 0 {
        1.0
    } else {
        c.original_bytes as f64 / stored as f64
    };
    q.bind(&c.context_id)
        .bind(&c.session_id)
        .bind(&c.payload_kind)
        .bind(&c.tokenizer)
        .bind(c.relevance_score)
        .bind(Json(&c.metadata))
        .bind(c.expires_at)
        .bind(&c.content)
        .bind(&c.compression_method)
        .bind(c.original_bytes)
        .bind(stored)
        .bind(ratio)
        .bind(i32::try_from(c.token_count).unwrap_or(i32::MAX))
        .bind(c.summary_tokens)
        .bind(c.message_count)
        .bind(i32::try_from(c.chunks.len()).unwrap_or(i32::MAX))
        .bind(chunk_bytes)
        .bind(c.summary.as_deref().map(|s| storable(s).into_owned()))
        .bind(&c.summary_method)
        .bind(c.embedding.clone().map(Vector::from))
        .bind(&c.embedding_model)
}

/// Inserts the context's row; with `skip_existing`, a live row with the id already there makes
/// this return `None` instead of failing.
async fn insert(tx: &mut TenantTx, c: &NewContext, skip_existing: bool) -> Result<Option<Written>> {
    let placeholders: Vec<String> = (2..=22).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO offloaded_contexts AS c (tenant_id, {VALUE_COLUMNS})
         VALUES ($1, {}) {} RETURNING {COLUMNS}, {BYTES} AS bytes",
        placeholders.join(", "),
        if skip_existing {
            "ON CONFLICT (tenant_id, context_id) DO NOTHING"
        } else {
            ""
        }
    );
    let chunk_bytes = c.chunk_bytes();
    let q = sqlx::query_as::<_, Written>(&sql).bind(tx.tenant_id());
    Ok(bind_values(q, c, chunk_bytes)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Overwrites every stored field of the context row `id`.
async fn replace(tx: &mut TenantTx, id: Uuid, c: &NewContext) -> Result<Written> {
    let sets: Vec<String> = VALUE_COLUMNS
        .split(", ")
        .enumerate()
        .map(|(i, col)| format!("{col} = ${}", i + 3))
        .collect();
    let sql = format!(
        "UPDATE offloaded_contexts AS c SET {} WHERE c.tenant_id = $1 AND c.id = $2
         RETURNING {COLUMNS}, {BYTES} AS bytes",
        sets.join(", ")
    );
    let chunk_bytes = c.chunk_bytes();
    let q = sqlx::query_as::<_, Written>(&sql)
        .bind(tx.tenant_id())
        .bind(id);
    Ok(bind_values(q, c, chunk_bytes).fetch_one(&mut **tx).await?)
}

async fn insert_chunks(tx: &mut TenantTx, context: Uuid, chunks: &[NewChunk]) -> Result<()> {
    for (batch, part) in chunks.chunks(CHUNKS_PER_INSERT).enumerate() {
        let first = (batch * CHUNKS_PER_INSERT) as i32;
        let ordinals: Vec<i32> = (0..part.len() as i32).map(|i| first + i).collect();
        let col = |f: fn(&NewChunk) -> i32| part.iter().map(f).collect::<Vec<i32>>();
        let texts: Vec<String> = part
            .iter()
            .map(|c| storable(&c.text).into_owned())
            .collect();
        let embeddings: Vec<Option<Vector>> = part
            .iter()
            .map(|c| c.embedding.clone().map(Vector::from))
            .collect();
        sqlx::query(
            "INSERT INTO context_chunks (tenant_id, offloaded_context_id, ordinal, first_message,
                 last_message, char_start, char_end, token_count, text, embedding)
             SELECT $1, $2, u.o, u.fm, u.lm, u.cs, u.ce, u.tk, u.tx, u.e
             FROM unnest($3::int4[], $4::int4[], $5::int4[], $6::int4[], $7::int4[], $8::int4[],
                         $9::text[], $10::vector[]) AS u(o, fm, lm, cs, ce, tk, tx, e)",
        )
        .bind(tx.tenant_id())
        .bind(context)
        .bind(ordinals)
        .bind(col(|c| c.messages[0]))
        .bind(col(|c| c.messages[1]))
        .bind(col(|c| c.chars[0]))
        .bind(col(|c| c.chars[1]))
        .bind(col(|c| c.tokens))
        .bind(texts)
        .bind(embeddings)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes the tenant's expired contexts so they are out of the way: with `context_ids`, those of
/// them that expired (before the ids are used again; waits for rows another transaction holds);
/// without, up to 1,000 of any (to make room under a quota; skips rows others hold). Returns the
/// (negative) change to the tenant's usage, which the caller books with its own.
pub async fn release_expired(
    tx: &mut TenantTx,
    context_ids: Option<&[&str]>,
) -> Result<UsageDelta> {
    let (contexts, context_bytes): (i64, i64) =
        sqlx::query_as("SELECT * FROM mnemo_release_expired_contexts($1)")
            .bind(context_ids)
            .fetch_one(&mut **tx)
            .await?;
    Ok(-UsageDelta {
        contexts,
        context_bytes,
        ..Default::default()
    })
}

pub async fn get(tx: &mut TenantTx, context_id: &str) -> Result<Context> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM offloaded_contexts c
         WHERE c.tenant_id = $1 AND c.context_id = $2 AND {LIVE}"
    ))
    .bind(tx.tenant_id())
    .bind(context_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("context"))
}

/// The context with its stored bytes.
pub async fn get_content(tx: &mut TenantTx, context_id: &str) -> Result<Content> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS}, c.compressed_content FROM offloaded_contexts c
         WHERE c.tenant_id = $1 AND c.context_id = $2 AND {LIVE}"
    ))
    .bind(tx.tenant_id())
    .bind(context_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("context"))
}

/// Deletes a context and its chunks.
pub async fn delete(tx: &mut TenantTx, context_id: &str) -> Result<()> {
    let id: Uuid = sqlx::query_scalar(&format!(
        "SELECT c.id FROM offloaded_contexts c
         WHERE c.tenant_id = $1 AND c.context_id = $2 AND {LIVE}
         FOR UPDATE"
    ))
    .bind(tx.tenant_id())
    .bind(context_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("context"))?;
    let (contexts, context_bytes): (i64, i64) = sqlx::query_as(
        "SELECT contexts, context_bytes FROM mnemo_remove_contexts(ARRAY[$1::uuid], ARRAY[$2::uuid])",
    )
    .bind(tx.tenant_id())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or((0, 0));
    usage::charge(
        tx,
        -UsageDelta {
            contexts,
            context_bytes,
            ..Default::default()
        },
    )
    .await
}

/// Filters of listing and search. Expired contexts are always excluded.
#[derive(Debug, Clone, Default)]
pub struct ContextFilter {
    pub session_id: Option<String>,
    /// JSONB containment: `metadata @> contains`.
    pub contains: Option<Value>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

/// Ids that conditions under Row Level Security reach through their GIN indexes when the
/// operators are not LEAKPROOF (see [`crate::memories`]'s `Indexed`).
#[derive(Debug, Clone, Default)]
struct Candidates {
    contexts: Option<Vec<Uuid>>,
    chunks: Option<Vec<Uuid>>,
}

impl ContextFilter {
    async fn candidates(&self, tx: &mut TenantTx, words: Option<&str>) -> Result<Candidates> {
        let mut out = Candidates::default();
        if tx.gin_direct() {
            return Ok(out);
        }
        if let Some(c) = &self.contains {
            out.contexts = sqlx::query_scalar("SELECT mnemo_context_gin_candidates($1, $2)")
                .bind(Json(c))
                .bind(MAX_CANDIDATES)
                .fetch_one(&mut **tx)
                .await?;
        }
        if let Some(w) = words {
            out.chunks = sqlx::query_scalar(
                "SELECT mnemo_chunk_gin_candidates(websearch_to_tsquery('english', $1), $2)",
            )
            .bind(w)
            .bind(MAX_CANDIDATES)
            .fetch_one(&mut **tx)
            .await?;
        }
        Ok(out)
    }

    /// Appends ` AND …` conditions on the context alias `c`.
    fn push_conditions(&self, qb: &mut QueryBuilder<'_, Postgres>, candidates: &Candidates) {
        qb.push(" AND ").push(LIVE);
        if let Some(ids) = &candidates.contexts {
            qb.push(" AND c.id = ANY(").push_bind(ids.clone()).push(")");
        }
        if let Some(s) = &self.session_id {
            qb.push(" AND c.session_id = ").push_bind(s.clone());
        }
        if let Some(v) = &self.contains {
            qb.push(" AND c.metadata @> ").push_bind(Json(v.clone()));
        }
        if let Some(t) = self.created_after {
            qb.push(" AND c.created_at >= ").push_bind(t);
        }
        if let Some(t) = self.created_before {
            qb.push(" AND c.created_at < ").push_bind(t);
        }
    }
}

/// Position after the last row of a page: contexts are listed newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page, newest first, after `cursor`.
pub async fn list(
    tx: &mut TenantTx,
    filter: &ContextFilter,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Context>> {
    let candidates = filter.candidates(tx, None).await?;
    let mut qb = QueryBuilder::new("");
    push_list_sql(&mut qb, tx.tenant_id(), filter, &candidates, cursor, limit);
    Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
}

/// The plan PostgreSQL chooses for [`list`] (`EXPLAIN` text), for plan tests.
pub async fn explain_list(tx: &mut TenantTx, filter: &ContextFilter, limit: i64) -> Result<String> {
    let candidates = filter.candidates(tx, None).await?;
    let mut qb = QueryBuilder::new("EXPLAIN ");
    push_list_sql(&mut qb, tx.tenant_id(), filter, &candidates, None, limit);
    let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
    Ok(lines.join("\n"))
}

fn push_list_sql(
    qb: &mut QueryBuilder<'_, Postgres>,
    tenant: Uuid,
    filter: &ContextFilter,
    candidates: &Candidates,
    cursor: Option<Cursor>,
    limit: i64,
) {
    qb.push(format!(
        "SELECT {COLUMNS} FROM offloaded_contexts c WHERE c.tenant_id = "
    ));
    qb.push_bind(tenant);
    filter.push_conditions(qb, candidates);
    if let Some(c) = cursor {
        qb.push(" AND (c.created_at, c.id) < (")
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    qb.push(" ORDER BY c.created_at DESC, c.id DESC LIMIT ")
        .push_bind(limit);
}

/// A chunk found by a search, with its context's identity.
#[derive(Debug, Clone, FromRow)]
pub struct ChunkHit {
    pub chunk_id: Uuid,
    /// The context's row id.
    pub context: Uuid,
    pub context_id: String,
    pub session_id: Option<String>,
    pub context_created_at: DateTime<Utc>,
    pub ordinal: i32,
    pub first_message: i32,
    pub last_message: i32,
    pub char_start: i32,
    pub char_end: i32,
    pub token_count: i32,
    pub text: String,
    /// Cosine distance for vector hits; text rank for text hits.
    pub score: f64,
}

const HIT_COLUMNS: &str = "ch.id AS chunk_id, c.id AS context, c.context_id, c.session_id, \
    c.created_at AS context_created_at, ch.ordinal, ch.first_message, ch.last_message, \
    ch.char_start, ch.char_end, ch.token_count, ch.text";

const CHUNK_JOIN: &str = "context_chunks ch JOIN offloaded_contexts c \
    ON c.tenant_id = ch.tenant_id AND c.id = ch.offloaded_context_id";

/// Nearest chunks to `query` by cosine distance, at most `k`, of live contexts matching the
/// filter; and the strategy that answered (an HNSW answer shorter than `k` is redone exactly, as
/// for memories: see [`search::vector`]).
pub async fn vector(
    tx: &mut TenantTx,
    query: &[f32],
    k: i64,
    filter: &ContextFilter,
    strategy: Strategy,
    ef_search: i32,
) -> Result<(Vec<ChunkHit>, Strategy)> {
    let hits = vector_with(tx, query, k, filter, strategy, ef_search).await?;
    if strategy == Strategy::Hnsw && (hits.len() as i64) < k {
        let exact = vector_with(tx, query, k, filter, Strategy::Exact, ef_search).await?;
        return Ok((exact, Strategy::Exact));
    }
    Ok((hits, strategy))
}

async fn vector_with(
    tx: &mut TenantTx,
    query: &[f32],
    k: i64,
    filter: &ContextFilter,
    strategy: Strategy,
    ef_search: i32,
) -> Result<Vec<ChunkHit>> {
    let candidates = filter.candidates(tx, None).await?;
    search::configure(tx, strategy, ef_search).await?;
    let mut qb = QueryBuilder::new("");
    push_vector_sql(
        &mut qb,
        tx.tenant_id(),
        &candidates,
        query,
        k,
        filter,
        strategy,
    );
    let hits: std::result::Result<Vec<ChunkHit>, sqlx::Error> =
        qb.build_query_as().fetch_all(&mut **tx).await;
    search::restore(tx, strategy).await?;
    Ok(hits?)
}

/// The plan PostgreSQL chooses for [`vector`] (`EXPLAIN` text), for plan tests.
pub async fn explain_vector(
    tx: &mut TenantTx,
    query: &[f32],
    k: i64,
    filter: &ContextFilter,
    strategy: Strategy,
) -> Result<String> {
    let candidates = filter.candidates(tx, None).await?;
    search::configure(tx, strategy, 100).await?;
    let mut qb = QueryBuilder::new("EXPLAIN ");
    push_vector_sql(
        &mut qb,
        tx.tenant_id(),
        &candidates,
        query,
        k,
        filter,
        strategy,
    );
    let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
    search::restore(tx, strategy).await?;
    Ok(lines.join("\n"))
}

fn push_vector_sql(
    qb: &mut QueryBuilder<'_, Postgres>,
    tenant: Uuid,
    candidates: &Candidates,
    query: &[f32],
    k: i64,
    filter: &ContextFilter,
    strategy: Strategy,
) {
    let q = Vector::from(query.to_vec());
    // Ranking touches ids, vectors and the contexts' filter columns; the k winners' rows are read
    // afterwards. MATERIALIZED keeps the ranking a separate step the planner cannot rewrite.
    qb.push("WITH h AS MATERIALIZED (SELECT ch.id, (ch.embedding <=> ");
    qb.push_bind(q.clone());
    qb.push(")");
    match strategy {
        Strategy::Exact => {
            // Plus zero: the same order, but not one an HNSW index yields, so the planner cannot
            // answer the exact path with an approximate index scan.
            qb.push(format!(
                " + 0 AS score FROM {CHUNK_JOIN} WHERE ch.tenant_id = "
            ));
            qb.push_bind(tenant);
            qb.push(" AND ch.embedding IS NOT NULL");
            filter.push_conditions(qb, candidates);
            qb.push(" ORDER BY score LIMIT ");
        }
        Strategy::Hnsw => {
            // The tenant id is a literal so the planner can match the partial index's predicate;
            // a Uuid renders only hex digits and dashes.
            qb.push(format!(
                " AS score FROM {CHUNK_JOIN} WHERE ch.tenant_id = '{tenant}'::uuid AND ch.embedding IS NOT NULL"
            ));
            filter.push_conditions(qb, candidates);
            qb.push(" ORDER BY ch.embedding <=> ");
            qb.push_bind(q);
            qb.push(" LIMIT ");
        }
    }
    qb.push_bind(k);
    qb.push(format!(
        ") SELECT {HIT_COLUMNS}, h.score FROM h JOIN context_chunks ch ON ch.tenant_id = "
    ));
    qb.push_bind(tenant);
    qb.push(
        " AND ch.id = h.id JOIN offloaded_contexts c
          ON c.tenant_id = ch.tenant_id AND c.id = ch.offloaded_context_id
          ORDER BY h.score, c.context_id, ch.ordinal",
    );
}

/// Full-text matches of `query` among chunks of live contexts matching the filter: chunks
/// containing any of its words (stemmed, stop words ignored), best first by `ts_rank_cd`.
pub async fn text(
    tx: &mut TenantTx,
    query: &str,
    k: i64,
    filter: &ContextFilter,
) -> Result<Vec<ChunkHit>> {
    let words = search::any_word(query);
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let candidates = filter.candidates(tx, Some(&words)).await?;
    let mut qb = QueryBuilder::new("");
    push_text_sql(&mut qb, tx.tenant_id(), &words, &candidates, k, filter);
    Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
}

/// The plan PostgreSQL chooses for [`text`] (`EXPLAIN` text), for plan tests.
pub async fn explain_text(
    tx: &mut TenantTx,
    query: &str,
    k: i64,
    filter: &ContextFilter,
) -> Result<String> {
    let words = search::any_word(query);
    let candidates = filter.candidates(tx, Some(&words)).await?;
    let mut qb = QueryBuilder::new("EXPLAIN ");
    push_text_sql(&mut qb, tx.tenant_id(), &words, &candidates, k, filter);
    let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
    Ok(lines.join("\n"))
}

fn push_text_sql(
    qb: &mut QueryBuilder<'_, Postgres>,
    tenant: Uuid,
    words: &str,
    candidates: &Candidates,
    k: i64,
    filter: &ContextFilter,
) {
    qb.push(format!(
        "SELECT {HIT_COLUMNS}, ts_rank_cd(ch.search_tsv, q)::float8 AS score
         FROM {CHUNK_JOIN}, websearch_to_tsquery('english', "
    ));
    qb.push_bind(words.to_owned());
    qb.push(") AS q WHERE ch.tenant_id = ");
    qb.push_bind(tenant);
    qb.push(" AND ch.search_tsv @@ websearch_to_tsquery('english', ")
        .push_bind(words.to_owned())
        .push(")");
    if let Some(ids) = &candidates.chunks {
        qb.push(" AND ch.id = ANY(")
            .push_bind(ids.clone())
            .push(")");
    }
    filter.push_conditions(qb, candidates);
    qb.push(" ORDER BY score DESC, c.context_id, ch.ordinal LIMIT ")
        .push_bind(k);
}

/// A context's summary, for prompts rebuilt from its chunks.
#[derive(Debug, Clone, FromRow)]
pub struct Gist {
    pub id: Uuid,
    pub context_id: String,
    pub created_at: DateTime<Utc>,
    pub summary: String,
}

/// The summaries of the live contexts `ids` that have one.
pub async fn gists(tx: &mut TenantTx, ids: &[Uuid]) -> Result<Vec<Gist>> {
    Ok(sqlx::query_as(&format!(
        "SELECT c.id, c.context_id, c.created_at, c.summary FROM offloaded_contexts c
         WHERE c.tenant_id = $1 AND c.id = ANY($2) AND c.summary IS NOT NULL AND {LIVE}"
    ))
    .bind(tx.tenant_id())
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?)
}

/// The plan of reading one context's chunks in order (what a reader of a whole context does),
/// for plan tests.
pub async fn explain_chunks_in_order(tx: &mut TenantTx, context: Uuid) -> Result<String> {
    let lines: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT ordinal, text FROM context_chunks
         WHERE tenant_id = $1 AND offloaded_context_id = $2 ORDER BY ordinal",
    )
    .bind(tx.tenant_id())
    .bind(context)
    .fetch_all(&mut **tx)
    .await?;
    Ok(lines.join("\n"))
}

impl Store {
    /// Removes every tenant's expired contexts with their chunks, in transactions of
    /// [`CLEANUP_BATCH`] contexts found through the expiry index, each skipping rows another
    /// transaction holds: no lock outlives a batch, and a context being replaced is left for the
    /// next run. Returns how many contexts it removed.
    pub async fn clean_expired_contexts(&self) -> Result<i64> {
        type Batch = (i32, i32, Option<DateTime<Utc>>, Option<Uuid>, Option<Uuid>);
        let mut total = 0i64;
        let mut after: (Option<DateTime<Utc>>, Option<Uuid>, Option<Uuid>) = (None, None, None);
        loop {
            let (scanned, removed, at, tenant, id): Batch =
                sqlx::query_as("SELECT * FROM mnemo_clean_expired_contexts_batch($1, $2, $3, $4)")
                    .bind(CLEANUP_BATCH)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(after.2)
                    .fetch_one(self.pool())
                    .await?;
            total += i64::from(removed);
            if scanned < CLEANUP_BATCH {
                break;
            }
            after = (at, tenant, id);
        }
        Ok(total)
    }
}
