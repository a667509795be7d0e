//! Offloaded contexts and their chunks in the database: the compressed bytes are not compressed
//! again, a context's chunks go with it, the usage counters and `reconcile` agree, expired
//! contexts are removed in batches through their index, and every query of the store uses the
//! index it relies on as the application role.

use chrono::{Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use mnemo_store::contexts::{self, ContextFilter, NewChunk, NewContext};
use mnemo_store::search::{Strategy, VectorIndexPolicy};
use mnemo_store::tenant_index::CONTEXT_CHUNKS;
use mnemo_store::testing::TestDb;
use mnemo_store::{Store, StoreError, TenantScope};

use super::two_tenants;

/// A unit vector whose direction depends on `seed`.
fn unit(seed: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..384)
        .map(|i| (((i + 1) * (seed + 7)) % 97) as f32 / 97.0 - 0.5)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn context(id: &str, chunks: usize, expired: bool) -> NewContext {
    let content = format!("[{}]", r#"{"role":"user","content":"hello there"}"#).into_bytes();
    NewContext {
        context_id: id.to_owned(),
        session_id: Some("s1".to_owned()),
        payload_kind: "messages".to_owned(),
        tokenizer: "o200k_base".to_owned(),
        relevance_score: 0.5,
        metadata: json!({ "agent": "planner" }),
        expires_at: expired.then(|| Utc::now() + Duration::milliseconds(200)),
        original_bytes: content.len() as i64,
        content,
        compression_method: "none".to_owned(),
        token_count: 4,
        message_count: 1,
        summary: Some("hello there".to_owned()),
        summary_tokens: Some(2),
        summary_method: Some("extractive".to_owned()),
        embedding: Some(unit(0)),
        embedding_model: Some("test".to_owned()),
        chunks: (0..chunks)
            .map(|i| NewChunk {
                messages: [0, 0],
                chars: [0, 11],
                tokens: 4,
                text: format!("user: hello there number {i}\0"),
                embedding: Some(unit(i + 1)),
            })
            .collect(),
    }
}

async fn counters_agree(store: &Store, tenant: Uuid) {
    assert!(
        !store
            .reconcile_tenant_usage(tenant)
            .await
            .expect("reconcile"),
        "the counters of {tenant} were off"
    );
}

#[tokio::test]
async fn compressed_content_is_stored_out_of_line_without_postgres_compression() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let storage: String = sqlx::query_scalar(
        "SELECT attstorage::text FROM pg_attribute
         WHERE attrelid = 'offloaded_contexts'::regclass AND attname = 'compressed_content'",
    )
    .fetch_one(pool)
    .await
    .expect("catalog");
    assert_eq!(storage, "e", "EXTERNAL: out of line, never compressed");
    // 1 MB of one byte, which pglz or lz4 would shrink to almost nothing, stays 1 MB.
    let (a, _) = two_tenants(pool).await;
    let (compression, size): (Option<String>, i32) = sqlx::query_as(
        "INSERT INTO offloaded_contexts (tenant_id, context_id, compressed_content)
         VALUES ($1, 'big', decode(repeat('61', 1000000), 'hex'))
         RETURNING pg_column_compression(compressed_content), pg_column_size(compressed_content)",
    )
    .bind(a)
    .fetch_one(pool)
    .await
    .expect("insert");
    assert_eq!(compression, None);
    assert!(size >= 1_000_000, "stored in {size} bytes");
}

#[tokio::test]
async fn a_context_and_its_chunks_are_written_together_and_deleted_together() {
    let db = TestDb::new().await;
    let (a, _) = two_tenants(db.store.pool()).await;
    let scope = TenantScope::assume(a);
    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    let written = contexts::create(&mut tx, &context("c1", 7, false))
        .await
        .expect("create");
    tx.commit().await.expect("commit");
    assert_eq!(written.chunk_count, 7);
    let chunks: Vec<(i32, String)> = sqlx::query_as(
        "SELECT ordinal, text FROM context_chunks WHERE offloaded_context_id = $1 ORDER BY ordinal",
    )
    .bind(written.id)
    .fetch_all(db.store.pool())
    .await
    .expect("chunks");
    assert_eq!(chunks.len(), 7);
    assert_eq!(chunks[3].0, 3);
    // NUL, which text cannot hold, is stored as U+FFFD (one character for one).
    assert_eq!(chunks[3].1, "user: hello there number 3\u{fffd}");
    counters_agree(&db.store, a).await;

    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    match contexts::create(&mut tx, &context("c1", 1, false)).await {
        Err(StoreError::Conflict { constraint }) => {
            assert_eq!(constraint, "offloaded_contexts_tenant_id_context_id_key")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    tx.rollback().await.expect("rollback");

    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    contexts::delete(&mut tx, "c1").await.expect("delete");
    tx.commit().await.expect("commit");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM context_chunks")
        .fetch_one(db.store.pool())
        .await
        .expect("count");
    assert_eq!(left, 0);
    counters_agree(&db.store, a).await;
}

#[tokio::test]
async fn usage_counts_contexts_with_their_chunks_and_reconcile_agrees() {
    let db = TestDb::new().await;
    let (a, _) = two_tenants(db.store.pool()).await;
    let scope = TenantScope::assume(a);
    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    contexts::create(&mut tx, &context("c1", 3, false))
        .await
        .expect("create");
    let (replaced, created) = contexts::upsert(&mut tx, &context("c1", 9, false))
        .await
        .expect("upsert");
    assert!(!created);
    assert_eq!(replaced.chunk_count, 9);
    contexts::upsert(&mut tx, &context("c2", 2, false))
        .await
        .expect("upsert");
    tx.commit().await.expect("commit");
    let (n, bytes): (i64, i64) =
        sqlx::query_as("SELECT contexts, context_bytes FROM tenant_usage WHERE tenant_id = $1")
            .bind(a)
            .fetch_one(db.store.pool())
            .await
            .expect("counters");
    assert_eq!(n, 2);
    let chunk_bytes: i64 = sqlx::query_scalar(
        "SELECT sum(octet_length(text) + 1536)::bigint FROM context_chunks WHERE tenant_id = $1",
    )
    .bind(a)
    .fetch_one(db.store.pool())
    .await
    .expect("chunk bytes");
    assert!(
        bytes > chunk_bytes,
        "{bytes} counts the chunks ({chunk_bytes})"
    );
    let reported: (i64, i64) = sqlx::query_as(
        "SELECT offloaded_context_count, context_bytes FROM get_tenant_memory_usage($1)",
    )
    .bind(a)
    .fetch_one(db.store.pool())
    .await
    .expect("usage");
    assert_eq!(reported, (2, bytes));
    counters_agree(&db.store, a).await;
}

#[tokio::test]
async fn a_quota_counts_contexts_and_a_refused_write_leaves_nothing() {
    let db = TestDb::new().await;
    let (a, _) = two_tenants(db.store.pool()).await;
    sqlx::query("UPDATE tenants SET max_storage_bytes = 20000 WHERE id = $1")
        .bind(a)
        .execute(db.store.pool())
        .await
        .expect("quota");
    let scope = TenantScope::assume(a);
    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    contexts::create(&mut tx, &context("small", 2, false))
        .await
        .expect("fits");
    tx.commit().await.expect("commit");
    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    match contexts::create(&mut tx, &context("big", 40, false)).await {
        Err(StoreError::Quota(_)) => {}
        other => panic!("expected a quota refusal, got {other:?}"),
    }
    tx.rollback().await.expect("rollback");
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM context_chunks")
        .fetch_one(db.store.pool())
        .await
        .expect("count");
    assert_eq!(chunks, 2);
    counters_agree(&db.store, a).await;
}

#[tokio::test]
async fn expired_contexts_are_removed_in_batches_with_their_chunks() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    for (tenant, n) in [(a, 1500), (b, 700)] {
        let mut tx = db
            .store
            .begin_tenant(&TenantScope::assume(tenant))
            .await
            .expect("begin");
        for i in 0..n {
            let mut c = context(&format!("c{i}"), 1, true);
            c.embedding = None;
            contexts::create(&mut tx, &c).await.expect("create");
        }
        contexts::create(&mut tx, &context("kept", 2, false))
            .await
            .expect("create");
        tx.commit().await.expect("commit");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Expired contexts are gone for every read at once.
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(a))
        .await
        .expect("begin");
    let page = contexts::list(&mut tx, &ContextFilter::default(), None, 100)
        .await
        .expect("list");
    assert_eq!(page.len(), 1);
    assert!(matches!(
        contexts::get(&mut tx, "c1").await,
        Err(StoreError::NotFound("context"))
    ));
    tx.rollback().await.expect("rollback");

    assert_eq!(
        db.store.clean_expired_contexts().await.expect("clean"),
        2200
    );
    let (contexts_left, chunks_left): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM offloaded_contexts), (SELECT count(*) FROM context_chunks)",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!((contexts_left, chunks_left), (2, 4));
    counters_agree(&db.store, a).await;
    counters_agree(&db.store, b).await;
    assert_eq!(db.store.clean_expired_contexts().await.expect("again"), 0);

    // The cleanup walks the expiry index.
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT c.expires_at, c.tenant_id, c.id FROM offloaded_contexts c
         WHERE c.expires_at <= now()
           AND (c.expires_at, c.tenant_id, c.id) > ('-infinity', '00000000-0000-0000-0000-000000000000', '00000000-0000-0000-0000-000000000000')
         ORDER BY c.expires_at, c.tenant_id, c.id LIMIT 1000",
    )
    .fetch_all(pool)
    .await
    .expect("explain");
    let plan = plan.join("\n");
    assert!(plan.contains("offloaded_contexts_expiry_idx"), "{plan}");
}

