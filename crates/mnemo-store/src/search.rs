//! Search over one tenant's memories: vector (cosine), full-text, and the per-tenant HNSW indexes
//! that keep vector search fast for large tenants without losing recall for small ones.
//!
//! Why not one global ANN index: with `WHERE tenant_id = …` a global IVFFlat/HNSW index returns
//! neighbours of other tenants that the filter then drops, so small tenants get short, wrong result
//! lists (measured: recall@10 0.33 for tenants of ≤ 100 rows). Mnemo searches a tenant exactly (its
//! rows via the B-tree on `tenant_id`, sorted by distance) until the tenant holds
//! [`VectorIndexPolicy::min_rows`] embedded memories; then a background job builds a partial HNSW
//! index for that tenant alone, and searches use it with pgvector's iterative scan so filters do
//! not starve the result list.

use std::collections::HashSet;

use pgvector::Vector;
use sqlx::{Connection, FromRow, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::memories::{columns, Indexed, Memory, MemoryFilter};
use crate::relationships::{EDGE_SELECT, LIVE};
use crate::tenant_index::{TableIndexReport, VectorTable, MEMORIES, TABLES};
use crate::{Result, Store, TenantTx};

/// How a vector query was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every embedded row of the tenant compared: exact.
    Exact,
    /// The tenant's own HNSW index, iterative scan.
    Hnsw,
}

#[derive(Debug, Clone, FromRow)]
pub struct Hit {
    #[sqlx(flatten)]
    pub memory: Memory,
    /// Cosine distance for vector hits; text rank for text hits.
    pub score: f64,
}

/// Name of the partial HNSW index of a tenant's memories.
pub fn index_name(tenant: Uuid) -> String {
    MEMORIES.index_name(tenant)
}

/// Nearest memories to `query` by cosine distance, at most `k`, with the filter applied; and the
/// strategy that answered.
///
/// An HNSW search with a selective filter can come back short although the tenant has `k`
/// matches: the iterative scan gives up after `hnsw.max_scan_tuples` index entries (raised here to
/// [`HNSW_MAX_SCAN_TUPLES`]) when the matches lie far from the query. A short answer is then
/// checked by the exact path, which finds every match (and is fast precisely when the filter is
/// selective, through its own indexes).
pub async fn vector(
    tx: &mut TenantTx,
    query: &[f32],
    k: i64,
    filter: &MemoryFilter,
    strategy: Strategy,
    ef_search: i32,
    with_embedding: bool,
) -> Result<(Vec<Hit>, Strategy)> {
    let hits = vector_with(tx, query, k, filter, strategy, ef_search, with_embedding).await?;
    if strategy == Strategy::Hnsw && (hits.len() as i64) < k {
        let exact = vector_with(
            tx,
            query,
            k,
            filter,
            Strategy::Exact,
            ef_search,
            with_embedding,
        )
        .await?;
        return Ok((exact, Strategy::Exact));
    }
    Ok((hits, strategy))
}

async fn vector_with(
    tx: &mut TenantTx,
    query: &[f32],
    k: i64,
    filter: &MemoryFilter,
    strategy: Strategy,
    ef_search: i32,
    with_embedding: bool,
) -> Result<Vec<Hit>> {
    let indexed = filter.indexed(tx, None).await?;
    configure(tx, strategy, ef_search).await?;
    let mut qb = QueryBuilder::new("");
    push_vector_sql(
        &mut qb,
        tx.tenant_id(),
        &indexed,
        query,
        k,
        filter,
        strategy,
        with_embedding,
    );
    let hits = qb.build_query_as().fetch_all(&mut **tx).await?;
    restore(tx, strategy).await?;
    Ok(hits)
}

/// The plan PostgreSQL chooses for [`vector`] (`EXPLAIN` text), so tests can prove which index a
/// strategy uses.
pub async fn explain_vector(
    tx: &mut TenantTx,
    query: &[f32],
    k: i64,
    filter: &MemoryFilter,
    strategy: Strategy,
) -> Result<String> {
    let indexed = filter.indexed(tx, None).await?;
    configure(tx, strategy, 100).await?;
    let mut qb = QueryBuilder::new("EXPLAIN ");
    push_vector_sql(
        &mut qb,
        tx.tenant_id(),
        &indexed,
        query,
        k,
        filter,
        strategy,
        false,
    );
    let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
    restore(tx, strategy).await?;
    Ok(lines.join("\n"))
}

