//! Catalog checks for distribution and indexing: Citus can only enforce a primary key, unique
//! constraint or foreign key of a table distributed by `tenant_id` if it includes `tenant_id`
//! (`docs/scaling.md`); index predicates must be immutable; materialized views must refresh
//! concurrently.

use mnemo_store::testing::TestDb;

use super::{create_memory, two_tenants, TENANT_OWNED};

#[tokio::test]
async fn every_key_and_foreign_key_of_a_tenant_owned_table_includes_tenant_id() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    // The tables and their partitions (a partition is distributed with its parent).
    let violations: Vec<String> = sqlx::query_scalar(
        r#"
        WITH owned AS (
            SELECT c.oid FROM pg_class c
            WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)
            UNION
            SELECT i.inhrelid FROM pg_inherits i
            JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relnamespace = 'public'::regnamespace AND p.relname = ANY($1)
        ),
        keys AS (
            SELECT con.conname, con.contype, con.conrelid, con.confrelid,
                   (SELECT attnum FROM pg_attribute WHERE attrelid = con.conrelid AND attname = 'tenant_id') AS own_col,
                   (SELECT attnum FROM pg_attribute WHERE attrelid = con.confrelid AND attname = 'tenant_id') AS ref_col,
                   con.conkey, con.confkey
            FROM pg_constraint con
            WHERE con.conrelid IN (SELECT oid FROM owned) AND con.contype IN ('p', 'u', 'f', 'x')
        )
        SELECT format('%s.%s (%s)', conrelid::regclass, conname, contype)
        FROM keys
        WHERE own_col IS NULL
           OR (contype IN ('p', 'u', 'x') AND NOT own_col = ANY(conkey))
           OR (contype = 'f'
               -- Reference (control-plane) tables: a distributed table may point at them.
               AND confrelid NOT IN ('tenants'::regclass, 'projects'::regclass,
                                     'federated_sessions'::regclass)
               AND (ref_col IS NULL
                    OR array_position(conkey, own_col) IS NULL
                    OR array_position(conkey, own_col) IS DISTINCT FROM array_position(confkey, ref_col)))
        UNION ALL
        -- Unique indexes that back no constraint are just as unenforceable.
        SELECT format('%s.%s (unique index)', i.indrelid::regclass, i.indexrelid::regclass)
        FROM pg_index i
        WHERE i.indisunique AND i.indrelid IN (SELECT oid FROM owned)
          AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                          WHERE a.attrelid = i.indrelid AND a.attname = 'tenant_id'
                            AND a.attnum = ANY(i.indkey::int2[]))
        UNION ALL
        -- Citus cannot have a reference (or local) table point at a distributed one.
        SELECT format('%s.%s references a tenant-owned table', con.conrelid::regclass, con.conname)
        FROM pg_constraint con
        WHERE con.contype = 'f' AND con.confrelid IN (SELECT oid FROM owned)
          AND con.conrelid NOT IN (SELECT oid FROM owned)
        "#,
    )
    .bind(TENANT_OWNED.as_slice())
    .fetch_all(pool)
    .await
    .expect("catalog");
    assert!(violations.is_empty(), "{violations:#?}");

    // The check above is not vacuous: every table has a primary key, and the composite foreign
    // keys between tenant tables were seen.
    let without_pk: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class c
         WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = c.oid AND contype = 'p')",
    )
    .bind(TENANT_OWNED.as_slice())
    .fetch_all(pool)
    .await
    .expect("catalog");
    assert!(without_pk.is_empty(), "{without_pk:?}");
    let colocated_fks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint
         WHERE contype = 'f' AND conrelid = 'memory_relationships'::regclass
           AND confrelid = 'contextual_memories'::regclass",
    )
    .fetch_one(pool)
    .await
    .expect("catalog");
    assert_eq!(colocated_fks, 2);
    let chunk_fks: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_constraint
         WHERE contype = 'f' AND conrelid = 'context_chunks'::regclass
           AND confrelid = 'offloaded_contexts'::regclass",
    )
    .fetch_one(pool)
    .await
    .expect("catalog");
    assert_eq!(chunk_fks, 1);
}

#[tokio::test]
async fn no_index_predicate_or_expression_calls_now() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let expressions: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexrelid::regclass::text,
                concat_ws(' ', pg_get_expr(indpred, indrelid), pg_get_expr(indexprs, indrelid))
         FROM pg_index
         WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
           AND (indpred IS NOT NULL OR indexprs IS NOT NULL)",
    )
    .fetch_all(pool)
    .await
    .expect("catalog");
    assert!(
        !expressions.is_empty(),
        "the schema has partial indexes (expires_at IS NOT NULL)"
    );
    let time_dependent: Vec<&(String, String)> = expressions
        .iter()
        .filter(|(_, expr)| {
            let expr = expr.to_lowercase();
            [
                "now()",
                "current_timestamp",
                "current_date",
                "localtimestamp",
                "clock_timestamp",
                "statement_timestamp",
                "transaction_timestamp",
            ]
            .iter()
            .any(|f| expr.contains(f))
        })
        .collect();
    assert!(time_dependent.is_empty(), "{time_dependent:?}");
}

