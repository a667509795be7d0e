//! Row Level Security as the application role `mnemo_app`: with tenant A set, tenant B's rows of
//! every tenant-owned table cannot be read, updated, deleted or inserted; with no tenant set
//! nothing is visible; the role cannot read API keys and has no way around the policies.

use mnemo_store::testing::TestDb;
use mnemo_store::TenantScope;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{app_tx, create_context, create_memory, db_error, two_tenants, TENANT_OWNED};

/// Two memories and a context of a tenant: the endpoints of its relationship rows and the parent
/// of its chunk rows.
#[derive(Clone, Copy)]
struct Memories(Uuid, Uuid, Uuid);

/// Inserts one row of `table` that belongs to `tenant` (`peer` is the other tenant, the target of
/// a sharing rule; `memories` are the tenant's own).
async fn insert_row(
    conn: &mut PgConnection,
    table: &str,
    tenant: Uuid,
    peer: Uuid,
    memories: Memories,
) -> Result<u64, sqlx::Error> {
    let query = match table {
        "tenant_access_policies" => sqlx::query(
            "INSERT INTO tenant_access_policies (tenant_id, name, resource_type, permissions)
             VALUES ($1, 'policy-' || gen_random_uuid(), 'memories', ARRAY['read'])",
        )
        .bind(tenant),
        "tenant_sharing_rules" => sqlx::query(
            "INSERT INTO tenant_sharing_rules (tenant_id, target_tenant_id, resource_type)
             VALUES ($1, $2, 'memories')",
        )
        .bind(tenant)
        .bind(peer),
        "data_retention_policies" => sqlx::query(
            "INSERT INTO data_retention_policies (tenant_id, resource_type, retention_days)
             VALUES ($1, 'memories', 30)",
        )
        .bind(tenant),
        "contextual_memories" => sqlx::query(
            "INSERT INTO contextual_memories (tenant_id, memory_id, content)
             VALUES ($1, 'memory-' || gen_random_uuid(), '{\"text\": \"x\"}')",
        )
        .bind(tenant),
        "contextual_memories_archive" => sqlx::query(
            "INSERT INTO contextual_memories_archive
                 (id, tenant_id, memory_id, relevance_score, content, tags, metadata, created_at, updated_at)
             VALUES (gen_random_uuid(), $1, 'archived', 0.5, '{}', '{}', '{}', now(), now())",
        )
        .bind(tenant),
        "memory_relationships" => sqlx::query(
            "INSERT INTO memory_relationships (tenant_id, source_memory_id, target_memory_id, relationship_type)
             VALUES ($1, $2, $3, 'related')",
        )
        .bind(tenant)
        .bind(memories.0)
        .bind(memories.1),
        "memory_relationships_archive" => sqlx::query(
            "INSERT INTO memory_relationships_archive
                 (id, tenant_id, source_memory_id, target_memory_id, relationship_type, weight, metadata, created_at)
             VALUES (gen_random_uuid(), $1, $2, $3, 'related', 1, '{}', now())",
        )
        .bind(tenant)
        .bind(memories.0)
        .bind(memories.1),
        "offloaded_contexts" => sqlx::query(
            "INSERT INTO offloaded_contexts (tenant_id, context_id, compression_ratio)
             VALUES ($1, 'context-' || gen_random_uuid(), 2.0)",
        )
        .bind(tenant),
        "federated_participants" => sqlx::query(
            "INSERT INTO federated_participants (tenant_id, privacy_level) VALUES ($1, 'basic')",
        )
        .bind(tenant),
        "audit_log" => sqlx::query(
            "INSERT INTO audit_log (tenant_id, action, resource_type, outcome)
             VALUES ($1, 'create', 'memories', 'success')",
        )
        .bind(tenant),
        "audit_log_archive" => sqlx::query(
            "INSERT INTO audit_log_archive (id, tenant_id, actor, action, resource_type, outcome, details, created_at)
             VALUES (gen_random_uuid(), $1, 'api', 'create', 'memories', 'success', '{}', now())",
        )
        .bind(tenant),
        "tenant_usage" => sqlx::query(
            "INSERT INTO tenant_usage (tenant_id, memories, content_bytes) VALUES ($1, 2, 40)",
        )
        .bind(tenant),
        "context_chunks" => sqlx::query(
            "INSERT INTO context_chunks (tenant_id, offloaded_context_id, ordinal, first_message,
                 last_message, char_start, char_end, token_count, text)
             VALUES ($1, $2, (random() * 1e9)::int, 0, 0, 0, 5, 2, 'user: hello')",
        )
        .bind(tenant)
        .bind(memories.2),
        "tenant_daily_activity" => sqlx::query(
            "INSERT INTO tenant_daily_activity (tenant_id, day, action, outcome, operations)
             VALUES ($1, current_date, 'memory.create', 'success', 1)",
        )
        .bind(tenant),
        // A session of the tenant's own, and its membership (and contribution) in it.
        "federated_memberships" => sqlx::query(
            "WITH s AS (INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id)
                        VALUES ('session-' || gen_random_uuid(), 'topic', $1) RETURNING id)
             INSERT INTO federated_memberships (tenant_id, session_id) SELECT $1, id FROM s",
        )
        .bind(tenant),
        "federated_contributions" => sqlx::query(
            "WITH s AS (INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id)
                        VALUES ('session-' || gen_random_uuid(), 'topic', $1) RETURNING id),
                  m AS (INSERT INTO federated_memberships (tenant_id, session_id)
                        SELECT $1, id FROM s RETURNING session_id)
             INSERT INTO federated_contributions (tenant_id, session_id, centroid, memory_count)
             SELECT $1, session_id, array_fill(0.1::float8, ARRAY[384]), 3 FROM m",
        )
        .bind(tenant),
        "federated_privacy_ledger" => sqlx::query(
            "INSERT INTO federated_privacy_ledger
                 (tenant_id, session_id, session_key, rho, delta, session_epsilon, session_delta,
                  rho_after, delta_after, epsilon_spent_after)
             VALUES ($1, gen_random_uuid(), 's', 0.01, 2e-9, 1, 1e-8, 0.01, 2e-9, 0.8)",
        )
        .bind(tenant),
        other => panic!("no fixture row for {other}"),
    };
    Ok(query.execute(conn).await?.rows_affected())
}

