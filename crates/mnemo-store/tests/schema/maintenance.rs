//! The maintenance functions do what they say: archive moves audit rows (still readable), clean
//! removes only expired memories as the retention policies say, usage counts correctly, and
//! partitions are created ahead without losing rows that landed in a default partition.

use mnemo_store::testing::TestDb;
use mnemo_store::TenantScope;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{app_tx, create_project, create_tenant, two_tenants, vector_literal};

/// Writes an audit row of `tenant` dated `age_days` ago (as the owner); returns its id.
async fn audit_row(pool: &PgPool, tenant: Uuid, age_days: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO audit_log (tenant_id, action, resource_type, resource_id, outcome, status_code, details, created_at)
         VALUES ($1, 'create', 'memories', 'memory-' || $2, 'success', 201, jsonb_build_object('age', $2),
                 now() - make_interval(days => $2))
         RETURNING id",
    )
    .bind(tenant)
    .bind(age_days)
    .fetch_one(pool)
    .await
    .expect("insert audit row")
}

#[tokio::test]
async fn archive_old_audit_logs_moves_old_rows_to_the_archive_and_returns_the_count() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    let mut old = vec![
        audit_row(pool, a, 400).await,
        audit_row(pool, a, 400).await,
        audit_row(pool, b, 400).await,
    ];
    let recent = [audit_row(pool, a, 1).await, audit_row(pool, b, 0).await];
    let partition: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_log WHERE id = $1")
            .bind(old[0])
            .fetch_one(pool)
            .await
            .expect("old row");
    assert_eq!(
        partition, "audit_log_default",
        "a 400-day-old row has no monthly partition"
    );

    let moved = db.store.archive_old_audit_logs(365).await.expect("archive");
    assert_eq!(moved, 3);

    let mut remaining: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("audit_log");
    let mut expected_remaining = recent.to_vec();
    expected_remaining.sort();
    remaining.sort();
    assert_eq!(
        remaining, expected_remaining,
        "recent rows stay, old rows are gone"
    );

    let archived = sqlx::query(
        "SELECT id, tenant_id, resource_id, status_code, details, created_at < now() - interval '399 days' AS old_date
         FROM audit_log_archive ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("archive");
    let mut archived_ids: Vec<Uuid> = archived.iter().map(|r| r.get("id")).collect();
    archived_ids.sort();
    old.sort();
    assert_eq!(archived_ids, old);
    for row in &archived {
        assert_eq!(
            row.get::<Option<String>, _>("resource_id").as_deref(),
            Some("memory-400")
        );
        assert_eq!(row.get::<Option<i32>, _>("status_code"), Some(201));
        assert_eq!(
            row.get::<serde_json::Value, _>("details"),
            serde_json::json!({"age": 400})
        );
        assert!(row.get::<bool, _>("old_date"), "created_at is preserved");
    }

    // Archived rows stay readable by their tenant, and only by it.
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(a))
        .await
        .expect("begin_tenant");
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_archive")
        .fetch_one(&mut *tx)
        .await
        .expect("archive as tenant A");
    assert_eq!(visible, 2);
    tx.rollback().await.expect("rollback");

    assert_eq!(
        db.store.archive_old_audit_logs(365).await.expect("again"),
        0
    );
}

#[tokio::test]
async fn archive_old_audit_logs_refuses_a_negative_age() {
    let db = TestDb::new().await;
    let err = db
        .store
        .archive_old_audit_logs(-1)
        .await
        .expect_err("negative days");
    match err {
        mnemo_store::StoreError::Invalid { message } => {
            assert!(message.contains("days must be >= 0"), "{message}")
        }
        other => panic!("expected invalid_parameter_value, got {other:?}"),
    }
}