#[tokio::test]
async fn every_materialized_view_has_a_plain_unique_index() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let views: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text,
                (SELECT count(*) FROM pg_index i
                 WHERE i.indrelid = c.oid AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL)
         FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'm'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("catalog");
    let names: Vec<&str> = views.iter().map(|(n, _)| n.as_str()).collect();
    // tenant_daily_activity became a table refreshed incrementally (migration 0003).
    assert_eq!(names, ["tenant_memory_analytics"]);
    for (view, unique) in views {
        assert!(unique >= 1, "{view} cannot be refreshed concurrently");
    }
}

#[tokio::test]
async fn refresh_analytics_views_works_twice_and_picks_up_new_rows() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    db.store
        .refresh_analytics_views()
        .await
        .expect("first refresh");
    create_memory(pool, a, "m-1").await;
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, action, resource_type, outcome) VALUES ($1, 'create', 'memories', 'success')",
    )
    .bind(a)
    .execute(pool)
    .await
    .expect("audit row");
    sqlx::query("SELECT refresh_analytics_views()")
        .execute(pool)
        .await
        .expect("second refresh");
    let memories: i64 =
        sqlx::query_scalar("SELECT memory_count FROM tenant_memory_analytics WHERE tenant_id = $1")
            .bind(a)
            .fetch_one(pool)
            .await
            .expect("analytics row");
    let operations: i64 = sqlx::query_scalar(
        "SELECT operations FROM tenant_daily_activity WHERE tenant_id = $1 AND action = 'create'",
    )
    .bind(a)
    .fetch_one(pool)
    .await
    .expect("activity row");
    assert_eq!((memories, operations), (1, 1));
}

#[tokio::test]
async fn vector_and_full_text_indexes_exist() {
    let db = TestDb::new().await;
    let methods: Vec<(String, String)> = sqlx::query_as(
        "SELECT ic.relname::text, am.amname::text
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
         WHERE i.indrelid IN ('contextual_memories'::regclass, 'offloaded_contexts'::regclass,
                              'context_chunks'::regclass)",
    )
    .fetch_all(db.store.pool())
    .await
    .expect("catalog");
    let has = |name: &str, method: &str| methods.iter().any(|(n, m)| n == name && m == method);
    assert!(has("contextual_memories_content_idx", "gin"), "{methods:?}");
    assert!(has("contextual_memories_fts_idx", "gin"), "{methods:?}");
    assert!(
        has("offloaded_contexts_embedding_idx", "hnsw"),
        "{methods:?}"
    );
    assert!(has("context_chunks_fts_idx", "gin"), "{methods:?}");
    assert!(has("offloaded_contexts_metadata_idx", "gin"), "{methods:?}");
}

#[tokio::test]
async fn every_table_has_a_citus_placement_and_tenant_owned_tables_are_distributed() {
    use mnemo_store::citus::{placement_of, Placement};
    let db = TestDb::new().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND NOT relispartition",
    )
    .fetch_all(db.store.pool())
    .await
    .expect("tables");
    let unplaced: Vec<&String> = tables
        .iter()
        .filter(|t| placement_of(t).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "add these tables to mnemo_store::citus::LAYOUT: {unplaced:?}"
    );
    for t in TENANT_OWNED {
        assert_eq!(placement_of(t), Some(Placement::Distributed), "{t}");
    }
}

/// Citus rejects these on distributed and reference tables (measured on Citus 14): a function
/// taking a whole row (the row type on a shard is the shard's), and subqueries in the policies of
/// the control-plane tables (reference tables).
#[tokio::test]
async fn no_function_takes_a_table_row_and_no_reference_table_policy_has_a_subquery() {
    use mnemo_store::citus::{Placement, LAYOUT};
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let row_functions: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND EXISTS (SELECT 1 FROM unnest(p.proargtypes::oid[]) a
                       JOIN pg_type t ON t.oid = a AND t.typtype = 'c'
                       JOIN pg_class c ON c.oid = t.typrelid AND c.relkind IN ('r', 'p'))",
    )
    .fetch_all(pool)
    .await
    .expect("functions");
    assert!(
        row_functions.is_empty(),
        "functions taking a table row (Citus cannot run them on shards): {row_functions:?}"
    );
    let reference: Vec<&str> = LAYOUT
        .iter()
        .filter(|(_, p)| *p == Placement::Reference)
        .map(|(t, _)| *t)
        .collect();
    let with_subqueries: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s.%s', polrelid::regclass, polname) FROM pg_policy
         WHERE polrelid::regclass::text = ANY($1)
           AND (coalesce(pg_get_expr(polqual, polrelid), '') ~* '\\mselect\\M'
                OR coalesce(pg_get_expr(polwithcheck, polrelid), '') ~* '\\mselect\\M')",
    )
    .bind(&reference)
    .fetch_all(pool)
    .await
    .expect("policies");
    assert!(
        with_subqueries.is_empty(),
        "policies of reference tables with subqueries (Citus refuses them): {with_subqueries:?}"
    );
}