/// Tenants A and B, each with two memories and one row in every tenant-owned table.
async fn populated(pool: &PgPool) -> (Uuid, Memories, Uuid, Memories) {
    let (a, b) = two_tenants(pool).await;
    let mem_a = Memories(
        create_memory(pool, a, "a-1").await,
        create_memory(pool, a, "a-2").await,
        create_context(pool, a, "a-context").await,
    );
    let mem_b = Memories(
        create_memory(pool, b, "b-1").await,
        create_memory(pool, b, "b-2").await,
        create_context(pool, b, "b-context").await,
    );
    let mut conn = pool.acquire().await.expect("acquire");
    for table in TENANT_OWNED {
        if table == "contextual_memories" {
            continue;
        }
        insert_row(&mut conn, table, a, b, mem_a)
            .await
            .unwrap_or_else(|e| panic!("owner inserts {table} row of A: {e}"));
        insert_row(&mut conn, table, b, a, mem_b)
            .await
            .unwrap_or_else(|e| panic!("owner inserts {table} row of B: {e}"));
    }
    (a, mem_a, b, mem_b)
}

/// How many rows of `table` belong to `tenant`, counted by the owner.
async fn owner_count(pool: &PgPool, table: &str, tenant: Uuid) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {table} WHERE tenant_id = $1"
    ))
    .bind(tenant)
    .fetch_one(pool)
    .await
    .expect("owner count")
}

async fn app_has_privilege(pool: &PgPool, table: &str, privilege: &str) -> bool {
    sqlx::query_scalar("SELECT has_table_privilege('mnemo_app', $1, $2)")
        .bind(table)
        .bind(privilege)
        .fetch_one(pool)
        .await
        .expect("has_table_privilege")
}

const INSUFFICIENT_PRIVILEGE: &str = "42501";