/// `n` contexts of `tenant` with 4 chunks each, written as the owner: metadata `{"n": i}`,
/// sessions `s<i mod 100>`, chunk words `alpha<j>` (common) and `rare<i>` (one context's).
async fn fill(pool: &PgPool, tenant: Uuid, n: i32) {
    sqlx::query(
        "WITH c AS (
             INSERT INTO offloaded_contexts (tenant_id, context_id, session_id, metadata)
             SELECT $1, 'c' || g, 's' || (g % 100), jsonb_build_object('n', g)
             FROM generate_series(1, $2) AS g
             RETURNING id, context_id)
         INSERT INTO context_chunks (tenant_id, offloaded_context_id, ordinal, first_message,
             last_message, char_start, char_end, token_count, text, embedding)
         SELECT $1, c.id, j, j, j, 0, 10, 10,
                'user: alpha' || j || ' rare' || substr(c.context_id, 2) || ' notes',
                ('[' || (j + 1) || ',' || random() || ',' || random() || repeat(',0.01', 381) || ']')::vector
         FROM c, generate_series(0, 3) AS j",
    )
    .bind(tenant)
    .bind(n)
    .execute(pool)
    .await
    .expect("fill");
    sqlx::query("ANALYZE offloaded_contexts, context_chunks")
        .execute(pool)
        .await
        .expect("analyze");
}