/// Stores a memory of `tenant` created `age_days` ago, expiring `expires_in_days` from now
/// (negative: already expired; None: never).
async fn aged_memory(
    pool: &PgPool,
    tenant: Uuid,
    memory_id: &str,
    age_days: i32,
    expires_in_days: Option<i32>,
) {
    sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content, tags, relevance_score, created_at, expires_at)
         VALUES ($1, $2, jsonb_build_object('id', $2), ARRAY['t'], 0.25,
                 now() - make_interval(days => $3), now() + make_interval(days => $4))",
    )
    .bind(tenant)
    .bind(memory_id)
    .bind(age_days)
    .bind(expires_in_days)
    .execute(pool)
    .await
    .expect("insert memory");
}

async fn retention_policy(
    pool: &PgPool,
    tenant: Uuid,
    days: Option<i32>,
    policy: &str,
    active: bool,
) {
    sqlx::query(
        "INSERT INTO data_retention_policies (tenant_id, resource_type, retention_days, archival_policy, is_active)
         VALUES ($1, 'memories', $2, $3::archival_policy, $4)",
    )
    .bind(tenant)
    .bind(days)
    .bind(policy)
    .bind(active)
    .execute(pool)
    .await
    .expect("insert retention policy");
}

async fn memory_ids(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT memory_id FROM {table} ORDER BY memory_id"))
        .fetch_all(pool)
        .await
        .expect("memory ids")
}

#[tokio::test]
async fn clean_expired_memories_removes_only_expired_rows_as_the_retention_policies_say() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let plain = create_tenant(pool, project, "no-policy").await;
    let archiving = create_tenant(pool, project, "archive-30d").await;
    let retaining = create_tenant(pool, project, "retain").await;
    let deleting = create_tenant(pool, project, "delete-30d").await;
    let inactive = create_tenant(pool, project, "inactive-retain").await;
    retention_policy(pool, archiving, Some(30), "archive", true).await;
    retention_policy(pool, retaining, None, "retain", true).await;
    retention_policy(pool, deleting, Some(30), "delete", true).await;
    retention_policy(pool, inactive, None, "retain", false).await;

    // No policy: expiry alone decides; age does not matter.
    aged_memory(pool, plain, "plain-expired", 1, Some(-1)).await;
    aged_memory(pool, plain, "plain-expires-later", 1, Some(1)).await;
    aged_memory(pool, plain, "plain-no-expiry", 1, None).await;
    aged_memory(pool, plain, "plain-old", 900, None).await;
    // archive, 30 days: expired or older than 30 days moves to the archive.
    aged_memory(pool, archiving, "archive-expired", 1, Some(-1)).await;
    aged_memory(pool, archiving, "archive-old", 60, None).await;
    aged_memory(pool, archiving, "archive-recent", 10, Some(5)).await;
    // retain: kept even when expired.
    aged_memory(pool, retaining, "retain-expired", 400, Some(-100)).await;
    // delete, 30 days.
    aged_memory(pool, deleting, "delete-old", 31, None).await;
    aged_memory(pool, deleting, "delete-recent", 29, None).await;
    // An inactive policy is no policy.
    aged_memory(pool, inactive, "inactive-expired", 1, Some(-1)).await;

    let removed = db.store.clean_expired_memories().await.expect("clean");
    assert_eq!(removed, 5);
    assert_eq!(
        memory_ids(pool, "contextual_memories").await,
        [
            "archive-recent",
            "delete-recent",
            "plain-expires-later",
            "plain-no-expiry",
            "plain-old",
            "retain-expired"
        ]
    );
    assert_eq!(
        memory_ids(pool, "contextual_memories_archive").await,
        ["archive-expired", "archive-old"]
    );
    let (tenant, content, tags, relevance): (Uuid, serde_json::Value, Vec<String>, f64) = sqlx::query_as(
        "SELECT tenant_id, content, tags, relevance_score FROM contextual_memories_archive WHERE memory_id = 'archive-old'",
    )
    .fetch_one(pool)
    .await
    .expect("archived row");
    assert_eq!(tenant, archiving);
    assert_eq!(content, serde_json::json!({"id": "archive-old"}));
    assert_eq!((tags, relevance), (vec!["t".to_owned()], 0.25));

    assert_eq!(db.store.clean_expired_memories().await.expect("again"), 0);
}