#[tokio::test]
async fn tenant_a_cannot_read_tenant_b_rows_of_any_tenant_owned_table() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, b, _) = populated(pool).await;
    for table in TENANT_OWNED {
        let mut tx = app_tx(pool, Some(a)).await;
        let (own, foreign, of_b): (i64, i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id <> $1),
                    count(*) FILTER (WHERE tenant_id = $2)
             FROM {table}"
        ))
        .bind(a)
        .bind(b)
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("read {table} as A: {e}"));
        assert!(own >= 1, "{table}: A sees its own rows");
        assert_eq!(
            (foreign, of_b),
            (0, 0),
            "{table}: A sees other tenants' rows"
        );
    }
}

#[tokio::test]
async fn tenant_a_cannot_update_tenant_b_rows_of_any_tenant_owned_table() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, b, _) = populated(pool).await;
    for table in TENANT_OWNED {
        let before = owner_count(pool, table, b).await;
        let mut tx = app_tx(pool, Some(a)).await;
        let result = sqlx::query(&format!(
            "UPDATE {table} SET tenant_id = $1 WHERE tenant_id = $2"
        ))
        .bind(a)
        .bind(b)
        .execute(&mut *tx)
        .await;
        if app_has_privilege(pool, table, "UPDATE").await {
            let updated = result
                .unwrap_or_else(|e| panic!("{table}: {e}"))
                .rows_affected();
            assert_eq!(updated, 0, "{table}: A updated B's rows");
        } else {
            let (code, _) = db_error(&result.expect_err("no UPDATE grant"));
            assert_eq!(code, INSUFFICIENT_PRIVILEGE, "{table}");
        }
        tx.commit().await.ok();
        assert_eq!(owner_count(pool, table, b).await, before, "{table}");
    }
}

#[tokio::test]
async fn tenant_a_cannot_delete_tenant_b_rows_of_any_tenant_owned_table() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, b, _) = populated(pool).await;
    for table in TENANT_OWNED {
        let before = owner_count(pool, table, b).await;
        assert!(before >= 1, "{table}: B has rows");
        let mut tx = app_tx(pool, Some(a)).await;
        let result = sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
            .bind(b)
            .execute(&mut *tx)
            .await;
        if app_has_privilege(pool, table, "DELETE").await {
            let deleted = result
                .unwrap_or_else(|e| panic!("{table}: {e}"))
                .rows_affected();
            assert_eq!(deleted, 0, "{table}: A deleted B's rows");
        } else {
            let (code, _) = db_error(&result.expect_err("no DELETE grant"));
            assert_eq!(code, INSUFFICIENT_PRIVILEGE, "{table}");
        }
        tx.commit().await.ok();
        assert_eq!(owner_count(pool, table, b).await, before, "{table}");
    }
}

#[tokio::test]
async fn tenant_a_cannot_insert_rows_with_tenant_b_id_into_any_tenant_owned_table() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, b, mem_b) = populated(pool).await;
    for table in TENANT_OWNED {
        let before = owner_count(pool, table, b).await;
        let mut tx = app_tx(pool, Some(a)).await;
        let err = insert_row(&mut tx, table, b, a, mem_b)
            .await
            .expect_err(&format!("{table}: A inserted a row of B"));
        let (code, message) = db_error(&err);
        assert_eq!(code, INSUFFICIENT_PRIVILEGE, "{table}: {message}");
        if app_has_privilege(pool, table, "INSERT").await {
            assert!(
                message.contains("row-level security"),
                "{table}: rejected by RLS, got {message}"
            );
        }
        drop(tx);
        assert_eq!(owner_count(pool, table, b).await, before, "{table}");
    }
}

#[tokio::test]
async fn tenant_a_can_write_its_own_rows_as_the_application_role() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, mem_a, b, _) = populated(pool).await;
    for table in TENANT_OWNED {
        if !app_has_privilege(pool, table, "INSERT").await {
            continue;
        }
        // Tables with one row per tenant (or per target) already hold A's row.
        if matches!(
            table,
            "tenant_sharing_rules"
                | "data_retention_policies"
                | "federated_participants"
                | "memory_relationships"
                | "tenant_usage"
        ) {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(a)
                .execute(pool)
                .await
                .expect("owner clears A's row");
        }
        let mut tx = app_tx(pool, Some(a)).await;
        let inserted = insert_row(&mut tx, table, a, b, mem_a)
            .await
            .unwrap_or_else(|e| panic!("{table}: A cannot insert its own row: {e}"));
        assert_eq!(inserted, 1, "{table}");
        tx.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn tenant_a_cannot_move_its_rows_to_tenant_b() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, b, _) = populated(pool).await;
    let mut tx = app_tx(pool, Some(a)).await;
    let err = sqlx::query("UPDATE contextual_memories SET tenant_id = $1 WHERE memory_id = 'a-1'")
        .bind(b)
        .execute(&mut *tx)
        .await
        .expect_err("the new row would belong to B");
    let (code, message) = db_error(&err);
    assert_eq!(code, INSUFFICIENT_PRIVILEGE);
    assert!(message.contains("row-level security"), "{message}");
}