/// Index entries an HNSW scan may visit for one query (pgvector's default: 20,000). With a
/// selective filter the iterative scan reads this many before it gives up; a larger budget finds
/// far matches in tenants of up to about this size, and beyond it the exact path takes over (see
/// [`vector`]).
pub const HNSW_MAX_SCAN_TUPLES: i64 = 50_000;

/// HNSW searches scan iteratively (relaxed order, re-sorted after) so that filters cannot leave
/// the result list short. The planner is steered to the tenant's index (scans that would need a
/// sort are discouraged): with fresh rows its statistics may still call the tenant tiny, and a
/// sort over a large tenant is what the index exists to avoid.
pub(crate) async fn configure(tx: &mut TenantTx, strategy: Strategy, ef_search: i32) -> Result<()> {
    if strategy == Strategy::Hnsw {
        sqlx::query(
            "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
                    set_config('hnsw.ef_search', $1, true),
                    set_config('hnsw.max_scan_tuples', $2, true),
                    set_config('hnsw.scan_mem_multiplier', '2', true),
                    set_config('enable_seqscan', 'off', true),
                    set_config('enable_bitmapscan', 'off', true),
                    set_config('enable_sort', 'off', true)",
        )
        .bind(ef_search.to_string())
        .bind(HNSW_MAX_SCAN_TUPLES.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Gives the rest of the transaction the planner's defaults back.
pub(crate) async fn restore(tx: &mut TenantTx, strategy: Strategy) -> Result<()> {
    if strategy == Strategy::Hnsw {
        sqlx::query(
            "SELECT set_config('enable_seqscan', 'on', true), set_config('enable_bitmapscan', 'on', true),
                    set_config('enable_sort', 'on', true)",
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the query's parts, each needed
fn push_vector_sql(
    qb: &mut QueryBuilder<'_, Postgres>,
    tenant: Uuid,
    indexed: &Indexed,
    query: &[f32],
    k: i64,
    filter: &MemoryFilter,
    strategy: Strategy,
    with_embedding: bool,
) {
    let q = Vector::from(query.to_vec());
    // Ranking touches only ids and vectors; the k winners' full rows are read afterwards.
    // MATERIALIZED keeps the ranking a separate step the planner cannot rewrite.
    qb.push("WITH c AS MATERIALIZED (SELECT m.id, (m.embedding <=> ");
    qb.push_bind(q.clone());
    qb.push(")");
    match strategy {
        Strategy::Exact => {
            // Every embedded row of the tenant (via the tenant_id B-tree) is compared. Plus zero:
            // the same order, but not one an HNSW index yields, so the planner cannot answer the
            // exact path with an approximate index scan.
            qb.push(" + 0 AS score FROM contextual_memories m WHERE m.tenant_id = ");
            qb.push_bind(tenant);
            qb.push(" AND m.embedding IS NOT NULL");
            filter.push_conditions(qb, indexed);
            qb.push(" ORDER BY score LIMIT ");
        }
        Strategy::Hnsw => {
            // The tenant id is a literal so the planner can match the partial index's predicate
            // (a parameter would not prove it); a Uuid renders only hex digits and dashes.
            qb.push(format!(
                " AS score FROM contextual_memories m WHERE m.tenant_id = '{tenant}'::uuid AND m.embedding IS NOT NULL"
            ));
            filter.push_conditions(qb, indexed);
            qb.push(" ORDER BY m.embedding <=> ");
            qb.push_bind(q);
            qb.push(" LIMIT ");
        }
    }
    qb.push_bind(k);
    qb.push(format!(
        ") SELECT {}, c.score FROM c JOIN contextual_memories m ON m.tenant_id = ",
        columns(with_embedding)
    ));
    qb.push_bind(tenant);
    qb.push(" AND m.id = c.id ORDER BY c.score, m.memory_id");
}

/// Full-text matches of `query`: memories containing any of its words (stemmed, stop words
/// ignored), best first by `ts_rank_cd`, so memories matching more of the words rank higher.
pub async fn text(
    tx: &mut TenantTx,
    query: &str,
    k: i64,
    filter: &MemoryFilter,
    with_embedding: bool,
) -> Result<Vec<Hit>> {
    let words = any_word(query);
    let indexed = filter.indexed(tx, Some(&words)).await?;
    let mut qb = QueryBuilder::new("");
    push_text_sql(&mut qb, tx, &words, &indexed, k, filter, with_embedding);
    Ok(qb.build_query_as().fetch_all(&mut **tx).await?)
}

/// The plan PostgreSQL chooses for [`text`] (`EXPLAIN` text), so tests can prove it uses the
/// full-text index under Row Level Security.
pub async fn explain_text(
    tx: &mut TenantTx,
    query: &str,
    k: i64,
    filter: &MemoryFilter,
) -> Result<String> {
    let words = any_word(query);
    let indexed = filter.indexed(tx, Some(&words)).await?;
    let mut qb = QueryBuilder::new("EXPLAIN ");
    push_text_sql(&mut qb, tx, &words, &indexed, k, filter, false);
    let lines: Vec<String> = qb.build_query_scalar().fetch_all(&mut **tx).await?;
    Ok(lines.join("\n"))
}

fn push_text_sql(
    qb: &mut QueryBuilder<'_, Postgres>,
    tx: &TenantTx,
    words: &str,
    indexed: &Indexed,
    k: i64,
    filter: &MemoryFilter,
    with_embedding: bool,
) {
    qb.push(format!(
        "SELECT {}, ts_rank_cd(m.search_tsv, q)::float8 AS score
         FROM contextual_memories m, websearch_to_tsquery('english', ",
        columns(with_embedding)
    ));
    qb.push_bind(words.to_owned());
    qb.push(") AS q WHERE m.tenant_id = ");
    qb.push_bind(tx.tenant_id());
    filter.push_with_text(qb, indexed, Some(words));
    qb.push(" ORDER BY score DESC, m.memory_id LIMIT ");
    qb.push_bind(k);
}

/// The words of `query` joined by ` or ` for `websearch_to_tsquery`, which never fails to parse.
pub(crate) fn any_word(query: &str) -> String {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// When a tenant gets its own HNSW index (on any [`VectorTable`]).
#[derive(Debug, Clone, Copy)]
pub struct VectorIndexPolicy {
    /// Embedded rows (memories, or context chunks) at which a tenant gets an index.
    pub min_rows: i64,
    /// At most this many index builds per table and run (each takes seconds to minutes).
    pub max_builds_per_run: usize,
}

/// What one run of [`Store::maintain_vector_indexes`] did: to memories' indexes, and to those
/// of context chunks.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct IndexReport {
    pub built: Vec<Uuid>,
    pub dropped: Vec<String>,
    pub indexed_tenants: usize,
    pub context_chunks: TableIndexReport,
}

impl Store {
    /// Whether memory searches of this tenant should use its HNSW index (from the cache).
    pub fn has_vector_index(&self, tenant: Uuid) -> bool {
        self.has_table_index(&MEMORIES, tenant)
    }

    /// Whether searches of `table` for this tenant should use its HNSW index (from the cache).
    pub fn has_table_index(&self, table: &VectorTable, tenant: Uuid) -> bool {
        self.vector_indexes.read().is_ok_and(|cache| {
            cache
                .get(table.table)
                .is_some_and(|set| set.contains(&tenant))
        })
    }

    /// Reloads the cache of tenants with an HNSW index from the catalog; returns how many
    /// tenants have one on memories.
    pub async fn refresh_vector_index_cache(&self) -> Result<usize> {
        let mut fresh = std::collections::HashMap::new();
        for table in TABLES {
            fresh.insert(table.table, table.indexed_tenants(&self.pool).await?);
        }
        let n = fresh.get(MEMORIES.table).map_or(0, HashSet::len);
        if let Ok(mut cache) = self.vector_indexes.write() {
            *cache = fresh;
        }
        Ok(n)
    }

    /// Tenants that have a valid HNSW index of their own on memories.
    pub async fn indexed_tenants(&self) -> Result<HashSet<Uuid>> {
        MEMORIES.indexed_tenants(&self.pool).await
    }

    /// Builds missing per-tenant HNSW indexes (CONCURRENTLY: writes go on meanwhile) for tenants
    /// over the threshold, on every [`VectorTable`], and drops invalid leftovers and indexes of
    /// deleted tenants. Safe to run from several processes: an advisory lock makes them take
    /// turns.
    ///
    /// The lock is a session lock, so it is taken on a connection of its own, never one of the
    /// pool: if this future is dropped mid-way (shutdown, a cancelled caller), the connection is
    /// dropped with it, and its server process, which notices the closed socket within a second
    /// even during a build (`client_connection_check_interval`), ends and releases the lock. A
    /// pooled connection would go back to the pool still holding it and stall every builder.
    pub async fn maintain_vector_indexes(&self, policy: VectorIndexPolicy) -> Result<IndexReport> {
        let options = self.pool.connect_options();
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        sqlx::query("SET client_connection_check_interval = '1s'")
            .execute(&mut conn)
            .await?;
        // One builder at a time; a second caller waits, then finds the work done. It waits by
        // polling, between statements: blocked inside pg_advisory_lock() its open transaction is
        // one that the holder's CREATE INDEX CONCURRENTLY waits for, a deadlock.
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(727273)")
                .fetch_one(&mut conn)
                .await?;
            if locked {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        let result = async {
            let memories = MEMORIES.maintain(&self.pool, &mut conn, policy).await?;
            let chunks = crate::tenant_index::CONTEXT_CHUNKS
                .maintain(&self.pool, &mut conn, policy)
                .await?;
            Ok::<_, crate::StoreError>((memories, chunks))
        }
        .await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(727273)")
            .execute(&mut conn)
            .await;
        if unlocked.is_ok() {
            let _ = conn.close().await;
        }
        let (memories, mut chunks) = result?;
        let indexed_tenants = self.refresh_vector_index_cache().await?;
        chunks.indexed_tenants = self.vector_indexes.read().map_or(0, |c| {
            c.get(crate::tenant_index::CONTEXT_CHUNKS.table)
                .map_or(0, HashSet::len)
        });
        Ok(IndexReport {
            built: memories.built,
            dropped: memories.dropped,
            indexed_tenants,
            context_chunks: chunks,
        })
    }
}

/// Depth-1 graph expansion of search hits: the edges touching any of `ids` whose both ends are
/// `visible` (strongest first, at most `limit`) and the memories at their other ends.
pub async fn adjacent(
    tx: &mut TenantTx,
    ids: &[Uuid],
    limit: i64,
    visible: &crate::policies::Visibility,
) -> Result<(
    Vec<(Uuid, Uuid, crate::relationships::Relationship)>,
    Vec<Memory>,
)> {
    #[derive(FromRow)]
    struct Edge {
        source_uuid: Uuid,
        target_uuid: Uuid,
        #[sqlx(flatten)]
        rel: crate::relationships::Relationship,
    }
    let edges: Vec<Edge> = sqlx::query_as(&format!(
        "{EDGE_SELECT}
         WHERE r.tenant_id = $1 AND (r.source_memory_id = ANY($2) OR r.target_memory_id = ANY($2)) AND {LIVE}
           AND {} AND {}
         ORDER BY r.weight DESC, r.created_at, r.id
         LIMIT $3",
        crate::policies::Visibility::sql("s.memory_id", 4),
        crate::policies::Visibility::sql("t.memory_id", 4),
    ))
    .bind(tx.tenant_id())
    .bind(ids)
    .bind(limit)
    .bind(visible.all)
    .bind(&visible.exact)
    .bind(&visible.prefixes)
    .fetch_all(&mut **tx)
    .await?;
    let others: Vec<Uuid> = edges
        .iter()
        .flat_map(|e| [e.source_uuid, e.target_uuid])
        .filter(|id| !ids.contains(id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let memories: Vec<Memory> = sqlx::query_as(&format!(
        "SELECT {} FROM contextual_memories m WHERE m.tenant_id = $1 AND m.id = ANY($2)",
        columns(false)
    ))
    .bind(tx.tenant_id())
    .bind(&others)
    .fetch_all(&mut **tx)
    .await?;
    Ok((
        edges
            .into_iter()
            .map(|e| (e.source_uuid, e.target_uuid, e.rel))
            .collect(),
        memories,
    ))
}