#[tokio::test]
async fn every_context_query_uses_its_index_as_the_application_role() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    fill(pool, a, 6000).await;
    fill(pool, b, 200).await;
    assert!(
        db.store.gin_direct(),
        "the test server's owner is superuser"
    );
    db.store
        .maintain_vector_indexes(VectorIndexPolicy {
            min_rows: 10_000,
            max_builds_per_run: 4,
        })
        .await
        .expect("indexes");
    assert!(db.store.has_table_index(&CONTEXT_CHUNKS, a));
    assert!(!db.store.has_table_index(&CONTEXT_CHUNKS, b));

    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(a))
        .await
        .expect("begin");
    let q = {
        let mut v = vec![0.01f32; 384];
        v[0] = 2.0;
        v
    };
    let none = ContextFilter::default();
    let session = ContextFilter {
        session_id: Some("s7".into()),
        ..Default::default()
    };
    let contains = ContextFilter {
        contains: Some(json!({ "n": 4242 })),
        ..Default::default()
    };
    let context_row: Uuid =
        sqlx::query_scalar("SELECT id FROM offloaded_contexts WHERE context_id = 'c77'")
            .fetch_one(&mut *tx)
            .await
            .expect("a context");
    let cases = [
        (
            "chunk text search",
            "context_chunks_fts_idx",
            contexts::explain_text(&mut tx, "rare4242", 10, &none)
                .await
                .expect("explain"),
        ),
        (
            "the tenant's HNSW index",
            "cc_hnsw_",
            contexts::explain_vector(&mut tx, &q, 10, &none, Strategy::Hnsw)
                .await
                .expect("explain"),
        ),
        (
            "list by session",
            "offloaded_contexts_session_idx",
            contexts::explain_list(&mut tx, &session, 51)
                .await
                .expect("explain"),
        ),
        (
            "list by metadata",
            "offloaded_contexts_metadata_idx",
            contexts::explain_list(&mut tx, &contains, 51)
                .await
                .expect("explain"),
        ),
        (
            "list newest first",
            "offloaded_contexts_recent_idx",
            contexts::explain_list(&mut tx, &none, 51)
                .await
                .expect("explain"),
        ),
        (
            "a context's chunks in order",
            "context_chunks_order_key",
            contexts::explain_chunks_in_order(&mut tx, context_row)
                .await
                .expect("explain"),
        ),
    ];
    for (what, index, plan) in cases {
        assert!(plan.contains(index), "{what} should use {index}:\n{plan}");
    }
    let exact = contexts::explain_vector(&mut tx, &q, 10, &none, Strategy::Exact)
        .await
        .expect("explain");
    assert!(
        !exact.contains("cc_hnsw_"),
        "the exact path must not use a vector index:\n{exact}"
    );
    // The HNSW answer is the exact answer here (recall).
    let (hnsw, used) = contexts::vector(&mut tx, &q, 10, &none, Strategy::Hnsw, 400)
        .await
        .expect("hnsw");
    let (truth, _) = contexts::vector(&mut tx, &q, 10, &none, Strategy::Exact, 400)
        .await
        .expect("exact");
    assert_eq!(used, Strategy::Hnsw);
    let ids = |h: &[contexts::ChunkHit]| h.iter().map(|h| h.chunk_id).collect::<Vec<_>>();
    let found = ids(&hnsw)
        .iter()
        .filter(|i| ids(&truth).contains(i))
        .count();
    assert!(found >= 9, "HNSW found {found} of the exact top 10");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn without_leakproof_operators_the_candidate_functions_answer_the_same_for_the_tenant_only() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    fill(pool, a, 300).await;
    fill(pool, b, 300).await;
    async fn answers(store: &Store, tenant: Uuid) -> (Vec<String>, Vec<String>) {
        let mut tx = store
            .begin_tenant(&TenantScope::assume(tenant))
            .await
            .expect("begin");
        let filter = ContextFilter {
            contains: Some(json!({ "n": 42 })),
            ..Default::default()
        };
        let listed = contexts::list(&mut tx, &filter, None, 100)
            .await
            .expect("list")
            .into_iter()
            .map(|c| c.context_id)
            .collect();
        let mut found: Vec<String> =
            contexts::text(&mut tx, "rare42", 100, &ContextFilter::default())
                .await
                .expect("text")
                .into_iter()
                .map(|h| format!("{}#{}", h.context_id, h.ordinal))
                .collect();
        found.sort();
        tx.rollback().await.expect("rollback");
        (listed, found)
    }
    let direct = answers(&db.store, a).await;
    assert_eq!(direct.0, ["c42"]);
    assert_eq!(direct.1, ["c42#0", "c42#1", "c42#2", "c42#3"]);
    for f in [
        "ts_match_vq(tsvector, tsquery)",
        "jsonb_contains(jsonb, jsonb)",
    ] {
        sqlx::query(&format!("ALTER FUNCTION pg_catalog.{f} NOT LEAKPROOF"))
            .execute(pool)
            .await
            .expect("alter");
    }
    db.store.set_gin_direct(false);
    assert_eq!(answers(&db.store, a).await, direct);
    // The tenant comes from the session: with none set, nothing.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SET LOCAL ROLE mnemo_app")
        .execute(&mut *tx)
        .await
        .expect("role");
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT mnemo_chunk_gin_candidates(to_tsquery('english', 'rare42'), 100)",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("no tenant");
    assert!(ids.is_empty());
}