#[tokio::test]
async fn with_no_tenant_set_the_application_role_sees_nothing() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    populated(pool).await;
    let mut tables: Vec<&str> = TENANT_OWNED.to_vec();
    tables.extend([
        "tenants",
        "projects",
        "federated_sessions",
        "aggregated_insights",
        "performance_metrics",
    ]);
    let mut tx = app_tx(pool, None).await;
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
        assert_eq!(n, 0, "{table} is visible without a tenant");
    }
}

#[tokio::test]
async fn a_tenant_set_in_an_earlier_transaction_does_not_leak_into_the_next() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, _, _) = populated(pool).await;
    let mut conn = pool.acquire().await.expect("acquire");
    let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    sqlx::query(
        "SELECT set_config('role', 'mnemo_app', true), set_config('app.tenant_id', $1, true)",
    )
    .bind(a.to_string())
    .execute(&mut *tx)
    .await
    .expect("set tenant");
    tx.commit().await.expect("commit");
    // Same connection: `app.tenant_id` now exists as a placeholder with the value '', not NULL.
    let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    sqlx::query("SELECT set_config('role', 'mnemo_app', true)")
        .execute(&mut *tx)
        .await
        .expect("set role");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM contextual_memories")
        .fetch_one(&mut *tx)
        .await
        .expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn begin_tenant_confines_reads_and_writes_to_the_scoped_tenant() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _, b, _) = populated(pool).await;
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(a))
        .await
        .expect("begin_tenant");
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *tx)
        .await
        .expect("current_user");
    assert_eq!(role, "mnemo_app");
    let visible: Vec<String> =
        sqlx::query_scalar("SELECT memory_id FROM contextual_memories ORDER BY memory_id")
            .fetch_all(&mut *tx)
            .await
            .expect("select");
    assert_eq!(visible, ["a-1", "a-2"]);
    let updated =
        sqlx::query("UPDATE contextual_memories SET relevance_score = 0 WHERE memory_id = 'b-1'")
            .execute(&mut *tx)
            .await
            .expect("update")
            .rows_affected();
    let deleted = sqlx::query("DELETE FROM contextual_memories WHERE tenant_id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .expect("delete")
        .rows_affected();
    assert_eq!((updated, deleted), (0, 0));
    let err = sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content) VALUES ($1, 'planted', '{}')",
    )
    .bind(b)
    .execute(&mut *tx)
    .await
    .expect_err("insert as B");
    assert!(db_error(&err).1.contains("row-level security"));
    tx.rollback().await.expect("rollback");

    // The default tenant_id is the scoped tenant.
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(a))
        .await
        .expect("begin_tenant");
    let owner: Uuid = sqlx::query_scalar(
        "INSERT INTO contextual_memories (memory_id, content) VALUES ('a-3', '{}') RETURNING tenant_id",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("insert without tenant_id");
    assert_eq!(owner, a);
    tx.commit().await.expect("commit");
    assert_eq!(owner_count(pool, "contextual_memories", b).await, 2);
}

#[tokio::test]
async fn application_role_cannot_read_api_keys_or_settings() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    sqlx::query(
        "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes)
         VALUES ($1, 'k', 'mn_', sha256('secret'), ARRAY['read'])",
    )
    .bind(a)
    .execute(pool)
    .await
    .expect("insert key");
    for table in ["api_keys", "mnemo_settings"] {
        let mut tx = db
            .store
            .begin_tenant(&TenantScope::assume(a))
            .await
            .expect("begin_tenant");
        let err = sqlx::query(&format!("SELECT count(*) FROM {table}"))
            .execute(&mut *tx)
            .await
            .expect_err(&format!("mnemo_app read {table}"));
        let (code, message) = db_error(&err);
        assert_eq!(code, INSUFFICIENT_PRIVILEGE, "{table}: {message}");
    }
}