#[tokio::test]
async fn get_tenant_memory_usage_returns_the_tenants_figures() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    sqlx::query("UPDATE tenants SET max_memories = 100 WHERE id = $1")
        .bind(a)
        .execute(pool)
        .await
        .expect("quota");
    let embedding = vector_literal(|i| i as f64);
    // jsonb prints these as 10, 11 and 12 bytes.
    let mut ids = Vec::new();
    for (memory_id, content, relevance, expired, embedded) in [
        ("m-1", r#"{"k": "v"}"#, 0.2, false, true),
        ("m-2", r#"{"k": "vv"}"#, 0.4, true, false),
        ("m-3", r#"{"k": "vvv"}"#, 0.6, false, false),
    ] {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO contextual_memories (tenant_id, memory_id, content, relevance_score, expires_at, embedding)
             VALUES ($1, $2, $3::jsonb, $4, CASE WHEN $5 THEN now() - interval '1 hour' END,
                     CASE WHEN $6 THEN $7::vector END)
             RETURNING id",
        )
        .bind(a)
        .bind(memory_id)
        .bind(content)
        .bind(relevance)
        .bind(expired)
        .bind(embedded)
        .bind(&embedding)
        .fetch_one(pool)
        .await
        .expect("insert memory");
        ids.push(id);
    }
    sqlx::query(
        "INSERT INTO memory_relationships (tenant_id, source_memory_id, target_memory_id, relationship_type)
         VALUES ($1, $2, $3, 'related')",
    )
    .bind(a)
    .bind(ids[0])
    .bind(ids[1])
    .execute(pool)
    .await
    .expect("relationship");
    for context in ["c-1", "c-2"] {
        sqlx::query("INSERT INTO offloaded_contexts (tenant_id, context_id) VALUES ($1, $2)")
            .bind(a)
            .bind(context)
            .execute(pool)
            .await
            .expect("context");
    }
    // Tenant B's rows must not count.
    super::create_memory(pool, b, "b-1").await;
    sqlx::query("INSERT INTO offloaded_contexts (tenant_id, context_id) VALUES ($1, 'b-c')")
        .bind(b)
        .execute(pool)
        .await
        .expect("context of B");

    let usage = sqlx::query("SELECT * FROM get_tenant_memory_usage($1)")
        .bind(a)
        .fetch_one(pool)
        .await
        .expect("usage");
    let n = |col: &str| usage.get::<i64, _>(col);
    assert_eq!(usage.get::<Uuid, _>("tenant_id"), a);
    assert_eq!(
        [
            n("total_memories"),
            n("active_memories"),
            n("expired_memories"),
            n("embedded_memories")
        ],
        [3, 2, 1, 1]
    );
    assert_eq!(
        [n("content_bytes"), n("embedding_bytes"), n("storage_bytes")],
        [33, 384 * 4, 33 + 384 * 4]
    );
    assert_eq!(
        [n("relationship_count"), n("offloaded_context_count")],
        [1, 2]
    );
    assert!((usage.get::<f64, _>("avg_relevance") - 0.4).abs() < 1e-9);
    assert_eq!(usage.get::<Option<i64>, _>("max_memories"), Some(100));
    assert_eq!(usage.get::<Option<i64>, _>("max_storage_bytes"), None);

    // As the application role, the function sees through the caller's Row Level Security.
    let mut tx = app_tx(pool, Some(b)).await;
    let seen_by_b: i64 =
        sqlx::query_scalar("SELECT total_memories FROM get_tenant_memory_usage($1)")
            .bind(a)
            .fetch_one(&mut *tx)
            .await
            .expect("usage as B");
    assert_eq!(seen_by_b, 0);
}

#[tokio::test]
async fn create_time_partitions_creates_monthly_partitions_and_moves_rows_out_of_the_default() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    // Mid-month, six months ahead (UTC), the month create_time_partitions names the partition by.
    let (when, month): (chrono::DateTime<chrono::Utc>, String) = sqlx::query_as(
        "SELECT (m + interval '14 days') AT TIME ZONE 'UTC', to_char(m, 'YYYYMM')
         FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + interval '6 months' AS m) AS s",
    )
    .fetch_one(pool)
    .await
    .expect("month");
    let audit: Uuid = sqlx::query_scalar(
        "INSERT INTO audit_log (tenant_id, action, resource_type, outcome, created_at)
         VALUES ($1, 'create', 'memories', 'success', $2) RETURNING id",
    )
    .bind(a)
    .bind(when)
    .fetch_one(pool)
    .await
    .expect("future audit row");
    let metric: Uuid = sqlx::query_scalar(
        "INSERT INTO performance_metrics (tenant_id, metric_type, metric_name, metric_value, recorded_at)
         VALUES ($1, 'memory', 'retrieval_time', 1.5, $2) RETURNING id",
    )
    .bind(a)
    .bind(when)
    .fetch_one(pool)
    .await
    .expect("future metric");
    let count_rows = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM performance_metrics)",
        )
        .fetch_one(pool)
        .await
        .expect("counts")
    };
    let before = count_rows().await;
    let home = |table: &'static str, id: Uuid| async move {
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT tableoid::regclass::text FROM {table} WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("row")
    };
    assert_eq!(home("audit_log", audit).await, "audit_log_default");
    assert_eq!(
        home("performance_metrics", metric).await,
        "performance_metrics_default"
    );

    let created = db
        .store
        .create_time_partitions(7)
        .await
        .expect("create_time_partitions(7)");
    assert!(
        created >= 2,
        "at least the partitions of month +6 and +7: {created}"
    );

    assert_eq!(
        home("audit_log", audit).await,
        format!("audit_log_p{month}")
    );
    assert_eq!(
        home("performance_metrics", metric).await,
        format!("performance_metrics_p{month}")
    );
    assert_eq!(count_rows().await, before, "no row lost");

    // A partition for every month from now to 7 months ahead, for both tables.
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s_p%s', t, to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i), 'YYYYMM'))
         FROM unnest(ARRAY['audit_log', 'performance_metrics']) AS t, generate_series(0, 7) AS i
         WHERE NOT EXISTS (
             SELECT 1 FROM pg_inherits h
             WHERE h.inhparent = t::regclass
               AND h.inhrelid::regclass::text =
                   format('%s_p%s', t, to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i), 'YYYYMM')))",
    )
    .fetch_all(pool)
    .await
    .expect("partitions");
    assert!(missing.is_empty(), "{missing:?}");

    // A new partition keeps the parent's primary key and is reached through the parent's RLS.
    let pk_on_partition: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p')",
    )
    .bind(format!("audit_log_p{month}"))
    .fetch_one(pool)
    .await
    .expect("catalog");
    assert!(pk_on_partition);
    let mut tx = app_tx(pool, Some(a)).await;
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE id = $1")
        .bind(audit)
        .fetch_one(&mut *tx)
        .await
        .expect("as tenant A");
    assert_eq!(visible, 1);
    tx.rollback().await.expect("rollback");

    assert_eq!(db.store.create_time_partitions(7).await.expect("again"), 0);
}

#[tokio::test]
async fn new_rows_in_a_created_month_go_to_its_partition() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    db.store
        .create_time_partitions(1)
        .await
        .expect("partitions");
    let home: String = sqlx::query_scalar(
        "WITH r AS (INSERT INTO audit_log (tenant_id, action, resource_type, outcome)
                    VALUES ($1, 'create', 'memories', 'success') RETURNING tableoid)
         SELECT tableoid::regclass::text FROM r",
    )
    .bind(a)
    .fetch_one(pool)
    .await
    .expect("insert");
    let expected: String =
        sqlx::query_scalar("SELECT 'audit_log_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')")
            .fetch_one(pool)
            .await
            .expect("name");
    assert_eq!(home, expected);
}
