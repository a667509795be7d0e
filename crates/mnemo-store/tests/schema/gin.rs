//! The GIN indexes under Row Level Security: as `mnemo_app`, text search and the `tags`,
//! `any_tags` and `contains` filters use their GIN indexes (the operators are LEAKPROOF), which
//! they did not before; where the operators cannot be marked, `mnemo_gin_candidates()` answers the
//! same, confined to the current tenant.

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use mnemo_store::memories::{self, MemoryFilter};
use mnemo_store::search;
use mnemo_store::testing::TestDb;
use mnemo_store::{Store, TenantScope};

use super::two_tenants;

/// `n` memories of `tenant`: common words, a rarer word (`rare<g mod 2000>`), a tag shared likewise
/// (`t<g mod 2000>`) and the number `g` in the content.
async fn fill(pool: &PgPool, tenant: Uuid, n: i32) {
    sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content, tags)
         SELECT $1, 'm' || g,
                jsonb_build_object('text', 'note ' || (ARRAY['alpha', 'bravo', 'charlie', 'delta', 'echo'])[1 + g % 5]
                                           || ' rare' || (g % 2000), 'n', g),
                ARRAY['t' || (g % 2000)]
         FROM generate_series(1, $2) AS g",
    )
    .bind(tenant)
    .bind(n)
    .execute(pool)
    .await
    .expect("fill");
    sqlx::query("ANALYZE contextual_memories")
        .execute(pool)
        .await
        .expect("analyze");
}

fn filter(f: impl FnOnce(&mut MemoryFilter)) -> MemoryFilter {
    let mut filter = MemoryFilter::default();
    f(&mut filter);
    filter
}

/// (what, index the plan must use, plan) for text search and each GIN-indexed filter, planned as
/// the application role for `tenant`.
async fn plans(store: &Store, tenant: Uuid) -> Vec<(&'static str, &'static str, String)> {
    let mut tx = store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    let mut out = vec![(
        "text search",
        "contextual_memories_fts_idx",
        search::explain_text(&mut tx, "rare17 rare18", 10, &MemoryFilter::default())
            .await
            .expect("explain text"),
    )];
    for (what, index, f) in [
        (
            "tags",
            "contextual_memories_tags_idx",
            filter(|f| f.tags_all = Some(vec!["t7".into()])),
        ),
        (
            "any_tags",
            "contextual_memories_tags_idx",
            filter(|f| f.tags_any = Some(vec!["t7".into(), "t8".into()])),
        ),
        (
            "contains",
            "contextual_memories_content_idx",
            filter(|f| f.contains = Some(json!({ "n": 4242 }))),
        ),
    ] {
        let plan = memories::explain_list(&mut tx, &f, 51)
            .await
            .expect("explain list");
        out.push((what, index, plan));
    }
    tx.rollback().await.expect("rollback");
    out
}

async fn set_leakproof(pool: &PgPool, on: bool) {
    let mark = if on { "LEAKPROOF" } else { "NOT LEAKPROOF" };
    for f in [
        "ts_match_vq(tsvector, tsquery)",
        "jsonb_contains(jsonb, jsonb)",
        "arraycontains(anyarray, anyarray)",
        "arrayoverlap(anyarray, anyarray)",
    ] {
        sqlx::query(&format!("ALTER FUNCTION pg_catalog.{f} {mark}"))
            .execute(pool)
            .await
            .expect("alter function");
    }
}

#[tokio::test]
async fn text_tag_and_containment_filters_use_their_gin_indexes_as_the_application_role() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    fill(pool, a, 60_000).await;
    fill(pool, b, 500).await;
    assert!(
        db.store.gin_direct(),
        "the test server's owner is superuser"
    );

    // Without the LEAKPROOF marks (as before migration 0003), RLS turns each condition into a
    // filter applied to every row the policy lets through.
    set_leakproof(pool, false).await;
    for (what, index, plan) in plans(&db.store, a).await {
        assert!(!plan.contains(index), "{what} without LEAKPROOF:\n{plan}");
    }

    // Marked (what Store::migrate does at every start), the planner uses the GIN index.
    db.store.migrate().await.expect("migrate");
    assert!(db.store.gin_direct());
    for (what, index, plan) in plans(&db.store, a).await {
        assert!(plan.contains(index), "{what} should use {index}:\n{plan}");
    }
}

/// memory_ids of a list or search answer, sorted.
fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

async fn answers(store: &Store, tenant: Uuid) -> Vec<Vec<String>> {
    let mut tx = store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    let mut out = Vec::new();
    let hits = search::text(
        &mut tx,
        "rare17 rare18",
        10,
        &filter(|f| f.tags_any = Some(vec!["t17".into(), "t18".into()])),
        false,
    )
    .await
    .expect("text");
    out.push(sorted(
        hits.into_iter().map(|h| h.memory.memory_id).collect(),
    ));
    for f in [
        filter(|f| f.tags_all = Some(vec!["t7".into()])),
        filter(|f| f.tags_any = Some(vec!["t7".into(), "t8".into()])),
        filter(|f| f.contains = Some(json!({ "n": 42 }))),
        filter(|f| {
            f.contains = Some(json!({ "n": 7 }));
            f.tags_all = Some(vec!["t7".into()]);
        }),
    ] {
        let rows = memories::list(&mut tx, &f, None, 100, false)
            .await
            .expect("list");
        out.push(sorted(rows.into_iter().map(|m| m.memory_id).collect()));
    }
    tx.rollback().await.expect("rollback");
    out
}

#[tokio::test]
async fn without_leakproof_operators_the_candidate_function_gives_the_same_answers_for_the_tenant_only(
) {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    fill(pool, a, 3000).await;
    fill(pool, b, 3000).await;
    let direct = answers(&db.store, a).await;
    assert_eq!(direct[0], ["m17", "m18", "m2017", "m2018"]);
    assert_eq!(direct[3], ["m42"]);
    assert_eq!(direct[1].len(), 2, "{direct:?}");

    set_leakproof(pool, false).await;
    db.store.set_gin_direct(false);
    assert_eq!(answers(&db.store, a).await, direct);

    // The tenant comes from the session, whatever the arguments: with B set, B's rows only; with
    // none, nothing. A match broader than the limit is left to the query (NULL).
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(b))
        .await
        .expect("begin");
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT tenant_id FROM contextual_memories WHERE id IN (
             SELECT unnest(mnemo_gin_candidates(NULL, '{\"n\": 42}', NULL, NULL, 100)))",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("as B");
    assert_eq!(owners, [b]);
    let (as_b, broad): (Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT cardinality(mnemo_gin_candidates(NULL, '{\"n\": 42}', NULL, NULL, 100)),
                cardinality(mnemo_gin_candidates(NULL, NULL, ARRAY['t1'], NULL, 1))",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("as B");
    assert_eq!(as_b, Some(1), "A's memory 42 is not a candidate for B");
    assert_eq!(broad, None, "t1 is on two memories of B, more than 1");
    tx.rollback().await.expect("rollback");
    let none: Option<i32> = sqlx::query_scalar(
        "SELECT cardinality(mnemo_gin_candidates(NULL, '{\"n\": 42}', NULL, NULL, 100))",
    )
    .fetch_one(pool)
    .await
    .expect("without a tenant");
    assert_eq!(none, Some(0));
}