#[tokio::test]
async fn application_role_cannot_run_cross_tenant_maintenance() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    for call in [
        "SELECT clean_expired_memories()",
        "SELECT archive_old_audit_logs(1)",
        "SELECT refresh_analytics_views()",
        "SELECT create_time_partitions(1)",
    ] {
        let mut tx = app_tx(pool, Some(a)).await;
        let err = sqlx::query(call).execute(&mut *tx).await.expect_err(call);
        assert_eq!(db_error(&err).0, INSUFFICIENT_PRIVILEGE, "{call}");
    }
}

#[tokio::test]
async fn application_role_is_not_superuser_bypasses_no_rls_and_owns_nothing() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (superuser, bypassrls, login): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = 'mnemo_app'",
    )
    .fetch_one(pool)
    .await
    .expect("mnemo_app exists");
    assert!(!superuser && !bypassrls && !login);
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class WHERE relowner = 'mnemo_app'::regrole
         UNION ALL SELECT proname::text FROM pg_proc WHERE proowner = 'mnemo_app'::regrole
         UNION ALL SELECT nspname::text FROM pg_namespace WHERE nspowner = 'mnemo_app'::regrole",
    )
    .fetch_all(pool)
    .await
    .expect("owned objects");
    assert!(owned.is_empty(), "mnemo_app owns {owned:?}");
    // Membership in another role (pg_read_all_data, the owner, …) would grant its privileges.
    let memberships: Vec<String> = sqlx::query_scalar(
        "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = 'mnemo_app'::regrole",
    )
    .fetch_all(pool)
    .await
    .expect("memberships");
    assert!(
        memberships.is_empty(),
        "mnemo_app is a member of {memberships:?}"
    );
}

#[tokio::test]
async fn every_tenant_owned_table_enables_and_forces_row_level_security() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let mut tables = TENANT_OWNED.to_vec();
    tables.push("performance_metrics");
    let flags: Vec<(String, bool, bool, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
                (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation')
         FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1)
         ORDER BY 1",
    )
    .bind(&tables)
    .fetch_all(pool)
    .await
    .expect("catalog");
    assert_eq!(flags.len(), tables.len());
    for (table, enabled, forced, policies) in flags {
        assert!(enabled && forced, "{table}: rls {enabled}, forced {forced}");
        assert_eq!(policies, 1, "{table} has a tenant_isolation policy");
    }
}

#[tokio::test]
async fn every_table_with_a_tenant_id_column_is_known_and_protected() {
    let db = TestDb::new().await;
    // A new tenant table must join TENANT_OWNED (and so these tests) or be a known exception.
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition AND a.attname = 'tenant_id' AND NOT a.attisdropped
         ORDER BY 1",
    )
    .fetch_all(db.store.pool())
    .await
    .expect("catalog");
    let mut expected: Vec<&str> = TENANT_OWNED.to_vec();
    // tenants: tenant_id is the text key; api_keys: control plane, no grant to mnemo_app;
    // performance_metrics: RLS, but tenant_id is NULL for system metrics (not distributed).
    expected.extend(["tenants", "api_keys", "performance_metrics"]);
    expected.sort();
    assert_eq!(tables, expected);
}

#[tokio::test]
async fn application_role_has_no_privilege_on_partitions_which_lack_row_level_security() {
    let db = TestDb::new().await;
    // RLS of a partitioned table applies only through the parent, so a partition must be out of
    // the application role's reach.
    let reachable: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relispartition
           AND has_table_privilege('mnemo_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')",
    )
    .fetch_all(db.store.pool())
    .await
    .expect("catalog");
    assert!(reachable.is_empty(), "{reachable:?}");
    let partitions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relispartition")
        .fetch_one(db.store.pool())
        .await
        .expect("catalog");
    assert!(
        partitions >= 2,
        "audit_log and performance_metrics are partitioned"
    );
}
